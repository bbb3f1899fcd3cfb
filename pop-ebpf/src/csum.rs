//! Internet checksum helpers (RFC 1071): 32-bit accumulation, folding, and sums of
//! byte runs that may start at an odd offset.

/// Folds a 32-bit accumulator to 16 bits (not complemented).
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Adds byte `b` found at byte position `pos` of the checksummed region.
#[inline(always)]
pub fn add_byte(sum: u64, pos: usize, b: u8) -> u64 {
    if pos & 1 == 0 { sum + ((b as u64) << 8) } else { sum + b as u64 }
}

/// Adds a partial sum computed for a run starting at an even offset, now placed at `pos`.
#[inline(always)]
pub fn add_run(sum: u64, pos: usize, run_sum: u64) -> u64 {
    let f = fold(run_sum);
    if pos & 1 == 0 { sum + f as u64 } else { sum + f.swap_bytes() as u64 }
}

/// Sum of 16-byte address as big-endian words.
#[inline(always)]
pub fn add_addr16(mut sum: u64, a: &[u8; 16]) -> u64 {
    let mut i = 0;
    while i < 16 {
        sum += ((a[i] as u64) << 8) | a[i + 1] as u64;
        i += 2;
    }
    sum
}

/// The final checksum field value for a sum: complemented, with 0 sent as 0xffff (UDP).
#[inline(always)]
pub fn finish_udp(sum: u64) -> u16 {
    let c = !fold(sum);
    if c == 0 { 0xffff } else { c }
}

/// The header checksum field of a 20-byte IPv4 header (its own checksum field zero).
#[inline(always)]
pub fn ipv4_header(ip: &[u8]) -> u16 {
    let mut sum = 0u64;
    for w in 0..10 {
        sum += ((ip[w * 2] as u64) << 8) | ip[w * 2 + 1] as u64;
    }
    !fold(sum)
}
