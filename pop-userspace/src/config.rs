//! `pop.toml`: parsing and validation. Every error names the file and line at fault,
//! and nothing is applied unless the whole file is valid.

use std::{
    collections::HashSet,
    fmt, fs,
    net::IpAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::vip;
use toml::Spanned;

/// Where `pop` looks for its config when `-c` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/pop/pop.toml";
/// Default directory on bpffs for the pinned program, links and maps.
pub const DEFAULT_BPFFS_DIR: &str = "/sys/fs/bpf/pop";
/// Default directory for the daemon's lock and (later) control socket.
pub const DEFAULT_RUN_DIR: &str = "/run/pop";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (for messages).
    pub path: PathBuf,
    pub pop: PopSection,
    pub interfaces: Vec<Interface>,
    pub dns: Vec<DnsBlock>,
    pub services: Vec<Service>,
    pub http: Vec<HttpSite>,
    /// `[anycast]`: when present, pop announces VIPs by managing their addresses.
    pub anycast: Option<AnycastConfig>,
}

/// `[anycast]`: announce each VIP (its address on `interface`) only while healthy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnycastConfig {
    /// Where announced VIPs are put (a routing daemon exports its addresses).
    #[serde(default = "default_anycast_iface")]
    pub interface: String,
    /// Consecutive healthy checks before announcing, unhealthy before withdrawing.
    #[serde(default = "default_rise_fall")]
    pub rise: u32,
    #[serde(default = "default_rise_fall")]
    pub fall: u32,
    /// A VIP stays announced or withdrawn at least this long (no route flapping).
    #[serde(default = "default_hold")]
    pub hold_ms: u64,
    /// How often VIP health is evaluated.
    #[serde(default = "default_check")]
    pub check_ms: u64,
    /// Line of the `[anycast]` header, for errors found on the host.
    #[serde(skip)]
    pub line: usize,
}

fn default_anycast_iface() -> String {
    "lo".into()
}
fn default_hold() -> u64 {
    5000
}
fn default_check() -> u64 {
    1000
}

/// One `[[http]]` site answered in XDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSite {
    pub name: String,
    pub vips: Vec<IpAddr>,
    pub port: u16,
    pub routes: Vec<HttpRoute>,
    /// For requests no route matches (404 when not configured).
    pub default: HttpReply,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// Exact path (no query).
    pub path: String,
    /// Only for this Host (lowercase, no port); any host when None.
    pub host: Option<String>,
    pub reply: HttpReply,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpReply {
    pub status: u16,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub body: String,
    /// Sets `Location:` (redirects).
    pub location: Option<String>,
    /// Appends the request's path and query to `location`.
    #[serde(default)]
    pub append_path: bool,
}

/// One `[[service]]`: TCP or UDP on a port of some VIPs, steered to backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub vips: Vec<IpAddr>,
    pub port: u16,
    pub protocol: Protocol,
    pub backends: Vec<Backend>,
    /// Backends that must be up for the service to count as healthy (announce).
    pub min_healthy: u32,
    /// Maglev table size (a prime).
    pub table_size: u32,
    /// Probes that decide which backends take traffic; without them every backend is up.
    pub health: Option<HealthCheck>,
    pub line: usize,
}

/// `[service.health]`: how and how often each backend is probed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(rename = "type")]
    pub kind: ProbeKind,
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Consecutive successes that bring a backend up.
    #[serde(default = "default_rise_fall")]
    pub rise: u32,
    /// Consecutive failures that take it down.
    #[serde(default = "default_rise_fall")]
    pub fall: u32,
    /// Port to probe; the service port when not set.
    pub port: Option<u16>,
    /// http: method, path, expected status, optional Host.
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default = "default_status")]
    pub status: u16,
    pub host: Option<String>,
    /// dns: query name and type, expected rcode; the answer must not be empty.
    pub name: Option<String>,
    #[serde(default = "default_qtype")]
    pub qtype: String,
    #[serde(default = "default_rcode")]
    pub rcode: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Tcp,
    Http,
    Dns,
}

fn default_interval() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    500
}
fn default_rise_fall() -> u32 {
    2
}
fn default_method() -> String {
    "GET".into()
}
fn default_path() -> String {
    "/".into()
}
fn default_status() -> u16 {
    200
}
fn default_qtype() -> String {
    "A".into()
}
fn default_rcode() -> String {
    "NOERROR".into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub address: IpAddr,
    /// Share of new flows relative to the others; 0 takes no new flows.
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    /// As written in the config (`tcp`, `udp`), for messages.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => pop_common::IPPROTO_TCP,
            Protocol::Udp => pop_common::IPPROTO_UDP,
        }
    }
}

pub const DEFAULT_TABLE_SIZE: u32 = 65537;
pub const MAX_SERVICES: usize = pop_common::LB_MAX_SERVICES as usize;
pub const MAX_BACKENDS: usize = pop_common::LB_MAX_BACKENDS as usize;
pub const MAX_WEIGHT: u32 = 1000;

/// One `[[dns]]` block: zones served on a set of VIPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsBlock {
    pub vips: Vec<IpAddr>,
    /// Zone files, resolved against the config file's directory.
    pub zones: Vec<PathBuf>,
    /// Responses per second per client /24 (IPv4) or /56 (IPv6); 0 turns RRL off.
    pub rate_limit: u32,
    /// Whether XDP answers what it can; off sends every query to the server.
    pub fast_path: bool,
    /// How far zone files may reach with `$INCLUDE`, and how big they may be.
    pub zone_limits: crate::dns::zone::ZoneLimits,
    /// Line of the block's `[[dns]]` header.
    pub line: usize,
}

/// Where `pop.fault_inject` can make an apply fail (test hook of debug builds).
pub const FAULT_STEPS: [&str; 6] = ["dns-bind", "dns-table", "maglev", "http-routes", "vip-sync", "netlink"];

/// Default response rate limit per client prefix (responses/s).
pub const DEFAULT_DNS_RATE_LIMIT: u32 = 200;
/// The data path holds at most this many `[[dns]]` blocks.
pub const MAX_DNS_BLOCKS: usize = pop_common::DNS_BLOCKS_MAX as usize;

#[derive(Debug, Clone)]
pub struct PopSection {
    /// This PoP's name (answers `id.server` later; labels metrics).
    pub name: String,
    pub bpffs_dir: PathBuf,
    pub run_dir: PathBuf,
    pub bpf_log: BpfLogLevel,
    /// Where Prometheus scrapes `/metrics` (off when not set).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Flows the load balancer's connection table holds (LRU; ~110 bytes each).
    pub flow_table_size: u32,
    /// Answers the DNS fast-path table holds (all blocks, old and new during a reload).
    pub dns_table_size: u32,
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

/// An error located in a file (a config file or a zone file): prints as
/// `file:line: message`, or `file: message` when no line applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Several located errors, one per line when printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---- the file as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    pop: RawPop,
    #[serde(default)]
    interface: Vec<Spanned<RawInterface>>,
    #[serde(default)]
    dns: Vec<Spanned<RawDns>>,
    #[serde(default)]
    service: Vec<Spanned<RawService>>,
    #[serde(default)]
    http: Vec<Spanned<RawHttp>>,
    anycast: Option<Spanned<AnycastConfig>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    name: Spanned<String>,
    vips: Vec<Spanned<String>>,
    port: Option<Spanned<i64>>,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
    default: Option<Spanned<HttpReply>>,
}

const DEFAULT_HTTP_PORT: u16 = 80;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    host: Option<String>,
    status: u16,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: String,
    location: Option<String>,
    #[serde(default)]
    append_path: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    vips: Vec<Spanned<String>>,
    port: Spanned<i64>,
    #[serde(default)]
    protocol: Protocol,
    #[serde(default)]
    backends: Vec<Spanned<RawBackend>>,
    min_healthy: Option<u32>,
    table_size: Option<Spanned<u32>>,
    health: Option<Spanned<HealthCheck>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: Spanned<String>,
    weight: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    vips: Vec<Spanned<String>>,
    zones: Vec<Spanned<String>>,
    rate_limit: Option<u32>,
    fast_path: Option<bool>,
    /// Directories `$INCLUDE` may read from besides the including file's own.
    #[serde(default)]
    include_dirs: Vec<Spanned<String>>,
    zone_max_bytes: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPop {
    name: Option<Spanned<String>>,
    bpffs_dir: Option<Spanned<String>>,
    run_dir: Option<Spanned<String>>,
    #[serde(default)]
    bpf_log: BpfLogLevel,
    metrics_listen: Option<Spanned<String>>,
    flow_table_size: Option<Spanned<u32>>,
    dns_table_size: Option<Spanned<u32>>,
    #[serde(default)]
    pass_unhandled_vips: Vec<Spanned<String>>,
    /// Test hook (debug builds only): the apply step that fails on purpose.
    fault_inject: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Spanned<String>,
    #[serde(default)]
    xdp_mode: XdpMode,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![ConfigError { file: path.into(), line: None, message: format!("cannot read: {e}") }]))?;
        Config::parse(path, &text)
    }

    /// Validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let mut v = Validator { file: path, text, errors: Vec::new() };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let line = e.span().map(|s| line_of(text, s.start));
                // toml's message repeats the location on its own lines; keep the first line.
                let message = e.message().lines().next().unwrap_or("invalid TOML").to_string();
                return Err(ConfigErrors(vec![ConfigError { file: path.into(), line, message }]));
            }
        };

        let name = match raw.pop.name {
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
        let bpffs_dir = v.absolute_dir(raw.pop.bpffs_dir, "pop.bpffs_dir", DEFAULT_BPFFS_DIR);
        let run_dir = v.absolute_dir(raw.pop.run_dir, "pop.run_dir", DEFAULT_RUN_DIR);
        let flow_table_size = v.table_size(raw.pop.flow_table_size, "pop.flow_table_size", pop_common::LB_FLOWS_MAX);
        let dns_table_size = v.table_size(raw.pop.dns_table_size, "pop.dns_table_size", pop_common::DNS_TABLE_MAX);
        let metrics_listen = raw.pop.metrics_listen.and_then(|m| match m.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                v.error(m.span(), format!("pop.metrics_listen {:?} is not address:port", m.get_ref()));
                None
            }
        });

        let mut interfaces = Vec::new();
        let mut seen = HashSet::new();
        if raw.interface.is_empty() {
            v.errors.push(ConfigError {
                file: path.into(),
                line: None,
                message: "no [[interface]] configured: name at least one interface to attach to".into(),
            });
        }
        for entry in raw.interface {
            let span = entry.span();
            let iface = entry.into_inner();
            let name_span = iface.name.span();
            let name = iface.name.into_inner();
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
                v.error(
                    name_span.clone(),
                    format!("interface name {name:?} is not a valid Linux interface name (1-15 characters, no '/' or spaces)"),
                );
            } else if !seen.insert(name.clone()) {
                v.error(span, format!("interface {name:?} is listed twice"));
            }
            interfaces.push(Interface { name, xdp_mode: iface.xdp_mode, line: line_of(text, name_span.start) });
        }

        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        // Every (VIP, port, protocol) has one handler; the first to claim it wins and a
        // second is an error naming both places.
        let mut listeners = Listeners::default();
        let mut dns = Vec::new();
        if raw.dns.len() > MAX_DNS_BLOCKS {
            v.error(raw.dns[MAX_DNS_BLOCKS].span(), format!("at most {MAX_DNS_BLOCKS} [[dns]] blocks"));
        }
        for block in raw.dns {
            let span = block.span();
            let line = line_of(text, span.start);
            let block = block.into_inner();
            if block.vips.is_empty() {
                v.error(span.clone(), "[[dns]] needs at least one address in vips".into());
            }
            if block.zones.is_empty() {
                v.error(span.clone(), "[[dns]] needs at least one zone file in zones".into());
            }
            let mut vips = Vec::new();
            for vip in &block.vips {
                let Some(ip) = v.vip(vip) else { continue };
                // The server answers DNS over TCP on the same VIPs.
                if v.claim(&mut listeners, ip, vip::DNS_PORT, Protocol::Udp, vip.span(), "[[dns]]")
                    && v.claim(&mut listeners, ip, vip::DNS_PORT, Protocol::Tcp, vip.span(), "[[dns]]")
                {
                    vips.push(ip);
                }
            }
            let zones = block.zones.into_iter().map(|z| base.join(z.into_inner())).collect();
            let include_dirs = block.include_dirs.into_iter().map(|d| base.join(d.into_inner())).collect();
            let max_bytes = match block.zone_max_bytes {
                Some(n) if !(1024..=MAX_ZONE_BYTES).contains(n.get_ref()) => {
                    v.error(n.span(), format!("dns.zone_max_bytes {} must be between 1024 and {MAX_ZONE_BYTES}", n.get_ref()));
                    crate::dns::zone::DEFAULT_ZONE_MAX_BYTES
                }
                Some(n) => n.into_inner(),
                None => crate::dns::zone::DEFAULT_ZONE_MAX_BYTES,
            };
            dns.push(DnsBlock {
                vips,
                zones,
                rate_limit: block.rate_limit.unwrap_or(DEFAULT_DNS_RATE_LIMIT),
                fast_path: block.fast_path.unwrap_or(true),
                zone_limits: crate::dns::zone::ZoneLimits { include_dirs, max_bytes },
                line,
            });
        }

        let mut services = Vec::new();
        let mut names = HashSet::new();
        let mut backend_total = 0;
        if raw.service.len() > MAX_SERVICES {
            v.error(raw.service[MAX_SERVICES].span(), format!("at most {MAX_SERVICES} [[service]] blocks"));
        }
        for svc in raw.service {
            let span = svc.span();
            let svc = svc.into_inner();
            let name = svc.name.get_ref().clone();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                v.error(svc.name.span(), format!("service name {name:?}: use letters, digits, '-' and '_'"));
            } else if !names.insert(name.clone()) {
                v.error(svc.name.span(), format!("service {name:?} is defined twice"));
            }
            let port = v.port(&svc.port, &format!("service {name:?}"));
            let mut vips = Vec::new();
            for vip in &svc.vips {
                let Some(ip) = v.vip(vip) else { continue };
                if port != 0 {
                    v.claim(&mut listeners, ip, port, svc.protocol, vip.span(), &format!("service {name:?}"));
                }
                vips.push(ip);
            }
            if svc.vips.is_empty() {
                v.error(span.clone(), format!("service {name:?} needs at least one address in vips"));
            }
            let mut backends = Vec::new();
            let mut seen = HashSet::new();
            for b in &svc.backends {
                let b = b.get_ref();
                let weight = b.weight.as_ref().map(|w| *w.get_ref()).unwrap_or(1);
                if let Some(w) = &b.weight
                    && *w.get_ref() > MAX_WEIGHT
                {
                    v.error(w.span(), format!("weight {} is above {MAX_WEIGHT}", w.get_ref()));
                }
                match b.address.get_ref().parse::<IpAddr>().map(normalise) {
                    Ok(ip) if !seen.insert(ip) => v.error(b.address.span(), format!("backend {ip} is listed twice in service {name:?}")),
                    Ok(ip) => backends.push(Backend { address: ip, weight }),
                    Err(_) => v.error(b.address.span(), format!("{:?} is not an IPv4 or IPv6 address", b.address.get_ref())),
                }
            }
            backend_total += backends.len();
            if svc.backends.is_empty() {
                v.error(span.clone(), format!("service {name:?} has no [[service.backends]]"));
            }
            let table_size = match &svc.table_size {
                Some(t) => {
                    let n = *t.get_ref();
                    if n > pop_common::LB_TABLE_MAX || !crate::lb::maglev::is_prime(n) {
                        v.error(t.span(), format!("table_size {n} must be a prime no larger than {}", pop_common::LB_TABLE_MAX));
                    }
                    n
                }
                None => DEFAULT_TABLE_SIZE,
            };
            let table_ok = table_size <= pop_common::LB_TABLE_MAX && crate::lb::maglev::is_prime(table_size);
            for fam_v6 in [false, true] {
                let family = if fam_v6 { "IPv6" } else { "IPv4" };
                let has_vip = vips.iter().any(|ip| ip.is_ipv6() == fam_v6);
                let live: Vec<(usize, &Backend)> =
                    backends.iter().enumerate().filter(|(_, b)| b.address.is_ipv6() == fam_v6 && b.weight > 0).collect();
                if has_vip && !backends.is_empty() && live.is_empty() {
                    v.error(
                        span.clone(),
                        format!("service {name:?} has {family} VIPs but no {family} backend with weight > 0 (IPIP keeps the family)"),
                    );
                }
                // The controller builds this table at every apply; a table that cannot
                // be built is a config error here, not a failed start or reload later.
                if has_vip && !live.is_empty() && table_ok {
                    let keys: Vec<[u8; 16]> = live.iter().map(|(_, b)| crate::lb::runtime::mapped(b.address)).collect();
                    let members: Vec<crate::lb::maglev::MaglevBackend> = live
                        .iter()
                        .zip(&keys)
                        .map(|((i, b), key)| crate::lb::maglev::MaglevBackend { key, id: *i as u32, weight: b.weight })
                        .collect();
                    if let Err(e) = crate::lb::maglev::build(&members, table_size) {
                        let at = svc.table_size.as_ref().map_or(span.clone(), |t| t.span());
                        v.error(
                            at,
                            format!(
                                "service {name:?}: the {family} Maglev table of {table_size} slots cannot hold these weights \
                             (raise table_size or lower the weights): {e}"
                            ),
                        );
                    }
                }
            }
            let health = svc.health.map(|h| {
                let hspan = h.span();
                let h = h.into_inner();
                if h.interval_ms < 50 || h.timeout_ms == 0 || h.timeout_ms > h.interval_ms {
                    v.error(hspan.clone(), format!("service {name:?}: health needs interval_ms >= 50 and 0 < timeout_ms <= interval_ms"));
                }
                if h.rise == 0 || h.fall == 0 {
                    v.error(hspan.clone(), format!("service {name:?}: health rise and fall must be at least 1"));
                }
                if h.port == Some(0) {
                    v.error(hspan.clone(), format!("service {name:?}: health port 0 is not 1-65535"));
                }
                if h.kind == ProbeKind::Dns {
                    if h.name.is_none() {
                        v.error(hspan.clone(), format!("service {name:?}: a dns health check needs `name`"));
                    }
                    if h.qtype.parse::<hickory_proto::rr::RecordType>().is_err() {
                        v.error(hspan.clone(), format!("service {name:?}: unknown qtype {:?}", h.qtype));
                    }
                    if crate::health::rcode_number(&h.rcode).is_none() {
                        v.error(hspan.clone(), format!("service {name:?}: unknown rcode {:?}", h.rcode));
                    }
                }
                if h.kind == ProbeKind::Http && !h.path.starts_with('/') {
                    v.error(hspan, format!("service {name:?}: health path must start with '/'"));
                }
                h
            });
            services.push(Service {
                name,
                health,
                vips,
                port,
                protocol: svc.protocol,
                backends,
                min_healthy: svc.min_healthy.unwrap_or(1),
                table_size,
                line: line_of(text, span.start),
            });
        }
        let mut http = Vec::new();
        let mut route_entries = 0;
        for site in raw.http {
            let span = site.span();
            let site = site.into_inner();
            let name = site.name.get_ref().clone();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                v.error(site.name.span(), format!("http site name {name:?}: use letters, digits, '-' and '_'"));
            } else if !names.insert(name.clone()) {
                v.error(site.name.span(), format!("name {name:?} is used twice"));
            }
            let port = match &site.port {
                Some(p) => v.port(p, &format!("http site {name:?}")),
                None => DEFAULT_HTTP_PORT,
            };
            let mut vips = Vec::new();
            for vip in &site.vips {
                let Some(ip) = v.vip(vip) else { continue };
                if port != 0 {
                    v.claim(&mut listeners, ip, port, Protocol::Tcp, vip.span(), &format!("http site {name:?}"));
                }
                vips.push(ip);
            }
            if site.vips.is_empty() {
                v.error(span.clone(), format!("http site {name:?} needs at least one address in vips"));
            }
            // Each route, the default and the 400 answer are one HTTP_ROUTES entry each.
            route_entries += site.routes.len() + 2;
            if route_entries > pop_common::HTTP_ROUTES_MAX as usize {
                v.error(
                    span.clone(),
                    format!(
                        "http site {name:?}: more than {} routes in all sites (each site also has a default and a 400 answer)",
                        pop_common::HTTP_ROUTES_MAX
                    ),
                );
            }
            let mut routes = Vec::new();
            let mut seen_routes = HashSet::new();
            for r in site.routes {
                let rspan = r.span();
                let r = r.into_inner();
                let reply = HttpReply { status: r.status, headers: r.headers, body: r.body, location: r.location, append_path: r.append_path };
                if !r.path.starts_with('/') || r.path.len() >= pop_common::HTTP_PATH_LEN || r.path.contains(['?', ' ', '\t', '\r', '\n']) {
                    v.error(
                        rspan.clone(),
                        format!(
                            "route path {:?} must start with '/', be under {} bytes, and have no query or spaces",
                            r.path,
                            pop_common::HTTP_PATH_LEN
                        ),
                    );
                }
                let host = r.host.map(|h| h.to_ascii_lowercase());
                if let Some(h) = &host
                    && (h.is_empty() || h.len() >= pop_common::HTTP_HOST_LEN || h.contains([':', ' ', '/']))
                {
                    v.error(rspan.clone(), format!("route host {h:?} must be a host name under {} bytes, without a port", pop_common::HTTP_HOST_LEN));
                }
                if !seen_routes.insert((host.clone(), r.path.clone())) {
                    v.error(
                        rspan.clone(),
                        format!("route {:?}{} is listed twice", r.path, host.as_ref().map(|h| format!(" for host {h}")).unwrap_or_default()),
                    );
                }
                if let Err(e) = crate::http::check_reply(&reply) {
                    v.error(rspan, format!("route {:?}: {e}", r.path));
                }
                routes.push(HttpRoute { path: r.path, host, reply });
            }
            let default = match site.default {
                Some(d) => {
                    let dspan = d.span();
                    let d = d.into_inner();
                    if let Err(e) = crate::http::check_reply(&d) {
                        v.error(dspan, format!("default response: {e}"));
                    }
                    d
                }
                None => crate::http::not_found(),
            };
            http.push(HttpSite { name, vips, port, routes, default, line: line_of(text, span.start) });
        }

        let anycast = raw.anycast.map(|a| {
            let span = a.span();
            let mut a = a.into_inner();
            a.line = line_of(text, span.start);
            if a.check_ms < 50 {
                v.error(span.clone(), "anycast.check_ms must be at least 50".into());
            }
            if a.interface.is_empty() || a.interface.len() > 15 {
                v.error(span, format!("anycast.interface {:?} is not an interface name", a.interface));
            }
            a
        });

        if listeners.0.len() > pop_common::MAX_VIPS as usize {
            v.errors.push(ConfigError {
                file: path.into(),
                line: None,
                message: format!(
                    "{} (VIP, port, protocol) entries in all (each [[dns]] VIP takes two: UDP and TCP); the VIP table holds {}",
                    listeners.0.len(),
                    pop_common::MAX_VIPS
                ),
            });
        }
        if backend_total > MAX_BACKENDS {
            v.errors.push(ConfigError { file: path.into(), line: None, message: format!("{backend_total} backends in all; at most {MAX_BACKENDS}") });
        }

        // An opt-out names a VIP: anything else is a typo that would silently do nothing.
        let mut pass_unhandled_vips = Vec::new();
        for a in raw.pop.pass_unhandled_vips {
            match a.get_ref().parse::<IpAddr>() {
                Ok(ip)
                    if dns
                        .iter()
                        .flat_map(|b| &b.vips)
                        .chain(http.iter().flat_map(|h| &h.vips))
                        .chain(services.iter().flat_map(|s| &s.vips))
                        .any(|&x| x == ip) =>
                {
                    pass_unhandled_vips.push(ip)
                }
                Ok(ip) => v.error(a.span(), format!("pop.pass_unhandled_vips: {ip} is not a VIP of any [[dns]], [[http]] or [[service]] block")),
                Err(_) => v.error(a.span(), format!("pop.pass_unhandled_vips: {:?} is not an IPv4 or IPv6 address", a.get_ref())),
            }
        }

        let fault_inject = raw.pop.fault_inject.and_then(|f| {
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

        if !v.errors.is_empty() {
            return Err(ConfigErrors(v.errors));
        }
        Ok(Config {
            path: path.into(),
            pop: PopSection {
                name,
                bpffs_dir,
                run_dir,
                bpf_log: raw.pop.bpf_log,
                metrics_listen,
                flow_table_size,
                dns_table_size,
                pass_unhandled_vips,
                fault_inject,
            },
            interfaces,
            dns,
            services,
            http,
            anycast,
        })
    }

    /// `file:line: message` for something found wrong after parsing (e.g. on the host).
    pub fn error_at(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError { file: self.path.clone(), line: Some(line), message: message.into() }
    }
}

struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    /// A map capacity setting: 1024 to 64M entries, `default` when absent.
    fn table_size(&mut self, value: Option<Spanned<u32>>, key: &str, default: u32) -> u32 {
        const MAX: u32 = 1 << 26;
        match value {
            Some(n) if !(1024..=MAX).contains(n.get_ref()) => {
                self.error(n.span(), format!("{key} {} must be between 1024 and {MAX}", n.get_ref()));
                default
            }
            Some(n) => n.into_inner(),
            None => default,
        }
    }

    /// A VIP as written, normalised: an IPv4-mapped IPv6 address is the IPv4 VIP (the
    /// data path keys both the same way).
    fn vip(&mut self, vip: &Spanned<String>) -> Option<IpAddr> {
        match vip.get_ref().parse::<IpAddr>() {
            Ok(ip) => Some(normalise(ip)),
            Err(_) => {
                self.error(vip.span(), format!("{:?} is not an IPv4 or IPv6 address", vip.get_ref()));
                None
            }
        }
    }

    /// A port 1-65535 (0 when the value is an error, already reported).
    fn port(&mut self, port: &Spanned<i64>, who: &str) -> u16 {
        match u16::try_from(*port.get_ref()) {
            Ok(p) if p > 0 => p,
            _ => {
                self.error(port.span(), format!("{who}: port {} is not 1-65535", port.get_ref()));
                0
            }
        }
    }

    /// Records `who` as the handler of (ip, port, protocol); false (and an error naming
    /// both places) when another block already handles it.
    fn claim(&mut self, listeners: &mut Listeners, ip: IpAddr, port: u16, protocol: Protocol, span: Range<usize>, who: &str) -> bool {
        let line = line_of(self.text, span.start);
        match listeners.0.entry((ip, port, protocol)) {
            std::collections::hash_map::Entry::Occupied(first) => {
                let (other, other_line) = first.get();
                let message =
                    format!("{ip} port {port}/{} for {who} is already served by {other} at {}:{other_line}", protocol.name(), self.file.display());
                self.error(span, message);
                false
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((who.to_string(), line));
                true
            }
        }
    }

    fn error(&mut self, span: Range<usize>, message: String) {
        self.errors.push(ConfigError { file: self.file.into(), line: Some(line_of(self.text, span.start)), message });
    }

    fn absolute_dir(&mut self, value: Option<Spanned<String>>, key: &str, default: &str) -> PathBuf {
        match value {
            None => PathBuf::from(default),
            Some(v) => {
                let p = PathBuf::from(v.get_ref());
                if !p.is_absolute() {
                    self.error(v.span(), format!("{key} {:?} must be an absolute path", v.get_ref()));
                }
                p
            }
        }
    }
}

/// Who handles each (VIP, port, protocol), and the line that said so.
#[derive(Default)]
struct Listeners(std::collections::HashMap<(IpAddr, u16, Protocol), (String, usize)>);

/// The address the data path sees: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is IPv4.
pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Largest `zone_max_bytes` accepted (16 GiB): past that the parser's memory is the limit.
const MAX_ZONE_BYTES: u64 = 1 << 34;

/// 1-based line number of byte offset `pos` in `text`.
fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn default_pop_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "pop".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(Path::new("pop.toml"), text)
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text).unwrap_err().0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn pass_unhandled_vips_must_name_configured_vips() {
        let base = "[[interface]]\nname = \"eth0\"\n[[service]]\nname = \"web\"\nvips = [\"203.0.113.10\"]\nport = 80\n[[service.backends]]\naddress = \"198.51.100.5\"\n";
        let c = parse(&format!("[pop]\npass_unhandled_vips = [\"203.0.113.10\"]\n{base}")).unwrap();
        assert_eq!(c.pop.pass_unhandled_vips, vec!["203.0.113.10".parse::<IpAddr>().unwrap()]);
        assert!(parse(base).unwrap().pop.pass_unhandled_vips.is_empty());
        let e = errors(&format!("[pop]\npass_unhandled_vips = [\"203.0.113.11\", \"x\"]\n{base}"));
        assert!(e[0].starts_with("pop.toml:2: pop.pass_unhandled_vips: 203.0.113.11 is not a VIP"), "{e:?}");
        assert!(e[1].starts_with("pop.toml:2: pop.pass_unhandled_vips: \"x\" is not an IPv4"), "{e:?}");
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("[[interface]]\nname = \"eth0\"\n").unwrap();
        assert_eq!(c.interfaces.len(), 1);
        assert_eq!(c.interfaces[0].name, "eth0");
        assert_eq!(c.interfaces[0].xdp_mode, XdpMode::Native);
        assert_eq!(c.interfaces[0].line, 2);
        assert_eq!(c.pop.bpffs_dir, PathBuf::from(DEFAULT_BPFFS_DIR));
        assert_eq!(c.pop.run_dir, PathBuf::from(DEFAULT_RUN_DIR));
        assert_eq!(c.pop.bpf_log, BpfLogLevel::Info);
    }

    #[test]
    fn full_config() {
        let c = parse(
            "[pop]\nname = \"pop-a\"\nbpffs_dir = \"/sys/fs/bpf/x\"\nrun_dir = \"/tmp/r\"\nbpf_log = \"debug\"\n\
             [[interface]]\nname = \"veth0\"\nxdp_mode = \"generic\"\n[[interface]]\nname = \"veth1\"\n",
        )
        .unwrap();
        assert_eq!(c.pop.name, "pop-a");
        assert_eq!(c.pop.bpffs_dir, PathBuf::from("/sys/fs/bpf/x"));
        assert_eq!(c.pop.bpf_log, BpfLogLevel::Debug);
        assert_eq!(c.interfaces[0].xdp_mode, XdpMode::Generic);
        assert_eq!(c.interfaces[1].name, "veth1");
        assert_eq!(c.interfaces[1].line, 10);
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        assert_eq!(
            errors("[[interface]]\nname = \"eth0\"\nxdp_mod = \"native\"\n"),
            ["pop.toml:3: unknown field `xdp_mod`, expected `name` or `xdp_mode`"]
        );
        let e = errors("[pop]\nnmae = \"x\"\n[[interface]]\nname = \"eth0\"\n");
        assert!(e[0].starts_with("pop.toml:2: unknown field `nmae`"), "{e:?}");
        let e = errors("[[interface]]\nname = \"eth0\"\n[extra]\n");
        assert!(e[0].starts_with("pop.toml:3: unknown field `extra`"), "{e:?}");
    }

    #[test]
    fn bad_values_name_their_line() {
        let e = errors("[[interface]]\nname = \"eth0\"\nxdp_mode = \"turbo\"\n");
        assert!(e[0].starts_with("pop.toml:3: unknown variant `turbo`"), "{e:?}");
        let e = errors("[pop]\nbpf_log = 3\n[[interface]]\nname = \"eth0\"\n");
        assert!(e[0].starts_with("pop.toml:2:"), "{e:?}");
        let e = errors("[[interface]]\nname = \"eth0\n");
        assert!(e[0].starts_with("pop.toml:2:"), "{e:?}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let e = errors(
            "[pop]\nname = \"bad name\"\nbpffs_dir = \"relative/dir\"\n\
             [[interface]]\nname = \"eth0\"\n[[interface]]\nname = \"eth0\"\n[[interface]]\nname = \"a-name-longer-than-15\"\n",
        );
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("pop.toml:2: pop.name \"bad name\""), "{e:?}");
        assert!(e[1].starts_with("pop.toml:3: pop.bpffs_dir \"relative/dir\" must be an absolute path"), "{e:?}");
        assert!(e[2].starts_with("pop.toml:6: interface \"eth0\" is listed twice"), "{e:?}");
        assert!(e[3].starts_with("pop.toml:9: interface name \"a-name-longer-than-15\""), "{e:?}");
    }

    #[test]
    fn dns_blocks() {
        let c = Config::parse(
            Path::new("/etc/pop/pop.toml"),
            "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\", \"2001:db8::53\"]\nzones = [\"zones/a.zone\", \"/abs/b.zone\"]\n\
             [[dns]]\nvips = [\"203.0.113.54\"]\nzones = [\"c.zone\"]\nrate_limit = 0\nfast_path = false\n",
        )
        .unwrap();
        assert_eq!(c.dns.len(), 2);
        assert_eq!(c.dns[0].vips, ["203.0.113.53".parse::<IpAddr>().unwrap(), "2001:db8::53".parse().unwrap()]);
        assert_eq!(c.dns[0].zones, [PathBuf::from("/etc/pop/zones/a.zone"), PathBuf::from("/abs/b.zone")]);
        assert_eq!((c.dns[0].rate_limit, c.dns[0].fast_path, c.dns[0].line), (200, true, 3));
        assert_eq!((c.dns[1].rate_limit, c.dns[1].fast_path), (0, false));
    }

    #[test]
    fn table_sizes_have_defaults_and_bounds() {
        let c = parse("[[interface]]\nname = \"eth0\"\n").unwrap();
        assert_eq!((c.pop.dns_table_size, c.pop.flow_table_size), (pop_common::DNS_TABLE_MAX, pop_common::LB_FLOWS_MAX));
        let c = parse("[pop]\ndns_table_size = 4194304\n[[interface]]\nname = \"eth0\"\n").unwrap();
        assert_eq!(c.pop.dns_table_size, 4194304);
        let e = errors("[pop]\nflow_table_size = 999999999\ndns_table_size = 10\n[[interface]]\nname = \"eth0\"\n");
        assert!(e[1].starts_with("pop.toml:3: pop.dns_table_size 10 must be between 1024 and 67108864"), "{e:?}");
        assert!(e[0].starts_with("pop.toml:2: pop.flow_table_size 999999999 must be"), "{e:?}");
    }

    #[test]
    fn dns_block_errors() {
        let e = errors(
            "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\", \"not-an-ip\"]\nzones = [\"a.zone\"]\n\
             [[dns]]\nvips = [\"203.0.113.53\"]\nzones = []\n[[dns]]\nvips = [\"::1\"]\nzone = [\"x\"]\n",
        );
        assert!(e[0].starts_with("pop.toml:11: unknown field `zone`"), "{e:?}");
        let e = errors(
            "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\", \"not-an-ip\"]\nzones = [\"a.zone\"]\n\
             [[dns]]\nvips = [\"203.0.113.53\"]\nzones = []\n",
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("pop.toml:4: \"not-an-ip\" is not an IPv4 or IPv6 address"), "{e:?}");
        assert!(e[1].starts_with("pop.toml:6: [[dns]] needs at least one zone file"), "{e:?}");
        assert_eq!(e[2], "pop.toml:7: 203.0.113.53 port 53/udp for [[dns]] is already served by [[dns]] at pop.toml:4");
    }

    #[test]
    fn services() {
        let c = parse(
            "[[interface]]\nname = \"eth0\"\n[[service]]\nname = \"web\"\nvips = [\"203.0.113.10\", \"2001:db8::10\"]\nport = 80\n\
             [[service.backends]]\naddress = \"198.51.100.11\"\nweight = 2\n[[service.backends]]\naddress = \"2001:db8:1::11\"\n\
             [[service]]\nname = \"dns-lb\"\nvips = [\"203.0.113.11\"]\nport = 53\nprotocol = \"udp\"\ntable_size = 251\n\
             backends = [{ address = \"198.51.100.12\" }]\n",
        )
        .unwrap();
        assert_eq!(c.services.len(), 2);
        let web = &c.services[0];
        assert_eq!((web.name.as_str(), web.port, web.protocol, web.table_size, web.min_healthy, web.line), ("web", 80, Protocol::Tcp, 65537, 1, 3));
        assert_eq!(
            web.backends,
            [Backend { address: "198.51.100.11".parse().unwrap(), weight: 2 }, Backend { address: "2001:db8:1::11".parse().unwrap(), weight: 1 }]
        );
        assert_eq!((c.services[1].protocol, c.services[1].table_size), (Protocol::Udp, 251));
    }

    #[test]
    fn service_errors() {
        let e = errors(
            "[[interface]]\nname = \"eth0\"\n[[dns]]\nvips = [\"203.0.113.53\"]\nzones = [\"z\"]\n\
             [[service]]\nname = \"web\"\nvips = [\"203.0.113.10\"]\nport = 70000\nbackends = [{ address = \"2001:db8::1\" }]\n\
             [[service]]\nname = \"web\"\nvips = [\"203.0.113.53\"]\nport = 53\nprotocol = \"udp\"\ntable_size = 100\nbackends = [{ address = \"198.51.100.1\", weight = 5000 }]\n",
        );
        let want = [
            "pop.toml:9: service \"web\": port 70000 is not 1-65535",
            "pop.toml:6: service \"web\" has IPv4 VIPs but no IPv4 backend",
            "pop.toml:12: service \"web\" is defined twice",
            "pop.toml:13: 203.0.113.53 port 53/udp for service \"web\" is already served by [[dns]] at pop.toml:4",
            "pop.toml:17: weight 5000 is above 1000",
            "pop.toml:16: table_size 100 must be a prime",
        ];
        assert_eq!(e.len(), want.len(), "{e:#?}");
        for (got, want) in e.iter().zip(want) {
            assert!(got.starts_with(want), "{got:?} does not start with {want:?}");
        }
    }

    const IFACE: &str = "[[interface]]\nname = \"eth0\"\n";

    #[test]
    fn ipv4_mapped_vips_are_the_ipv4_vip() {
        let c = parse(&format!(
            "{IFACE}[[dns]]\nvips = [\"::ffff:203.0.113.53\"]\nzones = [\"z\"]\n\
             [[service]]\nname = \"web\"\nvips = [\"::ffff:203.0.113.10\"]\nport = 80\nbackends = [{{ address = \"::ffff:198.51.100.1\" }}]\n"
        ))
        .unwrap();
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(c.dns[0].vips, [v4("203.0.113.53")]);
        assert_eq!(c.services[0].vips, [v4("203.0.113.10")]);
        assert_eq!(c.services[0].backends[0].address, v4("198.51.100.1"));
        // Written both ways, it is one VIP with two handlers.
        let e = errors(&format!(
            "{IFACE}[[dns]]\nvips = [\"203.0.113.53\"]\nzones = [\"z\"]\n\
             [[dns]]\nvips = [\"::ffff:203.0.113.53\"]\nzones = [\"y\"]\n"
        ));
        assert_eq!(e, ["pop.toml:7: 203.0.113.53 port 53/udp for [[dns]] is already served by [[dns]] at pop.toml:4"]);
    }

    #[test]
    fn one_handler_per_vip_port_and_protocol() {
        // DNS holds UDP and TCP 53 (its server answers TCP): a TCP/53 service clashes too.
        let e = errors(&format!(
            "{IFACE}[[dns]]\nvips = [\"203.0.113.53\"]\nzones = [\"z\"]\n\
             [[service]]\nname = \"dnstcp\"\nvips = [\"203.0.113.53\"]\nport = 53\nbackends = [{{ address = \"198.51.100.1\" }}]\n"
        ));
        assert_eq!(e, ["pop.toml:8: 203.0.113.53 port 53/tcp for service \"dnstcp\" is already served by [[dns]] at pop.toml:4"]);
        // HTTP in XDP and a service on the same TCP port.
        let e = errors(&format!(
            "{IFACE}[[service]]\nname = \"web\"\nvips = [\"203.0.113.80\"]\nport = 80\nbackends = [{{ address = \"198.51.100.1\" }}]\n\
             [[http]]\nname = \"edge\"\nvips = [\"2001:db8::80\", \"203.0.113.80\"]\n"
        ));
        assert_eq!(e, ["pop.toml:10: 203.0.113.80 port 80/tcp for http site \"edge\" is already served by service \"web\" at pop.toml:5"]);
        // Different protocol or port: no clash.
        parse(&format!(
            "{IFACE}[[service]]\nname = \"web\"\nvips = [\"203.0.113.80\"]\nport = 80\nprotocol = \"udp\"\nbackends = [{{ address = \"198.51.100.1\" }}]\n\
             [[http]]\nname = \"edge\"\nvips = [\"203.0.113.80\"]\n[[http]]\nname = \"alt\"\nvips = [\"203.0.113.80\"]\nport = 8080\n"
        ))
        .unwrap();
    }

    #[test]
    fn port_zero_is_rejected() {
        let e = errors(&format!(
            "{IFACE}[[service]]\nname = \"web\"\nvips = [\"203.0.113.80\"]\nport = 0\nbackends = [{{ address = \"198.51.100.1\" }}]\n\
             [service.health]\ntype = \"tcp\"\nport = 0\n[[http]]\nname = \"edge\"\nvips = [\"203.0.113.81\"]\nport = 0\n"
        ));
        assert_eq!(e.len(), 3, "{e:#?}");
        assert_eq!(e[0], "pop.toml:6: service \"web\": port 0 is not 1-65535");
        assert!(e[1].starts_with("pop.toml:8: service \"web\": health port 0"), "{e:#?}");
        assert_eq!(e[2], "pop.toml:14: http site \"edge\": port 0 is not 1-65535");
    }

    #[test]
    fn a_maglev_table_too_small_for_the_weights_is_a_config_error() {
        let svc = |table: u32| {
            format!(
                "{IFACE}[[service]]\nname = \"web\"\nvips = [\"203.0.113.80\"]\nport = 80\ntable_size = {table}\n\
                 backends = [{{ address = \"198.51.100.1\", weight = 1000 }}, {{ address = \"198.51.100.2\", weight = 1 }}]\n"
            )
        };
        let e = errors(&svc(251));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].starts_with("pop.toml:7: service \"web\": the IPv4 Maglev table of 251 slots cannot hold these weights"), "{e:#?}");
        parse(&svc(65537)).unwrap();
    }

    #[test]
    fn data_path_table_sizes_are_checked_up_front() {
        // Each DNS VIP takes two VIP table entries (UDP and TCP 53).
        let n = pop_common::MAX_VIPS as usize / 2 + 1;
        let vips: Vec<String> = (0..n).map(|i| format!("\"2001:db8::{:x}\"", i + 1)).collect();
        let e = errors(&format!("{IFACE}[[dns]]\nvips = [{}]\nzones = [\"z\"]\n", vips.join(", ")));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].starts_with(&format!("pop.toml: {} (VIP, port, protocol) entries in all", 2 * n)), "{e:#?}");
        // Routes, plus a default and a 400 per site, fill HTTP_ROUTES.
        let routes: String = (0..pop_common::HTTP_ROUTES_MAX - 1).map(|i| format!("[[http.routes]]\npath = \"/r{i}\"\nstatus = 200\n")).collect();
        let e = errors(&format!("{IFACE}[[http]]\nname = \"edge\"\nvips = [\"203.0.113.80\"]\n{routes}"));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].starts_with("pop.toml:3: http site \"edge\": more than 4096 routes"), "{e:#?}");
    }

    #[test]
    fn no_interface_is_an_error() {
        let e = errors("[pop]\nname = \"a\"\n");
        assert_eq!(e, ["pop.toml: no [[interface]] configured: name at least one interface to attach to"]);
    }

    #[test]
    fn aya_levels_match_aya_log_common() {
        assert_eq!(BpfLogLevel::Off.aya_level(), 0);
        assert_eq!(BpfLogLevel::Debug.aya_level(), 4);
    }
}
