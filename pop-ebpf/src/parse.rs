//! Packet parsing: Ethernet (up to two VLAN tags), IPv4 (with options), IPv6, and the
//! first bytes of TCP/UDP/ICMP. Every access is bounds-checked against `data_end`.

use aya_ebpf::programs::XdpContext;
use pop_common::{Counter, IPPROTO_TCP, IPPROTO_UDP, v4_mapped};

use crate::{
    counters::Stats,
    packet::{be16_at, ptr_at},
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV6_HLEN: usize = 40;

/// What the dispatcher needs to know about a packet.
pub struct Packet {
    /// Offset of the IP header (after Ethernet and VLAN tags).
    pub l3: usize,
    /// Offset of the L4 header.
    pub l4: usize,
    /// Offset just past the IP packet as its header gives it (IPv4 total length, IPv6
    /// payload length); never beyond the frame. Bytes after it are link padding.
    pub l3_end: usize,
    pub v6: bool,
    /// Source address; IPv4 in v4-mapped form.
    pub src: [u8; 16],
    /// Destination address; IPv4 in v4-mapped form.
    pub dst: [u8; 16],
    /// Source port in network byte order (0 for non-TCP/UDP).
    pub sport_be: u16,
    /// Destination port in network byte order (0 for non-TCP/UDP).
    pub dport_be: u16,
    /// L4 protocol number.
    pub proto: u8,
    /// TCP flags (0 for anything else).
    pub tcp_flags: u8,
}

impl Packet {
    pub const EMPTY: Packet =
        Packet { l3: 0, l4: 0, l3_end: 0, v6: false, src: [0; 16], dst: [0; 16], sport_be: 0, dport_be: 0, proto: 0, tcp_flags: 0 };
}

/// Why a packet is not handed to a VIP handler; each maps to a `pass.*` counter.
pub enum Skip {
    NotIp,
    Malformed,
    /// An IPv4 fragment, with its destination (v4-mapped): fragments to a VIP are
    /// judged by `unhandled`, not passed blindly.
    Fragment([u8; 16]),
    VlanTooDeep,
}

impl Skip {
    pub fn counter(&self) -> Counter {
        match self {
            Skip::NotIp => Counter::PassNotIp,
            Skip::Malformed => Counter::PassMalformed,
            Skip::Fragment(_) => Counter::PassFragment,
            Skip::VlanTooDeep => Counter::PassVlanDepth,
        }
    }
}

/// Parses into `out`; returns `None` when the packet goes on, else the `pass.*` counter
/// to bump. A subprogram of its own, so its scratch stack is not added to the DNS
/// handler's; plain integer results because the kernel rejects the BTF Rust emits for
/// enums with data (`Result<Packet, _>`) in a subprogram's signature.
#[inline(never)]
pub fn parse_into(ctx: &XdpContext, stats: &Stats, out: &mut Packet) -> u32 {
    match parse(ctx, stats) {
        Ok(p) => {
            *out = p;
            u32::MAX
        }
        Err(skip) => {
            if let Skip::Fragment(dst) = skip {
                out.dst = dst;
            }
            skip.counter() as u32
        }
    }
}

#[inline(always)]
fn parse(ctx: &XdpContext, stats: &Stats) -> Result<Packet, Skip> {
    let mut ethertype = be16_at(ctx, 12).ok_or(Skip::Malformed)?;
    let mut l3 = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        stats.inc(Counter::VlanTagged);
        ethertype = be16_at(ctx, l3 + 2).ok_or(Skip::Malformed)?;
        l3 += VLAN_HLEN;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            ethertype = be16_at(ctx, l3 + 2).ok_or(Skip::Malformed)?;
            l3 += VLAN_HLEN;
            if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
                return Err(Skip::VlanTooDeep);
            }
        }
    }
    match ethertype {
        ETH_P_IP => parse_ipv4(ctx, stats, l3),
        ETH_P_IPV6 => parse_ipv6(ctx, stats, l3),
        _ => {
            stats.inc(Counter::L3Other);
            Err(Skip::NotIp)
        }
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, stats: &Stats, l3: usize) -> Result<Packet, Skip> {
    stats.inc(Counter::L3Ipv4);
    let hdr = ptr_at::<[u8; 20]>(ctx, l3).ok_or(Skip::Malformed)?;
    let hdr = unsafe { &*hdr };
    let ihl = (hdr[0] & 0x0f) as usize * 4;
    if hdr[0] >> 4 != 4 || ihl < 20 {
        return Err(Skip::Malformed);
    }
    // A packet claiming more bytes than the frame holds (or fewer than its header) is
    // dropped by the kernel too; nothing may read past what the header says.
    let total = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    let l3_end = l3 + total;
    if total < ihl || l3_end > ctx.data_end() - ctx.data() {
        return Err(Skip::Malformed);
    }
    let proto = hdr[9];
    let src = v4_mapped([hdr[12], hdr[13], hdr[14], hdr[15]]);
    let dst = v4_mapped([hdr[16], hdr[17], hdr[18], hdr[19]]);
    count_l4(stats, proto, false);
    // MF set or a non-zero offset: only the first fragment has ports, and even that
    // one cannot be answered alone. The kernel reassembles.
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    if frag & 0x3fff != 0 {
        return Err(Skip::Fragment(dst));
    }
    let (sport_be, dport_be, tcp_flags) = l4_ports(ctx, l3 + ihl, proto)?;
    Ok(Packet { l3, l4: l3 + ihl, l3_end, v6: false, src, dst, sport_be, dport_be, proto, tcp_flags })
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, stats: &Stats, l3: usize) -> Result<Packet, Skip> {
    stats.inc(Counter::L3Ipv6);
    let hdr = ptr_at::<[u8; IPV6_HLEN]>(ctx, l3).ok_or(Skip::Malformed)?;
    let hdr = unsafe { &*hdr };
    if hdr[0] >> 4 != 6 {
        return Err(Skip::Malformed);
    }
    let proto = hdr[6];
    let l3_end = l3 + IPV6_HLEN + u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
    if l3_end > ctx.data_end() - ctx.data() {
        return Err(Skip::Malformed);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&hdr[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&hdr[24..40]);
    count_l4(stats, proto, true);
    let (sport_be, dport_be, tcp_flags) = l4_ports(ctx, l3 + IPV6_HLEN, proto)?;
    Ok(Packet { l3, l4: l3 + IPV6_HLEN, l3_end, v6: true, src, dst, sport_be, dport_be, proto, tcp_flags })
}

#[inline(always)]
fn count_l4(stats: &Stats, proto: u8, v6: bool) {
    stats.inc(match proto {
        IPPROTO_TCP => Counter::L4Tcp,
        IPPROTO_UDP => Counter::L4Udp,
        IPPROTO_ICMP if !v6 => Counter::L4Icmp,
        IPPROTO_ICMPV6 if v6 => Counter::L4Icmpv6,
        _ => Counter::L4Other,
    });
}

/// Source and destination ports of TCP/UDP (network byte order) and the TCP flags; 0
/// for anything else. A TCP/UDP header cut short is malformed.
#[inline(always)]
fn l4_ports(ctx: &XdpContext, l4: usize, proto: u8) -> Result<(u16, u16, u8), Skip> {
    match proto {
        IPPROTO_TCP => {
            let h = ptr_at::<[u8; 14]>(ctx, l4).ok_or(Skip::Malformed)?;
            let h = unsafe { &*h };
            Ok((u16::from_ne_bytes([h[0], h[1]]), u16::from_ne_bytes([h[2], h[3]]), h[13]))
        }
        IPPROTO_UDP => {
            let ports = ptr_at::<[u8; 4]>(ctx, l4).ok_or(Skip::Malformed)?;
            let ports = unsafe { &*ports };
            Ok((u16::from_ne_bytes([ports[0], ports[1]]), u16::from_ne_bytes([ports[2], ports[3]]), 0))
        }
        _ => Ok((0, 0, 0)),
    }
}
