//! Response rate limiting for DNS over UDP: one limiter for every response on a DNS
//! VIP, whichever side answers. XDP charges the client's bucket for the answers it
//! builds and, before passing, for every query the server would answer, so a query
//! shaped to go to the server (NSID, a trailing byte, wildcards...) costs the same.

use core::intrinsics::{AtomicOrdering::Relaxed, atomic_cxchg};

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_get_prandom_u32, generated::bpf_ktime_get_coarse_ns},
};
use pop_common::{Counter, DNS_RRL_BUCKETS, client_prefix, rrl_bucket};

use crate::{
    counters::Stats,
    maps::{DNS_BLOCKS, DNS_RRL, DNS_RRL_SECRET},
    parse::Packet,
    secret,
};

// Verdicts of `rate_limit` (plain integers: see parse_into on BTF).
pub const ALLOW: u32 = 0;
pub const DROP: u32 = 1;
pub const SLIP: u32 = 2;

const SECOND: u64 = 1_000_000_000;
/// Compare-and-exchange attempts before giving up: failing this often means other CPUs
/// are charging the same bucket right now, i.e. it is being flooded.
const CAS_TRIES: usize = 4;

/// GCRA on the bucket of the client's prefix in `block`: one second of burst at the
/// block's rate (1e9 / cost_ns), then the rate. Refused responses slip out as TC=1 one
/// time in two (at random, so a flood cannot steer it), the others are dropped.
#[inline(never)]
pub fn rate_limit(pkt: &Packet, block: u32, cost_ns: u64) -> u32 {
    let Some(secret) = secret::key(&DNS_RRL_SECRET) else { return ALLOW };
    let prefix = client_prefix(pkt.src, pkt.v6);
    let index = block.wrapping_mul(DNS_RRL_BUCKETS) + rrl_bucket(secret, &prefix);
    let Some(bucket) = DNS_RRL.get_ptr_mut(index) else { return ALLOW };
    // SAFETY: an array value lives as long as the map, 8-aligned, so a plain load of it
    // is atomic; it is only written by compare-and-exchange. (core's AtomicU64 has no
    // compare_exchange on this target; the intrinsic compiles to BPF_CMPXCHG.)
    let tat = unsafe { &raw mut (*bucket).tat_ns };
    // The coarse clock (a jiffy, 4 ms here) is a memory read; the precise one reads the
    // clocksource on every query (kvm-clock in perf). GCRA's rate holds with either: the
    // coarse clock only delays when a burst's credit comes back by up to a jiffy.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let mut seen = unsafe { tat.read_volatile() };
    for _ in 0..CAS_TRIES {
        let start = if seen > now { seen } else { now };
        if start + cost_ns > now + SECOND {
            return if unsafe { bpf_get_prandom_u32() } & 1 == 0 { SLIP } else { DROP };
        }
        match unsafe { atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(tat, seen, start + cost_ns) } {
            (_, true) => return ALLOW,
            (current, false) => seen = current,
        }
    }
    DROP
}

/// For a query XDP is passing to the server: charge the bucket as for an answer, and
/// drop the query if the client is over its rate (the server cannot slip).
#[inline(never)]
pub fn limit_passed(stats: &Stats, pkt: &Packet, block: u32) -> u32 {
    let Some(settings) = DNS_BLOCKS.get(block) else { return xdp_action::XDP_PASS };
    if settings.rrl_cost_ns == 0 || rate_limit(pkt, block, settings.rrl_cost_ns) == ALLOW {
        return xdp_action::XDP_PASS;
    }
    crate::verdict::drop(stats, Counter::DnsRrlDroppedPassed)
}
