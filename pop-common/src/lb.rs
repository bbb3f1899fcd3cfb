//! Load balancer: services, Maglev tables, backends, the connection table.

pub const LB_MAX_SERVICES: u32 = 16;
pub const LB_MAX_BACKENDS: u32 = 1024;
/// Largest Maglev table (a prime). Each service has one table per address family (IPIP
/// keeps the family), each in two halves (live and idle) of this size.
pub const LB_TABLE_MAX: u32 = 65537;
pub const LB_FLOWS_MAX: u32 = 1 << 20;
/// Default `pop.flow_table_rate`: new flows a second each CPU enters in the connection
/// table. Beyond it (a SYN flood) new flows are placed by the Maglev table alone, which
/// gives their later packets the same backend while the table is unchanged, so a flood
/// neither pays a table insert per packet nor evicts the entries of real connections.
/// (Katran's MAX_CONN_RATE does the same.)
pub const FLOW_TABLE_RATE: u32 = 20_000;

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
    /// When the SYN that made this entry passed (µs of bpf_ktime_get_ns, never 0), until
    /// the handshake's ACK records the round trip and clears it; 0 otherwise.
    pub syn_us: u32,
}

/// Packets, bytes and new flows of one service or backend (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbStats {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}
