//! Verdicts with their reason: every packet the program hands back is counted under
//! the counter that says why (see pop_common::Counter).

use aya_ebpf::bindings::xdp_action;
use pop_common::Counter;

use crate::counters::Stats;

/// `action`, counted under `reason`.
#[inline(always)]
pub fn with(stats: &Stats, reason: Counter, action: u32) -> u32 {
    stats.inc(reason);
    action
}

/// To the kernel, counted under `reason`.
#[inline(always)]
pub fn pass(stats: &Stats, reason: Counter) -> u32 {
    with(stats, reason, xdp_action::XDP_PASS)
}

/// Dropped, counted under `reason`.
#[inline(always)]
pub fn drop(stats: &Stats, reason: Counter) -> u32 {
    with(stats, reason, xdp_action::XDP_DROP)
}
