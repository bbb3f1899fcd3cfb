//! HTTP answered in XDP: route keys and prebuilt responses.

use crate::{SipHash13, addr_word};

pub const HTTP_ROUTES_MAX: u32 = 4096;
pub const HTTP_HOST_LEN: usize = 64;
pub const HTTP_PATH_LEN: usize = 128;
/// Longest request target (path and query) the responder copies into a Location.
pub const HTTP_TARGET_MAX: usize = 255;
/// Request bytes the XDP program reads; a request needing more gets a 400.
pub const HTTP_REQUEST_MAX: usize = 1024;
pub const HTTP_PREFIX_MAX: usize = 384;
pub const HTTP_SUFFIX_MAX: usize = 1280;
/// Largest response (with the longest appended target) the config may ask for: one
/// segment to any client. It is the smallest MSS a SYN cookie encodes (and TCP's
/// default, RFC 9293); SYNs asking for a smaller MSS are dropped.
pub const HTTP_RESPONSE_MAX: usize = 536;
/// `HttpKey::path` marker of a site's default response (first byte; the rest zero).
pub const HTTP_PATH_DEFAULT: u8 = 0x01;
/// `HttpKey::path` marker of a site's 400 response.
pub const HTTP_PATH_BAD_REQUEST: u8 = 0x02;

/// Key of HTTP_ROUTES: site, Host (lowercase, no port; all zero = any host), exact
/// path (zero padded), or a marker path.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HttpKey {
    pub site: u32,
    pub host: [u8; HTTP_HOST_LEN],
    pub path: [u8; HTTP_PATH_LEN],
}

/// Sites HTTP_SITE_ROUTES has room for: every site takes two HTTP_ROUTES entries (its
/// default and 400 responses), so no more fit there either.
pub const HTTP_SITES_MAX: u32 = HTTP_ROUTES_MAX / 2;

/// HTTP_SITE_ROUTES value, per site: bit `n` is set when some route of the site has an
/// exact path of `n` bytes (`with_host`: routes for one Host; `any_host`: for every
/// host). A request whose path length has no bit costs no lookup of the 196-byte
/// HttpKey (a jhash over all of it, the path's largest cost in perf): most requests
/// of a flood go to the default response.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpSiteRoutes {
    pub with_host: [u64; 2],
    pub any_host: [u64; 2],
}

impl HttpSiteRoutes {
    /// Whether `bits` may hold a route with a path of `len` bytes.
    #[inline(always)]
    pub fn has(bits: &[u64; 2], len: usize) -> bool {
        len < HTTP_PATH_LEN && (bits[(len / 64) & 1] >> (len % 64)) & 1 != 0
    }

    /// Notes a route with a path of `len` bytes (`host`: for one Host only).
    pub fn add(&mut self, host: bool, len: usize) {
        let bits = if host { &mut self.with_host } else { &mut self.any_host };
        if len < HTTP_PATH_LEN {
            bits[len / 64] |= 1 << (len % 64);
        }
    }

    /// Both sets of routes.
    pub fn union(&self, other: &HttpSiteRoutes) -> HttpSiteRoutes {
        HttpSiteRoutes {
            with_host: [self.with_host[0] | other.with_host[0], self.with_host[1] | other.with_host[1]],
            any_host: [self.any_host[0] | other.any_host[0], self.any_host[1] | other.any_host[1]],
        }
    }
}

/// A prepared response: `prefix`, then (if `append_path`) the request target, then
/// `suffix`, whose last `body_len` bytes are the body (left out for HEAD).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HttpResponse {
    /// Index into HTTP_ROUTE_STATS.
    pub route: u32,
    pub prefix_len: u16,
    pub suffix_len: u16,
    pub body_len: u16,
    pub append_path: u16,
    /// Ones'-complement sums (from an even offset) of prefix, suffix, and suffix
    /// without the body.
    pub prefix_sum: u32,
    pub suffix_sum: u32,
    pub head_sum: u32,
    pub prefix: [u8; HTTP_PREFIX_MAX],
    pub suffix: [u8; HTTP_SUFFIX_MAX],
}

/// Bits of an HTTP SYN cookie bound to the client's initial sequence number; the
/// others are bound to the connection's addresses, ports and time window only.
pub const SYN_COOKIE_ISN_BITS: u32 = 0xfff;
/// log2 of the SYN cookie's time window in ns (~69 s); a cookie verifies in its own
/// window and the next.
pub const SYN_COOKIE_WINDOW_SHIFT: u32 = 36;

/// pop's own SYN cookie, so every later segment of a connection answered in XDP can be
/// verified without state, not just the first (the kernel's cookie binds the client's
/// ISN in all its bits, which later segments do not carry).
///
/// A cookie is `base | (mix ^ fmix32(isn)) & SYN_COOKIE_ISN_BITS`, with `base` (20 bits)
/// and `mix` keyed hashes of (client, VIP, ports, window). The first data segment
/// matches exactly (seq - 1 is the ISN); a later one of the same connection carries an
/// ACK a little above `base` (by at most the ISN bits plus what we sent); a forged one
/// hits that range with odds of about 2^-20 per window.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SynCookie {
    pub base: u32,
    mix: u32,
}

impl SynCookie {
    /// The cookie parts of a connection from `client` to `vip` (v4-mapped or IPv6) with
    /// `ports` (the TCP header's first four bytes, as read) in time window `window`.
    #[inline(always)]
    pub fn new(key: [u64; 2], client: &[u8; 16], vip: &[u8; 16], ports: u32, window: u64) -> Self {
        let h = SipHash13::new(key)
            .word(addr_word(client, 0))
            .word(addr_word(client, 8))
            .word(addr_word(vip, 0))
            .word(addr_word(vip, 8))
            .word((ports as u64) | (window << 32))
            .word(40u64 << 56)
            .finish();
        SynCookie { base: (h as u32) & !SYN_COOKIE_ISN_BITS, mix: (h >> 32) as u32 }
    }

    /// Our initial sequence number for a SYN whose sequence number is `isn`.
    #[inline(always)]
    pub fn isn(&self, client_isn: u32) -> u32 {
        self.base | ((self.mix ^ fmix32(client_isn)) & SYN_COOKIE_ISN_BITS)
    }

    /// How a segment with sequence number `seq` and acknowledgment `ack` relates to
    /// this cookie, given that we send at most `sent_max` bytes (data and FIN).
    #[inline(always)]
    pub fn check(&self, seq: u32, ack: u32, sent_max: u32) -> CookieCheck {
        let ours = ack.wrapping_sub(1);
        if ours == self.isn(seq.wrapping_sub(1)) {
            CookieCheck::First
        } else if ours.wrapping_sub(self.base) <= SYN_COOKIE_ISN_BITS + sent_max {
            CookieCheck::Later
        } else {
            CookieCheck::Forged
        }
    }
}

/// What [`SynCookie::check`] tells of a segment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CookieCheck {
    /// The first segment after the handshake (seq = ISN + 1, ack = cookie + 1).
    First,
    /// A later segment of a connection we opened: more of the request, or its close.
    Later,
    /// No connection of ours (or one from an expired window).
    Forged,
}

/// MurmurHash3's 32-bit finaliser: spreads the client's ISN over the cookie's ISN bits.
#[inline(always)]
const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4_mapped;

    #[test]
    fn syn_cookies_verify_every_segment_of_their_connection_and_nothing_else() {
        let key = [0x0123_4567_89ab_cdef, 0x0fed_cba9_8765_4321];
        let client = v4_mapped([192, 0, 2, 1]);
        let vip = v4_mapped([203, 0, 113, 80]);
        let ports = u32::from_be_bytes([0x9c, 0x40, 0, 80]);
        let c = SynCookie::new(key, &client, &vip, ports, 7);
        let sent_max = 537;
        let isn = 0xdead_beef;
        let ours = c.isn(isn);
        // First segment, then later ones: more request (ack of nothing yet), our data
        // and FIN acknowledged.
        assert_eq!(c.check(isn.wrapping_add(1), ours.wrapping_add(1), sent_max), CookieCheck::First);
        for (seq_off, ack_off) in [(1400, 1), (3000, 1), (1400, 200), (1400, 1 + 537)] {
            assert_eq!(c.check(isn.wrapping_add(seq_off), ours.wrapping_add(ack_off), sent_max), CookieCheck::Later, "{seq_off} {ack_off}");
        }
        // Our ISN depends on the client's, and on every part of the connection.
        assert_ne!(c.isn(isn), c.isn(isn ^ 1));
        for other in [
            SynCookie::new([key[0] ^ 1, key[1]], &client, &vip, ports, 7),
            SynCookie::new(key, &v4_mapped([192, 0, 2, 2]), &vip, ports, 7),
            SynCookie::new(key, &client, &v4_mapped([203, 0, 113, 81]), ports, 7),
            SynCookie::new(key, &client, &vip, ports ^ 1, 7),
            SynCookie::new(key, &client, &vip, ports, 8),
        ] {
            assert_ne!(other.base, c.base);
            assert_eq!(other.check(isn.wrapping_add(1), ours.wrapping_add(1), sent_max), CookieCheck::Forged);
        }
        // Random (seq, ack) pairs: a forger hits the range ~ 4.6k / 2^32 of the time.
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut hits = 0;
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if c.check(x as u32, (x >> 32) as u32, sent_max) != CookieCheck::Forged {
                hits += 1;
            }
        }
        assert!(hits <= 10, "{hits} forged segments verified");
    }
}
