//! The outer header of a load-balanced packet: Ethernet to the next hop, then IPIP
//! (IPv4 in IPv4) or IPv6-in-IPv6 from our address on that path to the backend, for
//! direct server return (the backend's `pop decap` strips it).

use crate::{csum, lb::ETH_HLEN, maps::NextHop};

/// Writes Ethernet and the outer IP header (from the next hop and source address
/// `nh` says, to `dst`, IPv4 v4-mapped) for an inner packet of `inner_len` bytes
/// into `hdr`; its first ETH_HLEN + 20 (IPv4) or + 40 (IPv6) bytes are the header.
/// Inlined: its caller's stack frame is near the verifier's limit.
#[inline(always)]
pub fn outer_header(hdr: &mut [u8; ETH_HLEN + 40], nh: &NextHop, v6: bool, dst: &[u8; 16], inner_len: usize) {
    hdr[0..6].copy_from_slice(&nh.dmac);
    hdr[6..12].copy_from_slice(&nh.smac);
    if v6 {
        hdr[12] = 0x86;
        hdr[13] = 0xdd;
        let ip = &mut hdr[ETH_HLEN..ETH_HLEN + 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(inner_len as u16).to_be_bytes());
        ip[6] = 41; // IPv6-in-IPv6
        ip[7] = 64;
        let src: [u8; 16] = unsafe { core::mem::transmute(nh.src) };
        ip[8..24].copy_from_slice(&src);
        ip[24..40].copy_from_slice(dst);
    } else {
        hdr[12] = 0x08;
        hdr[13] = 0x00;
        let ip = &mut hdr[ETH_HLEN..ETH_HLEN + 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((inner_len + 20) as u16).to_be_bytes());
        ip[6] = 0x40; // DF: path MTU discovery works end to end
        ip[8] = 64;
        ip[9] = 4; // IPIP
        ip[12..16].copy_from_slice(&nh.src[0].to_ne_bytes());
        ip[16..20].copy_from_slice(&dst[12..16]);
        let c = csum::ipv4_header(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
}
