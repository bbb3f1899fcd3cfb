//! `[pop]` and `[[interface]]`: where pop keeps its state, how big its tables are,
//! and which interfaces it attaches to.

use std::{collections::HashSet, fs, net::IpAddr, path::PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

/// Where `pop` looks for its config when `-c` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/pop/pop.toml";
/// Default directory on bpffs for the pinned program, links and maps.
pub const DEFAULT_BPFFS_DIR: &str = "/sys/fs/bpf/pop";
/// Default directory for the daemon's lock, control socket and status file.
pub const DEFAULT_RUN_DIR: &str = "/run/pop";
/// Default directory for what must survive a reboot (transferred zones).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pop";

/// Where `pop.fault_inject` can make an apply fail (test hook of debug builds), and
/// `slow-start`: the start waits 7 s (over three default leases) before loading the
/// XDP object, as a busy host's verifier can.
pub const FAULT_STEPS: [&str; 9] =
    ["dns-bind", "dns-table", "maglev-stage", "maglev", "http-routes", "vip-sync", "netlink", "slow-start", "dns-stall"];

#[derive(Debug, Clone)]
pub struct PopSection {
    /// This PoP's name (answers `id.server` later; labels metrics).
    pub name: String,
    pub bpffs_dir: PathBuf,
    pub run_dir: PathBuf,
    /// Kept across restarts and reboots: zones received by transfer (`secondary/`).
    pub state_dir: PathBuf,
    pub bpf_log: BpfLogLevel,
    /// Where Prometheus scrapes `/metrics` (off when not set).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Flows the load balancer's connection table holds (LRU; ~110 bytes each).
    pub flow_table_size: u32,
    /// New flows a second each CPU enters in the connection table; past it (a SYN
    /// flood) new flows are placed by the Maglev table alone (`lb.untracked`).
    pub flow_table_rate: u32,
    /// Answers the DNS fast-path table holds (all blocks, old and new during a reload).
    pub dns_table_size: u32,
    /// One connection in this many (a power of two) has its client round trip measured
    /// in the path; 1 measures every one.
    pub client_rtt_sample: u32,
    /// VIPs whose traffic no handler takes (other ports and protocols, fragments) goes
    /// to the kernel instead of being dropped in XDP.
    pub pass_unhandled_vips: Vec<IpAddr>,
    /// Test hook of debug builds: the apply step (`controller::apply::Step` name) that
    /// fails on purpose, to prove the rollback. Release builds refuse the key.
    pub fault_inject: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub xdp_mode: XdpMode,
    /// 1-based line of the `name` key, for errors found later (e.g. missing device).
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver; the only mode fit for production traffic.
    #[default]
    Native,
    /// In the kernel's generic path: works on any device, much slower.
    Generic,
}

/// Level of the eBPF side's log lines forwarded into the controller's log.
/// `debug` adds a line per VIP packet: never on a loaded production box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BpfLogLevel {
    Off,
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

impl BpfLogLevel {
    /// Value for aya-log-ebpf's `AYA_LOG_LEVEL` global (aya_log_common::Level + 0 = off).
    pub fn aya_level(self) -> u8 {
        match self {
            BpfLogLevel::Off => 0,
            BpfLogLevel::Error => 1,
            BpfLogLevel::Warn => 2,
            BpfLogLevel::Info => 3,
            BpfLogLevel::Debug => 4,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPop {
    name: Option<Spanned<String>>,
    bpffs_dir: Option<Spanned<String>>,
    run_dir: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    #[serde(default)]
    bpf_log: BpfLogLevel,
    metrics_listen: Option<Spanned<String>>,
    flow_table_size: Option<Spanned<u32>>,
    flow_table_rate: Option<Spanned<u32>>,
    dns_table_size: Option<Spanned<u32>>,
    client_rtt_sample: Option<Spanned<u32>>,
    #[serde(default)]
    pass_unhandled_vips: Vec<Spanned<String>>,
    /// Test hook (debug builds only): the apply step that fails on purpose.
    fault_inject: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    name: Spanned<String>,
    #[serde(default)]
    xdp_mode: XdpMode,
}

/// Checks `[pop]`; `pass_unhandled_vips` is returned as written, to be checked against
/// the VIPs of every block ([`pass_unhandled`]).
pub(super) fn validate(v: &mut Validator, raw: RawPop) -> (PopSection, Vec<Spanned<String>>) {
    let name = match raw.name {
        Some(n) => {
            if n.get_ref().is_empty()
                || n.get_ref().len() > 63
                || !n.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            {
                v.error(n.span(), format!("pop.name {:?}: use 1-63 letters, digits, '-', '.', '_'", n.get_ref()));
            }
            n.into_inner()
        }
        None => default_pop_name(),
    };
    let bpffs_dir = v.absolute_dir(raw.bpffs_dir, "pop.bpffs_dir", DEFAULT_BPFFS_DIR);
    let run_dir = v.absolute_dir(raw.run_dir, "pop.run_dir", DEFAULT_RUN_DIR);
    let state_dir = v.absolute_dir(raw.state_dir, "pop.state_dir", DEFAULT_STATE_DIR);
    let flow_table_size = v.table_size(raw.flow_table_size, "pop.flow_table_size", pop_common::LB_FLOWS_MAX);
    let dns_table_size = v.table_size(raw.dns_table_size, "pop.dns_table_size", pop_common::DNS_TABLE_MAX);
    let metrics_listen = raw.metrics_listen.and_then(|m| match m.get_ref().parse() {
        Ok(a) => Some(a),
        Err(_) => {
            v.error(m.span(), format!("pop.metrics_listen {:?} is not address:port", m.get_ref()));
            None
        }
    });
    let client_rtt_sample = match raw.client_rtt_sample {
        None => pop_common::RTT_SAMPLE,
        Some(n) if n.get_ref().is_power_of_two() && *n.get_ref() <= 1024 => n.into_inner(),
        Some(n) => {
            v.error(n.span(), format!("pop.client_rtt_sample = {}: use a power of two from 1 (every connection) to 1024", n.get_ref()));
            pop_common::RTT_SAMPLE
        }
    };
    let flow_table_rate = match raw.flow_table_rate {
        None => pop_common::FLOW_TABLE_RATE,
        Some(n) if (1..=100_000_000).contains(n.get_ref()) => n.into_inner(),
        Some(n) => {
            v.error(n.span(), format!("pop.flow_table_rate = {}: use 1 to 100000000 new flows a second per CPU", n.get_ref()));
            pop_common::FLOW_TABLE_RATE
        }
    };
    let fault_inject = raw.fault_inject.and_then(|f| {
        if !cfg!(debug_assertions) {
            v.error(f.span(), "pop.fault_inject is a test hook of debug builds only".to_string());
            None
        } else if !FAULT_STEPS.contains(&f.get_ref().as_str()) {
            v.error(f.span(), format!("pop.fault_inject: {:?} is not one of {}", f.get_ref(), FAULT_STEPS.join(", ")));
            None
        } else {
            Some(f.into_inner())
        }
    });
    let section = PopSection {
        name,
        bpffs_dir,
        run_dir,
        state_dir,
        bpf_log: raw.bpf_log,
        metrics_listen,
        flow_table_size,
        flow_table_rate,
        dns_table_size,
        client_rtt_sample,
        pass_unhandled_vips: Vec::new(),
        fault_inject,
    };
    (section, raw.pass_unhandled_vips)
}

/// Checks `pop.pass_unhandled_vips` against `vips`, every VIP some block serves.
pub(super) fn pass_unhandled(v: &mut Validator, raw: Vec<Spanned<String>>, vips: &[IpAddr]) -> Vec<IpAddr> {
    let mut pass_unhandled_vips = Vec::new();
    for a in raw {
        // Normalised as VIPs are: an IPv4-mapped IPv6 address is the IPv4 VIP.
        match a.get_ref().parse::<IpAddr>().map(crate::addr::normalise) {
            Ok(ip) if vips.contains(&ip) => pass_unhandled_vips.push(ip),
            Ok(ip) => v.error(a.span(), format!("pop.pass_unhandled_vips: {ip} is not a VIP of any [[dns]], [[http]] or [[service]] block")),
            Err(_) => v.error(a.span(), format!("pop.pass_unhandled_vips: {:?} is not an IPv4 or IPv6 address", a.get_ref())),
        }
    }
    pass_unhandled_vips
}

/// Checks `[[interface]]`: at least one, names the kernel accepts, none twice.
pub(super) fn interfaces(v: &mut Validator, raw: Vec<Spanned<RawInterface>>) -> Vec<Interface> {
    let mut interfaces = Vec::new();
    let mut seen = HashSet::new();
    if raw.is_empty() {
        v.errors.push(ConfigError {
            file: v.file.into(),
            line: None,
            message: "no [[interface]] configured: name at least one interface to attach to".into(),
        });
    }
    for entry in raw {
        let span = entry.span();
        let iface = entry.into_inner();
        let name_span = iface.name.span();
        let name = iface.name.into_inner();
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
            v.error(name_span.clone(), format!("interface name {name:?} is not a valid Linux interface name (1-15 characters, no '/' or spaces)"));
        } else if !seen.insert(name.clone()) {
            v.error(span, format!("interface {name:?} is listed twice"));
        }
        interfaces.push(Interface { name, xdp_mode: iface.xdp_mode, line: v.line(name_span.start) });
    }
    interfaces
}

fn default_pop_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "pop".into())
}
