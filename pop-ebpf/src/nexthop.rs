//! The next hop toward a backend: bpf_fib_lookup's answer (outgoing interface, MACs,
//! our source address on that path), cached per CPU and backend for NEXT_HOP_TTL_NS.
//! The lookup with source-address selection costs more than the rest of a forwarded
//! packet's work together; under load one packet per backend, CPU and TTL pays it.
//! Only a successful lookup is cached, and only for packets no longer than the one it
//! was made for, so a missing neighbour or a too-big packet is answered by the FIB as
//! before; a route or neighbour change reaches the data path within the TTL.

use aya_ebpf::{
    bindings::bpf_fib_lookup as FibParams,
    helpers::{bpf_fib_lookup, generated::bpf_ktime_get_coarse_ns},
    programs::XdpContext,
};

use crate::maps::{LB_FIB_SCRATCH, LB_NEXT_HOPS, NextHop};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
pub const FIB_SUCCESS: u32 = 0;
pub const FIB_NO_NEIGH: u32 = 7;
pub const FIB_FRAG_NEEDED: u32 = 8;
/// Ask bpf_fib_lookup for the source address the kernel would use toward the backend.
const BPF_FIB_LOOKUP_SRC: u32 = 16;
/// How long a lookup is re-used (coarse clock: the kernel's tick).
const NEXT_HOP_TTL_NS: u64 = 2_000_000;
/// `lookup`'s flag on an argument: the backend is IPv6.
pub const V6: u32 = 1 << 16;
/// `lookup`'s result flag with FIB_FRAG_NEEDED: the low 16 bits are the path's MTU.
pub const MTU_SHIFT: u32 = 16;

/// The next hop toward backend `id` at `addr` (IPv4 v4-mapped) for an outer packet of
/// `len_v6 & 0xffff` bytes (`V6` set for IPv6) received on `ingress`: FIB_SUCCESS with
/// LB_NEXT_HOPS[id] of this CPU holding it, else the FIB's result code, with the MTU
/// in the high bits for FIB_FRAG_NEEDED.
#[inline(always)]
pub fn lookup(ctx: &XdpContext, id: u32, addr: &[u8; 16], len_v6: u32, ingress: u32) -> u32 {
    let Some(nh) = LB_NEXT_HOPS.get_ptr_mut(id) else { return u32::MAX };
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: this CPU's own entry; nothing else writes it while this program runs.
    let e = unsafe { &*nh };
    let fresh = e.stamp_ns != 0 && now.wrapping_sub(e.stamp_ns) < NEXT_HOP_TTL_NS && e.ingress == ingress && e.addr == *addr;
    if fresh && len_v6 & 0xffff <= e.max_len {
        return FIB_SUCCESS;
    }
    refresh(ctx, nh, addr, len_v6 | if fresh { KEEP_MAX } else { 0 }, ingress)
}

/// `refresh` flag: the entry is current, only too short for this packet.
const KEEP_MAX: u32 = 1 << 17;

/// Asks the FIB and caches a success in `nh`. A subprogram of its own, with the
/// lookup's parameter block in a scratch map: the forwarding call chain is near the
/// verifier's 512-byte stack limit.
#[inline(never)]
fn refresh(ctx: &XdpContext, nh: *mut NextHop, addr: &[u8; 16], len_v6: u32, ingress: u32) -> u32 {
    let v6 = len_v6 & V6 != 0;
    let len = len_v6 & 0xffff;
    let Some(fib) = LB_FIB_SCRATCH.get_ptr_mut(0) else { return u32::MAX };
    // SAFETY: this CPU's scratch, used only here.
    let fib = unsafe {
        *fib = core::mem::zeroed();
        &mut *fib
    };
    fib.family = if v6 { AF_INET6 } else { AF_INET };
    fib.__bindgen_anon_1.tot_len = len as u16;
    fib.ifindex = ingress;
    unsafe {
        if v6 {
            fib.__bindgen_anon_4.ipv6_dst = core::mem::transmute::<[u8; 16], [u32; 4]>(*addr);
        } else {
            fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]);
        }
    }
    let rc = unsafe { bpf_fib_lookup(ctx.ctx as *mut _, fib as *mut _, core::mem::size_of::<FibParams>() as i32, BPF_FIB_LOOKUP_SRC) } as u32;
    // SAFETY: this CPU's own entry (see `lookup`).
    let e = unsafe { &mut *nh };
    match rc {
        FIB_SUCCESS => {
            e.max_len = if len_v6 & KEEP_MAX != 0 && e.max_len > len { e.max_len } else { len };
            e.addr = *addr;
            e.ingress = ingress;
            e.ifindex = fib.ifindex;
            e.dmac = fib.dmac;
            e.smac = fib.smac;
            e.src = unsafe { fib.__bindgen_anon_3.ipv6_src };
            e.stamp_ns = unsafe { bpf_ktime_get_coarse_ns() };
            FIB_SUCCESS
        }
        // The entry stays good for the shorter packets it was made for.
        FIB_FRAG_NEEDED => FIB_FRAG_NEEDED | ((unsafe { fib.__bindgen_anon_1.mtu_result } as u32) << MTU_SHIFT),
        rc => {
            e.stamp_ns = 0;
            rc
        }
    }
}
