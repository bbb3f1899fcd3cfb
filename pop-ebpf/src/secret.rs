//! Keys for the keyed hashes (RRL buckets, SYN cookies): drawn by the XDP program on
//! first use and pinned with their maps, so a controller restart changes nothing.

use core::intrinsics::{AtomicOrdering::Relaxed, atomic_cxchg};

use aya_ebpf::{helpers::bpf_get_prandom_u32, maps::Array};

/// The key in `map` (one entry), drawn now if still zero. Each word is set once by
/// compare-and-exchange, so CPUs racing on the first packet agree on it.
#[inline(always)]
pub fn key(map: &Array<[u64; 2]>) -> Option<[u64; 2]> {
    let words = map.get_ptr_mut(0)?;
    // SAFETY: an array value lives as long as the map, 8-aligned, so a plain load of a
    // word is atomic; it is only written by compare-and-exchange.
    unsafe { Some([word(&raw mut (*words)[0]), word(&raw mut (*words)[1])]) }
}

#[inline(always)]
unsafe fn word(at: *mut u64) -> u64 {
    let w = unsafe { at.read_volatile() };
    if w != 0 {
        return w;
    }
    let drawn = unsafe { ((bpf_get_prandom_u32() as u64) << 32 | bpf_get_prandom_u32() as u64) | 1 };
    match unsafe { atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(at, 0, drawn) } {
        (_, true) => drawn,
        (current, false) => current,
    }
}
