//! Announcing the PoP's VIPs: once per tick, every VIP's health is the health of every
//! block serving it (a service: at least `min_healthy` backends up; a DNS block: its
//! server answers its own SOA probe; an HTTP site: loaded). An [`Announcer`] per VIP
//! applies rise/fall and the hold time; announcing puts the address on the anycast
//! interface (BIRD `protocol direct` / FRR `redistribute connected` export it),
//! withdrawing removes it. Each address is an `anycast.lease_s` lease that
//! [`Anycast::renew`] renews three times per lease: the kernel removes it, and the route
//! goes, once the controller stops (SIGKILL included). Maintenance (`pop withdraw`)
//! persists in run_dir.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use log::{info, warn};

use super::{
    announcer::{AnnouncePolicy, Announcer},
    netlink,
};
pub use crate::status::VipStatus;
use crate::{config::Config, dns::runtime::DnsRuntime, health::Board};

/// A netlink change that failed and is retried with backoff.
struct Pending {
    want: bool,
    attempts: u32,
    next: Instant,
    error: String,
}

/// Wait before retry `attempts` (1 = after the first failure): 200 ms doubling, at
/// most 30 s, so a netlink outage is neither hammered nor waited out for long.
pub fn retry_delay(attempts: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempts.saturating_sub(1).min(8))).min(Duration::from_secs(30))
}

struct Vip {
    announcer: Announcer,
    since: SystemTime,
    on_interface: bool,
    pending: Option<Pending>,
}

pub struct Anycast {
    iface: String,
    ifindex: u32,
    policy: AnnouncePolicy,
    vips: BTreeMap<IpAddr, Vip>,
    maintenance: bool,
    maintenance_file: PathBuf,
    /// `<run_dir>/announced`: the VIPs pop put on the interface, so a controller
    /// started after a crash (or with a config that dropped a VIP) knows which of the
    /// interface's addresses are its to remove.
    record_file: PathBuf,
    /// Test hook (debug builds): every netlink change fails.
    fault: bool,
    /// The loaded XDP program's id: a VIP is healthy only while every configured
    /// interface runs it.
    prog_id: u32,
    /// Each announced address's lifetime (`anycast.lease_s`), renewed by [`Anycast::renew`].
    lifetime: netlink::Lifetime,
}

/// The longest a start is bridged, in leases (30 s by default): a start that hangs (or
/// is this slow) lets the addresses lapse, as a dead controller's do. Meanwhile the
/// attached XDP program keeps answering from the previous controller's maps; 5 leases
/// were too few for a start that loads the XDP object on a busy host (11.5 s seen in CI).
pub const BRIDGE_MAX_LEASES: u32 = 15;

/// The first thing a starting controller does with the anycast interface, before the
/// slow part of its start (loading and verifying the XDP object, compiling zones):
/// renew the VIPs the previous controller had announced when it saved its state `age`
/// ago, if that lease may still be running (`age` within one lease), the VIP is still
/// configured and on the interface, no maintenance is set and an XDP program still
/// serves every configured interface. The returned [`Bridge`] goes on renewing them,
/// three times per lease, until [`Anycast::new`] takes over (the bridge is ended just
/// before) or for at most [`BRIDGE_MAX_LEASES`] leases. Without it a restart would have
/// to reach [`Anycast::new`] within what is left of the old lease, which a loaded host
/// verifying the XDP object misses. The bet is bounded: health is judged again at
/// [`Anycast::new`]; a start that fails drops the bridge, and a start that hangs
/// outlives it, and either way the addresses lapse one lease later.
pub async fn bridge_leases(config: &Config, announced: &[IpAddr], age: Duration) -> Bridge {
    let Some(a) = config.anycast.as_ref() else { return Bridge::default() };
    let maintenance = config.pop.run_dir.join("maintenance").exists();
    if bridge_candidates(config, announced, age, maintenance, announced).is_empty() {
        return Bridge::default(); // nothing to bridge: no netlink calls at all
    }
    for iface in &config.interfaces {
        if !matches!(netlink::xdp_prog_id(&iface.name).await, Ok(Some(_))) {
            return Bridge::default();
        }
    }
    let Ok(ifindex) = netlink::interface_index(&a.interface).await else { return Bridge::default() };
    let Ok(present) = netlink::addresses(ifindex).await else { return Bridge::default() };
    let present: Vec<IpAddr> = present.into_iter().map(|(ip, _)| ip).collect();
    let mut renewed = Vec::new();
    for vip in bridge_candidates(config, announced, age, maintenance, &present) {
        match netlink::add_address(ifindex, vip, netlink::Lifetime::Secs(a.lease_s)).await {
            Ok(()) => renewed.push(vip),
            Err(e) => warn!("renewing {vip}'s lease while starting: {e:#}"),
        }
    }
    if renewed.is_empty() {
        return Bridge::default();
    }
    let list: Vec<String> = renewed.iter().map(|v| v.to_string()).collect();
    info!(
        "renewed the lease of {} while starting (announced by the previous controller {} ms ago; renewed until the \
         takeover, for at most {BRIDGE_MAX_LEASES} leases; health is checked again before it is adopted)",
        list.join(", "),
        age.as_millis()
    );
    Bridge::spawn(ifindex, renewed, a.lease_s)
}

/// The renewals that carry the previous controller's announcements through a start
/// (see [`bridge_leases`]): a thread of its own with its own runtime, so a start
/// blocking the controller's runtime (the verifier, a zone compile) cannot starve it.
/// Ended by [`Bridge::end`] or by being dropped; either waits for a renewal in flight,
/// so nothing is re-added after the takeover has decided.
#[derive(Default)]
pub struct Bridge {
    running: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Bridge {
    fn spawn(ifindex: u32, vips: Vec<IpAddr>, lease_s: u32) -> Bridge {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let every = Duration::from_millis(u64::from(lease_s) * 1000 / 3);
        let until = Instant::now() + Duration::from_secs(u64::from(lease_s) * u64::from(BRIDGE_MAX_LEASES));
        let thread = std::thread::Builder::new().name("lease-bridge".into()).spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                warn!("the lease bridge has no runtime: the previous controller's VIPs lapse unless the start is quick");
                return;
            };
            // Waiting on the channel is the renewal timer; a message or a dropped
            // sender ends the bridge.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(every) {
                if Instant::now() >= until {
                    warn!("the start took more than {BRIDGE_MAX_LEASES} leases: no longer renewing the previous controller's VIPs");
                    return;
                }
                for &vip in &vips {
                    if let Err(e) = rt.block_on(netlink::add_address(ifindex, vip, netlink::Lifetime::Secs(lease_s))) {
                        warn!("renewing {vip}'s lease while starting: {e:#}");
                    }
                }
            }
        });
        match thread {
            Ok(handle) => Bridge { running: Some((stop_tx, handle)) },
            Err(e) => {
                warn!("starting the lease bridge: {e}");
                Bridge::default()
            }
        }
    }

    /// Stops the renewals (waiting for one in flight); the takeover renews from here.
    pub fn end(&mut self) {
        if let Some((stop, handle)) = self.running.take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.end();
    }
}

/// Which of the `announced` VIPs [`bridge_leases`] renews: with leases on, none in
/// maintenance or when the state is older than one lease (the addresses have lapsed:
/// nothing to keep), else those still configured and `present` on the interface.
fn bridge_candidates(config: &Config, announced: &[IpAddr], age: Duration, maintenance: bool, present: &[IpAddr]) -> Vec<IpAddr> {
    let Some(a) = config.anycast.as_ref().filter(|a| a.lease_s > 0) else { return Vec::new() };
    if maintenance || age > Duration::from_secs(u64::from(a.lease_s)) {
        return Vec::new();
    }
    let configured = |vip: &IpAddr| {
        config.services.iter().any(|s| s.vips.contains(vip))
            || config.dns.iter().any(|d| d.vips.contains(vip))
            || config.http.iter().any(|h| h.vips.contains(vip))
    };
    announced.iter().filter(|v| configured(v) && present.contains(v)).copied().collect()
}

impl Anycast {
    /// Takes over the anycast interface: lists its addresses and removes every pop VIP
    /// (configured now, or recorded as announced by an earlier controller) that is not
    /// going to be announced now: in maintenance, no longer configured, or unhealthy.
    /// A configured VIP found there and healthy stays announced, without a flap.
    pub async fn new(config: &Config, board: &Board, dns: &DnsRuntime, prog_id: u32) -> Result<Option<Anycast>> {
        let Some(a) = &config.anycast else { return Ok(None) };
        let ifindex = netlink::interface_index(&a.interface).await.with_context(|| format!("anycast.interface {:?}", a.interface))?;
        let maintenance_file = config.pop.run_dir.join("maintenance");
        let maintenance = maintenance_file.exists();
        if maintenance {
            warn!("in maintenance ({} exists): no VIP will be announced until `pop announce`", maintenance_file.display());
        }
        let policy = AnnouncePolicy { rise: a.rise, fall: a.fall, min_hold: Duration::from_millis(a.hold_ms) };
        let record_file = config.pop.run_dir.join("announced");
        let mut any = Anycast {
            iface: a.interface.clone(),
            ifindex,
            policy,
            vips: BTreeMap::new(),
            maintenance,
            maintenance_file,
            record_file,
            fault: cfg!(debug_assertions) && config.pop.fault_inject.as_deref() == Some("netlink"),
            prog_id,
            lifetime: if a.lease_s == 0 { netlink::Lifetime::Forever } else { netlink::Lifetime::Secs(a.lease_s) },
        };
        let present = any.list_with_retry().await?;
        let recorded = any.read_record();
        let health = any.vip_health(config, board, dns).await;
        let mut adopted = Vec::new();
        for addr in present {
            let configured = health.get(&addr);
            if configured.is_none() && !recorded.contains(&addr) {
                continue; // not pop's
            }
            match configured {
                Some((true, _)) if !maintenance => {
                    info!("{addr} found on {} and healthy: stays announced", any.iface);
                    any.vips.insert(addr, Vip { announcer: Announcer::adopted(policy), since: SystemTime::now(), on_interface: true, pending: None });
                    adopted.push(addr);
                }
                _ => {
                    let why = match configured {
                        None => "no longer configured".to_string(),
                        Some(_) if maintenance => "in maintenance".to_string(),
                        Some((_, why)) => format!("unhealthy: {why}"),
                    };
                    warn!("{addr} found on {} from an earlier controller: removing it ({why})", any.iface);
                    if let Err(e) = any.netlink(addr, false).await {
                        // Retried by the first ticks like any other failed change.
                        let mut v = any.new_vip(Instant::now());
                        v.on_interface = true;
                        v.pending = Some(Pending { want: false, attempts: 1, next: Instant::now() + retry_delay(1), error: format!("{e:#}") });
                        any.vips.insert(addr, v);
                    }
                }
            }
        }
        // The earlier controller's lease on an adopted address may be about to run out:
        // it is ours now, on our lease.
        for addr in adopted {
            any.set(addr, true).await;
        }
        any.write_record();
        Ok(Some(any))
    }

    /// Renews the lease of every VIP that is announced and on the interface (the
    /// kernel removes an address `anycast.lease_s` after its last renewal, so the route
    /// lapses once no controller renews it). Adding again also restores an address that
    /// lapsed anyway (the loop stalled for a whole lease) or that someone removed. A
    /// failure is retried with backoff, as any change.
    /// Takes a reload's `[anycast]` timing (rise, fall, hold, lease; `check_ms` is the
    /// caller's tick): every VIP's announcer goes on under the new policy, and announced
    /// addresses are renewed at once under the new lease (a longer one, or forever, from
    /// now; a shorter one too). The interface is the caller's to compare: moving the
    /// addresses takes a restart.
    pub async fn retime(&mut self, a: &crate::config::AnycastConfig) {
        self.policy = AnnouncePolicy { rise: a.rise, fall: a.fall, min_hold: Duration::from_millis(a.hold_ms) };
        for v in self.vips.values_mut() {
            v.announcer.set_policy(self.policy);
        }
        self.lifetime = if a.lease_s == 0 { netlink::Lifetime::Forever } else { netlink::Lifetime::Secs(a.lease_s) };
        let due: Vec<IpAddr> =
            self.vips.iter().filter(|(_, v)| v.announcer.announced() && v.on_interface && v.pending.is_none()).map(|(ip, _)| *ip).collect();
        for vip in due {
            self.set(vip, true).await;
        }
    }

    pub async fn renew(&mut self) {
        if self.lifetime == netlink::Lifetime::Forever {
            return;
        }
        let due: Vec<IpAddr> =
            self.vips.iter().filter(|(_, v)| v.announcer.announced() && v.on_interface && v.pending.is_none()).map(|(ip, _)| *ip).collect();
        for vip in due {
            self.set(vip, true).await;
        }
    }

    /// The VIPs pop has on the interface now.
    pub fn on_interface(&self) -> Vec<IpAddr> {
        self.vips.iter().filter(|(_, v)| v.on_interface).map(|(ip, _)| *ip).collect()
    }

    async fn list_with_retry(&self) -> Result<Vec<IpAddr>> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match netlink::addresses(self.ifindex).await {
                Ok(a) => return Ok(a.into_iter().map(|(ip, _)| ip).collect()),
                Err(e) if attempts < 5 => {
                    warn!("listing the addresses of {}: {e:#}; retrying", self.iface);
                    tokio::time::sleep(retry_delay(attempts)).await;
                }
                Err(e) => return Err(e.context(format!("listing the addresses of anycast.interface {:?}", self.iface))),
            }
        }
    }

    fn read_record(&self) -> Vec<IpAddr> {
        std::fs::read_to_string(&self.record_file).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Rewrites the record of the VIPs on the interface (atomically: rename).
    fn write_record(&self) {
        let text: String = self.vips.iter().filter(|(_, v)| v.on_interface).map(|(ip, _)| format!("{ip}\n")).collect();
        let tmp = self.record_file.with_extension("tmp");
        if std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.record_file)).is_err() {
            warn!("could not write {}", self.record_file.display());
        }
    }

    fn new_vip(&self, now: Instant) -> Vip {
        let mut a = Announcer::new(self.policy);
        if self.maintenance {
            a.set_maintenance(true, now);
        }
        Vip { announcer: a, since: SystemTime::now(), on_interface: false, pending: None }
    }

    /// Why the data path is not running where configured, if it is not: every
    /// interface must have pop's XDP program attached.
    async fn datapath_fault(&self, config: &Config) -> Option<String> {
        for iface in &config.interfaces {
            match netlink::xdp_prog_id(&iface.name).await {
                Ok(Some(id)) if id == self.prog_id => {}
                Ok(Some(id)) => return Some(format!("{}: another XDP program (id {id}) is attached, not pop's", iface.name)),
                Ok(None) => return Some(format!("{}: the XDP program is not attached", iface.name)),
                Err(e) => return Some(format!("{}: {e:#}", iface.name)),
            }
        }
        None
    }

    /// Health of every VIP in `config`: (healthy, reason when not). Nothing is healthy
    /// while the XDP program is not attached to every configured interface.
    async fn vip_health(&self, config: &Config, board: &Board, dns: &DnsRuntime) -> BTreeMap<IpAddr, (bool, String)> {
        let datapath = self.datapath_fault(config).await;
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
        if let Some(why) = datapath {
            for (ok, reason) in m.values_mut() {
                (*ok, *reason) = (false, why.clone());
            }
        }
        m
    }

    /// Retries failed netlink changes that are due, then makes one observation for
    /// every VIP and adds or removes addresses whose state changed.
    pub async fn tick(&mut self, config: &Config, board: &Board, dns: &DnsRuntime) {
        let now = Instant::now();
        self.fault = cfg!(debug_assertions) && config.pop.fault_inject.as_deref() == Some("netlink");
        let due: Vec<IpAddr> = self.vips.iter().filter(|(_, v)| v.pending.as_ref().is_some_and(|p| p.next <= now)).map(|(ip, _)| *ip).collect();
        for vip in due {
            // What is wanted now, which may have changed since the failure.
            let want = self.vips[&vip].announcer.announced();
            self.set(vip, want).await;
        }
        let health = self.vip_health(config, board, dns).await;
        // VIPs no longer configured: withdraw and forget (once off the interface).
        let gone: Vec<IpAddr> = self.vips.keys().filter(|v| !health.contains_key(v)).copied().collect();
        for v in gone {
            let on = self.vips.get(&v).is_some_and(|x| x.on_interface || x.announcer.announced());
            if on {
                if self.vips[&v].pending.is_none() {
                    info!("withdrawing {v} (no longer configured)");
                    self.set(v, false).await;
                }
                if let Some(x) = self.vips.get_mut(&v) {
                    x.announcer.shutdown(now);
                }
            }
            if self.vips.get(&v).is_some_and(|x| !x.on_interface && x.pending.is_none()) {
                self.vips.remove(&v);
            }
        }
        for (vip, (ok, why)) in health {
            if !self.vips.contains_key(&vip) {
                let v = self.new_vip(now);
                self.vips.insert(vip, v);
            }
            let v = self.vips.get_mut(&vip).unwrap();
            if let Some(up) = v.announcer.observe(ok, &why, now) {
                v.since = SystemTime::now();
                let reason = v.announcer.why().to_string();
                if up {
                    info!("announcing {vip} ({reason})");
                } else {
                    warn!("withdrawing {vip} ({reason})");
                }
                self.set(vip, up).await;
            }
        }
    }

    async fn netlink(&self, vip: IpAddr, up: bool) -> Result<()> {
        if self.fault {
            anyhow::bail!("injected netlink failure");
        }
        if up { netlink::add_address(self.ifindex, vip, self.lifetime).await } else { netlink::del_address(self.ifindex, vip).await }
    }

    /// Puts `vip` on the interface or takes it off; a failure is retried by later
    /// ticks with backoff (and shown in `pop status`) until it succeeds or the wanted
    /// state changes again.
    async fn set(&mut self, vip: IpAddr, up: bool) {
        let r = self.netlink(vip, up).await;
        let now = Instant::now();
        let Some(v) = self.vips.get_mut(&vip) else { return };
        match r {
            Ok(()) => {
                if let Some(p) = v.pending.take() {
                    info!("{} {vip} on {} succeeded after {} failed attempt(s)", if up { "adding" } else { "removing" }, self.iface, p.attempts);
                }
                let changed = v.on_interface != up;
                v.on_interface = up;
                if changed {
                    self.write_record();
                }
            }
            Err(e) => {
                let attempts = v.pending.as_ref().filter(|p| p.want == up).map_or(0, |p| p.attempts) + 1;
                let delay = retry_delay(attempts);
                warn!("{} {vip} on {} failed (attempt {attempts}, retrying in {delay:?}): {e:#}", if up { "adding" } else { "removing" }, self.iface);
                v.pending = Some(Pending { want: up, attempts, next: now + delay, error: format!("{e:#}") });
            }
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
        for (vip, v) in self.vips.iter_mut() {
            if let Some(up) = v.announcer.set_maintenance(on, now) {
                v.since = SystemTime::now();
                changes.push((*vip, up));
            }
        }
        for (vip, up) in changes {
            self.set(vip, up).await;
        }
        Ok(())
    }

    /// Clean shutdown: withdraw everything at once (one attempt each: the next
    /// controller's start-up removes what is left).
    pub async fn shutdown(&mut self) {
        let now = Instant::now();
        let mut changes = Vec::new();
        for (vip, v) in self.vips.iter_mut() {
            v.announcer.shutdown(now);
            if v.on_interface || v.pending.is_some() {
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
            .map(|(vip, v)| VipStatus {
                vip: *vip,
                announced: v.announcer.announced(),
                since: v.since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                why: v.announcer.why().to_string(),
                on_interface: v.on_interface,
                netlink_error: v.pending.as_ref().map(|p| p.error.clone()),
                netlink_attempts: v.pending.as_ref().map_or(0, |p| p.attempts),
                lease_s: match self.lifetime {
                    netlink::Lifetime::Secs(s) if v.on_interface && v.announcer.announced() => Some(s),
                    _ => None,
                },
            })
            .collect()
    }

    pub fn announced(&self) -> usize {
        self.vips.values().filter(|v| v.announcer.announced()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_bridges_only_fresh_configured_present_announcements() {
        let cfg = |anycast: &str| {
            Config::parse(
                std::path::Path::new("pop.toml"),
                &format!(
                    "[[interface]]\nname = \"e\"\n{anycast}\n[[service]]\nname = \"web\"\nvips = [\"203.0.113.1\"]\nport = 80\n\
                     backends = [{{ address = \"198.51.100.1\" }}]\n"
                ),
            )
            .unwrap()
        };
        let (web, gone): (IpAddr, IpAddr) = ("203.0.113.1".parse().unwrap(), "203.0.113.2".parse().unwrap());
        let c = cfg("[anycast]\nlease_s = 2");
        let ms = Duration::from_millis;
        assert_eq!(bridge_candidates(&c, &[web, gone], ms(1500), false, &[web, gone]), [web], "no longer configured: not bridged");
        assert_eq!(bridge_candidates(&c, &[web], ms(2000), false, &[web]), [web], "the old lease may still run");
        assert!(bridge_candidates(&c, &[web], ms(2001), false, &[web]).is_empty(), "older than a lease: lapsed already");
        assert!(bridge_candidates(&c, &[web], ms(10), true, &[web]).is_empty(), "maintenance");
        assert!(bridge_candidates(&c, &[web], ms(10), false, &[]).is_empty(), "not on the interface");
        assert!(bridge_candidates(&c, &[], ms(10), false, &[web]).is_empty(), "not announced");
        assert!(bridge_candidates(&cfg("[anycast]\nlease_s = 0"), &[web], ms(10), false, &[web]).is_empty(), "no leases");
        assert!(bridge_candidates(&cfg(""), &[web], ms(10), false, &[web]).is_empty(), "no [anycast]");
    }

    #[test]
    fn retries_back_off_from_200_ms_to_at_most_30_s() {
        let d: Vec<u64> = [1, 2, 3, 4, 8, 9, 10, 100].iter().map(|&n| retry_delay(n).as_millis() as u64).collect();
        assert_eq!(d, vec![200, 400, 800, 1600, 25_600, 30_000, 30_000, 30_000]);
    }
}
