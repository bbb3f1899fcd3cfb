//! Zones: loading RFC 1035 master files (with hickory-proto's text parser), validating
//! them, and the name-tree lookups the answer engine needs.
//!
//! Names are kept internally as *lowercase, uncompressed wire format* (`Vec<u8>`):
//! that makes case-insensitive matching a byte comparison, and the same bytes are
//! what the XDP fast path table needs.
//!
//! Every record's RDATA is encoded to wire format once, at load time, with hickory's
//! `BinEncoder` in a non-compressing, lowercasing mode, so the answer engine only copies
//! bytes and can never produce a compression pointer inside RDATA.
//!
//! hickory's zone parser reports no line numbers, so errors are located by re-parsing
//! prefixes of the file that end on entry boundaries (see [`locate`]): the first prefix
//! that shows the same problem ends with the offending entry.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use hickory_proto::rr::{DNSClass, Name, RData, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::serialize::txt::Parser;

pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_NS: u16 = 2;
pub(crate) const TYPE_CNAME: u16 = 5;
pub(crate) const TYPE_MX: u16 = 15;
pub(crate) const TYPE_TXT: u16 = 16;
pub(crate) const TYPE_AAAA: u16 = 28;
pub(crate) const TYPE_SRV: u16 = 33;
pub(crate) const TYPE_DS: u16 = 43;
pub(crate) const CLASS_IN: u16 = 1;

/// A zone file problem: the same located error as a config problem, displayed as
/// `FILE:LINE: message`, or `FILE: message` when not tied to one entry (e.g. "no NS at
/// the apex").
pub use crate::config::{ConfigError as ZoneError, ConfigErrors as ZoneErrors};

/// One resource record, ready to be copied into a response.
#[derive(Debug, Clone)]
pub(crate) struct Rr {
    /// Owner, lowercase wire format.
    pub owner: Vec<u8>,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// RDATA in wire format, names uncompressed and lowercase.
    pub rdata: Vec<u8>,
    /// The domain name this record points at (CNAME/NS/MX/SRV), lowercase wire:
    /// used for CNAME chasing, glue and additional-section processing.
    pub target: Option<Vec<u8>>,
}

/// All records of one type at one owner, in zone-file order.
#[derive(Debug, Clone)]
pub(crate) struct RRset {
    pub rtype: u16,
    pub records: Vec<Rr>,
}

/// All RRsets at one owner, sorted by type number (so "lowest type" is `rrsets[0]`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    pub rrsets: Vec<RRset>,
}

impl Node {
    pub fn get(&self, rtype: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }

    pub fn has_cname(&self) -> bool {
        self.get(TYPE_CNAME).is_some()
    }
}

/// What a name resolves to inside one zone (RFC 1034 section 4.3.2, RFC 4592).
pub(crate) enum Lookup<'z> {
    /// The name is at or below a zone cut: refer to the cut's NS RRset.
    Referral { cut: &'z [u8] },
    /// The name owns records. `wildcard` is true when they come from `*.<closest encloser>`
    /// and must be re-owned by the query name.
    Node { node: &'z Node, wildcard: bool },
    /// The name exists only because a descendant does (NODATA, never NXDOMAIN).
    EmptyNonTerminal,
    /// The name does not exist and no wildcard covers it.
    NxDomain,
}

/// One loaded, validated zone.
#[derive(Debug, Clone)]
pub struct Zone {
    apex: Vec<u8>,
    apex_text: String,
    source: PathBuf,
    nodes: BTreeMap<Vec<u8>, Node>,
    ents: BTreeSet<Vec<u8>>,
    /// Owners below the apex that hold NS records (zone cuts), including nested ones.
    cuts: BTreeSet<Vec<u8>>,
    has_wildcard: bool,
    /// The SOA for negative answers, TTL already min(SOA TTL, MINIMUM) (RFC 2308).
    negative_soa: Rr,
}

impl Zone {
    /// The apex, lowercase wire format.
    pub fn apex(&self) -> &[u8] {
        &self.apex
    }

    /// The apex as text, e.g. `example.com.`.
    pub fn apex_text(&self) -> &str {
        &self.apex_text
    }

    /// The file the zone was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Whether a wildcard owner exists in the authoritative part of the zone.
    pub fn has_wildcard(&self) -> bool {
        self.has_wildcard
    }

    pub(crate) fn nodes(&self) -> &BTreeMap<Vec<u8>, Node> {
        &self.nodes
    }

    pub(crate) fn ents(&self) -> &BTreeSet<Vec<u8>> {
        &self.ents
    }

    pub(crate) fn negative_soa(&self) -> &Rr {
        &self.negative_soa
    }

    /// Cuts that are not below another cut (deeper NS records are occluded glue).
    pub(crate) fn top_cuts(&self) -> Vec<&[u8]> {
        self.cuts
            .iter()
            .filter(|c| self.cut_at_or_above(parent(c).unwrap_or(&[0])).is_none())
            .map(|c| c.as_slice())
            .collect()
    }

    /// The highest zone cut at or above `name` (strictly below the apex), if any.
    pub(crate) fn cut_at_or_above(&self, name: &[u8]) -> Option<&[u8]> {
        if self.cuts.is_empty() {
            return None;
        }
        let mut found = None;
        for anc in ancestors(name) {
            if anc.len() <= self.apex.len() {
                break;
            }
            if let Some(c) = self.cuts.get(anc) {
                found = Some(c.as_slice()); // keep walking up: the highest cut wins
            }
        }
        found
    }

    /// Whether `name` exists (owns records or is an empty non-terminal).
    pub(crate) fn exists(&self, name: &[u8]) -> bool {
        self.nodes.contains_key(name) || self.ents.contains(name)
    }

    /// Resolve `name` (lowercase wire, in this zone) for `qtype`.
    pub(crate) fn lookup(&self, name: &[u8], qtype: u16) -> Lookup<'_> {
        if let Some(cut) = self.cut_at_or_above(name) {
            // DS lives in the parent, at the cut itself (RFC 4035 section 3.1.4.1).
            if !(qtype == TYPE_DS && cut == name) {
                return Lookup::Referral { cut };
            }
        }
        if let Some(node) = self.nodes.get(name) {
            return Lookup::Node {
                node,
                wildcard: false,
            };
        }
        if self.ents.contains(name) {
            return Lookup::EmptyNonTerminal;
        }
        // RFC 4592: only the wildcard child of the closest encloser applies.
        for anc in ancestors(name).skip(1) {
            if anc.len() < self.apex.len() {
                break;
            }
            if self.exists(anc) {
                let mut wild = vec![1, b'*'];
                wild.extend_from_slice(anc);
                return match self.nodes.get(&wild) {
                    Some(node) => Lookup::Node {
                        node,
                        wildcard: true,
                    },
                    None => Lookup::NxDomain,
                };
            }
        }
        Lookup::NxDomain
    }
}

/// Several zones, looked up by closest enclosing apex.
#[derive(Debug, Clone, Default)]
pub struct ZoneSet {
    zones: Vec<Zone>,
    by_apex: HashMap<Vec<u8>, usize>,
}

impl ZoneSet {
    /// Build a set; two zones with the same apex are an error (every duplicate listed).
    pub fn new(zones: Vec<Zone>) -> Result<ZoneSet, ZoneErrors> {
        let mut by_apex = HashMap::new();
        let mut errors = Vec::new();
        for (i, z) in zones.iter().enumerate() {
            if let Some(&prev) = by_apex.get(&z.apex) {
                let prev: &Zone = &zones[prev];
                errors.push(ZoneError {
                    file: z.source.clone(),
                    line: None,
                    message: format!(
                        "zone {} is already loaded from {}",
                        z.apex_text,
                        prev.source.display()
                    ),
                });
            } else {
                by_apex.insert(z.apex.clone(), i);
            }
        }
        if !errors.is_empty() {
            return Err(ZoneErrors(errors));
        }
        Ok(ZoneSet { zones, by_apex })
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The closest enclosing zone of `qname` (lowercase wire format).
    pub fn find(&self, qname: &[u8]) -> Option<&Zone> {
        ancestors(qname).find_map(|a| self.by_apex.get(a).map(|&i| &self.zones[i]))
    }

    /// Like [`find`](Self::find), but a DS query at the apex of a zone whose parent we
    /// also serve is answered by the parent (the DS RRset belongs to the parent side).
    pub(crate) fn find_for(&self, qname: &[u8], qtype: u16) -> Option<&Zone> {
        let zone = self.find(qname)?;
        if qtype == TYPE_DS
            && zone.apex == qname
            && let Some(p) = parent(qname).and_then(|p| self.find(p))
        {
            return Some(p);
        }
        Some(zone)
    }

    /// Convenience for callers holding a text name: `find` by presentation format.
    pub fn find_text(&self, name: &str) -> Option<&Zone> {
        let name = Name::from_ascii(name).ok()?;
        self.find(&name_to_wire(&name))
    }
}

// ---------------------------------------------------------------------------------
// Wire-format name helpers (all names lowercase, uncompressed, root-terminated).

/// Lowercase wire format of a hickory `Name`.
pub(crate) fn name_to_wire(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    out
}

/// The parent of a wire name (`None` for the root).
pub(crate) fn parent(name: &[u8]) -> Option<&[u8]> {
    match name.first() {
        None | Some(0) => None,
        Some(&len) => name.get(1 + len as usize..),
    }
}

/// The name itself, then each ancestor up to and including the root.
pub(crate) fn ancestors(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::successors(Some(name), |n| parent(n))
}

/// Whether `name` equals `ancestor` or is below it.
pub(crate) fn is_at_or_below(name: &[u8], ancestor: &[u8]) -> bool {
    ancestors(name).any(|a| a == ancestor)
}

/// Presentation format of a wire name, for messages.
pub(crate) fn wire_to_text(name: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = name;
    while let Some(&len) = rest.first() {
        if len == 0 {
            break;
        }
        for &b in &rest[1..1 + len as usize] {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
        out.push('.');
        rest = &rest[1 + len as usize..];
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// RDATA to wire format: canonical form + `UncompressedLowercase` makes every name in
/// the standard types (NS, CNAME, SOA, MX, SRV, PTR, NAPTR...) uncompressed and
/// lowercase; post-RFC 3597 types keep names uncompressed as written.
pub(crate) fn encode_rdata(rdata: &RData) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_canonical_form(true);
    enc.set_name_encoding(NameEncoding::UncompressedLowercase);
    rdata.emit(&mut enc).map_err(|e| e.to_string())?;
    if buf.len() > u16::MAX as usize {
        return Err("RDATA longer than 65535 bytes".into());
    }
    // The encoder reserves generously; a zone keeps millions of these.
    buf.shrink_to_fit();
    Ok(buf)
}

fn rdata_target(rdata: &RData) -> Option<Vec<u8>> {
    match rdata {
        RData::CNAME(c) => Some(name_to_wire(&c.0)),
        RData::NS(n) => Some(name_to_wire(&n.0)),
        RData::MX(mx) => Some(name_to_wire(&mx.exchange)),
        RData::SRV(srv) => Some(name_to_wire(&srv.target)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------
// Loading and validation.

type ParsedRecords = BTreeMap<RrKey, RecordSet>;

/// A validation problem. `locatable` problems are caused by a specific entry, so the
/// binary search over file prefixes can find its line.
struct Issue {
    message: String,
    locatable: bool,
}

/// Load and validate one zone file. `origin` overrides/presets `$ORIGIN` (the initial
/// origin for relative names) and fixes the apex; without it the apex is the SOA owner.
pub fn load_zone(path: &Path, origin: Option<&str>) -> Result<Zone, ZoneError> {
    let err = |line: Option<usize>, message: String| ZoneError {
        file: path.to_path_buf(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(None, format!("cannot read: {e}")))?;
    let origin_name = match origin {
        Some(o) => {
            let mut n =
                Name::from_ascii(o).map_err(|e| err(None, format!("invalid origin {o:?}: {e}")))?;
            n.set_fqdn(true);
            Some(n)
        }
        None => None,
    };
    let parse = |t: &str| Parser::new(t, Some(path.to_path_buf()), origin_name.clone()).parse();
    let bounds = entry_boundaries(&text);

    let (parser_origin, records) = match parse(&text) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            let same = |prefix: &str| matches!(parse(prefix), Err(e2) if e2.to_string() == msg);
            // A problem that even the empty file shows (no $ORIGIN...) has no line.
            let line = if same("") {
                None
            } else {
                locate(&text, &bounds, same)
            };
            return Err(err(line, msg));
        }
    };

    // The apex: the origin argument if given, else the SOA owner.
    let apex: Name = match &origin_name {
        Some(o) => o.clone(),
        None => {
            let soas: Vec<&Name> = records
                .iter()
                .filter(|(k, _)| k.record_type == RecordType::SOA)
                .map(|(_, s)| s.name())
                .collect();
            match soas.as_slice() {
                [] => return Err(err(None, "no SOA record".into())),
                [one] => (*one).clone(),
                // Several SOAs at different owners: prefer the last $ORIGIN; the others are
                // reported as "SOA not at apex" below.
                many => many
                    .iter()
                    .find(|n| **n == &parser_origin)
                    .copied()
                    .unwrap_or(many[0])
                    .clone(),
            }
        }
    };

    let issues = check(&records, &apex);
    if !issues.is_empty() {
        // Report the earliest located problem; unlocated ones come after.
        let mut best: Option<(usize, String)> = None;
        let mut unlocated = None;
        for issue in issues {
            if issue.locatable {
                let line = locate(&text, &bounds, |prefix| match parse(prefix) {
                    Ok((_, recs)) => check(&recs, &apex)
                        .iter()
                        .any(|i| i.message == issue.message),
                    Err(_) => false,
                });
                match line {
                    Some(l) if best.as_ref().is_none_or(|(bl, _)| l < *bl) => {
                        best = Some((l, issue.message))
                    }
                    Some(_) => {}
                    None => {
                        unlocated.get_or_insert(issue.message);
                    }
                }
            } else {
                unlocated.get_or_insert(issue.message);
            }
        }
        return Err(match (best, unlocated) {
            (Some((l, m)), _) => err(Some(l), m),
            (None, Some(m)) => err(None, m),
            (None, None) => unreachable!("issues is non-empty"),
        });
    }

    drop(text);
    build_zone(path, &apex, records).map_err(|m| err(None, m))
}

/// Validate parsed records against the apex. Messages must be stable across file
/// prefixes (they are compared to locate the entry).
fn check(records: &ParsedRecords, apex: &Name) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut loc = |message: String| {
        issues.push(Issue {
            message,
            locatable: true,
        })
    };
    let mut has_soa = false;
    let mut has_ns = false;
    // Per owner: which types exist (for the CNAME-and-other-data rule).
    let mut types_at: BTreeMap<Vec<u8>, Vec<RecordType>> = BTreeMap::new();
    for (key, set) in records {
        let name = set.name();
        let rtype = key.record_type;
        for rec in set.records_without_rrsigs() {
            if rec.dns_class != DNSClass::IN {
                loc(format!(
                    "{name} {rtype}: class {} is not served (only IN)",
                    rec.dns_class
                ));
            }
            if let Err(e) = encode_rdata(&rec.data) {
                loc(format!("{name} {rtype}: cannot encode RDATA: {e}"));
            }
        }
        if !apex.zone_of(name) {
            loc(format!("{name} {rtype} is outside the zone {apex}"));
            continue;
        }
        let at_apex = name == apex;
        match rtype {
            RecordType::SOA if at_apex => has_soa = true,
            RecordType::SOA => loc(format!("SOA at {name} is not at the zone apex {apex}")),
            RecordType::NS if at_apex => has_ns = true,
            RecordType::CNAME if at_apex => {
                loc(format!("CNAME at the zone apex {apex} is not allowed"))
            }
            _ => {}
        }
        types_at.entry(name_to_wire(name)).or_default().push(rtype);
    }
    for (owner, types) in &types_at {
        let others = types
            .iter()
            .any(|t| !matches!(t, RecordType::CNAME | RecordType::RRSIG | RecordType::NSEC));
        if types.contains(&RecordType::CNAME) && others {
            loc(format!(
                "{} has a CNAME and other data",
                wire_to_text(owner)
            ));
        }
    }
    if !has_soa {
        issues.push(Issue {
            message: format!("no SOA record at the zone apex {apex}"),
            locatable: false,
        });
    }
    if !has_ns {
        issues.push(Issue {
            message: format!("no NS record at the zone apex {apex}"),
            locatable: false,
        });
    }
    issues
}

/// Consumes the parsed records so each set's memory is freed as its node is built: a
/// zone of a million names never holds both forms whole.
fn build_zone(path: &Path, apex: &Name, records: ParsedRecords) -> Result<Zone, String> {
    let apex_w = name_to_wire(apex);
    let mut nodes: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
    let mut negative_soa = None;
    for (key, set) in records {
        let owner = name_to_wire(set.name());
        let rtype = u16::from(key.record_type);
        let mut rrs = Vec::new();
        for rec in set.records_without_rrsigs() {
            let rdata = encode_rdata(&rec.data)?;
            if let RData::SOA(soa) = &rec.data {
                negative_soa = Some(Rr {
                    owner: owner.clone(),
                    rtype,
                    class: CLASS_IN,
                    ttl: rec.ttl.min(soa.minimum),
                    rdata: rdata.clone(),
                    target: None,
                });
            }
            rrs.push(Rr {
                owner: owner.clone(),
                rtype,
                class: CLASS_IN,
                ttl: rec.ttl,
                rdata,
                target: rdata_target(&rec.data),
            });
        }
        if rrs.is_empty() {
            continue;
        }
        rrs.shrink_to_fit();
        let node = nodes.entry(owner).or_default();
        node.rrsets.push(RRset {
            rtype,
            records: rrs,
        });
        node.rrsets.sort_by_key(|s| s.rtype);
    }

    // Vec growth reserves room for four RRsets; most names have one or two.
    for node in nodes.values_mut() {
        node.rrsets.shrink_to_fit();
    }
    let cuts: BTreeSet<Vec<u8>> = nodes
        .iter()
        .filter(|(n, node)| **n != apex_w && node.get(TYPE_NS).is_some())
        .map(|(n, _)| n.clone())
        .collect();

    let mut ents = BTreeSet::new();
    for owner in nodes.keys() {
        for anc in ancestors(owner).skip(1) {
            if anc.len() <= apex_w.len() {
                break;
            }
            if !nodes.contains_key(anc) {
                ents.insert(anc.to_vec());
            }
        }
    }

    let mut zone = Zone {
        apex_text: apex.to_ascii().to_ascii_lowercase(),
        apex: apex_w,
        source: path.to_path_buf(),
        nodes,
        ents,
        cuts,
        has_wildcard: false,
        negative_soa: negative_soa.ok_or("no SOA record")?,
    };
    zone.has_wildcard = zone
        .nodes
        .keys()
        .any(|n| n.starts_with(&[1, b'*']) && zone.cut_at_or_above(n).is_none());
    Ok(zone)
}

/// An entry boundary: the file prefix `text[..end]` holds complete entries only.
struct Boundary {
    end: usize,
    /// First line of the last entry in the prefix that has content (not blank/comment).
    first_line: usize,
}

/// Split the text into entries: an entry ends at a newline outside parentheses and
/// quotes. This only tracks `( ) " ; \` (not a record parser): it exists so that a
/// prefix never cuts a multi-line entry, which keeps "the prefix shows the problem"
/// monotonic for the binary search in [`locate`].
fn entry_boundaries(text: &str) -> Vec<Boundary> {
    let mut out = Vec::new();
    let (mut depth, mut in_quote, mut in_comment, mut escape) = (0i32, false, false, false);
    let mut line = 1;
    let mut first_content: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            in_comment = false;
            escape = false;
            if depth <= 0 && !in_quote {
                out.push(Boundary {
                    end: i + 1,
                    first_line: first_content.unwrap_or(line),
                });
                first_content = None;
                depth = 0;
            }
            line += 1;
            continue;
        }
        if in_comment {
            continue;
        }
        if escape {
            escape = false;
            continue;
        }
        if !c.is_whitespace() {
            first_content.get_or_insert(line);
        }
        match c {
            '\\' => escape = true,
            '"' => in_quote = !in_quote,
            ';' if !in_quote => in_comment = true,
            '(' if !in_quote => depth += 1,
            ')' if !in_quote => depth -= 1,
            _ => {}
        }
    }
    if out.last().map_or(0, |b| b.end) < text.len() {
        out.push(Boundary {
            end: text.len(),
            first_line: first_content.unwrap_or(line),
        });
    }
    out
}

/// Find the line of the first entry whose prefix satisfies `shows_problem` (which must
/// be monotonic over boundaries and true for the whole text).
fn locate(text: &str, bounds: &[Boundary], shows_problem: impl Fn(&str) -> bool) -> Option<usize> {
    let idx = bounds.partition_point(|b| !shows_problem(&text[..b.end]));
    bounds.get(idx).map(|b| b.first_line)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn write_zone(name: &str, text: &str) -> PathBuf {
        // A directory per call: tests run in parallel and reuse file names.
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pop-dns-test-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        path
    }

    fn w(s: &str) -> Vec<u8> {
        name_to_wire(&Name::from_ascii(s).unwrap())
    }

    const GOOD: &str = "$ORIGIN example.com.
$TTL 300
@       IN SOA ns1 hostmaster ( 1 7200 3600 1209600
                                60 )
        IN NS  ns1
ns1     IN A   192.0.2.1
a.b.c   IN A   192.0.2.2
*.w     IN A   192.0.2.3
sub     IN NS  ns.sub
ns.sub  IN A   192.0.2.4
";

    #[test]
    fn loads_and_tracks_structure() {
        let p = write_zone("good.zone", GOOD);
        let z = load_zone(&p, None).unwrap();
        assert_eq!(z.apex(), w("example.com.").as_slice());
        assert_eq!(z.apex_text(), "example.com.");
        assert!(z.has_wildcard());
        assert!(z.ents().contains(&w("b.c.example.com.")));
        assert!(z.ents().contains(&w("c.example.com.")));
        assert!(z.ents().contains(&w("w.example.com.")));
        assert_eq!(z.top_cuts(), vec![w("sub.example.com.").as_slice()]);
        // SOA TTL 300, MINIMUM 60 -> negative TTL 60.
        assert_eq!(z.negative_soa().ttl, 60);
        // Case-insensitive lookups.
        assert!(matches!(
            z.lookup(&w("NS1.Example.COM."), TYPE_A),
            Lookup::Node {
                wildcard: false,
                ..
            }
        ));
        assert!(matches!(
            z.lookup(&w("x.w.example.com."), TYPE_A),
            Lookup::Node { wildcard: true, .. }
        ));
        assert!(matches!(
            z.lookup(&w("b.c.example.com."), TYPE_A),
            Lookup::EmptyNonTerminal
        ));
        assert!(matches!(
            z.lookup(&w("x.c.example.com."), TYPE_A),
            Lookup::NxDomain
        ));
        assert!(matches!(
            z.lookup(&w("ns.sub.example.com."), TYPE_A),
            Lookup::Referral { .. }
        ));
        assert!(matches!(
            z.lookup(&w("sub.example.com."), TYPE_DS),
            Lookup::Node { .. }
        ));
        // origin argument instead of $ORIGIN
        let p2 = write_zone("noorigin.zone", &GOOD.replace("$ORIGIN example.com.\n", ""));
        let z2 = load_zone(&p2, Some("example.com")).unwrap();
        assert_eq!(z2.apex(), z.apex());
        // Without any origin the relative names cannot be resolved.
        assert!(load_zone(&p2, None).is_err());
    }

    fn bad(name: &str, text: &str) -> ZoneError {
        let p = write_zone(name, text);
        let e = load_zone(&p, None).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("{}", p.display())),
            "{e}"
        );
        e
    }

    #[test]
    fn bad_zones_report_file_and_line() {
        // Parse error (unknown type) on line 6, after a multi-line SOA.
        let e = bad(
            "badtype.zone",
            &GOOD.replace("ns1     IN A   192.0.2.1", "ns1     IN BOGUS 1"),
        );
        assert_eq!(e.line, Some(6), "{e}");
        // Bad address on line 7.
        let e = bad("badaddr.zone", &GOOD.replace("192.0.2.2", "192.0.2"));
        assert_eq!(e.line, Some(7), "{e}");
        // Second SOA at the apex (hickory's own error) on line 11.
        let e = bad("twosoa.zone", &format!("{GOOD}@ IN SOA ns1 hm 2 1 1 1 1\n"));
        assert_eq!(e.line, Some(11), "{e}");
        // CNAME and other data: reported at the second of the two entries.
        let e = bad("cname.zone", &format!("{GOOD}ns1 IN CNAME a.b.c\n"));
        assert_eq!(e.line, Some(11), "{e}");
        assert!(e.message.contains("CNAME and other data"), "{e}");
        // CNAME at the apex.
        let e = bad(
            "apexcname.zone",
            &format!("{GOOD}\n; comment\n@ IN CNAME ns1\n"),
        );
        assert_eq!(e.line, Some(13), "{e}");
        // Out of zone.
        let e = bad(
            "outside.zone",
            &format!("{GOOD}www.example.net. IN A 192.0.2.9\n"),
        );
        assert_eq!(e.line, Some(11), "{e}");
        assert!(e.message.contains("outside"), "{e}");
        // SOA not at the apex (with an origin argument fixing the apex).
        let p = write_zone(
            "soaelsewhere.zone",
            &format!("{GOOD}x IN SOA ns1 hm 1 1 1 1 1\n"),
        );
        let e = load_zone(&p, Some("example.com.")).unwrap_err();
        assert_eq!(e.line, Some(11), "{e}");
        // No NS at the apex: no line.
        let e = bad("nons.zone", &GOOD.replace("        IN NS  ns1\n", ""));
        assert_eq!(e.line, None, "{e}");
        assert!(e.message.contains("no NS"), "{e}");
        // No SOA at all.
        let e = bad("nosoa.zone", "$ORIGIN example.com.\n@ 300 IN NS ns1\n");
        assert_eq!(e.line, None, "{e}");
        // Unclosed parenthesis starting on line 3.
        let e = bad(
            "paren.zone",
            "$ORIGIN example.com.\n$TTL 60\n@ IN SOA ns1 hm ( 1 2 3 4 5\n@ IN NS ns1\n",
        );
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(
            e.to_string(),
            format!("{}:3: {}", e.file.display(), e.message)
        );
    }

    #[test]
    fn zoneset_rejects_duplicates_and_finds_closest() {
        let p = write_zone("set.zone", GOOD);
        let z = load_zone(&p, None).unwrap();
        let sub_text = "$ORIGIN sub.example.com.\n@ 60 IN SOA ns hm 1 1 1 1 1\n@ 60 IN NS ns\nns 60 IN A 192.0.2.4\n";
        let sub = load_zone(&write_zone("sub.zone", sub_text), None).unwrap();
        let set = ZoneSet::new(vec![z.clone(), sub]).unwrap();
        assert_eq!(
            set.find(&w("x.Sub.example.com.")).unwrap().apex_text(),
            "sub.example.com."
        );
        assert_eq!(
            set.find(&w("x.example.com.")).unwrap().apex_text(),
            "example.com."
        );
        assert!(set.find(&w("example.net.")).is_none());
        assert_eq!(
            set.find_for(&w("sub.example.com."), TYPE_DS)
                .unwrap()
                .apex_text(),
            "example.com."
        );
        let e = ZoneSet::new(vec![z.clone(), z]).unwrap_err();
        assert!(e.to_string().contains("already loaded"), "{e}");
    }
}
