//! HTTP answered in XDP: route keys and prebuilt responses.

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
