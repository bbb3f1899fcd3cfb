//! Names of every program and map in the XDP objects, as declared in
//! `pop-ebpf/src/maps.rs` (`pop-ebpf/src/decap.rs` for `pop decap`), so the controller
//! never spells one itself.

/// Name of the XDP program in the object file (its function name).
pub const XDP_PROGRAM: &str = "pop_xdp";

/// Names of the maps, as declared in `pop-ebpf/src/maps.rs`.
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_VIPS: &str = "VIPS";
pub const MAP_DNS_TABLE: &str = "DNS_TABLE";
pub const MAP_DNS_BLOCKS: &str = "DNS_BLOCKS";
pub const MAP_DNS_SEEDS: &str = "DNS_SEEDS";
pub const MAP_DNS_NAME_FILTER: &str = "DNS_NAME_FILTER";
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
pub const MAP_VIP_FILTER: &str = "VIP_FILTER";
pub const MAP_LB_FLOWS: &str = "LB_FLOWS";
pub const MAP_CLIENT_RTT: &str = "CLIENT_RTT";
pub const MAP_CLIENT_RTT_PREFIXES: &str = "CLIENT_RTT_PREFIXES";

/// `pop decap`'s program and maps (pop-ebpf/src/decap.rs).
pub const DECAP_PROGRAM: &str = "pop_decap";
pub const MAP_DECAP_COUNTERS: &str = "DECAP_COUNTERS";
pub const MAP_DECAP_LOCAL: &str = "DECAP_LOCAL";
pub const MAP_DECAP_SOURCES: &str = "DECAP_SOURCES";
pub const MAP_DECAP_CONFIG: &str = "DECAP_CONFIG";
