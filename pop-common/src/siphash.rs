//! The keyed hash behind RRL buckets and HTTP SYN cookies.

/// SipHash-1-3 under a 128-bit key, fed whole 64-bit words (the last one carrying the
/// message length, as SipHash pads): the keyed hash behind RRL buckets and HTTP SYN
/// cookies, so nobody who does not know the key can aim at a bucket or forge a cookie.
/// Streaming, so the XDP program keeps no message array on its stack.
pub struct SipHash13 {
    v: [u64; 4],
}

impl SipHash13 {
    #[inline(always)]
    pub fn new(key: [u64; 2]) -> Self {
        let (k0, k1) = (key[0], key[1]);
        SipHash13 { v: [k0 ^ 0x736f_6d65_7073_6575, k1 ^ 0x646f_7261_6e64_6f6d, k0 ^ 0x6c79_6765_6e65_7261, k1 ^ 0x7465_6462_7974_6573] }
    }

    #[inline(always)]
    fn round(&mut self) {
        let v = &mut self.v;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    #[inline(always)]
    pub fn word(mut self, m: u64) -> Self {
        self.v[3] ^= m;
        self.round();
        self.v[0] ^= m;
        self
    }

    #[inline(always)]
    pub fn finish(mut self) -> u64 {
        self.v[2] ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }
}

/// Little-endian word `at..at+8` of a 16-byte address.
#[inline(always)]
pub fn addr_word(a: &[u8; 16], at: usize) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < 8 {
        w |= (a[at + i] as u64) << (8 * i);
        i += 1;
    }
    w
}
