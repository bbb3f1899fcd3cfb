//! Turning a received frame into a reply in place: resizing it (at the tail, or at the
//! front when the driver left too little tailroom) and swapping Ethernet and IP
//! addresses. Shared by the HTTP responder; L4 headers are each handler's own.

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};

use crate::{
    csum,
    maps::FRAME_SCRATCH,
    packet::{self, ptr_at},
    parse::Packet,
};

/// Makes the frame `new_len` bytes long; the first `keep` bytes (headers) stay in place
/// relative to the new start. false if the driver has no room either way.
#[inline(never)]
pub fn resize(ctx: &XdpContext, keep: usize, new_len: usize) -> bool {
    let frame_len = core::hint::black_box(ctx.data_end() - ctx.data());
    let delta = new_len as i32 - frame_len as i32;
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } == 0 {
        return true;
    }
    let Some(front) = FRAME_SCRATCH.get_ptr_mut(0) else { return false };
    let front = unsafe { &mut *front };
    let keep = keep & 0x1ff;
    if delta <= 0 || keep == 0 {
        return false;
    }
    unsafe {
        packet::load_bytes(ctx, 0, front.as_mut_ptr() as *mut _, keep as u32) == 0
            && bpf_xdp_adjust_head(ctx.ctx, -delta) == 0
            && packet::store_bytes(ctx, 0, front.as_mut_ptr() as *mut _, keep as u32) == 0
    }
}

/// Swaps MACs and IP addresses, and sets the IP length for an L4 part of `l4_len`
/// bytes (TTL/hop limit 64, IPv4 checksum recomputed). 0 on success. An IPv4 header
/// with options is refused: a reply must not echo the client's options (the kernel's
/// replies do not), so callers pass or drop such packets before building a reply.
#[inline(never)]
pub fn turn_ip_around(ctx: &XdpContext, pkt: &Packet, l4_len: u16) -> u32 {
    match turn(ctx, pkt, l4_len) {
        Some(()) => 0,
        None => 1,
    }
}

/// Most bytes in front of the IP header: Ethernet and two VLAN tags (see parse).
pub const MAX_L3: usize = 22;

#[inline(always)]
fn turn(ctx: &XdpContext, pkt: &Packet, l4_len: u16) -> Option<()> {
    // In place through direct packet access: the headers sit at bounded offsets.
    let eth = unsafe { &mut *(ptr_at::<[u8; 12]>(ctx, 0)? as *mut [u8; 12]) };
    for i in 0..6 {
        eth.swap(i, i + 6);
    }
    let l3 = pkt.l3;
    if l3 > MAX_L3 {
        return None;
    }
    if pkt.v6 {
        let ip = unsafe { &mut *(ptr_at::<[u8; 40]>(ctx, l3)? as *mut [u8; 40]) };
        for i in 8..24 {
            ip.swap(i, i + 16);
        }
        ip[4..6].copy_from_slice(&l4_len.to_be_bytes());
        ip[7] = 64;
    } else {
        const IHL: usize = 20;
        if pkt.l4 - l3 != IHL {
            return None;
        }
        let ip = unsafe { &mut *(ptr_at::<[u8; IHL]>(ctx, l3)? as *mut [u8; IHL]) };
        for i in 12..16 {
            ip.swap(i, i + 4);
        }
        ip[2..4].copy_from_slice(&((IHL + l4_len as usize) as u16).to_be_bytes());
        ip[6] = 0x40; // DF
        ip[7] = 0;
        ip[8] = 64;
        ip[10] = 0;
        ip[11] = 0;
        let c = csum::ipv4_header(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    Some(())
}

/// Pseudo-header sum for an L4 reply (addresses already swapped: src = our VIP).
#[inline(always)]
pub fn pseudo_sum(pkt: &Packet, proto: u8, l4_len: u16) -> u64 {
    let mut sum = 0u64;
    if pkt.v6 {
        sum = csum::add_addr16(sum, &pkt.src);
        sum = csum::add_addr16(sum, &pkt.dst);
    } else {
        for a in [&pkt.src, &pkt.dst] {
            sum += (((a[12] as u64) << 8) | a[13] as u64) + (((a[14] as u64) << 8) | a[15] as u64);
        }
    }
    sum + proto as u64 + l4_len as u64
}
