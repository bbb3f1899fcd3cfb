//! `pop status`: the one typed report the controller sends over the control socket and
//! the CLI renders (or prints as JSON with `--json`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use crate::health::{BackendStatus, State};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub pop: String,
    /// Announce state per VIP (empty without `[anycast]`).
    #[serde(default)]
    pub vips: Vec<VipStatus>,
    pub services: Vec<ServiceStatus>,
    pub backends: Vec<BackendStatus>,
    /// The XDP program this controller loaded and attached.
    #[serde(default)]
    pub datapath: Option<DatapathStatus>,
    /// `[[monitor]]` targets, as this PoP sees them.
    #[serde(default)]
    pub monitors: Vec<MonitorStatus>,
}

/// One `[[monitor]]` target: whether it answers as expected, since when, and how often.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MonitorStatus {
    pub name: String,
    pub target: std::net::SocketAddr,
    /// tcp, http or dns.
    pub kind: String,
    /// None until the first probe.
    pub up: Option<bool>,
    /// Seconds since the Unix epoch when `up` last changed.
    pub since: u64,
    pub probes_ok: u64,
    pub probes_failed: u64,
    pub last_rtt_ms: Option<f64>,
    pub last_error: Option<String>,
}

/// Which data path is attached: the data path outlives controllers, so an operator must
/// be able to tell which program (and which build of it) interfaces run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatapathStatus {
    /// The kernel's program id (as `ip link` and `bpftool prog` show it).
    pub prog_id: u32,
    /// When the kernel loaded it, in seconds since the Unix epoch.
    pub loaded_at: Option<u64>,
    /// sha256 of the XDP object (as `pop --version` prints it).
    pub object_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub vips: Vec<IpAddr>,
    pub port: u16,
    pub min_healthy: u32,
    pub backends_up: usize,
    pub healthy: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VipStatus {
    pub vip: IpAddr,
    /// What pop wants: announced (healthy, not in maintenance).
    pub announced: bool,
    /// Seconds since the Unix epoch when the current state began.
    pub since: u64,
    pub why: String,
    /// Whether the address is on the anycast interface as far as pop knows (differs
    /// from `announced` while a failed netlink change is being retried).
    pub on_interface: bool,
    /// The last netlink failure of a change still being retried.
    pub netlink_error: Option<String>,
    /// Failed attempts of that change so far.
    pub netlink_attempts: u32,
    /// The address's lifetime in seconds while pop keeps it on the interface and
    /// renews it (None: not there, or leases are off and it never lapses).
    #[serde(default)]
    pub lease_s: Option<u32>,
}

impl StatusReport {
    /// The text `pop status` prints.
    pub fn render(&self, now_secs: u64) -> String {
        let mut out = format!("pop {}\n", self.pop);
        if let Some(d) = &self.datapath {
            let loaded = d.loaded_at.map(|t| format!("loaded {}s ago", now_secs.saturating_sub(t))).unwrap_or_else(|| "load time unknown".into());
            out += &format!("XDP program id {} ({loaded}), object sha256:{}\n", d.prog_id, &d.object_sha256[..d.object_sha256.len().min(12)]);
        }
        for v in &self.vips {
            out += &format!(
                "VIP {:<24} {:<13} for {}s: {}{}\n",
                v.vip.to_string(),
                if v.announced { "ANNOUNCED" } else { "withdrawn" },
                now_secs.saturating_sub(v.since),
                v.why,
                v.lease_s.map(|s| format!(" (a {s} s lease, renewed)")).unwrap_or_default()
            );
            if let Some(e) = &v.netlink_error {
                out += &format!(
                    "    {} the interface failed {} time(s), retrying: {e}\n",
                    if v.announced { "adding it to" } else { "removing it from" },
                    v.netlink_attempts
                );
            }
        }
        for s in &self.services {
            out += &format!(
                "service {}: {} of min {} backends up -> {}\n",
                s.name,
                s.backends_up,
                s.min_healthy,
                if s.healthy { "healthy" } else { "UNHEALTHY" }
            );
        }
        out += &format!("\n{:<12} {:<28} {:<6} {:<8} {:>9} {:>9}  {}\n", "service", "backend", "state", "drained", "p50 ms", "p99 ms", "last error");
        for b in &self.backends {
            let ms = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
            out += &format!(
                "{:<12} {:<28} {:<6} {:<8} {:>9} {:>9}  {}\n",
                b.service,
                b.address.to_string(),
                match b.state {
                    State::Up => "up",
                    State::Down => "down",
                },
                if b.drained { "yes" } else { "no" },
                ms(b.rtt_p50_ms),
                ms(b.rtt_p99_ms),
                b.last_error.as_deref().unwrap_or("")
            );
        }
        if !self.monitors.is_empty() {
            out += &format!(
                "\n{:<16} {:<28} {:<5} {:<15} {:>12} {:>9}  {}\n",
                "monitor", "target", "type", "state", "availability", "last ms", "last error"
            );
        }
        for m in &self.monitors {
            let state = match m.up {
                None => "not probed yet".to_string(),
                Some(up) => format!("{} {}s", if up { "up" } else { "DOWN" }, now_secs.saturating_sub(m.since)),
            };
            let total = m.probes_ok + m.probes_failed;
            let availability = if total == 0 { "-".to_string() } else { format!("{:.1}% of {total}", m.probes_ok as f64 * 100.0 / total as f64) };
            out += &format!(
                "{:<16} {:<28} {:<5} {:<15} {:>12} {:>9}  {}\n",
                m.name,
                m.target.to_string(),
                m.kind,
                state,
                availability,
                m.last_rtt_ms.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into()),
                m.last_error.as_deref().unwrap_or("")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_survives_the_control_socket_and_renders() {
        let report = StatusReport {
            pop: "ams1".into(),
            vips: vec![VipStatus {
                vip: "203.0.113.53".parse().unwrap(),
                announced: true,
                since: 100,
                why: "healthy".into(),
                on_interface: false,
                netlink_error: Some("injected".into()),
                netlink_attempts: 3,
                lease_s: None,
            }],
            services: vec![ServiceStatus {
                name: "web".into(),
                vips: vec!["203.0.113.10".parse().unwrap()],
                port: 80,
                min_healthy: 1,
                backends_up: 0,
                healthy: false,
            }],
            backends: vec![],
            datapath: Some(DatapathStatus { prog_id: 77, loaded_at: Some(100), object_sha256: "f366ccdbc97b0cb1fb3d01ea".into() }),
            monitors: vec![MonitorStatus {
                name: "fra1".into(),
                target: "198.51.100.1:53".parse().unwrap(),
                kind: "dns".into(),
                up: Some(false),
                since: 130,
                probes_ok: 3,
                probes_failed: 1,
                last_rtt_ms: Some(1.5),
                last_error: Some("no answer within 1000 ms".into()),
            }],
        };
        let wire = serde_json::to_value(&report).unwrap();
        assert_eq!(wire["vips"][0]["vip"], "203.0.113.53");
        let back: StatusReport = serde_json::from_value(wire).unwrap();
        let text = back.render(142);
        assert!(text.contains("VIP 203.0.113.53             ANNOUNCED     for 42s: healthy"), "{text}");
        assert!(text.contains("adding it to the interface failed 3 time(s), retrying: injected"), "{text}");
        assert!(!text.contains("lease"), "not on the interface: no lease to show: {text}");
        let mut leased = back.clone();
        leased.vips[0].lease_s = Some(2);
        assert!(leased.render(142).contains("for 42s: healthy (a 2 s lease, renewed)\n"), "{}", leased.render(142));
        assert!(text.contains("service web: 0 of min 1 backends up -> UNHEALTHY"), "{text}");
        assert!(text.contains("XDP program id 77 (loaded 42s ago), object sha256:f366ccdbc97b\n"), "{text}");
        assert!(
            text.contains("fra1             198.51.100.1:53              dns   DOWN 12s          75.0% of 4      1.50  no answer within 1000 ms"),
            "{text}"
        );
        // Without [anycast] the controller may leave the VIPs out.
        let bare: StatusReport = serde_json::from_str(r#"{"pop":"x","services":[],"backends":[]}"#).unwrap();
        assert!(bare.vips.is_empty());
    }
}
