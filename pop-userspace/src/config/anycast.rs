//! `[anycast]`: which interface carries announced VIPs, and the announce rules' timing.

use serde::Deserialize;
use toml::Spanned;

use super::{Validator, default_rise_fall};

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

/// Checks `[anycast]` and records its line.
pub(super) fn validate(v: &mut Validator, raw: Option<Spanned<AnycastConfig>>) -> Option<AnycastConfig> {
    raw.map(|a| {
        let span = a.span();
        let mut a = a.into_inner();
        a.line = v.line(span.start);
        if a.check_ms < 50 {
            v.error(span.clone(), "anycast.check_ms must be at least 50".into());
        }
        if a.interface.is_empty() || a.interface.len() > 15 {
            v.error(span, format!("anycast.interface {:?} is not an interface name", a.interface));
        }
        a
    })
}
