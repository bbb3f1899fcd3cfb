//! The controller's DNS side at run time: per `[[dns]]` block, the authoritative server
//! on the block's VIPs and the block's fast-path table in the data path. Reloads are
//! prepared completely (zones parsed, tables compiled) before anything is swapped.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Result;
use arc_swap::ArcSwap;
use log::{info, warn};
use tokio::sync::watch;

use super::{
    Responder, bind_all, load_responder, serve_bound,
    table::{self, BlockSettings, Compiled, DnsMaps},
};
use crate::config::{Config, DnsBlock};

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
    for block in &config.dns {
        let responder = match load_responder(&block.zones, &block.zone_limits, &config.pop.name) {
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

struct Running {
    vips: Vec<std::net::IpAddr>,
    responder: Arc<ArcSwap<Responder>>,
    shutdown: watch::Sender<bool>,
}

pub struct DnsRuntime {
    maps: DnsMaps,
    running: Vec<Running>,
}

impl DnsRuntime {
    pub fn new(maps: DnsMaps) -> DnsRuntime {
        DnsRuntime { maps, running: Vec::new() }
    }

    /// Applies prepared blocks: tables first (atomic per block), then the servers'
    /// answers; servers whose VIPs changed are re-bound. Call inside the tokio runtime.
    pub fn apply(&mut self, prepared: Vec<Prepared>) -> Result<()> {
        let count = prepared.len();
        for (i, mut p) in prepared.into_iter().enumerate() {
            let settings = BlockSettings { fast_path: p.block.fast_path, rate_limit: p.block.rate_limit };
            let installed = self.maps.install(i as u32, &mut p.table, settings)?;
            info!(
                "dns block {i} ({}): {} zone(s), {} fast-path answers sharing {} distinct tails (generation {}){}",
                p.block.vips.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
                p.responder.zones().zones().len(),
                installed.entries,
                installed.tails,
                installed.generation,
                if installed.too_long > 0 {
                    format!(", {} answers too long for XDP left to the server", installed.too_long)
                } else {
                    String::new()
                }
            );
            match self.running.get(i) {
                Some(r) if r.vips == p.block.vips => r.responder.store(Arc::new(p.responder)),
                _ => {
                    if let Some(old) = self.running.get(i) {
                        let _ = old.shutdown.send(true);
                    }
                    let addrs: Vec<SocketAddr> = p.block.vips.iter().map(|&ip| SocketAddr::new(ip, 53)).collect();
                    let listeners = bind_all(&addrs)?;
                    let responder = Arc::new(ArcSwap::from_pointee(p.responder));
                    let (tx, rx) = watch::channel(false);
                    tokio::spawn(serve_bound(responder.clone(), listeners, rx));
                    let r = Running { vips: p.block.vips.clone(), responder, shutdown: tx };
                    if i < self.running.len() {
                        self.running[i] = r;
                    } else {
                        self.running.push(r);
                    }
                }
            }
        }
        for r in self.running.drain(count..) {
            let _ = r.shutdown.send(true);
        }
        if let Err(e) = self.maps.retire_from(count as u32) {
            warn!("could not clear retired DNS blocks: {e:#}");
        }
        release_freed_memory();
        Ok(())
    }

    /// The block's server answering its own probe: the SOA of its first zone, in
    /// process, with the responder the server uses right now.
    pub fn self_check(&self, block: usize) -> Result<(), String> {
        let r = self.running.get(block).ok_or("not running")?;
        let responder = r.responder.load();
        let zone = responder.zones().zones().first().ok_or("no zone")?;
        let mut q = vec![0x70, 0x6f, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(zone.apex());
        q.extend_from_slice(&[0, 6, 0, 1]);
        let a = responder.respond(&q, super::Transport::Udp).ok_or("no answer")?;
        if a.len() < 12 || a[3] & 0x0f != 0 || u16::from_be_bytes([a[6], a[7]]) == 0 {
            return Err(format!("SOA probe of {} failed", zone.apex_text()));
        }
        Ok(())
    }

    pub fn shutdown(&mut self) {
        for r in self.running.drain(..) {
            let _ = r.shutdown.send(true);
        }
    }
}
