//! Client round trips measured in the path (see `pop_common::latency`): the clock both
//! measurements use, and recording one into the per-VIP and per-prefix histograms.

use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns};
use pop_common::{Counter, RTT_MAX_US, RttHist, VipKey, client_prefix};

use crate::{
    counters::Stats,
    maps::{CLIENT_RTT, CLIENT_RTT_PREFIXES, LATENCY_SCRATCH},
    parse::Packet,
};

/// One connection in this many (a power of two) has its round trip measured: set by
/// the loader from `pop.client_rtt_sample` (default pop_common::RTT_SAMPLE).
#[unsafe(no_mangle)]
static RTT_SAMPLE: u32 = pop_common::RTT_SAMPLE;

/// Whether this connection is one of those whose round trip is measured.
#[inline(always)]
pub fn sampled() -> bool {
    // SAFETY: read-only data the loader may have set; volatile, so the compiler does not
    // fold in the default.
    let n = unsafe { core::ptr::read_volatile(&RTT_SAMPLE) };
    (unsafe { bpf_get_prandom_u32() } & n.wrapping_sub(1)) == 0
}

/// Microseconds of the monotonic clock, wrapping at 2^32 (71 minutes): the TSval of
/// pop's TCP timestamps and the SYN time of a connection-table entry. Differences of
/// two readings are right across a wrap.
#[inline(always)]
pub fn now_us() -> u32 {
    (unsafe { bpf_ktime_get_ns() } / 1000) as u32
}

/// Verdict flag of a handler that measured a round trip (left in LATENCY_SCRATCH):
/// the dispatcher records it once the handler has returned. Recording from inside the
/// handlers would have the verifier walk the histogram update once per state of theirs.
pub const RECORD: u32 = 1 << 29;

/// Notes a round trip of `rtt_us` for the dispatcher; returns the flag to OR into the
/// verdict (0 when it is out of range, or no scratch).
#[inline(always)]
pub fn measured(rtt_us: u32) -> u32 {
    if rtt_us > RTT_MAX_US {
        return 0;
    }
    match LATENCY_SCRATCH.get_ptr_mut(0) {
        Some(s) => {
            unsafe { (*s).rtt_us = rtt_us };
            RECORD
        }
        None => 0,
    }
}

/// Records the round trip a handler noted (see [`RECORD`]) for `pkt`'s client and VIP key.
#[inline(never)]
pub fn record(stats: &Stats, pkt: &Packet) {
    let Some(s) = LATENCY_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's scratch, for the rest of this packet.
    let s = unsafe { &mut *s };
    let rtt_us = s.rtt_us;
    stats.inc(Counter::RttMeasured);
    let key = VipKey { addr: pkt.dst, port_be: pkt.dport_be, proto: pkt.proto, _pad: 0 };
    match CLIENT_RTT.get_ptr_mut(&key) {
        Some(h) => unsafe { (*h).record(rtt_us) },
        None => {
            // A first histogram, built in scratch: 200 bytes are too many for the stack.
            s.fresh = RttHist::default();
            s.fresh.record(rtt_us);
            if CLIENT_RTT.insert(&key, &s.fresh, 0).is_err() {
                stats.inc(Counter::RttUnrecorded);
            }
        }
    }
    let prefix = client_prefix(pkt.src, pkt.v6);
    match CLIENT_RTT_PREFIXES.get_ptr_mut(&prefix) {
        Some(h) => unsafe { (*h).record(rtt_us) },
        None => {
            s.fresh = RttHist::default();
            s.fresh.record(rtt_us);
            let _ = CLIENT_RTT_PREFIXES.insert(&prefix, &s.fresh, 0);
        }
    }
}
