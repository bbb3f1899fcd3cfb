//! Per-CPU counter access: one map lookup per packet, then plain increments.

use pop_common::{Counter, Counters};

use crate::maps::COUNTERS;

pub struct Stats(*mut Counters);

impl Stats {
    /// The counter block of this CPU. Index 0 of a per-CPU array always exists.
    #[inline(always)]
    pub fn get() -> Option<Stats> {
        COUNTERS.get_ptr_mut(0).map(Stats)
    }

    #[inline(always)]
    pub fn inc(&self, counter: Counter) {
        self.add(counter, 1)
    }

    /// Increments the counter at slot `index` (a `Counter as u32`).
    #[inline(always)]
    pub fn inc_index(&self, index: u32) {
        if (index as usize) < pop_common::COUNTER_SLOTS {
            unsafe { (*self.0).slots[index as usize] += 1 };
        }
    }

    #[inline(always)]
    pub fn add(&self, counter: Counter, n: u64) {
        // Per-CPU memory: no other CPU writes this slot, no atomics needed.
        unsafe {
            let slot = (*self.0).slots.as_mut_ptr().add(counter as usize);
            *slot += n;
        }
    }
}
