//! Upkeep of DNS_NAME_FILTER, the bitmap the data path checks before it looks a name
//! up (see `pop_common::NameFilter`): a random-subdomain flood then costs no hash
//! lookups. Kept here per block: the bits of its live generation and of a staged one.
//! The map holds their union, so every name that can be found has its bit set, and
//! it is trusted (`ready`) only once this process knows every live generation's names:
//! a generation an earlier run wrote is looked up name by name until it is replaced.
//!
//! Writing the 512 KiB value is not atomic: a lookup racing it sees each word old or
//! new. So bits are added before the names they cover can be found (before the flip)
//! and removed only once those names are gone, and `ready` turns on only with a
//! second write of bits already in place.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use aya::maps::{Array, MapData};
use pop_common::{DNS_BLOCKS_MAX, DnsBlock, DnsKey, NAME_FILTER_WORDS, NameFilter, name_filter_bit};

type Bits = Box<[u64]>;

pub struct NameFilters {
    map: Array<MapData, NameFilter>,
    /// Per block: the bits of its live generation (None: none, or unknown).
    live: Vec<Option<Bits>>,
    /// Per block: the bits of a generation written but not finished yet.
    staged: Vec<Option<Bits>>,
    /// Blocks whose live generation an earlier run wrote: names unknown here.
    unknown: BTreeSet<u32>,
    /// The value written (kept: 512 KiB is too big for a thread's stack).
    value: Box<NameFilter>,
    written_ready: bool,
}

fn bits_of(keys: &[DnsKey]) -> Bits {
    let mut bits = vec![0u64; NAME_FILTER_WORDS].into_boxed_slice();
    for k in keys {
        let bit = name_filter_bit(&k.name);
        bits[bit / 64] |= 1 << (bit % 64);
    }
    bits
}

// `&*self.value`, not `*self.value`: the lint's fix copies 512 KiB onto the stack.
#[allow(clippy::needless_borrows_for_generic_args)]
impl NameFilters {
    /// Takes over the filter, trusting none of what an earlier run left in it: every
    /// installed block's names are unknown until it is staged again.
    pub fn new(map: Array<MapData, NameFilter>, blocks: &Array<MapData, DnsBlock>) -> Result<NameFilters> {
        let mut unknown = BTreeSet::new();
        for b in 0..DNS_BLOCKS_MAX {
            if blocks.get(&b, 0)?.generation != 0 {
                unknown.insert(b);
            }
        }
        // SAFETY: NameFilter is integers only; all-zero bytes are one of its values.
        let mut value: Box<NameFilter> = unsafe { Box::new_zeroed().assume_init() };
        // Every bit set and ready 0: whatever mix of this and the old value a racing
        // lookup reads, it finds every name the old value let through.
        value.bits.fill(u64::MAX);
        let mut filters = NameFilters {
            map,
            live: (0..DNS_BLOCKS_MAX).map(|_| None).collect(),
            staged: (0..DNS_BLOCKS_MAX).map(|_| None).collect(),
            unknown,
            value,
            written_ready: false,
        };
        filters.map.set(0, &*filters.value, 0).context("resetting DNS_NAME_FILTER")?;
        Ok(filters)
    }

    /// Before a generation of `block` is written: its names' bits.
    pub fn stage(&mut self, block: u32, keys: &[DnsKey]) -> Result<()> {
        self.staged[block as usize] = Some(bits_of(keys));
        self.write()
    }

    /// A staged generation was removed without going live.
    pub fn abort(&mut self, block: u32) -> Result<()> {
        self.staged[block as usize] = None;
        self.write()
    }

    /// The staged generation of `block` is live and the one before it deleted.
    pub fn finish(&mut self, block: u32) -> Result<()> {
        self.live[block as usize] = self.staged[block as usize].take();
        self.unknown.remove(&block);
        self.write()
    }

    /// Blocks from `first` on hold no entries any more.
    pub fn retire_from(&mut self, first: u32) -> Result<()> {
        for b in first..DNS_BLOCKS_MAX {
            self.live[b as usize] = None;
            self.staged[b as usize] = None;
            self.unknown.remove(&b);
        }
        self.write()
    }

    /// Names about to be added to `block`'s live generation (per-name updates).
    pub fn add(&mut self, block: u32, keys: &[DnsKey]) -> Result<()> {
        let Some(live) = self.live[block as usize].as_mut() else {
            return Ok(()); // unknown names: the filter is not trusted anyway
        };
        for k in keys {
            let bit = name_filter_bit(&k.name);
            live[bit / 64] |= 1 << (bit % 64);
        }
        self.write()
    }

    fn write(&mut self) -> Result<()> {
        self.value.bits.fill(0);
        for bits in self.live.iter().chain(&self.staged).flatten() {
            for (w, b) in self.value.bits.iter_mut().zip(bits.iter()) {
                *w |= b;
            }
        }
        let ready = self.unknown.is_empty();
        if ready && !self.written_ready {
            self.value.ready = 0;
            self.map.set(0, &*self.value, 0).context("writing DNS_NAME_FILTER")?;
        }
        self.value.ready = ready as u64;
        self.map.set(0, &*self.value, 0).context("writing DNS_NAME_FILTER")?;
        self.written_ready = ready;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_staged_name_passes_the_filter_and_a_clear_bit_does_not() {
        let keys: Vec<DnsKey> = (0..1000u64).map(|i| DnsKey { tag: 0, qtype: 1, qclass: 1, name: [i, i * 4097] }).collect();
        let bits = bits_of(&keys);
        let filter = {
            // SAFETY: as in NameFilters::new.
            let mut f: Box<NameFilter> = unsafe { Box::new_zeroed().assume_init() };
            f.ready = 1;
            f.bits.copy_from_slice(&bits);
            f
        };
        assert!(keys.iter().all(|k| filter.may_hold(&k.name)));
        let clear = (0..NAME_FILTER_WORDS * 64).find(|&b| bits[b / 64] >> (b % 64) & 1 == 0).unwrap();
        assert!(!filter.may_hold(&[0, clear as u64]), "a name whose bit is clear is not looked up");
        assert_eq!(bits.iter().map(|w| w.count_ones() as usize).sum::<usize>(), 1000, "1000 keys spread over distinct bits here");
    }
}
