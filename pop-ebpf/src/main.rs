//! pop's XDP program: parse, look the destination up in the VIP table, dispatch.
//! This file only dispatches; each concern lives in its own module.
#![no_std]
#![no_main]
// Atomic compare-and-exchange on map values (rrl.rs): core::sync::atomic has none here.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod counters;
mod csum;
mod dns;
mod encap;
mod frame;
mod http;
mod icmp;
mod latency;
mod lb;
mod maps;
mod nexthop;
mod packet;
mod parse;
mod rrl;
mod secret;
mod unhandled;
mod verdict;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;

use pop_common::{Counter, VIP_KIND_DNS, VIP_KIND_HTTP, VIP_KIND_LB, VIP_KIND_PASS, VipKey};

use counters::Stats;
use maps::VIPS;
use verdict::pass;

#[xdp]
pub fn pop_xdp(ctx: XdpContext) -> u32 {
    let Some(stats) = Stats::get() else {
        return xdp_action::XDP_PASS;
    };
    stats.inc(Counter::RxPackets);
    let frame_len = core::hint::black_box(ctx.data_end() - ctx.data()) as u64;
    stats.add(Counter::RxBytes, frame_len);

    let verdict = dispatch(&ctx, &stats, frame_len);
    stats.inc(match verdict {
        xdp_action::XDP_TX => Counter::ActionTx,
        xdp_action::XDP_REDIRECT => Counter::ActionRedirect,
        xdp_action::XDP_DROP => Counter::ActionDrop,
        xdp_action::XDP_ABORTED => Counter::ActionAborted,
        _ => Counter::ActionPass,
    });
    verdict
}

#[inline(always)]
fn dispatch(ctx: &XdpContext, stats: &Stats, frame_len: u64) -> u32 {
    let mut pkt = parse::Packet::EMPTY;
    let skip = parse::parse_into(ctx, stats, &mut pkt);
    if skip != u32::MAX {
        if skip == Counter::PassFragment as u32 && may_be_vip(&pkt.dst) {
            return unhandled::ipv4_fragment(stats, &pkt.dst);
        }
        stats.inc_index(skip);
        return xdp_action::XDP_PASS;
    }
    if !may_be_vip(&pkt.dst) {
        return pass(stats, Counter::PassNotVip);
    }
    let key = VipKey { addr: pkt.dst, port_be: pkt.dport_be, proto: pkt.proto, _pad: 0 };
    // SAFETY: the value is plain data and only read here.
    let Some(vip) = (unsafe { VIPS.get(&key) }) else {
        return match unhandled::not_in_vip_table(ctx, stats, &pkt) {
            v if v & lb::ICMP_ERROR != 0 => lb::forward_icmp_error(ctx, stats, &pkt, v),
            v => v,
        };
    };
    trace_vip(ctx, pkt.dport_be, pkt.proto, vip.kind);
    count_vip_traffic(vip.slot, &pkt, frame_len);
    let verdict = match vip.kind {
        VIP_KIND_PASS => pass(stats, Counter::PassVipKernel),
        VIP_KIND_DNS => dns::handle(ctx, stats, &pkt, vip.index),
        VIP_KIND_HTTP => match http::handle(ctx, stats, &pkt, vip.index) {
            v if v & http::REPLY != 0 => http::reply(ctx, stats, &pkt, v),
            v => v,
        },
        VIP_KIND_LB => match lb::handle(ctx, stats, &pkt, vip.index) {
            v if v & lb::TOO_BIG != 0 => icmp::too_big(ctx, stats, &pkt, (v & 0xffff) as usize),
            v => v,
        },
        _ => pass(stats, Counter::PassVipNoHandler),
    };
    if verdict & latency::RECORD != 0 {
        latency::record(stats, &pkt);
        return verdict & !latency::RECORD;
    }
    verdict
}

/// Whether `dst` may be a VIP address (false: certainly not, see VipFilter).
#[inline(always)]
fn may_be_vip(dst: &[u8; 16]) -> bool {
    match maps::VIP_FILTER.get(0) {
        Some(f) => f.may_hold(dst),
        None => true,
    }
}

/// One packet in TOP_PREFIX_SAMPLE updates TOP_PREFIXES (by that many): `pop top`
/// reads rates, which sampling keeps on average, and a flood of new prefixes costs one
/// LRU insert per TOP_PREFIX_SAMPLE packets instead of one per packet.
const TOP_PREFIX_SAMPLE: u32 = 16;

/// Per-VIP packet counts (exact: spikes and `pop stats` read them), and per-client-
/// prefix counts, sampled (VIP traffic only, so the host's own traffic costs nothing here).
#[inline(never)]
fn count_vip_traffic(slot: u32, pkt: &parse::Packet, len: u64) {
    if let Some(t) = maps::VIP_STATS.get_ptr_mut(slot) {
        unsafe {
            (*t).packets += 1;
            (*t).bytes += len;
        }
    }
    if unsafe { aya_ebpf::helpers::bpf_get_prandom_u32() } % TOP_PREFIX_SAMPLE != 0 {
        return;
    }
    let prefix = pop_common::client_prefix(pkt.src, pkt.v6);
    match maps::TOP_PREFIXES.get_ptr_mut(&prefix) {
        Some(c) => unsafe { *c += TOP_PREFIX_SAMPLE as u64 },
        None => {
            let _ = maps::TOP_PREFIXES.insert(&prefix, &(TOP_PREFIX_SAMPLE as u64), 0);
        }
    }
}

/// Per-packet trace, compiled in but pruned by the verifier unless the controller loads
/// the program with `bpf_log = "debug"`. Its own subprogram: log records need stack.
#[inline(never)]
fn trace_vip(ctx: &XdpContext, port_be: u16, proto: u8, kind: u32) {
    debug!(ctx, "vip hit: port {} proto {} kind {}", u16::from_be(port_be), proto, kind);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
