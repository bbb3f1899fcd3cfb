//! Client round-trip times measured in the path, with no state of their own: for HTTP
//! answered in XDP, the TCP timestamp pop puts in its SYN-ACK comes back in the
//! client's request (now − TSecr); for load-balanced TCP, the connection table entry
//! made by the SYN remembers when, and the handshake's ACK closes it.

/// Buckets of an [`RttHist`]: bucket 0 holds round trips under 1 µs, bucket k (1 ≤ k <
/// RTT_BUCKETS − 1) those in [2^(k−1), 2^k) µs, the last everything from 2^(RTT_BUCKETS−2) µs
/// (4.2 s) up.
pub const RTT_BUCKETS: usize = 24;

/// Round trips above this are not recorded: a client's stale or invented timestamp.
pub const RTT_MAX_US: u32 = 60_000_000;

/// One connection in RTT_SAMPLE has its round trip measured (chosen at random, at the
/// SYN for load-balanced flows, at the request for HTTP answered in XDP) and recorded
/// in both histograms: the cost of the hash lookups and of a new prefix's LRU insert
/// is spread over that many connections.
pub const RTT_SAMPLE: u32 = 8;

/// Client prefixes (/24, /56) whose round trips CLIENT_RTT_PREFIXES keeps.
pub const RTT_PREFIXES_MAX: u32 = 4096;

/// A histogram of round trips (per CPU in the maps): counts per bucket, and the sum.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttHist {
    pub counts: [u64; RTT_BUCKETS],
    pub sum_us: u64,
}

impl Default for RttHist {
    fn default() -> Self {
        RttHist { counts: [0; RTT_BUCKETS], sum_us: 0 }
    }
}

/// The bucket of a round trip of `us` microseconds.
#[inline(always)]
pub fn rtt_bucket(us: u32) -> usize {
    let k = (32 - us.leading_zeros()) as usize;
    if k < RTT_BUCKETS { k } else { RTT_BUCKETS - 1 }
}

/// The upper bound of bucket `k` in µs (exclusive), None for the last (unbounded).
pub fn rtt_bucket_upper_us(k: usize) -> Option<u64> {
    (k < RTT_BUCKETS - 1).then(|| 1u64 << k)
}

impl RttHist {
    /// Adds one round trip.
    #[inline(always)]
    pub fn record(&mut self, us: u32) {
        // black_box: the bound is checked on the index itself, not turned by LLVM into
        // one on `us`, which the BPF verifier cannot carry through leading_zeros.
        let k = core::hint::black_box(rtt_bucket(us));
        if k < RTT_BUCKETS {
            self.counts[k] += 1;
        }
        self.sum_us += us as u64;
    }

    /// Merges another histogram (another CPU's) into this one.
    pub fn merge(&mut self, other: &RttHist) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound (µs) of the bucket holding the quantile `permille`/1000, None
    /// when empty or when it falls in the unbounded bucket.
    pub fn quantile_us(&self, permille: u64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (permille.min(1000) * total).div_ceil(1000).clamp(1, total);
        let mut seen = 0;
        for (k, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return rtt_bucket_upper_us(k);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_of_microseconds() {
        assert_eq!(rtt_bucket(0), 0);
        assert_eq!(rtt_bucket(1), 1);
        assert_eq!(rtt_bucket(2), 2);
        assert_eq!(rtt_bucket(3), 2);
        assert_eq!(rtt_bucket(1023), 10);
        assert_eq!(rtt_bucket(1024), 11);
        assert_eq!(rtt_bucket(u32::MAX), RTT_BUCKETS - 1);
        // Every value is below its bucket's upper bound and at or above the previous one's.
        for us in [0u32, 1, 5, 700, 1_000_000, 4_000_000] {
            let k = rtt_bucket(us);
            assert!(rtt_bucket_upper_us(k).is_none_or(|u| (us as u64) < u), "{us} in {k}");
            assert!(k == 0 || (us as u64) >= rtt_bucket_upper_us(k - 1).unwrap(), "{us} in {k}");
        }
        assert_eq!(rtt_bucket_upper_us(RTT_BUCKETS - 1), None);
    }

    #[test]
    fn quantiles_name_the_bucket_bound() {
        let mut h = RttHist::default();
        assert_eq!(h.quantile_us(500), None);
        for _ in 0..98 {
            h.record(100); // bucket [64, 128)
        }
        h.record(3000); // [2048, 4096)
        h.record(3000);
        assert_eq!(h.count(), 100);
        assert_eq!(h.sum_us, 98 * 100 + 6000);
        assert_eq!(h.quantile_us(500), Some(128));
        assert_eq!(h.quantile_us(980), Some(128));
        assert_eq!(h.quantile_us(990), Some(4096));
        let mut other = RttHist::default();
        other.record(100);
        h.merge(&other);
        assert_eq!(h.count(), 101);
    }
}
