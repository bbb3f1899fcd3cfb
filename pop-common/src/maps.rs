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
pub const MAP_HTTP_SITE_ROUTES: &str = "HTTP_SITE_ROUTES";
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
pub const MAP_DNS_RRL: &str = "DNS_RRL";
pub const MAP_DNS_RRL_SECRET: &str = "DNS_RRL_SECRET";
pub const MAP_HTTP_SYN_SECRET: &str = "HTTP_SYN_SECRET";
pub const MAP_LB_FLOW_RATE: &str = "LB_FLOW_RATE";
pub const MAP_LB_NEXT_HOPS: &str = "LB_NEXT_HOPS";
/// Per-CPU scratch space of the data path (not pinned; never read by the controller).
pub const SCRATCH_MAPS: [&str; 6] = ["DNS_SCRATCH", "FRAME_SCRATCH", "HTTP_SCRATCH", "LATENCY_SCRATCH", "LB_FIB_SCRATCH", "LB_SCRATCH"];

/// `pop decap`'s program and maps (pop-ebpf/src/decap.rs).
pub const DECAP_PROGRAM: &str = "pop_decap";
pub const MAP_DECAP_COUNTERS: &str = "DECAP_COUNTERS";
pub const MAP_DECAP_LOCAL: &str = "DECAP_LOCAL";
pub const MAP_DECAP_SOURCES: &str = "DECAP_SOURCES";
pub const MAP_DECAP_CONFIG: &str = "DECAP_CONFIG";

#[cfg(test)]
mod tests {
    /// Every `#[map(name = ...)]` of pop-ebpf has its name here, and every name here
    /// is a map of pop-ebpf: a map renamed on one side fails this, not a lab run.
    #[test]
    fn every_map_of_the_xdp_objects_is_named_here() {
        let here: std::collections::BTreeSet<String> = include_str!("maps.rs")
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .map(String::from)
            .collect();
        let mut there = std::collections::BTreeSet::new();
        for src in [include_str!("../../pop-ebpf/src/maps.rs"), include_str!("../../pop-ebpf/src/decap.rs")] {
            for part in src.split("#[map(name = \"").skip(1) {
                there.insert(part.split('"').next().unwrap().to_string());
            }
        }
        assert_eq!(here.difference(&there).collect::<Vec<_>>(), Vec::<&String>::new(), "named here, not in pop-ebpf");
        assert_eq!(there.difference(&here).collect::<Vec<_>>(), Vec::<&String>::new(), "in pop-ebpf, not named here");
    }
}
