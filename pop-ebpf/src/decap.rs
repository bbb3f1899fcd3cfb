//! `pop decap`'s XDP program for backends: strips the outer header of IPIP
//! (IPv4-in-IPv4) and IPv6-in-IPv6 packets so the inner packet, addressed to the VIP
//! the backend holds on `lo`, goes up the stack; everything else passes untouched.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};

/// Per-CPU counters, see pop_common::DECAP_COUNTER_NAMES: v4, v6, passed, malformed.
#[map(name = "DECAP_COUNTERS")]
static DECAP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(4, 0);

fn count(i: u32) {
    if let Some(c) = DECAP_COUNTERS.get_ptr_mut(i) {
        unsafe { *c += 1 };
    }
}

#[xdp]
pub fn pop_decap(ctx: XdpContext) -> u32 {
    let mut eth = [0u8; 14];
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, eth.as_mut_ptr() as *mut _, 14) } != 0 {
        count(2);
        return xdp_action::XDP_PASS;
    }
    let (outer, inner_type) = match (eth[12], eth[13]) {
        (0x08, 0x00) => {
            let mut ip = [0u8; 20];
            if unsafe { bpf_xdp_load_bytes(ctx.ctx, 14, ip.as_mut_ptr() as *mut _, 20) } != 0 {
                count(3);
                return xdp_action::XDP_PASS;
            }
            if ip[9] != 4 || ip[6] & 0x3f != 0 || ip[7] != 0 {
                count(2);
                return xdp_action::XDP_PASS; // not IPIP, or a fragment: the kernel's job
            }
            ((ip[0] & 0x0f) as usize * 4, [0x08u8, 0x00])
        }
        (0x86, 0xdd) => {
            let mut ip = [0u8; 40];
            if unsafe { bpf_xdp_load_bytes(ctx.ctx, 14, ip.as_mut_ptr() as *mut _, 40) } != 0 {
                count(3);
                return xdp_action::XDP_PASS;
            }
            if ip[6] != 41 {
                count(2);
                return xdp_action::XDP_PASS;
            }
            (40, [0x86u8, 0xdd])
        }
        _ => {
            count(2);
            return xdp_action::XDP_PASS;
        }
    };
    if !(20..=60).contains(&outer) {
        count(3);
        return xdp_action::XDP_PASS;
    }
    // Drop the outer header: move the Ethernet header forward over it.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer as i32) } != 0 {
        count(3);
        return xdp_action::XDP_PASS;
    }
    eth[12] = inner_type[0];
    eth[13] = inner_type[1];
    if unsafe { bpf_xdp_store_bytes(ctx.ctx, 0, eth.as_mut_ptr() as *mut _, 14) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    count(if inner_type[0] == 0x08 { 0 } else { 1 });
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
