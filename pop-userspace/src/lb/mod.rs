//! The load balancer's control side: backend ids, Maglev tables, the service entries
//! the XDP program reads, and `pop decap` for backends.
//!
//! * [`maglev`]: the consistent-hashing table (pure logic).
//! * [`runtime`]: writing services and backends into the maps; reloads swap each
//!   service's table by writing its idle half and flipping one array entry.
//! * [`decap`]: attaching the decapsulation program on a backend.

pub mod decap;
pub mod maglev;
pub mod runtime;
