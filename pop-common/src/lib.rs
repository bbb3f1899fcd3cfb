//! Types shared by the XDP program (`pop-ebpf`) and the controller (`pop-userspace`).
//!
//! Everything here is `#[repr(C)]` plain data: the same bytes are written by one side
//! and read by the other through BPF maps. Changing a layout means bumping
//! [`MAP_LAYOUT_VERSION`], so a new controller never reads maps pinned by an old one.
#![no_std]

/// Version of every pinned map's key/value layout. Pinned maps live under
/// `<bpffs dir>/maps-v<N>/`, so an incompatible upgrade starts from fresh maps
/// instead of misreading old ones.
pub const MAP_LAYOUT_VERSION: u32 = 1;

/// Name of the XDP program in the object file (its function name).
pub const XDP_PROGRAM: &str = "pop_xdp";

/// Names of the maps, as declared in `pop-ebpf/src/maps.rs`.
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_VIPS: &str = "VIPS";

/// Slots in the per-CPU counter block. Larger than the counters in use so that new
/// counters can be added without changing the map's value size.
pub const COUNTER_SLOTS: usize = 64;

/// Entries in the VIP table.
pub const MAX_VIPS: u32 = 4096;

/// One per-CPU block of counters; index with [`Counter`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Counters {
    pub slots: [u64; COUNTER_SLOTS],
}

macro_rules! counters {
    ($($variant:ident = $name:literal : $help:literal,)*) => {
        /// Index of each data-path counter in [`Counters::slots`].
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter { $($variant,)* }

        impl Counter {
            /// Every counter, in slot order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            /// Stable dotted name: `group.what` (used by `pop stats` and Prometheus).
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }
            /// One line an operator can read.
            pub const fn help(self) -> &'static str {
                match self { $(Counter::$variant => $help,)* }
            }
        }
    };
}

counters! {
    RxPackets = "rx.packets": "frames seen by the XDP program",
    RxBytes = "rx.bytes": "bytes of frames seen by the XDP program",
    ActionPass = "action.pass": "frames handed to the kernel stack (XDP_PASS)",
    ActionTx = "action.tx": "frames sent back out of the receiving interface (XDP_TX)",
    ActionRedirect = "action.redirect": "frames redirected to another interface",
    ActionDrop = "action.drop": "frames dropped (XDP_DROP); see drop.*",
    ActionAborted = "action.aborted": "frames aborted by a program error (XDP_ABORTED)",
    L3Ipv4 = "l3.ipv4": "IPv4 packets",
    L3Ipv6 = "l3.ipv6": "IPv6 packets",
    L3Other = "l3.other": "frames that are not IP (ARP, LLDP, ...)",
    L4Tcp = "l4.tcp": "TCP segments",
    L4Udp = "l4.udp": "UDP datagrams",
    L4Icmp = "l4.icmp": "ICMP (IPv4) messages",
    L4Icmpv6 = "l4.icmpv6": "ICMPv6 messages",
    L4Other = "l4.other": "IP packets of another protocol or behind IPv6 extension headers",
    VlanTagged = "vlan.tagged": "frames carrying one or two VLAN tags",
    PassNotIp = "pass.not_ip": "passed: not IPv4/IPv6",
    PassNotVip = "pass.not_vip": "passed: not addressed to a configured VIP and port",
    PassMalformed = "pass.malformed": "passed: headers truncated or invalid, left for the kernel to judge",
    PassFragment = "pass.fragment": "passed: IP fragment, the kernel reassembles it",
    PassVipKernel = "pass.vip_kernel": "passed: VIP traffic served by the kernel stack (the controller's own servers)",
    PassVipNoHandler = "pass.vip_no_handler": "passed: VIP entry whose handler is not in this program",
    PassVlanDepth = "pass.vlan_too_deep": "passed: more than two VLAN tags",
}

impl Counters {
    pub const ZERO: Counters = Counters { slots: [0; COUNTER_SLOTS] };
}

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

/// What the data path does with traffic for a VIP key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipValue {
    /// One of the `VIP_KIND_*` constants.
    pub kind: u32,
    /// Index into the kind's own tables.
    pub index: u32,
}

/// Traffic for this VIP goes to the kernel (the controller's own servers).
pub const VIP_KIND_PASS: u32 = 0;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Builds the v4-mapped form used in [`VipKey::addr`].
pub const fn v4_mapped(octets: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3]]
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are repr(C) integers and arrays with no implicit padding.
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipValue {}
    unsafe impl bytemuck::Zeroable for super::Counters {}
    unsafe impl bytemuck::Pod for super::Counters {}
}
