//! DNS: zones, the authoritative answer engine, its server, the XDP answer table.
