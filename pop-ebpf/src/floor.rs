//! Floor programs for `cargo xtask bench`: the cheapest XDP programs doing the same
//! frame work as each of pop's paths, and nothing else (no maps, no validation beyond
//! what keeps the verifier and the frame sane). The bench attaches each to the same
//! veth under the same flood as pop and reports pop's ns/packet as a ratio to these.
//! Not loaded by pop itself.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, macros::xdp, programs::XdpContext};

const ETH_HLEN: usize = 14;
const IP_HLEN: usize = 20;

/// Floor of a packet that is not for a VIP: return XDP_PASS.
#[xdp]
pub fn floor_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The first `N` bytes of the frame, or None when it is shorter.
#[inline(always)]
fn head<const N: usize>(ctx: &XdpContext) -> Option<*mut u8> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + N > end { None } else { Some(start as *mut u8) }
}

/// Swaps `len` bytes at `a` and `b`.
#[inline(always)]
unsafe fn swap(p: *mut u8, a: usize, b: usize, len: usize) {
    for i in 0..len {
        unsafe { core::ptr::swap(p.add(a + i), p.add(b + i)) };
    }
}

/// Swaps Ethernet and IPv4 addresses (the IPv4 checksum is unchanged by a swap).
#[inline(always)]
unsafe fn turn_around(p: *mut u8) {
    unsafe {
        swap(p, 0, 6, 6);
        swap(p, ETH_HLEN + 12, ETH_HLEN + 16, 4);
    }
}

#[inline(always)]
unsafe fn get16(p: *mut u8, at: usize) -> u16 {
    unsafe { u16::from_be_bytes([*p.add(at), *p.add(at + 1)]) }
}

#[inline(always)]
unsafe fn put16(p: *mut u8, at: usize, v: u16) {
    let b = v.to_be_bytes();
    unsafe {
        *p.add(at) = b[0];
        *p.add(at + 1) = b[1];
    }
}

/// RFC 1624 incremental update of checksum `sum` for a 16-bit word `old` -> `new`.
#[inline(always)]
fn csum_replace(sum: u16, old: u16, new: u16) -> u16 {
    let mut s = (!sum as u32) + (!old as u32 & 0xffff) + new as u32;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Floor of a DNS answer: turn an IPv4/UDP query around (MACs, addresses, ports), set
/// QR, fix the UDP checksum, XDP_TX. Anything else passes.
#[xdp]
pub fn floor_dns_reflect(ctx: XdpContext) -> u32 {
    const UDP: usize = ETH_HLEN + IP_HLEN;
    let Some(p) = head::<{ UDP + 8 + 12 }>(&ctx) else { return xdp_action::XDP_PASS };
    unsafe {
        if get16(p, 12) != 0x0800 || *p.add(ETH_HLEN) != 0x45 || *p.add(ETH_HLEN + 9) != 17 {
            return xdp_action::XDP_PASS;
        }
        turn_around(p);
        swap(p, UDP, UDP + 2, 2);
        let flags_at = UDP + 8 + 2;
        let old = get16(p, flags_at);
        let new = old | 0x8000;
        put16(p, flags_at, new);
        let sum = get16(p, UDP + 6);
        if sum != 0 {
            put16(p, UDP + 6, csum_replace(sum, old, new));
        }
    }
    xdp_action::XDP_TX
}

/// Floor of a SYN-ACK: turn an IPv4 TCP SYN around, acknowledge its sequence number,
/// send a fixed one of our own (pop's is a cookie), fix the TCP checksum, XDP_TX.
#[xdp]
pub fn floor_tcp_reflect(ctx: XdpContext) -> u32 {
    const TCP: usize = ETH_HLEN + IP_HLEN;
    let Some(p) = head::<{ TCP + 20 }>(&ctx) else { return xdp_action::XDP_PASS };
    unsafe {
        if get16(p, 12) != 0x0800 || *p.add(ETH_HLEN) != 0x45 || *p.add(ETH_HLEN + 9) != 6 {
            return xdp_action::XDP_PASS;
        }
        turn_around(p);
        swap(p, TCP, TCP + 2, 2);
        let mut sum = get16(p, TCP + 16);
        // seq -> ack (+1), a new seq, flags SYN|ACK: word by word through the checksum.
        let seq = u32::from_be_bytes([*p.add(TCP + 4), *p.add(TCP + 5), *p.add(TCP + 6), *p.add(TCP + 7)]);
        let ack = u32::from_be_bytes([*p.add(TCP + 8), *p.add(TCP + 9), *p.add(TCP + 10), *p.add(TCP + 11)]);
        let (new_seq, new_ack) = (0x1234_5678u32, seq.wrapping_add(1));
        for (at, old, new) in [(TCP + 4, seq, new_seq), (TCP + 8, ack, new_ack)] {
            sum = csum_replace(sum, (old >> 16) as u16, (new >> 16) as u16);
            sum = csum_replace(sum, old as u16, new as u16);
            let b = new.to_be_bytes();
            for (i, v) in b.iter().enumerate() {
                *p.add(at + i) = *v;
            }
        }
        let old_flags = get16(p, TCP + 12);
        let new_flags = (old_flags & 0xf000) | 0x12;
        put16(p, TCP + 12, new_flags);
        put16(p, TCP + 16, csum_replace(sum, old_flags, new_flags));
    }
    xdp_action::XDP_TX
}

/// Floor of load-balanced forwarding: prepend an outer IPv4 header (IPIP, fixed
/// addresses, checksum computed), send the frame back where it came from, XDP_TX.
#[xdp]
pub fn floor_ipip_encap(ctx: XdpContext) -> u32 {
    let Some(p) = head::<{ ETH_HLEN + IP_HLEN }>(&ctx) else { return xdp_action::XDP_PASS };
    let mut eth = [0u8; ETH_HLEN];
    let inner_len;
    unsafe {
        if get16(p, 12) != 0x0800 {
            return xdp_action::XDP_PASS;
        }
        inner_len = get16(p, ETH_HLEN + 2);
        for i in 0..6 {
            eth[i] = *p.add(6 + i);
            eth[6 + i] = *p.add(i);
        }
    }
    eth[12] = 0x08;
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(IP_HLEN as i32)) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    let Some(p) = head::<{ ETH_HLEN + IP_HLEN }>(&ctx) else { return xdp_action::XDP_ABORTED };
    let total = inner_len.wrapping_add(IP_HLEN as u16).to_be_bytes();
    let mut ip: [u8; IP_HLEN] = [0x45, 0, total[0], total[1], 0, 0, 0x40, 0, 64, 4, 0, 0, 198, 51, 100, 1, 198, 51, 100, 141];
    let mut sum = 0u32;
    for i in 0..IP_HLEN / 2 {
        sum += u16::from_be_bytes([ip[2 * i], ip[2 * i + 1]]) as u32;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let c = (!(sum as u16)).to_be_bytes();
    ip[10] = c[0];
    ip[11] = c[1];
    unsafe {
        for (i, b) in eth.iter().enumerate() {
            *p.add(i) = *b;
        }
        for (i, b) in ip.iter().enumerate() {
            *p.add(ETH_HLEN + i) = *b;
        }
    }
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
