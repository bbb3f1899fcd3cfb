//! `[[service]]` blocks: a port of some VIPs steered to backends by Maglev, and the
//! health checks that decide which backends take traffic.

use std::{collections::HashSet, net::IpAddr};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Listeners, Validator, default_rise_fall};
use crate::addr::normalise;
use crate::{addr, lb::maglev};

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
    /// dns: an answer record whose data must read exactly this (e.g. "192.0.2.10").
    pub answer: Option<String>,
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
pub(super) fn default_method() -> String {
    "GET".into()
}
pub(super) fn default_path() -> String {
    "/".into()
}
pub(super) fn default_status() -> u16 {
    200
}
fn default_qtype() -> String {
    "A".into()
}
pub(super) fn default_rcode() -> String {
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

/// An rcode as the config names it (`NOERROR`, `NXDOMAIN`, ...), for dns health checks.
pub fn rcode_number(name: &str) -> Option<u8> {
    Some(match name.to_ascii_uppercase().as_str() {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" => 4,
        "REFUSED" => 5,
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
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
pub(super) struct RawBackend {
    address: Spanned<String>,
    weight: Option<Spanned<u32>>,
}

/// Checks every `[[service]]`: names unique among services and sites (`names`), each
/// (VIP, port, protocol) claimed once, and each family's Maglev table buildable.
pub(super) fn validate(v: &mut Validator, listeners: &mut Listeners, names: &mut HashSet<String>, raw: Vec<Spanned<RawService>>) -> Vec<Service> {
    let mut services = Vec::new();
    let mut backend_total = 0;
    if raw.len() > MAX_SERVICES {
        v.error(raw[MAX_SERVICES].span(), format!("at most {MAX_SERVICES} [[service]] blocks"));
    }
    for svc in raw {
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
                v.claim(listeners, ip, port, svc.protocol, vip.span(), &format!("service {name:?}"));
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
                if n > pop_common::LB_TABLE_MAX || !maglev::is_prime(n) {
                    v.error(t.span(), format!("table_size {n} must be a prime no larger than {}", pop_common::LB_TABLE_MAX));
                }
                n
            }
            None => DEFAULT_TABLE_SIZE,
        };
        let table_ok = table_size <= pop_common::LB_TABLE_MAX && maglev::is_prime(table_size);
        for fam_v6 in [false, true] {
            let family = if fam_v6 { "IPv6" } else { "IPv4" };
            let has_vip = vips.iter().any(|ip| ip.is_ipv6() == fam_v6);
            let live: Vec<(usize, &Backend)> = backends.iter().enumerate().filter(|(_, b)| b.address.is_ipv6() == fam_v6 && b.weight > 0).collect();
            if has_vip && !backends.is_empty() && live.is_empty() {
                v.error(span.clone(), format!("service {name:?} has {family} VIPs but no {family} backend with weight > 0 (IPIP keeps the family)"));
            }
            // The controller builds this table at every apply; a table that cannot
            // be built is a config error here, not a failed start or reload later.
            if has_vip && !live.is_empty() && table_ok {
                let keys: Vec<[u8; 16]> = live.iter().map(|(_, b)| addr::mapped(b.address)).collect();
                let members: Vec<maglev::MaglevBackend> =
                    live.iter().zip(&keys).map(|((i, b), key)| maglev::MaglevBackend { key, id: *i as u32, weight: b.weight }).collect();
                if let Err(e) = maglev::build(&members, table_size) {
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
                if rcode_number(&h.rcode).is_none() {
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
            line: v.line(span.start),
        });
    }
    if backend_total > MAX_BACKENDS {
        v.errors.push(ConfigError { file: v.file.into(), line: None, message: format!("{backend_total} backends in all; at most {MAX_BACKENDS}") });
    }
    services
}
