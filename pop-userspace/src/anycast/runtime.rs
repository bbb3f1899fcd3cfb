//! Announcing the PoP's VIPs: once per tick, every VIP's health is the health of every
//! block serving it (a service: at least `min_healthy` backends up; a DNS block: its
//! server answers its own SOA probe; an HTTP site: loaded). An [`Announcer`] per VIP
//! applies rise/fall and the hold time; announcing puts the address on the anycast
//! interface (BIRD `protocol direct` / FRR `redistribute connected` export it),
//! withdrawing removes it. Maintenance (`pop withdraw`) persists in run_dir.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use log::{info, warn};
use serde::Serialize;

use super::{
    announcer::{AnnouncePolicy, Announcer},
    netlink,
};
use crate::{config::Config, dns::runtime::DnsRuntime, health::Board};

#[derive(Debug, Clone, Serialize)]
pub struct VipStatus {
    pub vip: IpAddr,
    pub announced: bool,
    /// Seconds since the Unix epoch when the current state began.
    pub since: u64,
    pub why: String,
}

pub struct Anycast {
    iface: String,
    ifindex: u32,
    policy: AnnouncePolicy,
    vips: BTreeMap<IpAddr, (Announcer, SystemTime)>,
    maintenance: bool,
    maintenance_file: PathBuf,
}

impl Anycast {
    pub async fn new(config: &Config) -> Result<Option<Anycast>> {
        let Some(a) = &config.anycast else { return Ok(None) };
        let ifindex = netlink::interface_index(&a.interface).await.with_context(|| format!("anycast.interface {:?}", a.interface))?;
        let maintenance_file = config.pop.run_dir.join("maintenance");
        let maintenance = maintenance_file.exists();
        if maintenance {
            warn!("in maintenance ({} exists): no VIP will be announced until `pop announce`", maintenance_file.display());
        }
        let policy = AnnouncePolicy { rise: a.rise, fall: a.fall, min_hold: Duration::from_millis(a.hold_ms) };
        Ok(Some(Anycast { iface: a.interface.clone(), ifindex, policy, vips: BTreeMap::new(), maintenance, maintenance_file }))
    }

    /// Health of every VIP in `config`: (healthy, reason when not).
    fn vip_health(config: &Config, board: &Board, dns: &DnsRuntime) -> BTreeMap<IpAddr, (bool, String)> {
        let mut m: BTreeMap<IpAddr, (bool, String)> = BTreeMap::new();
        let mut mark = |vip: IpAddr, ok: bool, why: String| {
            let e = m.entry(vip).or_insert((true, String::new()));
            if !ok && e.0 {
                *e = (false, why);
            }
        };
        for s in &config.services {
            let up = board.up_count(&s.name);
            for &v in &s.vips {
                mark(v, up >= s.min_healthy as usize, format!("service {}: {up} of min {} backends up", s.name, s.min_healthy));
            }
        }
        for (i, b) in config.dns.iter().enumerate() {
            let probe = dns.self_check(i);
            for &v in &b.vips {
                mark(v, probe.is_ok(), format!("dns block {i}: {}", probe.as_ref().err().cloned().unwrap_or_default()));
            }
        }
        for h in &config.http {
            for &v in &h.vips {
                mark(v, true, String::new());
            }
        }
        m
    }

    /// One observation for every VIP; adds or removes addresses whose state changed.
    pub async fn tick(&mut self, config: &Config, board: &Board, dns: &DnsRuntime) {
        let now = Instant::now();
        let health = Self::vip_health(config, board, dns);
        // VIPs no longer configured: withdraw and forget.
        let gone: Vec<IpAddr> = self.vips.keys().filter(|v| !health.contains_key(v)).copied().collect();
        for v in gone {
            if self.vips.remove(&v).is_some_and(|(a, _)| a.announced()) {
                self.set(v, false).await;
            }
        }
        for (vip, (ok, why)) in health {
            let (a, since) = self.vips.entry(vip).or_insert_with(|| {
                let mut a = Announcer::new(self.policy.clone());
                if self.maintenance {
                    a.set_maintenance(true, now);
                }
                (a, SystemTime::now())
            });
            if let Some(up) = a.observe(ok, &why, now) {
                *since = SystemTime::now();
                let reason = a.why().to_string();
                if up {
                    info!("announcing {vip} ({reason})");
                } else {
                    warn!("withdrawing {vip} ({reason})");
                }
                self.set(vip, up).await;
            }
        }
    }

    async fn set(&self, vip: IpAddr, up: bool) {
        let r = if up { netlink::add_address(self.ifindex, vip).await } else { netlink::del_address(self.ifindex, vip).await };
        if let Err(e) = r {
            warn!("{} {vip} on {}: {e:#}", if up { "adding" } else { "removing" }, self.iface);
        }
    }

    /// `pop withdraw` (on) / `pop announce` (off); persists across restarts.
    pub async fn set_maintenance(&mut self, on: bool) -> Result<()> {
        if on {
            std::fs::write(&self.maintenance_file, "withdrawn by `pop withdraw`\n")?;
        } else if self.maintenance_file.exists() {
            std::fs::remove_file(&self.maintenance_file)?;
        }
        self.maintenance = on;
        let now = Instant::now();
        let mut changes = Vec::new();
        for (vip, (a, since)) in self.vips.iter_mut() {
            if let Some(up) = a.set_maintenance(on, now) {
                *since = SystemTime::now();
                changes.push((*vip, up));
            }
        }
        for (vip, up) in changes {
            self.set(vip, up).await;
        }
        Ok(())
    }

    /// Clean shutdown: withdraw everything at once.
    pub async fn shutdown(&mut self) {
        let now = Instant::now();
        let mut changes = Vec::new();
        for (vip, (a, _)) in self.vips.iter_mut() {
            if a.shutdown(now) == Some(false) {
                changes.push(*vip);
            }
        }
        for vip in changes {
            info!("withdrawing {vip} (shutting down)");
            self.set(vip, false).await;
        }
    }

    pub fn status(&self) -> Vec<VipStatus> {
        self.vips
            .iter()
            .map(|(vip, (a, since))| VipStatus {
                vip: *vip,
                announced: a.announced(),
                since: since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                why: a.why().to_string(),
            })
            .collect()
    }

    pub fn announced(&self) -> usize {
        self.vips.values().filter(|(a, _)| a.announced()).count()
    }
}
