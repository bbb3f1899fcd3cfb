//! ICMP answers of our own: fragmentation-needed (IPv4) / packet-too-big (IPv6) for a
//! load-balanced packet that no longer fits the path once wrapped.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use pop_common::Counter;

use crate::{counters::Stats, csum, lb::ETH_HLEN, packet, parse::Packet, verdict::drop};

/// Answers the client with ICMP fragmentation-needed (IPv4) or packet-too-big (IPv6)
/// carrying `mtu`, quoting the start of its packet, and sends it back out (XDP_TX).
#[inline(never)]
pub fn too_big(ctx: &XdpContext, stats: &Stats, pkt: &Packet, mtu: usize) -> u32 {
    // Quote the IP header and 8 bytes of payload (IPv4, RFC 792) or as much as fits a
    // 1280-byte packet (IPv6, RFC 4443; we quote header + 8 bytes, which is allowed).
    let ip_hdr = pkt.l4 - pkt.l3;
    let quote = (ip_hdr + 8) & 0x7f;
    let new_l3_hdr = if pkt.v6 { 40 } else { 20 };
    let icmp_hdr = 8;
    let mut q = [0u8; 72];
    if quote > q.len() || quote < 28 || packet::load_bytes(ctx, pkt.l3 as u32, q.as_mut_ptr() as *mut _, quote as u32) != 0 {
        return drop(stats, Counter::LbDropNoRoom);
    }
    let mut macs = [0u8; 12];
    if packet::load_bytes(ctx, 0, macs.as_mut_ptr() as *mut _, 12) != 0 {
        return drop(stats, Counter::LbDropNoRoom);
    }
    // New frame: Ethernet, IP, ICMP, quote.
    let new_len = ETH_HLEN + new_l3_hdr + icmp_hdr + quote;
    let frame_len = core::hint::black_box(ctx.data_end() - ctx.data());
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, new_len as i32 - frame_len as i32) } != 0 {
        return drop(stats, Counter::LbDropNoRoom);
    }
    let mut f = [0u8; ETH_HLEN + 40 + 8];
    f[0..6].copy_from_slice(&macs[6..12]);
    f[6..12].copy_from_slice(&macs[0..6]);
    let icmp_len = icmp_hdr + quote;
    let mut sum = 0u64;
    let l3 = ETH_HLEN;
    let ic = ETH_HLEN + new_l3_hdr;
    if pkt.v6 {
        f[12] = 0x86;
        f[13] = 0xdd;
        f[l3] = 0x60;
        f[l3 + 4..l3 + 6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
        f[l3 + 6] = 58;
        f[l3 + 7] = 64;
        f[l3 + 8..l3 + 24].copy_from_slice(&pkt.dst);
        f[l3 + 24..l3 + 40].copy_from_slice(&pkt.src);
        f[ic] = 2; // packet too big
        f[ic + 4..ic + 8].copy_from_slice(&(mtu as u32).to_be_bytes());
        sum = csum::add_addr16(sum, &pkt.dst);
        sum = csum::add_addr16(sum, &pkt.src);
        sum += icmp_len as u64 + 58;
    } else {
        f[12] = 0x08;
        f[13] = 0x00;
        f[l3] = 0x45;
        f[l3 + 2..l3 + 4].copy_from_slice(&((new_l3_hdr + icmp_len) as u16).to_be_bytes());
        f[l3 + 8] = 64;
        f[l3 + 9] = 1;
        f[l3 + 12..l3 + 16].copy_from_slice(&pkt.dst[12..16]);
        f[l3 + 16..l3 + 20].copy_from_slice(&pkt.src[12..16]);
        let c = csum::ipv4_header(&f[l3..l3 + 20]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        f[ic] = 3; // destination unreachable
        f[ic + 1] = 4; // fragmentation needed and DF set
        f[ic + 6..ic + 8].copy_from_slice(&(mtu as u16).to_be_bytes());
    }
    for w in 0..4 {
        sum += ((f[ic + w * 2] as u64) << 8) | f[ic + w * 2 + 1] as u64;
    }
    for i in 0..72 {
        if i >= quote {
            break;
        }
        sum = csum::add_byte(sum, i, q[i]);
    }
    let c = !csum::fold(sum);
    f[ic + 2..ic + 4].copy_from_slice(&c.to_be_bytes());
    let head = ic + icmp_hdr;
    if packet::store_bytes(ctx, 0, f.as_mut_ptr() as *mut _, head as u32) != 0
        || packet::store_bytes(ctx, head as u32, q.as_mut_ptr() as *mut _, quote as u32) != 0
    {
        return xdp_action::XDP_ABORTED;
    }
    stats.inc(Counter::LbTooBig);
    xdp_action::XDP_TX
}
