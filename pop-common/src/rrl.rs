//! DNS response rate limiting: fixed per-block buckets picked by a keyed hash.

use crate::{DNS_BLOCKS_MAX, SipHash13, addr_word};

/// DNS_RRL buckets of each `[[dns]]` block (a power of two). A block's clients share
/// them by a keyed hash of their prefix: a collision makes two prefixes share one
/// rate (stricter, never looser), and nothing is ever evicted, so a flood from random
/// sources cannot hand a limited client a fresh bucket.
pub const DNS_RRL_BUCKETS: u32 = 8192;
/// Entries of DNS_RRL: block b owns `b * DNS_RRL_BUCKETS ..` (blocks never share).
pub const DNS_RRL_MAX: u32 = DNS_BLOCKS_MAX * DNS_RRL_BUCKETS;

/// One RRL bucket (GCRA): the theoretical arrival time, in bpf_ktime_get_ns time. A
/// response is allowed while `max(tat, now) + cost <= now + 1 s` (one second of burst
/// at the block's rate), and moves `tat` to `max(tat, now) + cost` with one atomic
/// compare-and-exchange, so CPUs charging the same bucket never lose an update.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct RrlBucket {
    pub tat_ns: u64,
}

/// The client prefix a source address counts under (/24 for IPv4, /56 for IPv6) for
/// RRL, `pop top` and round trips,
/// in VipKey form (IPv4 v4-mapped).
#[inline(always)]
pub fn client_prefix(src: [u8; 16], v6: bool) -> [u8; 16] {
    let mut prefix = src;
    if v6 {
        let mut i = 7;
        while i < 16 {
            prefix[i] = 0;
            i += 1;
        }
    } else {
        prefix[15] = 0;
    }
    prefix
}

/// Bucket of `prefix` within its block: SipHash-1-3 of the prefix under `secret`, so
/// nobody who does not know the secret can aim a flood at another client's bucket.
#[inline(always)]
pub fn rrl_bucket(secret: [u64; 2], prefix: &[u8; 16]) -> u32 {
    let h = SipHash13::new(secret).word(addr_word(prefix, 0)).word(addr_word(prefix, 8)).word(16u64 << 56).finish();
    (h as u32) & (DNS_RRL_BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4_mapped;

    #[test]
    fn rrl_buckets_spread_prefixes_and_depend_on_the_secret() {
        let v4 = |a: u8, b: u8, c: u8, d: u8| client_prefix(v4_mapped([a, b, c, d]), false);
        // One /24 is one client; /56 for IPv6.
        assert_eq!(v4(192, 0, 2, 1), v4(192, 0, 2, 200));
        let v6 = |last7: u8, low: u8| {
            let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, last7, 0, 0, 0, 0, 0, 0, 0, 0, low];
            a[8] = low;
            client_prefix(a, true)
        };
        assert_eq!(v6(1, 1), v6(1, 9));
        assert_ne!(v6(1, 1), v6(2, 1));
        // 64k prefixes over the buckets: no bucket far above the mean (8).
        let secret = [0x0123_4567_89ab_cdef, 0x0fed_cba9_8765_4321];
        let mut load = vec![0u32; DNS_RRL_BUCKETS as usize];
        for i in 0..65536u32 {
            let p = v4(10, (i >> 8) as u8, i as u8, 0);
            load[rrl_bucket(secret, &p) as usize] += 1;
        }
        assert!(load.iter().all(|&n| n < 30), "max {}", load.iter().max().unwrap());
        // Another secret puts a client elsewhere (almost always; checked over many).
        let moved = (0..256u32)
            .filter(|&i| {
                let p = v4(198, 51, i as u8, 0);
                rrl_bucket(secret, &p) != rrl_bucket([secret[0] ^ 1, secret[1]], &p)
            })
            .count();
        assert!(moved > 250, "{moved}");
    }
}
