//! Load balancing: pick the flow's backend (connection table, else Maglev), wrap the
//! packet in an outer IP header to the backend (IPIP / IPv6-in-IPv6, direct server
//! return), and send it toward the next hop found by bpf_fib_lookup (cached, `nexthop`): XDP_TX when that
//! is the receiving interface, redirect when it is another. A packet too big once
//! wrapped is answered with ICMP fragmentation-needed / packet-too-big (`icmp`). ICMP
//! errors about a backend's replies are tunnelled to that backend (`icmp_error`). The
//! outer header itself is built in `encap`.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_redirect, bpf_xdp_adjust_head, generated::bpf_ktime_get_coarse_ns},
    programs::XdpContext,
};
use pop_common::{BACKEND_DRAIN, BACKEND_LIVE, Counter, FlowKey, FlowValue, LbBackend, LbStats, VIP_KIND_LB, VIP_KIND_PASS, VipKey, maglev_base};

use crate::{
    counters::Stats,
    encap, latency,
    maps::{LB_BACKEND_STATS, LB_BACKENDS, LB_FLOW_RATE, LB_FLOWS, LB_MAGLEV, LB_NEXT_HOPS, LB_SCRATCH, LB_SERVICE_STATS, LB_SERVICES, VIPS},
    nexthop, packet,
    parse::Packet,
    verdict::drop,
};

pub const ETH_HLEN: usize = 14;
/// `handle`'s result when the packet needs an ICMP too-big answer; the low 16 bits
/// carry the MTU to report.
pub const TOO_BIG: u32 = 0x8000_0000;

/// 32-bit hash of the 5-tuple (murmur3-style mixing): fixed, so every PoP host sends a
/// flow to the same slot.
#[inline(always)]
fn flow_hash(k: &FlowKey) -> u32 {
    let mut h: u32 = 0x9747_b28c;
    let mut mix = |w: u32| {
        let mut k1 = w.wrapping_mul(0xcc9e_2d51);
        k1 = k1.rotate_left(15).wrapping_mul(0x1b87_3593);
        h ^= k1;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    };
    for i in 0..4 {
        mix(u32::from_ne_bytes([k.src[i * 4], k.src[i * 4 + 1], k.src[i * 4 + 2], k.src[i * 4 + 3]]));
        mix(u32::from_ne_bytes([k.dst[i * 4], k.dst[i * 4 + 1], k.dst[i * 4 + 2], k.dst[i * 4 + 3]]));
    }
    mix(((k.sport_be as u32) << 16) | k.dport_be as u32);
    mix(k.proto as u32);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn is_v4_mapped(a: &[u8; 16]) -> bool {
    a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff
}

#[inline(always)]
fn add_stats(map_stats: Option<*mut LbStats>, bytes: u64, new_flow: bool) {
    if let Some(s) = map_stats {
        let s = unsafe { &mut *s };
        s.packets += 1;
        s.bytes += bytes;
        if new_flow {
            s.new_flows += 1;
        }
    }
}

/// Loaded with `pop.flow_table_rate` (see pop_common::FLOW_TABLE_RATE).
#[unsafe(no_mangle)]
static FLOW_TABLE_RATE: u32 = pop_common::FLOW_TABLE_RATE;

/// Whether a new flow may be entered in the connection table: this CPU has entered
/// fewer than FLOW_TABLE_RATE in the current second (coarse clock, one tick's error).
#[inline(always)]
fn admit() -> bool {
    let Some(r) = LB_FLOW_RATE.get_ptr_mut(0) else { return true };
    // SAFETY: this CPU's own entry; read-only data the loader may have set (volatile,
    // so the compiler does not fold in the default).
    let (r, limit) = unsafe { (&mut *r, core::ptr::read_volatile(&FLOW_TABLE_RATE) as u64) };
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if now.wrapping_sub(r.start_ns) >= 1_000_000_000 {
        r.start_ns = now;
        r.count = 0;
    }
    r.count += 1;
    r.count <= limit
}

/// `forward` flag: a connection opens (TCP SYN): Maglev decides, not an old entry.
const OPENS: u32 = 1 << 31;
/// `forward` flag: an ICMP error about the flow, not the flow's own packet. Also what
/// `icmp_error` returns (with the service) when the dispatcher is to call
/// `forward_icmp_error`: calling `forward` from there would stack its frame on the
/// dispatcher's, `not_in_vip_table`'s and its own, past the verifier's 512 bytes.
pub const ICMP_ERROR: u32 = 1 << 30;

/// A TCP/UDP packet to a VIP of service `svc_idx`.
#[inline(never)]
pub fn handle(ctx: &XdpContext, stats: &Stats, pkt: &Packet, svc_idx: u32) -> u32 {
    stats.inc(Counter::LbPackets);
    let key = FlowKey { src: pkt.src, dst: pkt.dst, sport_be: pkt.sport_be, dport_be: pkt.dport_be, proto: pkt.proto, _pad: [0; 3] };
    // A SYN opens a new connection even on a reused 5-tuple: it follows the Maglev
    // table as it is now, not an old entry's backend.
    let syn = pkt.proto == 6 && pkt.tcp_flags & 0x12 == 0x02;
    forward(ctx, stats, pkt, &key, svc_idx | if syn { OPENS } else { 0 })
}

/// An ICMP error toward a VIP address (see `unhandled`). Its quoted packet is one a
/// backend sent a client with the VIP as source (direct server return), so the error
/// belongs to that backend, which alone can act on it (path MTU discovery): the flow is
/// found with the reversed quoted tuple and the whole ICMP packet tunnelled there.
/// Returns a verdict, or ICMP_ERROR | service with the flow in LB_SCRATCH. An error
/// quoting no load-balanced flow is dropped, or with `pass_unmatched` (the VIP opted
/// out) handed to the kernel like the VIP's other unhandled traffic.
#[inline(never)]
pub fn icmp_error(ctx: &XdpContext, stats: &Stats, pkt: &Packet, pass_unmatched: bool) -> u32 {
    let unmatched = |stats: &Stats| {
        if pass_unmatched { crate::verdict::pass(stats, Counter::VipPassUnhandled) } else { drop(stats, Counter::VipDropIcmpError) }
    };
    // ICMP header (8 bytes), then the quoted IP header and at least 8 bytes of its payload.
    let quoted = pkt.l4 + 8;
    let mut ip = [0u8; 40];
    let (ip_len, proto) = if pkt.v6 {
        if packet::load_bytes(ctx, quoted as u32, ip.as_mut_ptr() as *mut _, 40) != 0 || ip[0] >> 4 != 6 {
            return unmatched(stats);
        }
        (40, ip[6])
    } else {
        if packet::load_bytes(ctx, quoted as u32, ip.as_mut_ptr() as *mut _, 20) != 0 || ip[0] >> 4 != 4 {
            return unmatched(stats);
        }
        ((ip[0] & 0x0f) as usize * 4, ip[9])
    };
    let mut ports = [0u8; 4];
    if (proto != 6 && proto != 17) || ip_len < 20 || packet::load_bytes(ctx, (quoted + ip_len) as u32, ports.as_mut_ptr() as *mut _, 4) != 0 {
        return unmatched(stats);
    }
    // The quoted packet went from the VIP (this ICMP's destination) to the client.
    let mut vip = [0u8; 16];
    let mut client = [0u8; 16];
    if pkt.v6 {
        vip.copy_from_slice(&ip[8..24]);
        client.copy_from_slice(&ip[24..40]);
    } else {
        vip = pop_common::v4_mapped([ip[12], ip[13], ip[14], ip[15]]);
        client = pop_common::v4_mapped([ip[16], ip[17], ip[18], ip[19]]);
    }
    if vip != pkt.dst {
        return unmatched(stats);
    }
    let vip_port_be = u16::from_ne_bytes([ports[0], ports[1]]);
    let client_port_be = u16::from_ne_bytes([ports[2], ports[3]]);
    let vkey = VipKey { addr: vip, port_be: vip_port_be, proto, _pad: 0 };
    let svc_idx = match unsafe { VIPS.get(&vkey) } {
        Some(v) if v.kind == VIP_KIND_LB => v.index,
        // About a reply of the kernel's own server on the VIP (DNS over TCP): its business.
        Some(v) if v.kind == VIP_KIND_PASS => return crate::verdict::pass(stats, Counter::PassVipKernel),
        _ => return unmatched(stats),
    };
    let Some(key) = LB_SCRATCH.get_ptr_mut(0) else { return xdp_action::XDP_ABORTED };
    unsafe {
        *key = FlowKey { src: client, dst: vip, sport_be: client_port_be, dport_be: vip_port_be, proto, _pad: [0; 3] };
    }
    ICMP_ERROR | svc_idx
}

/// The dispatcher's second half of `icmp_error` (its result is `code`).
#[inline(always)]
pub fn forward_icmp_error(ctx: &XdpContext, stats: &Stats, pkt: &Packet, code: u32) -> u32 {
    let Some(key) = LB_SCRATCH.get_ptr_mut(0) else { return xdp_action::XDP_ABORTED };
    // SAFETY: filled by `icmp_error` for this packet; read only.
    match forward(ctx, stats, pkt, unsafe { &*key }, code) {
        // An error is never answered with an error (RFC 1122).
        v if v & TOO_BIG != 0 => drop(stats, Counter::VipDropIcmpError),
        v => v,
    }
}

/// Sends `pkt` to the backend of flow `key`, of service `flags & 0xffff` (see OPENS,
/// ICMP_ERROR): connection table first, else Maglev.
#[inline(never)]
fn forward(ctx: &XdpContext, stats: &Stats, pkt: &Packet, key: &FlowKey, flags: u32) -> u32 {
    let svc_idx = flags & 0xffff;
    let icmp_error = flags & ICMP_ERROR != 0;
    // Read once as a plain value: LLVM may otherwise keep `ctx + offset` in a register
    // and dereference it later, which the verifier refuses (modified ctx pointer).
    let ingress = unsafe { core::ptr::read_volatile(&(*ctx.ctx).ingress_ifindex) };
    let Some(svc) = LB_SERVICES.get(svc_idx) else { return drop(stats, Counter::LbDropNoBackend) };

    // Length of the inner IP packet, from its own header as parse read it (frames may
    // carry padding).
    let inner_len = pkt.l3_end - pkt.l3;
    // The outer header will repeat this length: it must not claim bytes the frame lacks.
    let frame_len = core::hint::black_box(ctx.data_end() - ctx.data());
    if pkt.l3 + inner_len > frame_len || inner_len < pkt.l4 - pkt.l3 {
        return drop(stats, Counter::LbDropMalformed);
    }

    let mut chosen: Option<(u32, LbBackend)> = None;
    let mut known = false;
    // latency::RECORD once the handshake's ACK measured a round trip.
    let mut record = 0;
    if let Some(flow) = if flags & OPENS != 0 { None } else { LB_FLOWS.get_ptr_mut(key) } {
        known = true;
        // SAFETY: the entry's value, this CPU's until the program returns.
        let flow = unsafe { &mut *flow };
        let id = flow.backend;
        if let Some(b) = LB_BACKENDS.get(id) {
            // Ids are reused once a backend is gone: the remembered one must still be a
            // backend of this service and family, else the flow is placed afresh.
            if (b.state == BACKEND_LIVE || b.state == BACKEND_DRAIN) && b.service == svc_idx && is_v4_mapped(&b.addr) != pkt.v6 {
                chosen = Some((id, *b));
                if !icmp_error {
                    stats.inc(Counter::LbFlowHit);
                    // The handshake's ACK (ACK, no SYN) of a flow its SYN made: one
                    // round trip of the client (and the backend's SYN-ACK) since.
                    if flow.syn_us != 0 && pkt.proto == 6 && pkt.tcp_flags & 0x12 == 0x10 {
                        record = latency::measured(latency::now_us().wrapping_sub(flow.syn_us));
                        flow.syn_us = 0;
                    }
                }
            }
        }
    }
    let mut new_flow = false;
    let (id, backend) = match chosen {
        Some(c) => c,
        None => {
            // Constant indexes: a bool read back from memory is 0..=255 to the verifier.
            let (size, half) = if pkt.v6 { (svc.table_size[1], svc.half[1]) } else { (svc.table_size[0], svc.half[0]) };
            if size == 0 {
                return drop(stats, Counter::LbDropNoBackend);
            }
            let slot = flow_hash(key) % size;
            let index = maglev_base(svc_idx, pkt.v6, half) + slot;
            let Some(&id) = LB_MAGLEV.get(index) else { return drop(stats, Counter::LbDropNoBackend) };
            let Some(b) = LB_BACKENDS.get(id) else { return drop(stats, Counter::LbDropNoBackend) };
            if b.state != BACKEND_LIVE {
                return drop(stats, Counter::LbDropNoBackend);
            }
            // An error about a flow does not make one: its next packet gets the same slot.
            if !icmp_error {
                let opens = flags & OPENS != 0;
                let syn_us = if opens && latency::sampled() { latency::now_us() | 1 } else { 0 };
                let value = FlowValue { backend: id, syn_us };
                if admit() {
                    let _ = LB_FLOWS.insert(key, &value, 0);
                    stats.inc(if known { Counter::LbRehashed } else { Counter::LbNewFlow });
                } else {
                    // A SYN on a 5-tuple still in the table (a reused port) must move
                    // its entry, else the rest of the connection would follow the old
                    // connection's backend: a lookup and a store, no insert.
                    // So must a flow whose entry names a backend no longer live.
                    if (opens || known)
                        && let Some(old) = LB_FLOWS.get_ptr_mut(key)
                    {
                        // SAFETY: the entry's value; plain data.
                        unsafe { *old = value };
                    }
                    stats.inc(Counter::LbUntracked);
                }
                new_flow = true;
            }
            (id, *b)
        }
    };
    if is_v4_mapped(&backend.addr) == pkt.v6 {
        return drop(stats, Counter::LbDropFamily);
    }

    // Next hop toward the backend, and our source address on that path.
    let outer_len = if pkt.v6 { 40 } else { 20 };
    let len_v6 = (inner_len + outer_len) as u32 | if pkt.v6 { nexthop::V6 } else { 0 };
    let rc = nexthop::lookup(ctx, id, &backend.addr, len_v6, ingress);
    match rc & 0xffff {
        nexthop::FIB_SUCCESS => {}
        nexthop::FIB_FRAG_NEEDED => {
            // Answered by the dispatcher via `too_big`: calling it from here would stack
            // its frame on top of this one, past the verifier's 512 bytes.
            let mtu = rc >> nexthop::MTU_SHIFT;
            return TOO_BIG | (mtu.saturating_sub(outer_len as u32) & 0xffff);
        }
        nexthop::FIB_NO_NEIGH => return drop(stats, Counter::LbPassNoNeigh),
        _ => return drop(stats, Counter::LbDropNoRoute),
    }
    // Filled by the lookup for this CPU.
    let Some(nh) = LB_NEXT_HOPS.get_ptr(id) else { return xdp_action::XDP_ABORTED };
    let nh = unsafe { &*nh };
    let out_ifindex = nh.ifindex;

    // Room for Ethernet + outer header in front of the inner IP packet (any VLAN tags
    // of the incoming frame are not carried over).
    let delta = (ETH_HLEN + outer_len) as i32 - pkt.l3 as i32;
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -delta) } != 0 {
        return drop(stats, Counter::LbDropNoRoom);
    }
    let mut hdr = [0u8; ETH_HLEN + 40];
    encap::outer_header(&mut hdr, nh, pkt.v6, &backend.addr, inner_len);
    let hlen = ETH_HLEN + outer_len;
    if packet::store_bytes(ctx, 0, hdr.as_mut_ptr() as *mut _, hlen as u32) != 0 {
        return xdp_action::XDP_ABORTED;
    }

    if icmp_error {
        stats.inc(Counter::LbIcmpErrorForwarded);
    }
    let bytes = inner_len as u64;
    add_stats(LB_SERVICE_STATS.get_ptr_mut(svc_idx), bytes, new_flow);
    add_stats(LB_BACKEND_STATS.get_ptr_mut(id), bytes, new_flow);
    if out_ifindex == ingress {
        stats.inc(Counter::LbForwardedTx);
        xdp_action::XDP_TX | record
    } else {
        stats.inc(Counter::LbForwardedRedirect);
        unsafe { bpf_redirect(out_ifindex, 0) as u32 | record }
    }
}
