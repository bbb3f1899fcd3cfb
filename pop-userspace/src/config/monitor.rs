//! `[[monitor]]` targets: endpoints this PoP probes for the operator (other PoPs'
//! unicast addresses, any DNS or HTTP endpoint), reported in `pop status` and
//! Prometheus. They never steer traffic or decide announcements.

use std::{collections::HashSet, net::SocketAddr};

use serde::Deserialize;
use toml::Spanned;

use super::service::{HealthCheck, ProbeKind, default_method, default_path, default_rcode, default_status, rcode_number};
use super::{Validator, default_rise_fall};

/// One `[[monitor]]`: a target, what to ask it and what it must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    pub name: String,
    pub target: SocketAddr,
    /// The probe, in the form backend health checks use (interval, timeout, kind,
    /// HTTP path and status, DNS name, type, rcode and expected answer).
    pub probe: HealthCheck,
    pub line: usize,
}

/// At most this many targets: each is a task probing on its own schedule.
pub const MAX_MONITORS: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMonitor {
    name: Spanned<String>,
    target: Spanned<String>,
    #[serde(rename = "type")]
    kind: ProbeKind,
    #[serde(default = "default_interval")]
    interval_ms: u64,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_method")]
    method: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_status")]
    status: u16,
    host: Option<String>,
    /// dns: the query name (the monitor's own `name` is its label).
    query: Option<String>,
    #[serde(default = "default_qtype")]
    qtype: String,
    #[serde(default = "default_rcode")]
    rcode: String,
    /// dns: an answer record whose data must read exactly this (e.g. "192.0.2.10").
    answer: Option<String>,
}

fn default_interval() -> u64 {
    5000
}
fn default_timeout() -> u64 {
    1000
}
fn default_qtype() -> String {
    "SOA".into()
}

/// Checks every `[[monitor]]`: unique names, `address:port` targets, probes that can
/// be sent (a DNS query name and type, an HTTP path), sane timing.
pub(super) fn validate(v: &mut Validator, raw: Vec<Spanned<RawMonitor>>) -> Vec<Monitor> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    if raw.len() > MAX_MONITORS {
        v.error(raw[MAX_MONITORS].span(), format!("at most {MAX_MONITORS} [[monitor]] targets"));
    }
    for m in raw {
        let span = m.span();
        let m = m.into_inner();
        let name = m.name.get_ref().clone();
        if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
            v.error(m.name.span(), format!("monitor name {name:?} must be non-empty, without quotes or control characters"));
        } else if !names.insert(name.clone()) {
            v.error(m.name.span(), format!("monitor {name:?} is defined twice"));
        }
        let target = match m.target.get_ref().parse::<SocketAddr>() {
            Ok(t) if t.port() != 0 => Some(t),
            _ => {
                v.error(
                    m.target.span(),
                    format!(
                        "monitor {name:?}: target {:?} is not address:port (e.g. \"198.51.100.1:53\" or \"[2001:db8::1]:80\")",
                        m.target.get_ref()
                    ),
                );
                None
            }
        };
        if m.interval_ms < 100 || m.timeout_ms == 0 || m.timeout_ms > m.interval_ms {
            v.error(span.clone(), format!("monitor {name:?}: interval_ms must be at least 100 and timeout_ms between 1 and interval_ms"));
        }
        match m.kind {
            ProbeKind::Dns => {
                match &m.query {
                    None => v.error(span.clone(), format!("monitor {name:?}: a dns monitor needs `query` (the name to ask)")),
                    Some(q) if q.parse::<hickory_proto::rr::Name>().is_err() => {
                        v.error(span.clone(), format!("monitor {name:?}: query {q:?} is not a domain name"))
                    }
                    Some(_) => {}
                }
                if m.qtype.parse::<hickory_proto::rr::RecordType>().is_err() {
                    v.error(span.clone(), format!("monitor {name:?}: unknown qtype {:?}", m.qtype));
                }
                if rcode_number(&m.rcode).is_none() {
                    v.error(span.clone(), format!("monitor {name:?}: unknown rcode {:?}", m.rcode));
                }
            }
            ProbeKind::Http if !m.path.starts_with('/') => v.error(span.clone(), format!("monitor {name:?}: path must start with '/'")),
            _ => {}
        }
        if m.answer.is_some() && m.kind != ProbeKind::Dns {
            v.error(span.clone(), format!("monitor {name:?}: `answer` is for dns monitors"));
        }
        let probe = HealthCheck {
            kind: m.kind,
            interval_ms: m.interval_ms,
            timeout_ms: m.timeout_ms,
            rise: default_rise_fall(),
            fall: default_rise_fall(),
            port: None,
            method: m.method,
            path: m.path,
            status: m.status,
            host: m.host,
            name: m.query,
            qtype: m.qtype,
            rcode: m.rcode,
            answer: m.answer,
        };
        if let Some(target) = target {
            out.push(Monitor { name, target, probe, line: v.line(span.start) });
        }
    }
    out
}
