//! Typed handles of the pinned maps that are read from outside the loaded object: the
//! counters `pop stats`/`pop top` and Prometheus show. Opened once, by the CLI for one
//! command or by the controller for its whole run, never per read.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuHashMap};
use pop_common::{Counters, LbBackend, LbStats, RttHist, VipKey, VipTraffic, VipValue};

use super::loader::Pins;

/// Opens one pinned map, naming the pin in the error.
pub fn open_pinned(path: &Path) -> Result<MapData> {
    MapData::from_pin(path).with_context(|| format!("opening the pinned map {}", path.display()))
}

/// The read side of the data path's maps, pinned under `pop.bpffs_dir`.
pub struct PinnedMaps {
    /// Per-CPU data-path counters (one `Counters` value).
    pub counters: PerCpuArray<MapData, Counters>,
    /// The VIP table: each key's counter slot in `vip_stats`.
    pub vips: HashMap<MapData, VipKey, VipValue>,
    /// Per-CPU packets and bytes per VIP key, at the key's slot.
    pub vip_stats: PerCpuArray<MapData, VipTraffic>,
    /// Per-CPU sampled packets per client prefix (IPv4-mapped /24 or /56).
    pub top_prefixes: PerCpuHashMap<MapData, [u8; 16], u64>,
    /// Per-CPU totals per service slot.
    pub lb_service_stats: PerCpuArray<MapData, LbStats>,
    /// Per-CPU totals per backend id.
    pub lb_backend_stats: PerCpuArray<MapData, LbStats>,
    /// The backend table (address, service, state) by backend id.
    pub lb_backends: Array<MapData, LbBackend>,
    /// Per-CPU requests answered per HTTP route slot.
    pub http_route_stats: PerCpuArray<MapData, u64>,
    /// Per-CPU client round trips per VIP key; None under a data path pinned by a
    /// build without them (until the controller loads this build's object).
    pub client_rtt: Option<PerCpuHashMap<MapData, VipKey, RttHist>>,
    /// Per-CPU sampled client round trips per client prefix; None as `client_rtt`.
    pub client_rtt_prefixes: Option<PerCpuHashMap<MapData, [u8; 16], RttHist>>,
}

impl PinnedMaps {
    /// Opens every handle, or says that no data path is pinned at `bpffs_dir`.
    pub fn open(bpffs_dir: &Path) -> Result<PinnedMaps> {
        let pins = Pins::new(bpffs_dir);
        let counters = pins.map(pop_common::MAP_COUNTERS);
        if !counters.exists() {
            bail!("no pop data path is pinned at {} (no {}): start it with `pop run`", bpffs_dir.display(), counters.display());
        }
        let open = |name: &str| -> Result<Map> {
            let path = pins.map(name);
            let data = open_pinned(&path)?;
            Map::from_map_data(data).with_context(|| format!("reading the type of {}", path.display()))
        };
        Ok(PinnedMaps {
            counters: PerCpuArray::try_from(open(pop_common::MAP_COUNTERS)?)?,
            vips: HashMap::try_from(open(pop_common::MAP_VIPS)?)?,
            vip_stats: PerCpuArray::try_from(open(pop_common::MAP_VIP_STATS)?)?,
            top_prefixes: PerCpuHashMap::try_from(open(pop_common::MAP_TOP_PREFIXES)?)?,
            lb_service_stats: PerCpuArray::try_from(open(pop_common::MAP_LB_SERVICE_STATS)?)?,
            lb_backend_stats: PerCpuArray::try_from(open(pop_common::MAP_LB_BACKEND_STATS)?)?,
            lb_backends: Array::try_from(open(pop_common::MAP_LB_BACKENDS)?)?,
            http_route_stats: PerCpuArray::try_from(open(pop_common::MAP_HTTP_ROUTE_STATS)?)?,
            client_rtt: match pins.map(pop_common::MAP_CLIENT_RTT).exists() {
                true => Some(PerCpuHashMap::try_from(open(pop_common::MAP_CLIENT_RTT)?)?),
                false => None,
            },
            client_rtt_prefixes: match pins.map(pop_common::MAP_CLIENT_RTT_PREFIXES).exists() {
                true => Some(PerCpuHashMap::try_from(open(pop_common::MAP_CLIENT_RTT_PREFIXES)?)?),
                false => None,
            },
        })
    }
}
