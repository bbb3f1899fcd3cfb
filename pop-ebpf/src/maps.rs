//! Every map the XDP program uses, one purpose line each. Maps declared `pinned` live
//! under the controller's bpffs directory so counters and tables survive a restart.

use aya_ebpf::{
    bindings::bpf_fib_lookup as FibParams,
    macros::map,
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap},
};
use pop_common::{
    Counters, DNS_BLOCKS_MAX, DNS_LABELS_MAX, DNS_RRL_MAX, DNS_TABLE_MAX, DNS_TAIL_MAX, DnsAnswer, DnsBlock, DnsKey, DnsSeed, DnsTailKey, FlowKey,
    FlowValue, HTTP_REQUEST_MAX, HTTP_ROUTES_MAX, HTTP_SITES_MAX, HttpKey, HttpResponse, HttpSiteRoutes, LB_FLOWS_MAX, LB_MAX_BACKENDS,
    LB_MAX_SERVICES, LB_TABLE_MAX, LbBackend, LbService, LbStats, MAX_VIPS, NameFilter, RTT_PREFIXES_MAX, RrlBucket, RttHist, TOP_PREFIXES_MAX,
    VipFilter, VipKey, VipTraffic, VipValue, dns_tail_capacity,
};

/// Per-CPU counter block (one entry): every packet path and drop reason, see `Counter`.
#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<Counters> = PerCpuArray::pinned(1, 0);

/// (VIP address, port, protocol) -> what to do with it; filled by the controller.
#[map(name = "VIPS")]
pub static VIPS: HashMap<VipKey, VipValue> = HashMap::pinned(MAX_VIPS, 0);

/// Every VIP address (any port, protocol) -> VIP_ADDR_* flags: looked up only for
/// packets that miss VIPS, so traffic to a VIP that no handler takes is dropped instead
/// of reaching the host's own services bound to the wildcard address.
#[map(name = "VIP_ADDRS")]
pub static VIP_ADDRS: HashMap<[u8; 16], u32> = HashMap::pinned(MAX_VIPS, 0);

/// Which addresses may be in VIP_ADDRS (see VipFilter): most packets to no VIP are
/// passed on after one array read instead of two hash lookups.
#[map(name = "VIP_FILTER")]
pub static VIP_FILTER: Array<VipFilter> = Array::pinned(1, 0);

/// Packets and bytes per VIP key, at its VipValue::slot (zeroed by the controller
/// before a slot is given to a new key).
#[map(name = "VIP_STATS")]
pub static VIP_STATS: PerCpuArray<VipTraffic> = PerCpuArray::pinned(MAX_VIPS, 0);

/// Packets to VIPs per client prefix (/24, /56) for `pop top`, sampled and scaled (see
/// TOP_PREFIX_SAMPLE): bounded, least recently seen prefixes are evicted.
#[map(name = "TOP_PREFIXES")]
pub static TOP_PREFIXES: LruPerCpuHashMap<[u8; 16], u64> = LruPerCpuHashMap::pinned(TOP_PREFIXES_MAX, 0);

/// Client round trips per VIP key, one connection in RTT_SAMPLE (see `latency`);
/// entries made by the first round trip.
#[map(name = "CLIENT_RTT")]
pub static CLIENT_RTT: PerCpuHashMap<VipKey, RttHist> = PerCpuHashMap::pinned(MAX_VIPS, 0);

/// Client round trips per client prefix (/24, /56), the same sample as CLIENT_RTT, for
/// `pop top`: bounded, least recently seen prefixes are evicted.
#[map(name = "CLIENT_RTT_PREFIXES")]
pub static CLIENT_RTT_PREFIXES: LruPerCpuHashMap<[u8; 16], RttHist> = LruPerCpuHashMap::pinned(RTT_PREFIXES_MAX, 0);

/// Per-CPU scratch of `latency`: the round trip a handler measured, and a fresh
/// histogram to insert (too big for the stack).
#[map(name = "LATENCY_SCRATCH")]
pub static LATENCY_SCRATCH: PerCpuArray<LatencyScratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct LatencyScratch {
    pub rtt_us: u32,
    pub _pad: u32,
    pub fresh: RttHist,
}

/// DNS answers compiled by the controller from its own server's responses; see DnsKey.
/// Sized by `pop.dns_table_size`; memory is taken per entry, not up front.
#[map(name = "DNS_TABLE")]
pub static DNS_TABLE: HashMap<DnsKey, DnsAnswer> = HashMap::pinned(DNS_TABLE_MAX, BPF_F_NO_PREALLOC);

/// Answer bytes up to 64: one copy per distinct tail, shared by every answer using it.
/// Capacities of the tail maps follow the table's (see `dns_tail_capacity`).
#[map(name = "DNS_TAILS_S")]
pub static DNS_TAILS_S: HashMap<DnsTailKey, [u8; 64]> = HashMap::pinned(dns_tail_capacity(DNS_TABLE_MAX)[0], BPF_F_NO_PREALLOC);

/// Answer bytes up to 256.
#[map(name = "DNS_TAILS_M")]
pub static DNS_TAILS_M: HashMap<DnsTailKey, [u8; 256]> = HashMap::pinned(dns_tail_capacity(DNS_TABLE_MAX)[1], BPF_F_NO_PREALLOC);

/// Answer bytes up to DNS_TAIL_MAX: the longest tail a UDP answer can carry.
#[map(name = "DNS_TAILS_L")]
pub static DNS_TAILS_L: HashMap<DnsTailKey, [u8; DNS_TAIL_MAX]> = HashMap::pinned(dns_tail_capacity(DNS_TABLE_MAX)[2], BPF_F_NO_PREALLOC);

/// Name-hash key of each block generation (index = DnsKey::tag), written before the flip.
#[map(name = "DNS_SEEDS")]
pub static DNS_SEEDS: Array<DnsSeed> = Array::pinned(DNS_BLOCKS_MAX * 256, 0);

/// Bitmap of the names DNS_TABLE holds (see pop_common::NameFilter): a name whose bit
/// is clear is not looked up.
#[map(name = "DNS_NAME_FILTER")]
pub static DNS_NAME_FILTER: Array<NameFilter> = Array::pinned(1, 0);

/// Per DNS block: live table generation, fast path on/off, rate-limit cost.
#[map(name = "DNS_BLOCKS")]
pub static DNS_BLOCKS: Array<DnsBlock> = Array::pinned(DNS_BLOCKS_MAX, 0);

/// Response-rate-limit buckets: DNS_RRL_BUCKETS per block, a client prefix's bucket
/// picked by a keyed hash (see `pop_common::rrl_bucket`). Fixed: nothing is evicted.
#[map(name = "DNS_RRL")]
pub static DNS_RRL: Array<RrlBucket> = Array::pinned(DNS_RRL_MAX, 0);

/// The key of that hash, drawn by the XDP program on its first rate-limited query and
/// pinned with the buckets, so a restart keeps every client in its bucket.
#[map(name = "DNS_RRL_SECRET")]
pub static DNS_RRL_SECRET: Array<[u64; 2]> = Array::pinned(1, 0);

/// Per-CPU scratch space: the DNS lookup key and the question name (too big for the stack).
#[map(name = "DNS_SCRATCH")]
pub static DNS_SCRATCH: PerCpuArray<DnsScratch> = PerCpuArray::with_max_entries(1, 0);

/// Words hashed of a question name: 255 bytes at most.
pub const DNS_NAME_WORDS: usize = 32;

#[repr(C, align(8))]
pub struct DnsScratch {
    /// The question name as sent, with slack so a word read at any offset below 256
    /// stays inside.
    pub raw: [u8; DNS_NAME_WORDS * 8 + 8],
    pub key: DnsKey,
    /// Ones'-complement sum of the name's whole words counted from its end (16-bit
    /// little-endian lanes of words read at offsets of the name length's parity).
    pub name_sum: u64,
    /// Name hash state after the name's last k whole words (see pop_common::name_hash):
    /// with one more step it gives the key of any suffix.
    pub states: [[u64; 2]; DNS_NAME_WORDS],
    /// Offset of each label in `raw`, left to right, the root label last.
    pub starts: [u8; DNS_LABELS_MAX],
}

/// Load balancer: per service, the Maglev table size in use and its live half.
#[map(name = "LB_SERVICES")]
pub static LB_SERVICES: Array<LbService> = Array::pinned(LB_MAX_SERVICES, 0);

/// Maglev tables -> backend id: slot i of (service, family, half) at maglev_base(..) + i.
#[map(name = "LB_MAGLEV")]
pub static LB_MAGLEV: Array<u32> = Array::pinned(LB_MAX_SERVICES * 4 * LB_TABLE_MAX, 0);

/// Backend id -> address and state (live, drain, down).
#[map(name = "LB_BACKENDS")]
pub static LB_BACKENDS: Array<LbBackend> = Array::pinned(LB_MAX_BACKENDS, 0);

/// Connection table: 5-tuple -> backend id, so flows stay put when backends change.
/// LRU lists per CPU (Katran's choice too): an insert takes no lock another CPU's
/// inserts contend for; a lookup still finds any CPU's entries.
#[map(name = "LB_FLOWS")]
pub static LB_FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::pinned(LB_FLOWS_MAX, BPF_F_NO_COMMON_LRU);

/// Per CPU: new flows entered in LB_FLOWS in the current second (see `lb::admit`).
#[map(name = "LB_FLOW_RATE")]
pub static LB_FLOW_RATE: PerCpuArray<FlowRate> = PerCpuArray::with_max_entries(1, 0);

/// One CPU's count of connection-table inserts in the second that began at `start_ns`.
#[repr(C)]
pub struct FlowRate {
    pub start_ns: u64,
    pub count: u64,
}

/// Per-CPU scratch: the flow an ICMP error quotes, handed from `lb::icmp_error` to the
/// dispatcher (kept off the verifier's 512-byte stack of that deeper call chain).
#[map(name = "LB_SCRATCH")]
pub static LB_SCRATCH: PerCpuArray<FlowKey> = PerCpuArray::with_max_entries(1, 0);

/// Next hop toward each backend (index = backend id), per CPU: what bpf_fib_lookup
/// last said, re-used for NEXT_HOP_TTL_NS (see `nexthop`). Not pinned: a cache.
#[map(name = "LB_NEXT_HOPS")]
pub static LB_NEXT_HOPS: PerCpuArray<NextHop> = PerCpuArray::with_max_entries(LB_MAX_BACKENDS, 0);

/// Per-CPU scratch: the parameter block of a route lookup (`nexthop::refresh`), off the
/// verifier's 512-byte stack of the forwarding call chain.
#[map(name = "LB_FIB_SCRATCH")]
pub static LB_FIB_SCRATCH: PerCpuArray<FibParams> = PerCpuArray::with_max_entries(1, 0);

/// One cached route lookup toward a backend.
#[repr(C)]
pub struct NextHop {
    /// bpf_ktime_get_ns() of the lookup; 0 = never looked up.
    pub stamp_ns: u64,
    /// The backend address it was for (ids are reused) and the receiving interface.
    pub addr: [u8; 16],
    pub ingress: u32,
    /// Interface the lookup sends out of.
    pub ifindex: u32,
    /// Largest outer packet the lookup accepted: anything larger asks the FIB again,
    /// which answers fragmentation-needed with the path's MTU.
    pub max_len: u32,
    /// Our source address on that path (IPv4 in the first word), network byte order.
    pub src: [u32; 4],
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

/// Per-service packets, bytes, new flows (per CPU).
#[map(name = "LB_SERVICE_STATS")]
pub static LB_SERVICE_STATS: PerCpuArray<LbStats> = PerCpuArray::pinned(LB_MAX_SERVICES, 0);

/// Per-backend packets, bytes, new flows (per CPU).
#[map(name = "LB_BACKEND_STATS")]
pub static LB_BACKEND_STATS: PerCpuArray<LbStats> = PerCpuArray::pinned(LB_MAX_BACKENDS, 0);

/// HTTP responses by (site, host, path), plus each site's default and 400 responses.
#[map(name = "HTTP_ROUTES")]
pub static HTTP_ROUTES: HashMap<HttpKey, HttpResponse> = HashMap::pinned(HTTP_ROUTES_MAX, BPF_F_NO_PREALLOC);

/// Per site, the path lengths its routes have (see HttpSiteRoutes): lookups that
/// cannot match are skipped. Always a superset of what HTTP_ROUTES holds.
#[map(name = "HTTP_SITE_ROUTES")]
pub static HTTP_SITE_ROUTES: Array<HttpSiteRoutes> = Array::pinned(HTTP_SITES_MAX, 0);

/// Requests answered per route (index HttpResponse::route), per CPU.
#[map(name = "HTTP_ROUTE_STATS")]
pub static HTTP_ROUTE_STATS: PerCpuArray<u64> = PerCpuArray::pinned(HTTP_ROUTES_MAX, 0);

/// Per-CPU scratch for the HTTP responder: the request bytes and the lookup key.
#[map(name = "HTTP_SCRATCH")]
pub static HTTP_SCRATCH: PerCpuArray<HttpScratch> = PerCpuArray::with_max_entries(1, 0);

/// The SYN cookie key (see `pop_common::SynCookie`), drawn on the first SYN and pinned,
/// so connections opened before a controller restart still verify after it.
#[map(name = "HTTP_SYN_SECRET")]
pub static HTTP_SYN_SECRET: Array<[u64; 2]> = Array::pinned(1, 0);

#[repr(C)]
pub struct HttpScratch {
    /// State of the request scans. Kept here, not on the stack: the verifier does not
    /// track map memory precisely, so a bpf_loop body is checked once instead of once
    /// per distinct loop position.
    pub scan: HttpScan,
    /// The received segment's IP and TCP headers.
    pub ip4: [u8; 20],
    pub ip6: [u8; 40],
    pub tcp: [u8; 60],
    /// The segment's TCP timestamps (RFC 7323), in the layout every stack sends after
    /// the SYN (NOP, NOP, TS first): TSval, and TSecr (pop's clock echoed back).
    pub ts: SegmentTimestamps,
    /// The verified first segment `http::handle` hands to `http::respond`.
    pub seg: HttpSeg,
    /// The TCP header of `http::respond`'s answer (with room for timestamps).
    pub reply: [u8; 32],
    pub key: HttpKey,
    /// Request bytes, with slack so a bounded copy from any offset stays inside.
    pub req: [u8; HTTP_REQUEST_MAX + 512],
}

/// What an HTTP reply needs of the received segment.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HttpSeg {
    pub ports: [u8; 4],
    pub tcp_len: usize,
    pub payload_len: usize,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

#[repr(C)]
pub struct SegmentTimestamps {
    pub has: u32,
    pub val: u32,
    pub ecr: u32,
}

#[repr(C)]
pub struct HttpScan {
    pub n: u32,
    pub start: u32,
    pub end: u32,
    pub path_end: u32,
    pub found: u32,
    pub pos: u32,
    pub line_start: u32,
    pub in_host: u32,
    pub host_start: u32,
    pub host_len: u32,
    pub done: u32,
    pub dup_host: u32,
    pub parity: u32,
    /// Target bytes `sum_target` adds.
    pub count: u32,
    /// `scan_options`: the SYN's TSval, if `found` has FOUND_TS.
    pub ts: u32,
    pub sum: u64,
}

const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_F_NO_COMMON_LRU: u32 = 2;

/// Headers kept while a frame grows at the front (frame::resize).
#[map(name = "FRAME_SCRATCH")]
pub static FRAME_SCRATCH: PerCpuArray<[u8; 512]> = PerCpuArray::with_max_entries(1, 0);
