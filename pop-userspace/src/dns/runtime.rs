//! The controller's DNS side at run time: per `[[dns]]` block, the authoritative server
//! on the block's VIPs and the block's fast-path table in the data path. Reloads are
//! prepared completely (zones parsed, tables compiled) before anything is swapped.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use anyhow::Result;
use arc_swap::ArcSwap;
use log::{info, warn};
use tokio::sync::watch;

use super::{
    Listeners, Responder, bind_all, load_responder, serve_bound,
    table::{self, BlockSettings, Compiled, DnsMaps, Staged},
};
use crate::{
    config::{Config, DnsBlock},
    datapath::undo::ArrayUndo,
};

/// A block loaded and compiled, not yet applied.
pub struct Prepared {
    pub block: DnsBlock,
    pub responder: Responder,
    /// The block's fast-path table, ready to write.
    pub table: Compiled,
}

/// Loads every block's zones and compiles its table. All errors are returned together,
/// one `file:line: message` per line; nothing is touched.
pub fn prepare(config: &Config) -> Result<Vec<Prepared>, String> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, block) in config.dns.iter().enumerate() {
        let sources = super::secondary::zone_sources(config, i);
        let responder = match load_responder(&sources, &block.zone_limits, &config.pop.name) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        // The parser's garbage is hundreds of MB for a large zone; hand it back before
        // the table compiler needs its own.
        release_freed_memory();
        match table::compile(&responder) {
            Ok(table) => out.push(Prepared { block: block.clone(), responder, table }),
            Err(e) => errors.push(format!("compiling the DNS fast-path table: {e:#}")),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors.join("\n")) }
}

/// Hands the heap the zone parser and the table compiler used back to the system: for a
/// large zone that is hundreds of MB the controller would otherwise keep resident.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The server on one VIP (UDP and TCP port 53): the responder of the block it belongs
/// to, swapped in place on reload.
struct Server {
    responder: Arc<ArcSwap<Responder>>,
    shutdown: watch::Sender<bool>,
    /// Whether its sockets are being read (health).
    watch: super::server::SocketWatch,
}

/// A block as served: the responder its servers use.
struct Served {
    responder: Arc<Responder>,
    /// Secondary zones configured for the block (apex text, final dot): each must be
    /// served for the block to count as healthy (one not transferred yet, or expired,
    /// is not).
    secondaries: Vec<String>,
    /// Its VIPs: their servers' sockets must be read for the block to be healthy.
    vips: Vec<IpAddr>,
}

pub struct DnsRuntime {
    /// Shared with the reload task that stages new generations off the controller loop.
    maps: Arc<Mutex<DnsMaps>>,
    /// Deleting the generations the last apply replaced, off the controller loop; the
    /// next stage waits for it.
    cleanup: Option<tokio::task::JoinHandle<()>>,
    /// One server per VIP address, so a VIP that stays keeps its sockets across reloads
    /// and a new one is bound before anything changes.
    servers: BTreeMap<IpAddr, Server>,
    blocks: Vec<Served>,
}

/// The DNS side of an apply, built off to the side: sockets bound for VIPs not yet
/// served, every block's next table generation written but not live.
pub struct DnsStage {
    listeners: Vec<(IpAddr, Listeners)>,
    staged: Vec<Staged>,
    /// DNS_BLOCKS entries of blocks no longer configured, turned off at commit.
    retired: Vec<u32>,
    blocks: Vec<(DnsBlock, Responder)>,
}

/// What a DNS commit changed: block entries flipped or turned off.
pub struct DnsUndo(ArrayUndo<pop_common::DnsBlock>);

impl Default for DnsUndo {
    fn default() -> Self {
        DnsUndo(ArrayUndo::new(pop_common::MAP_DNS_BLOCKS))
    }
}

impl DnsRuntime {
    pub fn new(maps: DnsMaps) -> DnsRuntime {
        DnsRuntime { maps: Arc::new(Mutex::new(maps)), cleanup: None, servers: BTreeMap::new(), blocks: Vec::new() }
    }

    /// The DNS maps, for staging off the controller loop (see [`DnsRuntime::stage`]).
    pub fn maps(&self) -> Arc<Mutex<DnsMaps>> {
        self.maps.clone()
    }

    /// The deletion of replaced generations still running, if any: a new stage must
    /// wait for it (it scans the same blocks).
    pub fn take_cleanup(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.cleanup.take()
    }

    /// Binds UDP and TCP port 53 on every VIP of the staged blocks not served yet.
    /// Nothing that serves now is touched; on failure the new sockets are closed again.
    /// `fault` is the test hook: fail after the first new bind.
    pub fn bind(&self, stage: &mut DnsStage, fault: bool) -> Result<()> {
        for (block, _) in &stage.blocks {
            for &vip in &block.vips {
                if self.servers.contains_key(&vip) || stage.listeners.iter().any(|(v, _)| *v == vip) {
                    continue;
                }
                let bound = bind_all(&[SocketAddr::new(vip, 53)]);
                stage.listeners.push((vip, bound?));
                if fault {
                    anyhow::bail!("injected fault after binding {vip}");
                }
            }
        }
        Ok(())
    }

    /// Writes every block's next table generation without making any live: blocking
    /// work (a million names take seconds), so a reload runs it on a blocking thread.
    /// On failure the generations already written are removed again.
    pub fn stage(maps: &Mutex<DnsMaps>, prepared: Vec<Prepared>) -> Result<DnsStage> {
        let mut maps = maps.lock().unwrap();
        let mut staged = Vec::new();
        let mut blocks = Vec::new();
        for (i, mut p) in prepared.into_iter().enumerate() {
            let settings = BlockSettings { fast_path: p.block.fast_path, rate_limit: p.block.rate_limit };
            match maps.stage(i as u32, &mut p.table, settings) {
                Ok(s) => staged.push(s),
                Err(e) => {
                    for s in staged {
                        if let Err(e) = maps.abort(s) {
                            warn!("removing a staged DNS generation: {e:#}");
                        }
                    }
                    return Err(e.context(format!("dns block {i}")));
                }
            }
            blocks.push((p.block, p.responder));
        }
        let retired = (blocks.len() as u32..pop_common::DNS_BLOCKS_MAX).collect();
        Ok(DnsStage { listeners: Vec::new(), staged, retired, blocks })
    }

    /// Flips every staged generation live and turns retired blocks off, recording each
    /// entry replaced. `fault` is the test hook: fail after the first flip.
    pub fn commit(&mut self, stage: &DnsStage, undo: &mut DnsUndo, fault: bool) -> Result<()> {
        let mut maps = self.maps.lock().unwrap();
        for s in &stage.staged {
            undo.0.set(&mut maps.blocks, s.block, s.value())?;
            if fault {
                anyhow::bail!("injected fault after flipping dns block {}", s.block);
            }
        }
        for &b in &stage.retired {
            let cur = maps.blocks.get(&b, 0)?;
            if cur != pop_common::DnsBlock::default() {
                undo.0.set(&mut maps.blocks, b, pop_common::DnsBlock { generation: cur.generation, ..Default::default() })?;
            }
        }
        Ok(())
    }

    /// Undoes a commit (if any) and removes the staged generations; the new sockets
    /// close when `stage` is dropped.
    pub fn rollback(&mut self, stage: DnsStage, undo: &mut DnsUndo) -> Vec<String> {
        let mut maps = self.maps.lock().unwrap();
        let mut failed = undo.0.restore(&mut maps.blocks);
        for s in stage.staged {
            if let Err(e) = maps.abort(s) {
                failed.push(format!("removing a staged DNS generation: {e:#}"));
            }
        }
        failed
    }

    /// After a commit: old generations deleted, servers given their new answers, new
    /// VIPs served on the sockets bound at staging, VIPs no longer configured stopped.
    /// Call inside the tokio runtime.
    pub fn finish(&mut self, stage: DnsStage) {
        let DnsStage { listeners, staged, retired, blocks } = stage;
        let described: Vec<String> = blocks
            .iter()
            .map(|(b, r)| format!("{} zone(s) on {}", r.zones().zones().len(), b.vips.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")))
            .collect();
        // Deleting the replaced generations is blocking work (a million keys): off the
        // controller loop; the next stage waits for it.
        let maps = self.maps.clone();
        self.cleanup = Some(tokio::task::spawn_blocking(move || {
            let mut maps = maps.lock().unwrap();
            for s in staged {
                let block = s.block;
                match maps.finish(s) {
                    Ok(installed) => info!(
                        "dns block {block} ({}): {} fast-path answers sharing {} distinct tails (generation {}){}",
                        described[block as usize],
                        installed.entries,
                        installed.tails,
                        installed.generation,
                        if installed.too_long > 0 {
                            format!(", {} answers too long for XDP left to the server", installed.too_long)
                        } else {
                            String::new()
                        }
                    ),
                    Err(e) => warn!("dns block {block}: the new answers are live, deleting the old ones failed: {e:#}"),
                }
            }
            if let Some(&first) = retired.first()
                && let Err(e) = maps.retire_from(first)
            {
                warn!("could not clear retired DNS blocks: {e:#}");
            }
            release_freed_memory();
        }));
        let mut listeners: BTreeMap<IpAddr, Listeners> = listeners.into_iter().collect();
        let mut served = Vec::new();
        let mut wanted = std::collections::BTreeSet::new();
        // Responders replaced: a large zone's takes long to free, so not on this thread.
        let mut replaced: Vec<Arc<Responder>> = Vec::new();
        for (block, responder) in blocks {
            let responder = Arc::new(responder);
            for &vip in &block.vips {
                wanted.insert(vip);
                if let Some(server) = self.servers.get(&vip) {
                    replaced.push(server.responder.swap(responder.clone()));
                } else if let Some(l) = listeners.remove(&vip) {
                    let swap = Arc::new(ArcSwap::new(responder.clone()));
                    let (tx, rx) = watch::channel(false);
                    let sockets = l.watch();
                    tokio::spawn(serve_bound(swap.clone(), l, rx));
                    self.servers.insert(vip, Server { responder: swap, shutdown: tx, watch: sockets });
                }
            }
            // Only the configured zones count for health: one member of a catalog not yet
            // transferred (or broken at the primary) must not withdraw the block's VIPs.
            let counted = block.secondaries.iter().filter(|s| !s.catalog && s.member_of.is_none());
            served.push(Served { responder, secondaries: counted.map(|s| s.zone.clone()).collect(), vips: block.vips.clone() });
        }
        self.servers.retain(|vip, s| {
            let keep = wanted.contains(vip);
            if !keep {
                let _ = s.shutdown.send(true);
            }
            keep
        });
        replaced.extend(std::mem::replace(&mut self.blocks, served).into_iter().map(|b| b.responder));
        tokio::task::spawn_blocking(move || drop(replaced));
    }

    /// The block's servers reading their sockets, and answering their own probe: the
    /// SOA of every zone, in process, with the responder the server uses right now.
    pub fn self_check(&self, block: usize) -> Result<(), String> {
        let served = self.blocks.get(block).ok_or("not running")?;
        for vip in &served.vips {
            self.servers.get(vip).ok_or_else(|| format!("no DNS server on {vip}"))?.watch.check()?;
        }
        let responder = &served.responder;
        let zones = responder.zones().zones();
        let norm = |z: &str| z.trim_end_matches('.').to_ascii_lowercase();
        if let Some(missing) = served.secondaries.iter().find(|s| !zones.iter().any(|z| norm(z.apex_text()) == norm(s))) {
            return Err(format!("secondary zone {missing} is not served (not transferred yet, or expired)"));
        }
        if zones.is_empty() {
            return Err("no zone".into());
        }
        for zone in zones {
            let mut q = vec![0x70, 0x6f, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            q.extend_from_slice(zone.apex());
            q.extend_from_slice(&[0, 6, 0, 1]);
            let a = responder.respond(&q, super::Transport::Udp).ok_or("no answer")?;
            if a.len() < 12 || a[3] & 0x0f != 0 || u16::from_be_bytes([a[6], a[7]]) == 0 {
                return Err(format!("SOA probe of {} failed", zone.apex_text()));
            }
        }
        Ok(())
    }

    pub fn shutdown(&mut self) {
        for s in std::mem::take(&mut self.servers).into_values() {
            let _ = s.shutdown.send(true);
        }
    }
}
