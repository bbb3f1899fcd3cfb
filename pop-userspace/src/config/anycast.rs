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
    /// Each announced VIP's address lifetime in seconds (valid_lft/preferred_lft), renewed
    /// every third of it: the kernel removes the address by itself, and so the routing
    /// daemon withdraws the route, at most this long after the controller stops renewing
    /// (killed, hung). 0: addresses never lapse (not recommended).
    #[serde(default = "default_lease")]
    pub lease_s: u32,
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
/// 2 s: after SIGKILL the address goes within 2 s (plus up to ~0.25 s of kernel timer
/// slack) and the route with it, while a restart has ~1.3 s (2 s less one renewal period)
/// to take the addresses over before they lapse.
pub const DEFAULT_LEASE_S: u32 = 2;
fn default_lease() -> u32 {
    DEFAULT_LEASE_S
}
/// Longer than an hour is not a lease any more: a dead PoP would keep drawing traffic.
pub const MAX_LEASE_S: u32 = 3600;

impl AnycastConfig {
    /// How often announced VIPs' leases are renewed: three renewals per lease, so one
    /// late or failed renewal does not let the address lapse. None: no lease.
    pub fn renew_every(&self) -> Option<std::time::Duration> {
        (self.lease_s > 0).then(|| std::time::Duration::from_millis(u64::from(self.lease_s) * 1000 / 3))
    }
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
        if a.lease_s > MAX_LEASE_S {
            v.error(
                span.clone(),
                format!("anycast.lease_s must be at most {MAX_LEASE_S} (0 turns leases off): a dead PoP's route lasts as long as its lease"),
            );
        }
        if a.interface.is_empty() || a.interface.len() > 15 {
            v.error(span, format!("anycast.interface {:?} is not an interface name", a.interface));
        }
        a
    })
}
