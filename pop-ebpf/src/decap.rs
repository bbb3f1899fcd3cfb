//! `pop decap`'s XDP program for backends: strips the outer header of IPIP
//! (IPv4-in-IPv4) and IPv6-in-IPv6 packets so the inner packet, addressed to the VIP
//! the backend holds on `lo`, goes up the stack; everything else passes untouched.
//! Only packets whose inner destination is an address of this host are decapsulated,
//! and, when an allow list is set, only from the listed PoP sources: anything else
//! tunnelled is dropped and counted (passing it would let a kernel tunnel device
//! decapsulate it after all).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use pop_common::v4_mapped;

/// Per-CPU counters, in the order of the controller's `lb::decap::COUNTERS`.
#[map(name = "DECAP_COUNTERS")]
static DECAP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(7, 0);

const DECAPSULATED_V4: u32 = 0;
const DECAPSULATED_V6: u32 = 1;
const PASSED_NOT_TUNNELLED: u32 = 2;
const PASSED_MALFORMED: u32 = 3;
const DROPPED_INNER_NOT_LOCAL: u32 = 4;
const DROPPED_SOURCE_NOT_ALLOWED: u32 = 5;
const DROPPED_INNER_MALFORMED: u32 = 6;

/// This host's addresses (IPv4 v4-mapped): the inner destinations accepted.
#[map(name = "DECAP_LOCAL")]
static DECAP_LOCAL: HashMap<[u8; 16], u8> = HashMap::with_max_entries(1024, 0);

/// Outer sources accepted (IPv4 v4-mapped), when DECAP_CONFIG says to check them.
#[map(name = "DECAP_SOURCES")]
static DECAP_SOURCES: HashMap<[u8; 16], u8> = HashMap::with_max_entries(1024, 0);

/// Entry 0: bit 0 set = only outer sources in DECAP_SOURCES are accepted.
#[map(name = "DECAP_CONFIG")]
static DECAP_CONFIG: Array<u32> = Array::with_max_entries(1, 0);

fn count(i: u32) {
    if let Some(c) = DECAP_COUNTERS.get_ptr_mut(i) {
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn verdict(i: u32, action: u32) -> u32 {
    count(i);
    action
}

#[xdp]
pub fn pop_decap(ctx: XdpContext) -> u32 {
    let mut eth = [0u8; 14];
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, eth.as_mut_ptr() as *mut _, 14) } != 0 {
        return verdict(PASSED_NOT_TUNNELLED, xdp_action::XDP_PASS);
    }
    let mut src = [0u8; 16];
    let (outer, inner_type) = match (eth[12], eth[13]) {
        (0x08, 0x00) => {
            let mut ip = [0u8; 20];
            if unsafe { bpf_xdp_load_bytes(ctx.ctx, 14, ip.as_mut_ptr() as *mut _, 20) } != 0 {
                return verdict(PASSED_MALFORMED, xdp_action::XDP_PASS);
            }
            if ip[9] != 4 || ip[6] & 0x3f != 0 || ip[7] != 0 {
                // Not IPIP, or a fragment: the kernel's job.
                return verdict(PASSED_NOT_TUNNELLED, xdp_action::XDP_PASS);
            }
            src = v4_mapped([ip[12], ip[13], ip[14], ip[15]]);
            ((ip[0] & 0x0f) as usize * 4, [0x08u8, 0x00])
        }
        (0x86, 0xdd) => {
            let mut ip = [0u8; 40];
            if unsafe { bpf_xdp_load_bytes(ctx.ctx, 14, ip.as_mut_ptr() as *mut _, 40) } != 0 {
                return verdict(PASSED_MALFORMED, xdp_action::XDP_PASS);
            }
            if ip[6] != 41 {
                return verdict(PASSED_NOT_TUNNELLED, xdp_action::XDP_PASS);
            }
            src.copy_from_slice(&ip[8..24]);
            (40, [0x86u8, 0xdd])
        }
        _ => return verdict(PASSED_NOT_TUNNELLED, xdp_action::XDP_PASS),
    };
    if !(20..=60).contains(&outer) {
        return verdict(PASSED_MALFORMED, xdp_action::XDP_PASS);
    }
    let check_sources = DECAP_CONFIG.get(0).is_some_and(|c| c & 1 != 0);
    if check_sources && unsafe { DECAP_SOURCES.get(&src) }.is_none() {
        return verdict(DROPPED_SOURCE_NOT_ALLOWED, xdp_action::XDP_DROP);
    }
    // The inner destination: an address of this host, or the packet is not for us.
    let mut inner = [0u8; 40];
    let dst = if inner_type[0] == 0x08 {
        if unsafe { bpf_xdp_load_bytes(ctx.ctx, (14 + outer) as u32, inner.as_mut_ptr() as *mut _, 20) } != 0 || inner[0] >> 4 != 4 {
            return verdict(DROPPED_INNER_MALFORMED, xdp_action::XDP_DROP);
        }
        v4_mapped([inner[16], inner[17], inner[18], inner[19]])
    } else {
        if unsafe { bpf_xdp_load_bytes(ctx.ctx, (14 + outer) as u32, inner.as_mut_ptr() as *mut _, 40) } != 0 || inner[0] >> 4 != 6 {
            return verdict(DROPPED_INNER_MALFORMED, xdp_action::XDP_DROP);
        }
        let mut d = [0u8; 16];
        d.copy_from_slice(&inner[24..40]);
        d
    };
    if unsafe { DECAP_LOCAL.get(&dst) }.is_none() {
        return verdict(DROPPED_INNER_NOT_LOCAL, xdp_action::XDP_DROP);
    }
    // Drop the outer header: move the Ethernet header forward over it.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer as i32) } != 0 {
        return verdict(PASSED_MALFORMED, xdp_action::XDP_PASS);
    }
    eth[12] = inner_type[0];
    eth[13] = inner_type[1];
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, eth.as_mut_ptr() as *mut _, 14) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    verdict(if inner_type[0] == 0x08 { DECAPSULATED_V4 } else { DECAPSULATED_V6 }, xdp_action::XDP_PASS)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
