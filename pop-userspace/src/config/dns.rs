//! `[[dns]]` blocks: zones served on a set of VIPs, with their limits.

use std::{net::IpAddr, path::PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Listeners, Protocol, Validator};

/// The port every `[[dns]]` VIP serves, over UDP and TCP.
pub const DNS_PORT: u16 = 53;

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
    pub zone_limits: ZoneLimits,
    /// Zones received by transfer from their primaries (`[[dns.secondary]]`).
    pub secondaries: Vec<Secondary>,
    /// Line of the block's `[[dns]]` header.
    pub line: usize,
}

/// `[[dns.secondary]]`: a zone this PoP receives from its primaries by AXFR, refreshes
/// on their NOTIFY and on the SOA timers, and stores under `pop.state_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secondary {
    /// The zone's apex, lowercase, with the final dot.
    pub zone: String,
    /// Where transfers come from, in order; NOTIFY is accepted from these addresses only.
    pub primaries: Vec<std::net::SocketAddr>,
    /// TSIG (hmac-sha256) on SOA queries and transfers, when the primaries require it.
    pub tsig: Option<TsigKey>,
    /// A catalog zone (RFC 9432, `catalog = true`): transferred and followed like any
    /// secondary but not served; each member zone it lists becomes a secondary of the
    /// block, from the same primaries with the same key (see `dns::catalog`).
    pub catalog: bool,
    /// For a member zone: the catalog that lists it (none in the config file).
    pub member_of: Option<String>,
    pub line: usize,
}

/// A TSIG key: its name (lowercase, final dot) and the decoded secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub secret: Vec<u8>,
}

impl Secondary {
    /// The stored copy of the last transfer (wire format, as received).
    pub fn file(&self, state_dir: &std::path::Path) -> PathBuf {
        state_dir.join("secondary").join(format!("{}axfr", self.zone))
    }
}

/// Default response rate limit per client prefix (responses/s).
pub const DEFAULT_DNS_RATE_LIMIT: u32 = 200;
/// The data path holds at most this many `[[dns]]` blocks.
pub const MAX_DNS_BLOCKS: usize = pop_common::DNS_BLOCKS_MAX as usize;
/// Default cap on one zone's text: the zone file and everything it includes, together.
pub const DEFAULT_ZONE_MAX_BYTES: u64 = 64 << 20;
/// Largest `zone_max_bytes` accepted (16 GiB): past that the parser's memory is the limit.
const MAX_ZONE_BYTES: u64 = 1 << 34;

/// What a zone may read: `$INCLUDE` only below the including file's directory or one
/// of `include_dirs`, and at most `max_bytes` of text in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneLimits {
    pub include_dirs: Vec<PathBuf>,
    pub max_bytes: u64,
}

impl Default for ZoneLimits {
    fn default() -> Self {
        ZoneLimits { include_dirs: Vec::new(), max_bytes: DEFAULT_ZONE_MAX_BYTES }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    vips: Vec<Spanned<String>>,
    #[serde(default)]
    zones: Vec<Spanned<String>>,
    rate_limit: Option<u32>,
    fast_path: Option<bool>,
    /// Directories `$INCLUDE` may read from besides the including file's own.
    #[serde(default)]
    include_dirs: Vec<Spanned<String>>,
    zone_max_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    secondary: Vec<Spanned<RawSecondary>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecondary {
    zone: Spanned<String>,
    primaries: Spanned<Vec<Spanned<String>>>,
    tsig: Option<Spanned<RawTsig>>,
    #[serde(default)]
    catalog: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTsig {
    name: String,
    #[serde(default = "default_tsig_algorithm")]
    algorithm: String,
    /// base64, as `keymgr -t` and `tsig-keygen` print it.
    secret: String,
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".into()
}

/// Checks every `[[dns]]` block; each VIP claims port 53 over UDP and TCP.
pub(super) fn validate(v: &mut Validator, listeners: &mut Listeners, raw: Vec<Spanned<RawDns>>) -> Vec<DnsBlock> {
    let mut dns = Vec::new();
    if raw.len() > MAX_DNS_BLOCKS {
        v.error(raw[MAX_DNS_BLOCKS].span(), format!("at most {MAX_DNS_BLOCKS} [[dns]] blocks"));
    }
    for block in raw {
        let span = block.span();
        let line = v.line(span.start);
        let block = block.into_inner();
        if block.vips.is_empty() {
            v.error(span.clone(), "[[dns]] needs at least one address in vips".into());
        }
        if block.zones.is_empty() && block.secondary.is_empty() {
            v.error(span.clone(), "[[dns]] needs at least one zone: a file in zones, or a [[dns.secondary]]".into());
        }
        let secondaries = secondaries(v, block.secondary);
        let mut vips = Vec::new();
        for vip in &block.vips {
            let Some(ip) = v.vip(vip) else { continue };
            // The server answers DNS over TCP on the same VIPs.
            if v.claim(listeners, ip, DNS_PORT, Protocol::Udp, vip.span(), "[[dns]]")
                && v.claim(listeners, ip, DNS_PORT, Protocol::Tcp, vip.span(), "[[dns]]")
            {
                vips.push(ip);
            }
        }
        let zones = block.zones.into_iter().map(|z| v.base.join(z.into_inner())).collect();
        let include_dirs = block.include_dirs.into_iter().map(|d| v.base.join(d.into_inner())).collect();
        let max_bytes = match block.zone_max_bytes {
            Some(n) if !(1024..=MAX_ZONE_BYTES).contains(n.get_ref()) => {
                v.error(n.span(), format!("dns.zone_max_bytes {} must be between 1024 and {MAX_ZONE_BYTES}", n.get_ref()));
                DEFAULT_ZONE_MAX_BYTES
            }
            Some(n) => n.into_inner(),
            None => DEFAULT_ZONE_MAX_BYTES,
        };
        dns.push(DnsBlock {
            vips,
            zones,
            rate_limit: block.rate_limit.unwrap_or(DEFAULT_DNS_RATE_LIMIT),
            fast_path: block.fast_path.unwrap_or(true),
            zone_limits: ZoneLimits { include_dirs, max_bytes },
            secondaries,
            line,
        });
    }
    dns
}

fn secondaries(v: &mut Validator, raw: Vec<Spanned<RawSecondary>>) -> Vec<Secondary> {
    let mut out: Vec<Secondary> = Vec::new();
    for s in raw {
        let line = v.line(s.span().start);
        let s = s.into_inner();
        let zone = match hickory_proto::rr::Name::from_ascii(s.zone.get_ref()) {
            Ok(n) if !n.is_root() => format!("{}", n.to_lowercase()).trim_end_matches('.').to_string() + ".",
            _ => {
                v.error(s.zone.span(), format!("dns.secondary zone {:?} is not a domain name", s.zone.get_ref()));
                continue;
            }
        };
        if out.iter().any(|o| o.zone == zone) {
            v.error(s.zone.span(), format!("dns.secondary zone {zone} is listed twice"));
        }
        if s.primaries.get_ref().is_empty() {
            v.error(s.primaries.span(), format!("dns.secondary {zone}: primaries needs at least one address"));
        }
        let mut primaries = Vec::new();
        for p in s.primaries.into_inner() {
            let text = p.get_ref();
            match text.parse::<std::net::SocketAddr>().or_else(|_| text.parse::<IpAddr>().map(|ip| std::net::SocketAddr::new(ip, DNS_PORT))) {
                Ok(a) => primaries.push(a),
                Err(_) => v.error(p.span(), format!("dns.secondary {zone}: primary {text:?} is not an address or address:port")),
            }
        }
        let tsig = s.tsig.and_then(|t| {
            let span = t.span();
            let t = t.into_inner();
            let name = t.name.trim_end_matches('.').to_ascii_lowercase() + ".";
            if !t.algorithm.eq_ignore_ascii_case("hmac-sha256") {
                v.error(span.clone(), format!("dns.secondary {zone}: tsig algorithm {:?}: only hmac-sha256 is supported", t.algorithm));
            }
            if hickory_proto::rr::Name::from_ascii(&name).is_err() || name == "." {
                v.error(span.clone(), format!("dns.secondary {zone}: tsig name {:?} is not a domain name", t.name));
            }
            match data_encoding::BASE64.decode(t.secret.trim().as_bytes()) {
                Ok(secret) if secret.len() >= 16 => Some(TsigKey { name, secret }),
                Ok(_) => {
                    v.error(span, format!("dns.secondary {zone}: tsig secret is shorter than 16 bytes (RFC 8945 asks for the hash's size)"));
                    None
                }
                Err(e) => {
                    v.error(span, format!("dns.secondary {zone}: tsig secret is not base64: {e}"));
                    None
                }
            }
        });
        out.push(Secondary { zone, primaries, tsig, catalog: s.catalog, member_of: None, line });
    }
    out
}
