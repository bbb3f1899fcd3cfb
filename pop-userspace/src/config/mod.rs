//! `pop.toml`: parsing and validation. Every error names the file and line at fault,
//! and nothing is applied unless the whole file is valid.
//!
//! One file per section, each with its types, the section as written (`Raw*`) and one
//! `validate` function; [`Validator`] holds the checks they share. Config imports no
//! feature module except pure helpers that import nothing back ([`crate::addr`],
//! [`crate::lb::maglev`], [`crate::http::reply`]); features read their sections' types
//! from here.

mod anycast;
mod dns;
mod error;
mod http;
mod monitor;
mod pop;
mod service;
#[cfg(test)]
mod tests;
mod validator;

use std::{
    collections::HashSet,
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use self::validator::{Listeners, Validator, line_of};
pub use self::{
    anycast::{AnycastConfig, DEFAULT_LEASE_S, MAX_LEASE_S},
    dns::{DEFAULT_DNS_RATE_LIMIT, DEFAULT_ZONE_MAX_BYTES, DNS_PORT, DnsBlock, MAX_DNS_BLOCKS, Secondary, TsigKey, ZoneLimits},
    error::{ConfigError, ConfigErrors},
    http::{HttpReply, HttpRoute, HttpSite},
    monitor::{MAX_MONITORS, Monitor},
    pop::{BpfLogLevel, DEFAULT_BPFFS_DIR, DEFAULT_CONFIG, DEFAULT_RUN_DIR, DEFAULT_STATE_DIR, FAULT_STEPS, Interface, PopSection, XdpMode},
    service::{Backend, DEFAULT_TABLE_SIZE, HealthCheck, MAX_BACKENDS, MAX_SERVICES, MAX_WEIGHT, ProbeKind, Protocol, Service, rcode_number},
};
pub use crate::addr::normalise;

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
    /// `[[monitor]]`: endpoints probed for the operator (other PoPs, any endpoint).
    pub monitors: Vec<Monitor>,
}

/// Consecutive checks to change state, for backends and for VIPs alike.
fn default_rise_fall() -> u32 {
    2
}

// ---- the file as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    pop: pop::RawPop,
    #[serde(default)]
    interface: Vec<Spanned<pop::RawInterface>>,
    #[serde(default)]
    dns: Vec<Spanned<dns::RawDns>>,
    #[serde(default)]
    service: Vec<Spanned<service::RawService>>,
    #[serde(default)]
    http: Vec<Spanned<http::RawHttp>>,
    anycast: Option<Spanned<AnycastConfig>>,
    #[serde(default)]
    monitor: Vec<Spanned<monitor::RawMonitor>>,
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
        let mut v = Validator::new(path, text);
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let line = e.span().map(|s| line_of(text, s.start));
                // toml's message repeats the location on its own lines; keep the first line.
                let message = e.message().lines().next().unwrap_or("invalid TOML").to_string();
                return Err(ConfigErrors(vec![ConfigError { file: path.into(), line, message }]));
            }
        };

        let (mut pop, pass_unhandled) = pop::validate(&mut v, raw.pop);
        let interfaces = pop::interfaces(&mut v, raw.interface);
        // Every (VIP, port, protocol) has one handler; the first to claim it wins and a
        // second is an error naming both places.
        let mut listeners = Listeners::default();
        // Service and site names share one namespace (both label metrics).
        let mut names = HashSet::new();
        let dns = dns::validate(&mut v, &mut listeners, raw.dns);
        let services = service::validate(&mut v, &mut listeners, &mut names, raw.service);
        let http = http::validate(&mut v, &mut listeners, &mut names, raw.http);
        let anycast = anycast::validate(&mut v, raw.anycast);
        let monitors = monitor::validate(&mut v, raw.monitor);
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
        // An opt-out names a VIP: anything else is a typo that would silently do nothing.
        let vips: Vec<IpAddr> =
            dns.iter().flat_map(|b| &b.vips).chain(http.iter().flat_map(|h| &h.vips)).chain(services.iter().flat_map(|s| &s.vips)).copied().collect();
        pop.pass_unhandled_vips = pop::pass_unhandled(&mut v, pass_unhandled, &vips);

        if !v.errors.is_empty() {
            return Err(ConfigErrors(v.errors));
        }
        Ok(Config { path: path.into(), pop, interfaces, dns, services, http, anycast, monitors })
    }

    /// `file:line: message` for something found wrong after parsing (e.g. on the host).
    pub fn error_at(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError { file: self.path.clone(), line: Some(line), message: message.into() }
    }
}
