//! Services and backends in the data path.
//!
//! Backend ids index LB_BACKENDS and are what the connection table stores, so they are
//! kept stable across reloads and controller restarts (recovered from the pinned map).
//! A backend that leaves the config is marked DOWN, never deleted at once: its flows
//! then re-hash to a live backend instead of going nowhere.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{SocketAddr, UdpSocket},
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::maps::{Array, MapData};
use log::info;
use pop_common::{BACKEND_DOWN, BACKEND_LIVE, BACKEND_UNUSED, LB_MAX_BACKENDS, LB_MAX_SERVICES, LbBackend, LbService};

use super::maglev::{self, MaglevBackend};
use crate::{
    config::{Config, Service},
    datapath::undo::ArrayUndo,
    health::Board,
};

pub use crate::addr::{mapped, unmapped};

/// The health-independent part of a backend's state the controller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// In the Maglev table (weight > 0).
    Live,
    /// Keeps its flows, no new ones (weight 0, drained or down in later issues).
    NoNewFlows,
}

/// What an apply will write for the load balancer (see [`LbRuntime::plan`]).
pub struct LbPlan {
    /// (service index, address) -> backend id, once committed.
    ids: HashMap<(u32, [u8; 16]), u32>,
    /// Backend entries to write at commit.
    backends: Vec<(u32, LbBackend)>,
    services: Vec<ServicePlan>,
    /// Services whose tables could not be planned, one message each.
    pub failed: Vec<String>,
}

#[derive(Clone)]
struct ServicePlan {
    index: u32,
    /// LB_SERVICES[index] after the flip.
    entry: LbService,
    /// (first LB_MAGLEV slot of an idle half, its table).
    slots: Vec<(u32, Vec<u32>)>,
    /// The log line once live.
    summary: Option<String>,
}

/// What a load-balancer commit overwrote.
pub struct LbUndo {
    services: ArrayUndo<LbService>,
    backends: ArrayUndo<LbBackend>,
}

impl Default for LbUndo {
    fn default() -> Self {
        LbUndo { services: ArrayUndo::new(pop_common::MAP_LB_SERVICES), backends: ArrayUndo::new(pop_common::MAP_LB_BACKENDS) }
    }
}

pub struct LbRuntime {
    services: Array<MapData, LbService>,
    maglev: Array<MapData, u32>,
    backends: Array<MapData, LbBackend>,
    /// (service index, address) -> backend id.
    ids: HashMap<(u32, [u8; 16]), u32>,
}

impl LbRuntime {
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<LbRuntime> {
        let take = |ebpf: &mut aya::Ebpf, name: &str| ebpf.take_map(name).ok_or_else(|| anyhow!("map {name} missing"));
        let services = Array::try_from(take(ebpf, pop_common::MAP_LB_SERVICES)?)?;
        let maglev = Array::try_from(take(ebpf, pop_common::MAP_LB_MAGLEV)?)?;
        let backends: Array<MapData, LbBackend> = Array::try_from(take(ebpf, pop_common::MAP_LB_BACKENDS)?)?;
        // Recover the ids a previous controller gave out, so pinned flows keep meaning.
        let mut ids = HashMap::new();
        for id in 0..LB_MAX_BACKENDS {
            let b = backends.get(&id, 0)?;
            if b.state != BACKEND_UNUSED {
                ids.insert((b.service, b.addr), id);
            }
        }
        Ok(LbRuntime { services, maglev, backends, ids })
    }

    /// Works out what `config` and `health` ask of the maps, reading but writing
    /// nothing: backend ids (stable ones kept), backend states, and per service the
    /// Maglev tables for its idle halves and the entry that flips to them. Every
    /// service is planned; those that cannot be are listed in [`LbPlan::failed`].
    pub fn plan(&self, config: &Config, health: &Board) -> Result<LbPlan> {
        let mut ids = self.ids.clone();
        let mut keep = HashSet::new();
        let mut backends = Vec::new();
        let mut services = Vec::new();
        let mut failed = Vec::new();
        for (i, svc) in config.services.iter().enumerate() {
            let i = i as u32;
            let mut members = Vec::new();
            let mut svc_backends = Vec::new();
            for b in &svc.backends {
                let addr = mapped(b.address);
                let id = self.id_for(&mut ids, i, addr, &keep)?;
                keep.insert(id);
                let up = health.is_up(&svc.name, b.address);
                let takes_new = up && b.weight > 0 && !health.is_drained(&svc.name, b.address);
                let state = if !up {
                    BACKEND_DOWN
                } else if takes_new {
                    BACKEND_LIVE
                } else {
                    pop_common::BACKEND_DRAIN
                };
                svc_backends.push((id, LbBackend { addr, state, service: i }));
                members.push((b, addr, id, takes_new));
            }
            match self.plan_tables(i, svc, &members) {
                Ok(p) => {
                    backends.extend(svc_backends);
                    services.push(p);
                }
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        // Backends no longer configured: DOWN, so their flows move to live backends.
        for (&(svc, addr), &id) in &ids {
            if !keep.contains(&id) && self.backends.get(&id, 0)?.state != BACKEND_DOWN {
                backends.push((id, LbBackend { addr, state: BACKEND_DOWN, service: svc }));
            }
        }
        ids.retain(|_, id| keep.contains(id));
        for i in config.services.len() as u32..LB_MAX_SERVICES {
            if self.services.get(&i, 0)? != LbService::default() {
                services.push(ServicePlan { index: i, entry: LbService::default(), slots: Vec::new(), summary: None });
            }
        }
        Ok(LbPlan { ids, backends, services, failed })
    }

    /// Writes each planned service's tables into its idle halves: invisible to the data
    /// path until [`LbRuntime::commit`] flips the service entries.
    /// `fault` is the test hook: fail after the first slot written.
    pub fn stage(&mut self, plan: &LbPlan, fault: bool) -> Result<()> {
        for s in &plan.services {
            for (base, table) in &s.slots {
                for (slot, id) in table.iter().enumerate() {
                    self.maglev.set(base + slot as u32, *id, 0).with_context(|| format!("writing Maglev slot {slot} of service {}", s.index))?;
                    if fault {
                        bail!("injected fault after writing idle Maglev slot {slot} of service {}", s.index);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes backend states, then flips every service entry, recording what each
    /// write replaced in `undo`. `fault` is the test hook: fail after the first flip.
    pub fn commit(&mut self, plan: &LbPlan, undo: &mut LbUndo, fault: bool) -> Result<()> {
        for &(id, b) in &plan.backends {
            undo.backends.set(&mut self.backends, id, b)?;
        }
        for s in &plan.services {
            undo.services.set(&mut self.services, s.index, s.entry)?;
            if fault {
                bail!("injected fault after flipping service {}", s.index);
            }
        }
        Ok(())
    }

    /// Undoes a [`LbRuntime::commit`], entries first (back to the old halves).
    pub fn rollback(&mut self, undo: &mut LbUndo) -> Vec<String> {
        let mut failed = undo.services.restore(&mut self.services);
        failed.extend(undo.backends.restore(&mut self.backends));
        failed
    }

    /// After a commit: the plan's backend ids are the ones in use.
    pub fn finish(&mut self, plan: LbPlan, config: &Config) {
        for s in &plan.services {
            if let Some(line) = &s.summary {
                info!("{line}");
            }
        }
        self.ids = plan.ids;
        prime_neighbours(config);
    }

    /// Applies a health or drain change under the running config. Unlike a config
    /// apply, one service failing does not hold back the others: each service is
    /// staged and flipped on its own, and every failure is returned.
    pub fn apply_health(&mut self, config: &Config, health: &Board) -> Result<(), Vec<String>> {
        let plan = self.plan(config, health).map_err(|e| vec![format!("{e:#}")])?;
        let mut failed = plan.failed.clone();
        for s in &plan.services {
            let mine: Vec<(u32, LbBackend)> = plan.backends.iter().filter(|(_, b)| b.service == s.index).copied().collect();
            let one = LbPlan { ids: HashMap::new(), backends: mine, services: vec![s.clone()], failed: Vec::new() };
            let mut undo = LbUndo::default();
            if let Err(e) = self.stage(&one, false).and_then(|()| self.commit(&one, &mut undo, false)) {
                let mut why = format!("{e:#}");
                for r in self.rollback(&mut undo) {
                    why += &format!("; {r}");
                }
                failed.push(why);
            }
        }
        // Backends of services no longer configured (or whose service failed: those
        // keep what they had).
        let services: HashSet<u32> = plan.services.iter().map(|s| s.index).collect();
        for &(id, b) in plan.backends.iter().filter(|(_, b)| !services.contains(&b.service)) {
            if let Err(e) = self.backends.set(id, b, 0) {
                failed.push(format!("marking backend {id} down: {e}"));
            }
        }
        self.ids = plan.ids;
        prime_neighbours(config);
        if failed.is_empty() { Ok(()) } else { Err(failed) }
    }

    fn id_for(&self, ids: &mut HashMap<(u32, [u8; 16]), u32>, service: u32, addr: [u8; 16], taken: &HashSet<u32>) -> Result<u32> {
        if let Some(&id) = ids.get(&(service, addr)) {
            return Ok(id);
        }
        let used: HashSet<u32> = ids.values().copied().chain(taken.iter().copied()).collect();
        // Prefer never-used ids; then ids of backends that are gone.
        let mut down = None;
        for id in 0..LB_MAX_BACKENDS {
            if used.contains(&id) {
                continue;
            }
            let b = self.backends.get(&id, 0)?;
            if b.state == BACKEND_UNUSED {
                ids.insert((service, addr), id);
                return Ok(id);
            }
            down.get_or_insert(id);
        }
        let id = down.ok_or_else(|| anyhow!("no free backend id (at most {LB_MAX_BACKENDS})"))?;
        ids.insert((service, addr), id);
        Ok(id)
    }

    /// One Maglev table per address family (a packet keeps its family through IPIP),
    /// each for the idle half; the service entry names both halves at once.
    fn plan_tables(&self, i: u32, svc: &Service, members: &[(&crate::config::Backend, [u8; 16], u32, bool)]) -> Result<ServicePlan> {
        let current = self.services.get(&i, 0)?;
        let mut next = current;
        let mut slots = Vec::new();
        let mut table = Vec::new();
        for v6 in [false, true] {
            let fam = v6 as usize;
            let live: Vec<MaglevBackend> = members
                .iter()
                .filter(|(b, _, _, takes_new)| *takes_new && b.address.is_ipv6() == v6)
                .map(|(b, addr, id, _)| MaglevBackend { key: addr, id: *id, weight: b.weight })
                .collect();
            if live.is_empty() {
                next.table_size[fam] = 0;
                continue;
            }
            let t = maglev::build(&live, svc.table_size).map_err(|e| anyhow!("service {:?}: {e}", svc.name))?;
            let half = if current.table_size[fam] == 0 { current.half[fam] } else { current.half[fam] ^ 1 };
            next.table_size[fam] = svc.table_size;
            next.half[fam] = half;
            table.extend(t.iter().copied());
            slots.push((pop_common::maglev_base(i, v6, half), t));
        }
        let summary = (!table.is_empty()).then(|| {
            let taking_new = members.iter().filter(|m| m.3).count();
            let mut share: BTreeMap<u32, usize> = BTreeMap::new();
            for id in &table {
                *share.entry(*id).or_default() += 1;
            }
            format!(
                "service {:?}: {} backend(s) in {}-slot Maglev tables ({}; shares within each family)",
                svc.name,
                taking_new,
                svc.table_size,
                members
                    .iter()
                    .map(|(b, _, id, _)| format!("{} {:.1}%", b.address, share.get(id).copied().unwrap_or(0) as f64 * 100.0 / svc.table_size as f64))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        Ok(ServicePlan { index: i, entry: next, slots, summary })
    }

    /// (address, state, id) of every backend id in use, for `pop stats`.
    pub fn read_backends(backends: &Array<MapData, LbBackend>) -> Result<Vec<(u32, LbBackend)>> {
        let mut out = Vec::new();
        for id in 0..LB_MAX_BACKENDS {
            let b = backends.get(&id, 0)?;
            if b.state != BACKEND_UNUSED {
                out.push((id, b));
            }
        }
        Ok(out)
    }
}

/// bpf_fib_lookup only finds a next hop whose neighbour entry is resolved; it does not
/// resolve one itself. One datagram to the discard port makes the kernel resolve each
/// backend's next hop (health probes keep it fresh later).
pub fn prime_neighbours(config: &Config) {
    for svc in &config.services {
        for b in &svc.backends {
            let bind = if b.address.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
            if let Ok(sock) = UdpSocket::bind(bind) {
                let _ = sock.send_to(b"pop: resolving next hop", SocketAddr::new(b.address, 9));
            }
        }
    }
}

/// Checks that IP forwarding is on where the services need it: bpf_fib_lookup refuses
/// to route (BPF_FIB_LKUP_RET_FWD_DISABLED) on interfaces without it.
pub fn check_forwarding(config: &Config) -> Result<()> {
    let need_v4 = config.services.iter().any(|s| s.vips.iter().any(|v| v.is_ipv4()));
    let need_v6 = config.services.iter().any(|s| s.vips.iter().any(|v| v.is_ipv6()));
    for iface in &config.interfaces {
        for (need, path, key) in [
            (need_v4, format!("/proc/sys/net/ipv4/conf/{}/forwarding", iface.name), format!("net.ipv4.conf.{}.forwarding", iface.name)),
            (need_v6, format!("/proc/sys/net/ipv6/conf/{}/forwarding", iface.name), format!("net.ipv6.conf.{}.forwarding", iface.name)),
        ] {
            if need && std::fs::read_to_string(&path).map(|v| v.trim() != "1").unwrap_or(true) {
                bail!(
                    "{}: load-balanced services need IP forwarding on {:?} (the XDP program's route lookup \
                     honours it): sysctl -w {key}=1",
                    config.error_at(iface.line, "").to_string().trim_end_matches(": "),
                    iface.name
                );
            }
        }
    }
    Ok(())
}
