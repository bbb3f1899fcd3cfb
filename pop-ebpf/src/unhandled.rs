//! Traffic to a VIP address that no VIPS entry takes (another port or protocol, ICMP,
//! fragments). It must not reach the host's own services bound to the wildcard address
//! (sshd, BIRD, metrics): it is dropped unless the address opts out
//! (`pop.pass_unhandled_vips`). ICMP errors go to the load balancer, which tunnels them
//! to the backend owning the quoted flow; echo requests and IPv6 neighbour discovery
//! go to the kernel. Only packets that already missed VIPS pay for the one lookup here.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use pop_common::{Counter, VIP_ADDR_PASS_UNHANDLED};

use crate::{counters::Stats, lb, maps::VIP_ADDRS, packet, parse::Packet, verdict};

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_FRAGMENT: u8 = 44;

/// A packet whose (destination, port, protocol) is not in VIPS.
#[inline(never)]
pub fn not_in_vip_table(ctx: &XdpContext, stats: &Stats, pkt: &Packet) -> u32 {
    // SAFETY: plain data, only read.
    let Some(&flags) = (unsafe { VIP_ADDRS.get(&pkt.dst) }) else {
        return verdict::with(stats, Counter::PassNotVip, xdp_action::XDP_PASS);
    };
    let icmp = (pkt.proto == IPPROTO_ICMP && !pkt.v6) || (pkt.proto == IPPROTO_ICMPV6 && pkt.v6);
    if icmp {
        let mut icmp_type = [0u8; 1];
        if packet::load_bytes(ctx, pkt.l4 as u32, icmp_type.as_mut_ptr() as *mut _, 1) == 0 {
            match (pkt.v6, icmp_type[0]) {
                // Destination unreachable (fragmentation needed), time exceeded, parameter
                // problem; ICMPv6 also packet too big.
                (false, 3 | 11 | 12) | (true, 1..=4) => {
                    return lb::icmp_error(ctx, stats, pkt, flags & VIP_ADDR_PASS_UNHANDLED != 0);
                }
                // Echo request; router/neighbour solicitation and advertisement, redirect.
                (false, 8) | (true, 128 | 133..=137) => return verdict::with(stats, Counter::VipPassIcmp, xdp_action::XDP_PASS),
                _ => {}
            }
        }
    }
    if pkt.v6 && pkt.proto == IPPROTO_FRAGMENT {
        return fragment_verdict(stats, flags);
    }
    if flags & VIP_ADDR_PASS_UNHANDLED != 0 {
        return verdict::with(stats, Counter::VipPassUnhandled, xdp_action::XDP_PASS);
    }
    verdict::with(stats, Counter::VipDropUnhandled, xdp_action::XDP_DROP)
}

/// An IPv4 fragment to `dst` (the parser gives fragments only their destination).
/// Fragments to a VIP are dropped: no handler takes them, and once the kernel
/// reassembled them they would reach the host's own services like any other unhandled
/// traffic.
#[inline(never)]
pub fn ipv4_fragment(stats: &Stats, dst: &[u8; 16]) -> u32 {
    // SAFETY: plain data, only read.
    match unsafe { VIP_ADDRS.get(dst) } {
        Some(&flags) => fragment_verdict(stats, flags),
        None => verdict::with(stats, Counter::PassFragment, xdp_action::XDP_PASS),
    }
}

#[inline(always)]
fn fragment_verdict(stats: &Stats, flags: u32) -> u32 {
    if flags & VIP_ADDR_PASS_UNHANDLED != 0 {
        verdict::with(stats, Counter::VipPassUnhandled, xdp_action::XDP_PASS)
    } else {
        verdict::with(stats, Counter::VipDropFragment, xdp_action::XDP_DROP)
    }
}
