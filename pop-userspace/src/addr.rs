//! Addresses as the data path keys them, parsed and converted in one place.

use std::net::{IpAddr, Ipv6Addr};

use pop_common::v4_mapped;

/// The address the data path sees: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is IPv4.
pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The 16-byte form the maps store: IPv4 as `::ffff:a.b.c.d`.
pub fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => v4_mapped(a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The address a map's 16 bytes hold (IPv4 when mapped).
pub fn unmapped(a: &[u8; 16]) -> IpAddr {
    normalise(IpAddr::V6(Ipv6Addr::from(*a)))
}
