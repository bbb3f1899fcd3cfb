//! The VIP table: which handler takes traffic to an (address, port, protocol).

/// Entries in the VIP table.
pub const MAX_VIPS: u32 = 4096;

/// Key of the VIP table: destination address (IPv4 as v4-mapped IPv6), port, protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// IPv6 address, or IPv4 as `::ffff:a.b.c.d`, network byte order.
    pub addr: [u8; 16],
    /// Destination port in network byte order.
    pub port_be: u16,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    pub _pad: u8,
}

/// Packets and bytes to one VIP key (per CPU), for rates and anomaly detection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipTraffic {
    pub packets: u64,
    pub bytes: u64,
}

/// What the data path does with traffic for a VIP key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipValue {
    /// One of the `VIP_KIND_*` constants.
    pub kind: u32,
    /// Index into the kind's own tables.
    pub index: u32,
}

/// VIP_ADDRS value bit: traffic to this address that no VIPS entry takes goes to the
/// kernel instead of being dropped (`pop.pass_unhandled_vips`).
pub const VIP_ADDR_PASS_UNHANDLED: u32 = 1;

/// Traffic for this VIP goes to the kernel (the controller's own servers).
pub const VIP_KIND_PASS: u32 = 0;
/// UDP/53 of a DNS block: answered from DNS_TABLE; `index` is the block.
pub const VIP_KIND_DNS: u32 = 1;
/// A load-balanced service: steered to a backend; `index` is the service.
pub const VIP_KIND_LB: u32 = 2;
/// An `[[http]]` site answered in XDP; `index` is the site.
pub const VIP_KIND_HTTP: u32 = 3;
