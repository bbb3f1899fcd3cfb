//! Types shared by the XDP program (`pop-ebpf`) and the controller (`pop-userspace`).
//!
//! Everything here is `#[repr(C)]` plain data: the same bytes are written by one side
//! and read by the other through BPF maps. Changing a layout means bumping
//! [`MAP_LAYOUT_VERSION`], so a new controller never reads maps pinned by an old one.
#![cfg_attr(not(test), no_std)]

/// Version of every pinned map's key/value layout. Pinned maps live under
/// `<bpffs dir>/maps-v<N>/`, so an incompatible upgrade starts from fresh maps
/// instead of misreading old ones.
pub const MAP_LAYOUT_VERSION: u32 = 4;

/// Name of the XDP program in the object file (its function name).
pub const XDP_PROGRAM: &str = "pop_xdp";

/// Names of the maps, as declared in `pop-ebpf/src/maps.rs`.
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_VIPS: &str = "VIPS";
pub const MAP_DNS_TABLE: &str = "DNS_TABLE";
pub const MAP_DNS_BLOCKS: &str = "DNS_BLOCKS";
pub const MAP_DNS_SEEDS: &str = "DNS_SEEDS";
/// Tail maps by size class, smallest first (see DNS_TAIL_CLASSES).
pub const MAP_DNS_TAILS: [&str; 3] = ["DNS_TAILS_S", "DNS_TAILS_M", "DNS_TAILS_L"];
pub const MAP_LB_SERVICES: &str = "LB_SERVICES";
pub const MAP_HTTP_ROUTES: &str = "HTTP_ROUTES";
pub const MAP_VIP_STATS: &str = "VIP_STATS";
pub const MAP_TOP_PREFIXES: &str = "TOP_PREFIXES";
/// Client prefixes tracked for `pop top` (least recently seen are evicted).
pub const TOP_PREFIXES_MAX: u32 = 16384;
pub const MAP_HTTP_ROUTE_STATS: &str = "HTTP_ROUTE_STATS";
pub const MAP_LB_MAGLEV: &str = "LB_MAGLEV";
pub const MAP_LB_BACKENDS: &str = "LB_BACKENDS";
pub const MAP_LB_SERVICE_STATS: &str = "LB_SERVICE_STATS";
pub const MAP_LB_BACKEND_STATS: &str = "LB_BACKEND_STATS";
pub const MAP_VIP_ADDRS: &str = "VIP_ADDRS";

/// Slots in the per-CPU counter block. Larger than the counters in use so that new
/// counters can be added without changing the map's value size.
pub const COUNTER_SLOTS: usize = 96;

/// Entries in the VIP table.
pub const MAX_VIPS: u32 = 4096;

/// One per-CPU block of counters; index with [`Counter`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Counters {
    pub slots: [u64; COUNTER_SLOTS],
}

macro_rules! counters {
    ($($variant:ident = $name:literal : $help:literal,)*) => {
        /// Index of each data-path counter in [`Counters::slots`].
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter { $($variant,)* }

        impl Counter {
            /// Every counter, in slot order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            /// Stable dotted name: `group.what` (used by `pop stats` and Prometheus).
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$variant => $name,)* }
            }
            /// One line an operator can read.
            pub const fn help(self) -> &'static str {
                match self { $(Counter::$variant => $help,)* }
            }
        }
    };
}

counters! {
    RxPackets = "rx.packets": "frames seen by the XDP program",
    RxBytes = "rx.bytes": "bytes of frames seen by the XDP program",
    ActionPass = "action.pass": "frames handed to the kernel stack (XDP_PASS)",
    ActionTx = "action.tx": "frames sent back out of the receiving interface (XDP_TX)",
    ActionRedirect = "action.redirect": "frames redirected to another interface",
    ActionDrop = "action.drop": "frames dropped (XDP_DROP); see drop.*",
    ActionAborted = "action.aborted": "frames aborted by a program error (XDP_ABORTED)",
    L3Ipv4 = "l3.ipv4": "IPv4 packets",
    L3Ipv6 = "l3.ipv6": "IPv6 packets",
    L3Other = "l3.other": "frames that are not IP (ARP, LLDP, ...)",
    L4Tcp = "l4.tcp": "TCP segments",
    L4Udp = "l4.udp": "UDP datagrams",
    L4Icmp = "l4.icmp": "ICMP (IPv4) messages",
    L4Icmpv6 = "l4.icmpv6": "ICMPv6 messages",
    L4Other = "l4.other": "IP packets of another protocol or behind IPv6 extension headers",
    VlanTagged = "vlan.tagged": "frames carrying one or two VLAN tags",
    PassNotIp = "pass.not_ip": "passed: not IPv4/IPv6",
    PassNotVip = "pass.not_vip": "passed: not addressed to a configured VIP and port",
    PassMalformed = "pass.malformed": "passed: headers truncated or invalid, left for the kernel to judge",
    PassFragment = "pass.fragment": "passed: IP fragment, the kernel reassembles it",
    PassVipKernel = "pass.vip_kernel": "passed: VIP traffic served by the kernel stack (the controller's own servers)",
    PassVipNoHandler = "pass.vip_no_handler": "passed: VIP entry whose handler is not in this program",
    PassVlanDepth = "pass.vlan_too_deep": "passed: more than two VLAN tags",
    LbPackets = "lb.packets": "packets to a load-balanced service VIP",
    LbForwardedTx = "lb.forwarded_tx": "encapsulated to a backend and sent back out the receiving interface",
    LbForwardedRedirect = "lb.forwarded_redirect": "encapsulated to a backend and redirected to another interface",
    LbFlowHit = "lb.flow_hit": "packets of a flow found in the connection table",
    LbNewFlow = "lb.new_flow": "flows given a backend by the Maglev table",
    LbRehashed = "lb.rehashed": "flows whose backend was removed, down, or its id given to another service, moved to a live backend",
    LbDropNoBackend = "drop.lb_no_backend": "dropped: the service has no live backend",
    LbDropNoRoute = "drop.lb_no_route": "dropped: no route to the backend (fib lookup failed)",
    LbPassNoNeigh = "drop.lb_no_neighbour": "dropped: backend's next hop not resolved yet (ARP/ND); the controller primes it",
    LbDropNoRoom = "drop.lb_encap": "dropped: the frame could not grow for the tunnel header",
    LbTooBig = "lb.icmp_too_big": "answered ICMP fragmentation-needed / packet-too-big: too large once encapsulated",
    LbDropMalformed = "drop.lb_malformed": "dropped: IP length says more than the frame holds",
    LbDropFamily = "drop.lb_family": "dropped: VIP and backend address families differ",
    LbIcmpErrorForwarded = "lb.icmp_error_forwarded": "ICMP errors about a backend's packets to a client (e.g. fragmentation needed), tunnelled to the backend owning the flow",
    VipDropIcmpError = "drop.vip_icmp_error": "dropped: ICMP error toward a VIP that quotes no packet of a load-balanced service or of the kernel's own VIP servers",
    VipPassIcmp = "pass.vip_icmp": "passed: ICMP echo request or IPv6 neighbour discovery to a VIP, for the kernel",
    VipDropUnhandled = "drop.vip_unhandled": "dropped: to a VIP address on a port or protocol no handler takes (the host's own services stay unreachable there)",
    VipDropFragment = "drop.vip_fragment": "dropped: IP fragment to a VIP address (no handler takes fragments; pop.pass_unhandled_vips lets them through)",
    VipPassUnhandled = "pass.vip_unhandled_allowed": "passed: to a VIP on a port or protocol no handler takes, allowed by pop.pass_unhandled_vips",
    HttpSegments = "http.segments": "TCP segments to an HTTP VIP seen by XDP",
    HttpSynAnswered = "http.syn_answered": "SYNs answered with a SYN-ACK carrying a SYN cookie",
    HttpResponses = "http.responses": "requests answered in one segment with the response and FIN",
    HttpBadRequest = "http.bad_request": "answered 400: not GET/HEAD HTTP/1.x, two Hosts, or request line and Host not in the first segment",
    HttpFinAcked = "http.fin_acked": "client FINs before any request (verified) answered with our FIN",
    HttpFinReset = "http.fin_reset": "client FINs after the answer (unverifiable without state) closed with a RST",
    HttpDropBareAck = "drop.http_bare_ack": "dropped: a bare ACK (handshake completion, ACK of our response)",
    HttpDropRst = "drop.http_rst": "dropped: RST to an HTTP VIP",
    HttpDropCookie = "drop.http_bad_cookie": "dropped: data segment failing the SYN cookie (forged, or the rest of a request answered from its first segment)",
    HttpDropMalformed = "drop.http_malformed": "dropped: TCP header invalid, or flags no client sends (SYN with ACK/FIN/URG, no ACK)",
    HttpDropNoRoom = "drop.http_no_room": "dropped: the frame could not be resized for the answer",
    HttpDropIpOptions = "drop.http_ip_options": "dropped: IPv4 header with options (never reflected into a reply)",
    HttpDropSmallMss = "drop.http_small_mss": "dropped: SYN with an MSS below 536, too small for one-segment answers",
    DnsQueries = "dns.queries": "UDP datagrams to a DNS VIP seen by XDP",
    DnsAnsweredNoerror = "dns.xdp.noerror": "answered in XDP: NOERROR (answers and NODATA)",
    DnsAnsweredNxdomain = "dns.xdp.nxdomain": "answered in XDP: NXDOMAIN",
    DnsAnsweredOther = "dns.xdp.other_rcode": "answered in XDP: another rcode",
    DnsTruncated = "dns.xdp.truncated": "answered in XDP with TC=1: larger than the client's limit",
    DnsRrlDropped = "dns.rrl.dropped": "dropped by response rate limiting",
    DnsRrlSlipped = "dns.rrl.slipped": "rate limited, answered TC=1 so the client retries over TCP",
    DnsRrlDroppedPassed = "dns.rrl.dropped_passed": "dropped by response rate limiting: a query XDP would have passed to the server",
    DnsDropResponse = "drop.dns_response": "dropped: a DNS response (QR=1) sent to a VIP",
    DnsDropRunt = "drop.dns_runt": "dropped: UDP payload shorter than a DNS header",
    DnsPassDisabled = "dns.pass.fast_path_off": "passed to the server: fast path disabled for this block",
    DnsPassOpcode = "dns.pass.opcode": "passed to the server: opcode is not QUERY, or a zone transfer (AXFR/IXFR)",
    DnsPassCounts = "dns.pass.sections": "passed to the server: not exactly one question, or answer/authority records present",
    DnsPassName = "dns.pass.qname": "passed to the server: question name malformed, compressed or too long",
    DnsPassEdns = "dns.pass.edns": "passed to the server: EDNS version, NSID or a malformed OPT",
    DnsPassTrailing = "dns.pass.trailing": "passed to the server: bytes after the question or an additional record that is not OPT",
    DnsPassUnknown = "dns.pass.not_in_table": "passed to the server: name not in the fast-path table (wildcards, delegations, other zones)",
    DnsPassTableSays = "dns.pass.delegated": "passed to the server: name under a delegation or in a zone with wildcards",
    DnsPassNoRoom = "dns.pass.no_room": "passed to the server: the frame could not be resized for the answer",
    DnsDropTailGone = "drop.dns_tail_gone": "dropped: a reload deleted the answer's bytes between lookup and copy (the client retries)",
    DnsPassIpLength = "dns.pass.ip_length": "passed to the server: the IP header's length disagrees with the UDP length",
    DnsPassIpOptions = "dns.pass.ip_options": "passed to the server: IPv4 options (a reply must not echo them; the kernel's does not)",
}

impl Counters {
    pub const ZERO: Counters = Counters { slots: [0; COUNTER_SLOTS] };
}

/// Key of the VIP table: destination address (IPv4 as v4-mapped IPv6), port, protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// IPv6 address, or IPv4 as `::ffff:a.b.c.d`, network byte order.
    pub addr: [u8; 16],
    /// Destination port in network byte order.
    pub port_be: u16,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    pub _pad: u8,
}

/// Packets and bytes to one VIP key (per CPU), for rates and anomaly detection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipTraffic {
    pub packets: u64,
    pub bytes: u64,
}

/// What the data path does with traffic for a VIP key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipValue {
    /// One of the `VIP_KIND_*` constants.
    pub kind: u32,
    /// Index into the kind's own tables.
    pub index: u32,
}

/// VIP_ADDRS value bit: traffic to this address that no VIPS entry takes goes to the
/// kernel instead of being dropped (`pop.pass_unhandled_vips`).
pub const VIP_ADDR_PASS_UNHANDLED: u32 = 1;

/// Traffic for this VIP goes to the kernel (the controller's own servers).
pub const VIP_KIND_PASS: u32 = 0;
/// UDP/53 of a DNS block: answered from DNS_TABLE; `index` is the block.
pub const VIP_KIND_DNS: u32 = 1;
/// A load-balanced service: steered to a backend; `index` is the service.
pub const VIP_KIND_LB: u32 = 2;
/// An `[[http]]` site answered in XDP; `index` is the site.
pub const VIP_KIND_HTTP: u32 = 3;

// ---- HTTP answered in XDP ---------------------------------------------------------------

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

// ---- load balancer -------------------------------------------------------------------

pub const LB_MAX_SERVICES: u32 = 16;
pub const LB_MAX_BACKENDS: u32 = 1024;
/// Largest Maglev table (a prime). Each service has one table per address family (IPIP
/// keeps the family), each in two halves (live and idle) of this size.
pub const LB_TABLE_MAX: u32 = 65537;
pub const LB_FLOWS_MAX: u32 = 1 << 20;
pub const MAP_LB_FLOWS: &str = "LB_FLOWS";

/// Per service in LB_SERVICES.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbService {
    /// Maglev table size in use per family (index 0 IPv4, 1 IPv6); 0 = no live backend.
    pub table_size: [u32; 2],
    /// Which half of that family's LB_MAGLEV area is live (0 or 1).
    pub half: [u32; 2],
}

/// First LB_MAGLEV index of the table of (service, family, half).
pub const fn maglev_base(service: u32, v6: bool, half: u32) -> u32 {
    ((service * 2 + v6 as u32) * 2 + (half & 1)) * LB_TABLE_MAX
}

/// Backend states in LbBackend::state.
pub const BACKEND_UNUSED: u32 = 0;
/// Takes new flows (present in the Maglev table) and keeps its flows.
pub const BACKEND_LIVE: u32 = 1;
/// Keeps existing flows, takes no new ones.
pub const BACKEND_DRAIN: u32 = 2;
/// Gone: its flows are re-hashed to a live backend.
pub const BACKEND_DOWN: u32 = 3;

/// Per backend id in LB_BACKENDS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbBackend {
    /// IPv6 address, or IPv4 v4-mapped.
    pub addr: [u8; 16],
    pub state: u32,
    pub service: u32,
}

/// Key of the connection table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowValue {
    pub backend: u32,
    pub _pad: u32,
}

/// Packets, bytes and new flows of one service or backend (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbStats {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}


// ---- DNS fast path -------------------------------------------------------------------

/// Default capacity of DNS_TABLE (entries; `pop.dns_table_size` changes it). A name
/// takes about three entries (its types, ANY, "other types"), and a reload holds the
/// old and the new generation at once.
pub const DNS_TABLE_MAX: u32 = 1 << 20;
pub const DNS_BLOCKS_MAX: u32 = 64;
/// Longest name in wire format, plus a spare byte for the XDP side's masking.
pub const DNS_NAME_LEN: usize = 256;
/// Most labels a wire-format name can have (root included).
pub const DNS_LABELS_MAX: usize = 128;
/// Bytes after the question an answer can hold (the largest tail class): every tail
/// pop can send, i.e. the largest UDP answer (DNS_EDNS_UDP_SIZE) less the header, the
/// shortest question (the root name, type, class) and the OPT record. Longer answers
/// are always sent truncated and stored without bytes (see `DnsAnswer`).
pub const DNS_TAIL_MAX: usize = DNS_EDNS_UDP_SIZE as usize - 12 - 5 - 11;
/// Capacity of DNS_TAILS_S/M/L for a DNS_TABLE of `table` entries: distinct tails are
/// fewer than answers (ANY and NODATA answers share), and long ones rarer. Each slot of
/// capacity costs 16 bytes of hash buckets up front; entries cost only when written.
pub const fn dns_tail_capacity(table: u32) -> [u32; 3] {
    const fn at_least(n: u32, min: u32) -> u32 {
        if n < min { min } else { n }
    }
    [at_least(table / 2, 512), at_least(table / 8, 128), at_least(table / 32, 64)]
}
/// Tail size classes: DNS_TAILS_S, DNS_TAILS_M, DNS_TAILS_L hold tails up to these sizes.
pub const DNS_TAIL_CLASSES: [usize; 3] = [64, 256, DNS_TAIL_MAX];
/// `DnsAnswer::tail_ref`: the size class in the top two bits, the index in the rest.
pub const DNS_TAIL_CLASS_SHIFT: u32 = 30;
pub const DNS_TAIL_INDEX_MASK: u32 = (1 << DNS_TAIL_CLASS_SHIFT) - 1;
/// `DnsKey::tag` bits above block and generation: what kind of entry a key is. Only
/// DNS_KIND_ANSWER keys carry a client's qtype; the markers below have their own kind
/// (and qtype 0), so no qtype a client sends (0 and 65535 included) can reach one.
pub const DNS_KIND_SHIFT: u32 = 24;
/// `block << 8 | generation`, without the kind bits.
pub const DNS_TAG_MASK: u32 = (1 << DNS_KIND_SHIFT) - 1;
/// The answer for (name, qtype, qclass) as asked.
pub const DNS_KIND_ANSWER: u32 = 0;
/// The answer for any qtype of an existing name without its own entry.
pub const DNS_KIND_OTHER: u32 = 1 << DNS_KIND_SHIFT;
/// A zone apex or delegation point (the walk up the name finds it).
pub const DNS_KIND_ZONE: u32 = 2 << DNS_KIND_SHIFT;
/// `DnsAnswer::action`: send this answer.
pub const DNS_ACTION_ANSWER: u16 = 1;
/// `DnsAnswer::action`: the server must answer (delegation, wildcard zone).
pub const DNS_ACTION_PASS: u16 = 2;
/// What the fast path advertises and the biggest UDP answer it sends.
pub const DNS_EDNS_UDP_SIZE: u16 = 1232;

/// Key of DNS_TABLE: the question, with the name as a keyed 128-bit hash (see
/// [`name_hash`]) so a key is 24 bytes whatever the name's length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsKey {
    /// `kind | block << 8 | generation` (see DNS_KIND_SHIFT): a reload writes a new
    /// generation, then flips it.
    pub tag: u32,
    pub qtype: u16,
    pub qclass: u16,
    pub name: [u64; 2],
}

/// Value of DNS_TABLE: one answer compiled from the server's own response. The bytes
/// after the question live in a tail map, shared by every answer with the same bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    pub action: u16,
    /// Response header flags (QR, AA, rcode); XDP adds the query's RD and TC. An answer
    /// too long for any UDP response is stored as its truncated form: TC already set,
    /// no records, no tail (as the server sends it: AA and rcode kept).
    pub flags: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
    pub tail_len: u16,
    /// Ones'-complement sum of the tail as 16-bit big-endian words from an even offset.
    pub tail_csum: u32,
    /// Size class and index of the tail (see DNS_TAIL_CLASS_SHIFT); unused when tail_len is 0.
    pub tail_ref: u32,
}

/// Key of the tail maps: a tail belongs to one block's generation, like the answers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsTailKey {
    pub tag: u32,
    pub index: u32,
}

/// Key of the name hash for one block's generation (DNS_SEEDS index = tag); chosen at
/// random by each install, so no one outside can aim a name at another name's hash.
pub type DnsSeed = [u64; 2];

/// Multipliers of the two hash lanes (odd, so each step is a bijection of its lane).
const HASH_MUL: [u64; 2] = [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f];

/// ASCII-lowercases the eight bytes of `w` at once (bytes >= 0x80 are left alone, as
/// DNS compares names: RFC 4343).
#[inline(always)]
pub const fn name_word_lower(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let heptets = w & LOW7;
    // High bit of each byte: its low 7 bits >= 'A' (0x41), and >= '[' (0x5b, past 'Z').
    let from_a = heptets + 0x3f3f_3f3f_3f3f_3f3f;
    let past_z = heptets + 0x2525_2525_2525_2525;
    let upper = from_a & !past_z & !w & HIGH;
    w | (upper >> 2)
}

/// One 8-byte word of a name (little-endian, already lowercased, zero-padded) into the
/// hash state. A name is hashed a word at a time from its *end*: first the whole words
/// ending at its last byte, last to first, then the partial word left at its start. So
/// every suffix (each enclosing zone) shares the name's states for its whole words, and
/// the XDP side gets any suffix's key from one pass plus one step.
#[inline(always)]
pub fn name_hash_word(h: [u64; 2], w: u64) -> [u64; 2] {
    let mut a = (h[0] ^ w).wrapping_mul(HASH_MUL[0]);
    a ^= a >> 32;
    let mut c = (h[1] ^ w.rotate_left(29)).wrapping_mul(HASH_MUL[1]);
    c ^= c >> 29;
    [a, c]
}

/// The `len` bytes of `name` at `at` as a little-endian word, zero-padded (len <= 8).
pub fn name_word(name: &[u8], at: usize, len: usize) -> u64 {
    let mut b = [0u8; 8];
    b[..len].copy_from_slice(&name[at..at + len]);
    u64::from_le_bytes(b)
}

/// The key of a name of `len` bytes whose words produced state `h`.
#[inline(always)]
pub fn name_hash_finish(h: [u64; 2], len: usize) -> [u64; 2] {
    let fmix = |mut k: u64| {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    };
    let a = fmix(h[0] ^ len as u64);
    let c = fmix(h[1] ^ (len as u64) << 32);
    [a ^ c.rotate_left(17), c ^ a.rotate_left(43)]
}

/// The DNS_TABLE name key of a wire-format name under `seed` (ASCII case ignored).
pub fn name_hash(seed: DnsSeed, name: &[u8]) -> [u64; 2] {
    let len = name.len();
    let mut h = seed;
    for k in 0..len / 8 {
        h = name_hash_word(h, name_word_lower(name_word(name, len - 8 * (k + 1), 8)));
    }
    if len % 8 != 0 {
        h = name_hash_word(h, name_word_lower(name_word(name, 0, len % 8)));
    }
    name_hash_finish(h, len)
}

/// Per-block settings in DNS_BLOCKS (index = block).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct DnsBlock {
    /// Generation of this block's live DNS_TABLE entries.
    pub generation: u32,
    /// 1 when XDP may answer; 0 passes every query to the server.
    pub fast_path: u32,
    /// Nanoseconds of credit one response costs (1e9 / rate); 0 disables rate limiting.
    pub rrl_cost_ns: u64,
}

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

/// The client prefix RRL counts a source address under (/24 for IPv4, /56 for IPv6),
/// in VipKey form (IPv4 v4-mapped).
#[inline(always)]
pub fn rrl_prefix(src: [u8; 16], v6: bool) -> [u8; 16] {
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
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
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
    let word = |at: usize| {
        let mut w = 0u64;
        let mut i = 0;
        while i < 8 {
            w |= (prefix[at + i] as u64) << (8 * i);
            i += 1;
        }
        w
    };
    let (k0, k1) = (secret[0], secret[1]);
    let mut v = [k0 ^ 0x736f_6d65_7073_6575, k1 ^ 0x646f_7261_6e64_6f6d, k0 ^ 0x6c79_6765_6e65_7261, k1 ^ 0x7465_6462_7974_6573];
    for m in [word(0), word(8), 16u64 << 56] {
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    ((v[0] ^ v[1] ^ v[2] ^ v[3]) as u32) & (DNS_RRL_BUCKETS - 1)
}

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Builds the v4-mapped form used in [`VipKey::addr`].
pub const fn v4_mapped(octets: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3]]
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are repr(C) integers and arrays with no implicit padding.
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::VipKey {}
    unsafe impl aya::Pod for super::VipValue {}
    unsafe impl aya::Pod for super::VipTraffic {}
    unsafe impl aya::Pod for super::DnsKey {}
    unsafe impl aya::Pod for super::DnsAnswer {}
    unsafe impl aya::Pod for super::DnsBlock {}
    unsafe impl aya::Pod for super::DnsTailKey {}
    unsafe impl aya::Pod for super::LbService {}
    unsafe impl aya::Pod for super::HttpKey {}
    unsafe impl aya::Pod for super::HttpResponse {}
    unsafe impl aya::Pod for super::LbBackend {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::LbStats {}
    unsafe impl bytemuck::Zeroable for super::Counters {}
    unsafe impl bytemuck::Pod for super::Counters {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_lowercase_ascii_only() {
        let w = name_word(b"\x07ExAmPlE@[`{", 0, 8);
        assert_eq!(name_word_lower(w).to_le_bytes(), *b"\x07example");
        let w = name_word(b"@[`{\xc0\xdaZa", 0, 8);
        assert_eq!(name_word_lower(w).to_le_bytes(), *b"@[`{\xc0\xdaza");
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b; 8]);
            assert_eq!(name_word_lower(w), u64::from_le_bytes([b.to_ascii_lowercase(); 8]), "byte {b:#x}");
        }
    }

    #[test]
    fn suffix_keys_come_from_the_names_states_plus_one_step() {
        // What the XDP side does: one pass over the whole words from the end, keeping
        // the state after each, then any suffix = those states + its partial word.
        let seed = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
        let name = b"\x05stuff\x03www\x0dsome-examples\x03com\x00";
        let len = name.len();
        let mut states = vec![seed];
        for k in 0..len / 8 {
            let h = name_hash_word(states[k], name_word_lower(name_word(name, len - 8 * (k + 1), 8)));
            states.push(h);
        }
        for o in 0..len {
            let n = len - o;
            let mut h = states[n / 8];
            if n % 8 != 0 {
                h = name_hash_word(h, name_word_lower(name_word(name, o, n % 8)));
            }
            assert_eq!(name_hash_finish(h, n), name_hash(seed, &name[o..]), "suffix at {o}");
        }
    }

    #[test]
    fn name_hash_ignores_ascii_case_and_sees_length() {
        let seed = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
        assert_eq!(name_hash(seed, b"\x03WWW\x07Example\x03COM\x00"), name_hash(seed, b"\x03www\x07example\x03com\x00"));
        // Zero padding must not make a name equal to itself with trailing zero bytes.
        assert_ne!(name_hash(seed, b"\x01a\x00"), name_hash(seed, b"\x01a\x00\x00"));
        assert_ne!(name_hash(seed, b"\x03www\x07example\x03com\x00"), name_hash(seed, b"\x07example\x03com\x00"));
    }

    #[test]
    fn rrl_buckets_spread_prefixes_and_depend_on_the_secret() {
        let v4 = |a: u8, b: u8, c: u8, d: u8| rrl_prefix(v4_mapped([a, b, c, d]), false);
        // One /24 is one client; /56 for IPv6.
        assert_eq!(v4(192, 0, 2, 1), v4(192, 0, 2, 200));
        let v6 = |last7: u8, low: u8| {
            let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, last7, 0, 0, 0, 0, 0, 0, 0, 0, low];
            a[8] = low;
            rrl_prefix(a, true)
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

    #[test]
    fn hashes_differ_by_name_and_by_seed() {
        let seed = [1, 2];
        let names: Vec<Vec<u8>> = (0..20000u32)
            .map(|i| {
                let l = format!("n{i}");
                let mut n = vec![l.len() as u8];
                n.extend_from_slice(l.as_bytes());
                n.extend_from_slice(b"\x07example\x00");
                n
            })
            .chain([b"\x00".to_vec(), b"\x01a\x00".to_vec(), b"\x01b\x00".to_vec(), b"\x02aa\x00".to_vec()])
            .collect();
        let keys: std::collections::HashSet<[u64; 2]> = names.iter().map(|n| name_hash(seed, n)).collect();
        assert_eq!(keys.len(), names.len());
        assert_ne!(name_hash([1, 2], b"\x01a\x00"), name_hash([1, 3], b"\x01a\x00"));
        assert_ne!(name_hash([1, 2], b"\x01a\x00"), name_hash([0, 2], b"\x01a\x00"));
    }
}
