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
//! `$INCLUDE` is expanded here, not by hickory, so that an include stays inside the
//! directories the config allows and a zone's text has a size limit (see [`Source`]).
//!
//! hickory's zone parser reports no line numbers. A parse error (it stops at the first)
//! is located by re-parsing prefixes of the file that end on entry boundaries (see
//! [`locate`]); validation problems, of which there can be thousands, are located in one
//! pass over the entries by owner and type (see [`EntryIndex`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::serialize::txt::Parser;

use super::dnssec::ZoneDnssec;
use super::dnssec_text;

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
pub use crate::config::{ConfigError as ZoneError, ConfigErrors as ZoneErrors, DEFAULT_ZONE_MAX_BYTES, ZoneLimits};

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
    /// NSEC chain, NSEC3 records and parameters of a signed zone.
    dnssec: ZoneDnssec,
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

    /// The apex node (it always exists: it holds the SOA).
    pub(crate) fn apex_node(&self) -> &Node {
        self.nodes.get(&self.apex).expect("the apex holds the SOA")
    }

    pub(crate) fn dnssec(&self) -> &ZoneDnssec {
        &self.dnssec
    }

    /// Whether the zone is signed (its apex has RRSIGs).
    pub fn is_signed(&self) -> bool {
        self.dnssec.signed
    }

    /// Cuts that are not below another cut (deeper NS records are occluded glue).
    pub(crate) fn top_cuts(&self) -> Vec<&[u8]> {
        self.cuts.iter().filter(|c| self.cut_at_or_above(parent(c).unwrap_or(&[0])).is_none()).map(|c| c.as_slice()).collect()
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
            return Lookup::Node { node, wildcard: false };
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
                    Some(node) => Lookup::Node { node, wildcard: true },
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
                    message: format!("zone {} is already loaded from {}", z.apex_text, prev.source.display()),
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

/// Problems listed per zone; the rest are counted in one more line.
pub const MAX_LISTED_ERRORS: usize = 20;
/// Nesting of `$INCLUDE` (hickory's own limit is 256 open files).
const MAX_INCLUDE_DEPTH: usize = 16;

/// A validation problem and what caused it, so its line can be found in one pass over
/// the file's entries (see [`EntryIndex`]).
struct Issue {
    message: String,
    cause: Cause,
}

enum Cause {
    /// The first entry of this owner and type.
    Record(Vec<u8>, RecordType),
    /// The first entry of this owner and type in a class other than IN.
    Class(Vec<u8>, RecordType),
    /// The later of the owner's first CNAME and first other data.
    CnameAndOther(Vec<u8>),
    /// Not tied to an entry (no SOA, no NS).
    Zone,
}

/// Load and validate one zone file with the default [`ZoneLimits`].
pub fn load_zone(path: &Path, origin: Option<&str>) -> Result<Zone, ZoneErrors> {
    load_zone_with(path, origin, &ZoneLimits::default())
}

/// Load and validate one zone file. `origin` overrides/presets `$ORIGIN` (the initial
/// origin for relative names) and fixes the apex; without it the apex is the SOA owner.
/// Errors: a parse error (hickory stops at the first), or every validation problem,
/// the first [`MAX_LISTED_ERRORS`] by line and a count of the rest.
pub fn load_zone_with(path: &Path, origin: Option<&str>, limits: &ZoneLimits) -> Result<Zone, ZoneErrors> {
    let one = |line: Option<usize>, message: String| ZoneErrors(vec![ZoneError { file: path.to_path_buf(), line, message }]);
    let source = Source::read(path, limits).map_err(|e| ZoneErrors(vec![e]))?;
    let origin_name = match origin {
        Some(o) => {
            let mut n = Name::from_ascii(o).map_err(|e| one(None, format!("invalid origin {o:?}: {e}")))?;
            n.set_fqdn(true);
            Some(n)
        }
        None => None,
    };
    let text = source.text.as_str();
    // No path: every `$INCLUDE` is already expanded (and checked) by `Source::read`, so
    // the parser must never open a file itself.
    let initial_origin = origin_name.clone().or_else(|| dnssec_text::absolute_soa_owner(text));
    // DNSSEC entries hickory cannot parse are taken out first (see `dnssec_text`).
    let parse = |t: &str| -> Result<(Name, ParsedRecords), ParseFailure> {
        let split = dnssec_text::split(t, initial_origin.as_ref()).map_err(|(line, m)| ParseFailure::At(line, m))?;
        let (o, mut records) =
            Parser::new(split.text.as_ref(), None, initial_origin.clone()).parse().map_err(|e| ParseFailure::Other(e.to_string()))?;
        add_signed_records(&mut records, split.records);
        Ok((o, records))
    };

    let (parser_origin, records) = match parse(text) {
        Ok(r) => r,
        Err(ParseFailure::At(line, msg)) => return Err(ZoneErrors(vec![source.error(Some(line), msg)])),
        Err(ParseFailure::Other(msg)) => {
            let same = |prefix: &str| matches!(parse(prefix), Err(ParseFailure::Other(m)) if m == msg);
            // A problem that even the empty file shows (no $ORIGIN...) has no line.
            let line = if same("") { None } else { locate(text, &entry_boundaries(text), same) };
            return Err(ZoneErrors(vec![source.error(line, msg)]));
        }
    };

    // The apex: the origin argument if given, else the SOA owner.
    let apex: Name = match &origin_name {
        Some(o) => o.clone(),
        None => {
            let soas: Vec<&Name> = records.iter().filter(|(k, _)| k.record_type == RecordType::SOA).map(|(_, s)| s.name()).collect();
            match soas.as_slice() {
                [] => return Err(one(None, "no SOA record".into())),
                [one] => (*one).clone(),
                // Several SOAs at different owners: prefer the last $ORIGIN; the others are
                // reported as "SOA not at apex" below.
                many => many.iter().find(|n| **n == &parser_origin).copied().unwrap_or(many[0]).clone(),
            }
        }
    };

    let issues = check(&records, &apex);
    if !issues.is_empty() {
        return Err(source.report(issues, origin_name.as_ref(), |prefix| match parse(prefix) {
            Ok((_, recs)) => check(&recs, &apex),
            Err(_) => Vec::new(),
        }));
    }

    drop(source);
    build_zone(path, &apex, records).map_err(|m| one(None, m))
}

/// A zone from the records of a zone transfer (RFC 5936; the closing SOA already
/// dropped), checked as a zone file is. `file` names it in errors (the stored copy).
pub fn zone_from_transfer(file: &Path, apex: &Name, received: Vec<Record>) -> Result<Zone, ZoneErrors> {
    let mut records = ParsedRecords::new();
    for r in received {
        let rtype = r.record_type();
        let owner = r.name.clone();
        records.entry(RrKey::new(LowerName::new(&owner), rtype)).or_insert_with(|| RecordSet::new(owner, rtype, 0)).insert(r, 0);
    }
    let issues = check(&records, apex);
    let fail = |message: String| ZoneErrors(vec![ZoneError { file: file.to_path_buf(), line: None, message }]);
    if let Some(first) = issues.first() {
        return Err(fail(format!(
            "transferred zone {apex}: {}{}",
            first.message,
            if issues.len() > 1 { format!(" (and {} more)", issues.len() - 1) } else { String::new() }
        )));
    }
    build_zone(file, apex, records).map_err(fail)
}

/// Why a zone's text did not parse.
enum ParseFailure {
    /// A DNSSEC entry, at this line of the text.
    At(usize, String),
    /// hickory's parser (it names no line).
    Other(String),
}

/// The DNSSEC records (as hickory's `Unknown` data, their RDATA already wire format)
/// join the ones hickory parsed.
fn add_signed_records(records: &mut ParsedRecords, signed: Vec<dnssec_text::SignedRecord>) {
    for r in signed {
        let rtype = RecordType::from(r.rtype);
        let mut record = Record::from_rdata(r.owner.clone(), r.ttl, RData::Unknown { code: rtype, rdata: NULL::with(r.rdata) });
        record.dns_class = r.class;
        records.entry(RrKey::new(LowerName::new(&r.owner), rtype)).or_insert_with(|| RecordSet::new(r.owner, rtype, 0)).insert(record, 0);
    }
}

/// Validate parsed records against the apex. Messages must be stable across file
/// prefixes (the fallback locator compares them).
fn check(records: &ParsedRecords, apex: &Name) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut loc = |message: String, cause: Cause| issues.push(Issue { message, cause });
    let mut has_soa = false;
    let mut has_ns = false;
    // Per owner: which types exist (for the CNAME-and-other-data rule).
    let mut types_at: BTreeMap<Vec<u8>, Vec<RecordType>> = BTreeMap::new();
    for (key, set) in records {
        let name = set.name();
        let owner = name_to_wire(name);
        let rtype = key.record_type;
        for rec in set.records_without_rrsigs() {
            if rec.dns_class != DNSClass::IN {
                loc(format!("{name} {rtype}: class {} is not served (only IN)", rec.dns_class), Cause::Class(owner.clone(), rtype));
            }
            if let Err(e) = encode_rdata(&rec.data) {
                loc(format!("{name} {rtype}: cannot encode RDATA: {e}"), Cause::Record(owner.clone(), rtype));
            }
        }
        if !apex.zone_of(name) {
            loc(format!("{name} {rtype} is outside the zone {apex}"), Cause::Record(owner, rtype));
            continue;
        }
        let at_apex = name == apex;
        match rtype {
            RecordType::SOA if at_apex => has_soa = true,
            RecordType::SOA => loc(format!("SOA at {name} is not at the zone apex {apex}"), Cause::Record(owner.clone(), rtype)),
            RecordType::NS if at_apex => has_ns = true,
            RecordType::CNAME if at_apex => loc(format!("CNAME at the zone apex {apex} is not allowed"), Cause::Record(owner.clone(), rtype)),
            _ => {}
        }
        types_at.entry(owner).or_default().push(rtype);
    }
    for (owner, types) in types_at {
        let others = types.iter().any(|t| !matches!(t, RecordType::CNAME | RecordType::RRSIG | RecordType::NSEC));
        if types.contains(&RecordType::CNAME) && others {
            loc(format!("{} has a CNAME and other data", wire_to_text(&owner)), Cause::CnameAndOther(owner));
        }
    }
    if !has_soa {
        loc(format!("no SOA record at the zone apex {apex}"), Cause::Zone);
    }
    if !has_ns {
        loc(format!("no NS record at the zone apex {apex}"), Cause::Zone);
    }
    issues
}

// ---------------------------------------------------------------------------------
// The zone's text: the file with every `$INCLUDE` expanded in place.

/// One zone's text with its includes expanded, and where each line came from. hickory
/// would open includes itself, anywhere and of any size; expanding them here lets every
/// include be confined and counted, and errors in an included file name that file.
struct Source {
    text: String,
    files: Vec<PathBuf>,
    /// (first line in `text`, index in `files`, that line's number in its file), in
    /// order of the first line.
    runs: Vec<(usize, usize, usize)>,
    /// Lines in `text` so far (the line the next byte appended starts on).
    line: usize,
}

impl Source {
    fn read(path: &Path, limits: &ZoneLimits) -> Result<Source, ZoneError> {
        let mut source = Source { text: String::new(), files: Vec::new(), runs: Vec::new(), line: 1 };
        let text = read_capped(path, limits.max_bytes, path, limits)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let mut stack = vec![path.canonicalize().unwrap_or_else(|_| path.to_path_buf())];
        source.expand(path, &text, &dir, limits, &mut stack)?;
        Ok(source)
    }

    /// Appends `text` (from `file`, whose directory is `dir`), expanding its includes.
    fn expand(&mut self, file: &Path, text: &str, dir: &Path, limits: &ZoneLimits, stack: &mut Vec<PathBuf>) -> Result<(), ZoneError> {
        let at = |line: usize, message: String| ZoneError { file: file.to_path_buf(), line: Some(line), message };
        let index = self.files.len();
        self.files.push(file.to_path_buf());
        let scan = scan_lexer(text);
        // The parser ends each included file on its own; expanded, an open parenthesis
        // would run on into the including file. (The zone file's own is the parser's.)
        if index > 0 && scan.open_at_end {
            return Err(ZoneError { file: file.to_path_buf(), line: None, message: "ends inside parentheses or a quoted string".into() });
        }
        let (mut cursor, mut cursor_line) = (0, 1);
        for start in scan.includes {
            let line = cursor_line + text[cursor..start].bytes().filter(|&b| b == b'\n').count();
            if start > 0 && text.as_bytes()[start - 1] != b'\n' {
                return Err(at(line, "$INCLUDE must start a line".into()));
            }
            let end = text[start..].find('\n').map_or(text.len(), |n| start + n + 1);
            let name = include_target(&text[start + "$INCLUDE".len()..end]).map_err(|m| at(line, m))?;
            self.push(&text[cursor..start], index, cursor_line);
            self.include(&name, dir, limits, stack).map_err(|m| at(line, m))?;
            (cursor, cursor_line) = (end, line + 1);
        }
        self.push(&text[cursor..], index, cursor_line);
        // The parser ends an included file's last entry at the file's end.
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
            self.line += 1;
        }
        Ok(())
    }

    /// Reads and expands one `$INCLUDE`d file; the error is for the `$INCLUDE` line.
    fn include(&mut self, name: &str, dir: &Path, limits: &ZoneLimits, stack: &mut Vec<PathBuf>) -> Result<(), String> {
        let path = dir.join(name);
        let real = path.canonicalize().map_err(|e| format!("$INCLUDE {name}: cannot read {}: {e}", path.display()))?;
        let allowed =
            std::iter::once(dir.to_path_buf()).chain(limits.include_dirs.iter().filter_map(|d| d.canonicalize().ok())).any(|d| real.starts_with(&d));
        if !allowed {
            return Err(format!(
                "$INCLUDE {name}: {} is outside {} (the including file's directory); list its directory in \
                 include_dirs of the [[dns]] block to allow it",
                real.display(),
                dir.display()
            ));
        }
        if stack.contains(&real) {
            return Err(format!("$INCLUDE {name}: {} includes itself", real.display()));
        }
        if stack.len() > MAX_INCLUDE_DEPTH {
            return Err(format!("$INCLUDE {name}: includes nest deeper than {MAX_INCLUDE_DEPTH}"));
        }
        let budget = limits.max_bytes.saturating_sub(self.text.len() as u64);
        let text = read_capped(&real, budget, &path, limits).map_err(|e| format!("$INCLUDE {name}: {e}"))?;
        let sub_dir = real.parent().unwrap_or(Path::new("/")).to_path_buf();
        stack.push(real);
        let result = self.expand(&path, &text, &sub_dir, limits, stack).map_err(|e| format!("in $INCLUDE {name}: {e}"));
        stack.pop();
        result
    }

    fn push(&mut self, piece: &str, file: usize, first_line: usize) {
        if piece.is_empty() {
            return;
        }
        self.runs.push((self.line, file, first_line));
        self.text.push_str(piece);
        self.line += piece.bytes().filter(|&b| b == b'\n').count();
    }

    /// The file and line a line of `text` came from.
    fn place(&self, line: usize) -> (&Path, usize) {
        let i = self.runs.partition_point(|r| r.0 <= line).saturating_sub(1);
        match self.runs.get(i) {
            Some(&(first, file, file_line)) => (&self.files[file], file_line + line - first),
            None => (&self.files[0], line),
        }
    }

    fn error(&self, line: Option<usize>, message: String) -> ZoneError {
        match line {
            Some(l) => {
                let (file, line) = self.place(l);
                ZoneError { file: file.to_path_buf(), line: Some(line), message }
            }
            None => ZoneError { file: self.files[0].clone(), line: None, message },
        }
    }

    /// The issues as errors: located ones by line, the first [`MAX_LISTED_ERRORS`]
    /// listed and the rest counted. Lines come from one pass over the entries; an issue
    /// that pass cannot place (it should not happen) falls back to re-parsing file
    /// prefixes, a bounded number of times.
    fn report(&self, issues: Vec<Issue>, origin: Option<&Name>, recheck: impl Fn(&str) -> Vec<Issue>) -> ZoneErrors {
        let bounds = entry_boundaries(&self.text);
        let index = EntryIndex::new(&self.text, &bounds, origin);
        let total = issues.len();
        let mut located = Vec::new();
        let mut unlocated = Vec::new();
        let mut fallbacks = 0;
        for issue in issues {
            let line = match &issue.cause {
                Cause::Zone => None,
                cause => index.line_of(cause).or_else(|| {
                    fallbacks += 1;
                    (fallbacks <= MAX_LISTED_ERRORS)
                        .then(|| locate(&self.text, &bounds, |p| recheck(p).iter().any(|i| i.message == issue.message)))
                        .flatten()
                }),
            };
            match line {
                Some(l) => located.push((l, issue.message)),
                None => unlocated.push(issue.message),
            }
        }
        located.sort();
        let mut errors: Vec<ZoneError> = located
            .into_iter()
            .map(|(l, m)| self.error(Some(l), m))
            .chain(unlocated.into_iter().map(|m| self.error(None, m)))
            .take(MAX_LISTED_ERRORS)
            .collect();
        if total > errors.len() {
            errors.push(self.error(None, format!("{} more problems not listed ({total} in all)", total - errors.len())));
        }
        ZoneErrors(errors)
    }
}

/// Reads `path` as UTF-8 text of at most `cap` bytes: the size is checked before
/// reading and the read itself is bounded (a device such as /dev/zero reports size 0).
/// `shown` is the name used in messages.
fn read_capped(path: &Path, cap: u64, shown: &Path, limits: &ZoneLimits) -> Result<String, ZoneError> {
    use std::io::Read as _;
    let err = |message: String| ZoneError { file: shown.to_path_buf(), line: None, message };
    let too_big = |size: String| {
        err(format!(
            "{size} is over the zone size limit of {} bytes (the zone file and its includes together; \
             zone_max_bytes in the [[dns]] block raises it)",
            limits.max_bytes
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > cap {
        return Err(too_big(format!("{size} bytes")));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| err(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > cap {
        return Err(too_big("more than that".into()));
    }
    String::from_utf8(bytes).map_err(|_| err("is not UTF-8 text".into()))
}

/// The file name of a `$INCLUDE` line (the text after `$INCLUDE`): one name, bare or
/// quoted, then only a comment.
fn include_target(rest: &str) -> Result<String, String> {
    let rest = rest.trim_start_matches([' ', '\t']);
    let (name, after) = if let Some(q) = rest.strip_prefix('"') {
        let end = q.find('"').ok_or("$INCLUDE: unclosed quoted file name")?;
        (&q[..end], &q[end + 1..])
    } else {
        let end = rest.find(|c: char| c.is_whitespace() || c == ';').unwrap_or(rest.len());
        (&rest[..end], &rest[end..])
    };
    if name.is_empty() || name.contains('\n') {
        return Err("$INCLUDE needs a file name".into());
    }
    let after = after.trim_start_matches([' ', '\t']);
    if !(after.is_empty() || after.starts_with(';') || after.starts_with('\n') || after.starts_with("\r\n")) {
        return Err("$INCLUDE takes one file name (an origin after it is not supported)".into());
    }
    Ok(name.to_string())
}

/// What hickory's zone lexer would see in a text: where it would emit a `$INCLUDE`
/// token, and whether the text ends inside parentheses or quotes. This follows
/// hickory-proto 0.26's lexer state by state so no include can slip past expansion.
struct LexerScan {
    includes: Vec<usize>,
    open_at_end: bool,
}

fn scan_lexer(text: &str) -> LexerScan {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Rest,
        Comment {
            list: bool,
        },
        Quote,
        /// Characters of an escape left to skip inside quotes (1, or 3 for `\DDD`).
        Escape(u8),
        List,
        CharData {
            list: bool,
        },
        Dollar {
            start: usize,
            len: usize,
        },
    }
    let mut includes = Vec::new();
    let mut s = S::Rest;
    for (i, c) in text.char_indices() {
        // A state that ends without consuming `c` hands it to the next (`continue`s
        // re-run the match with the new state, as the lexer's peek does).
        loop {
            s = match s {
                S::Rest => match c {
                    '(' => S::List,
                    '$' => S::Dollar { start: i, len: 0 },
                    '"' => S::Quote,
                    ';' => S::Comment { list: false },
                    '@' | ')' => S::Rest,
                    c if c.is_whitespace() || c.is_control() => S::Rest,
                    _ => S::CharData { list: false },
                },
                S::Dollar { start, len } => {
                    if c.is_ascii_uppercase() {
                        S::Dollar { start, len: len + 1 }
                    } else {
                        if &text[start + 1..i] == "INCLUDE" {
                            includes.push(start);
                        }
                        s = S::Rest;
                        continue;
                    }
                }
                S::Comment { list } => match c {
                    '\r' | '\n' if list => S::List,
                    '\r' | '\n' => S::Rest,
                    _ => s,
                },
                S::Quote => match c {
                    '"' => S::Rest,
                    '\\' => S::Escape(0),
                    _ => S::Quote,
                },
                S::Escape(0) if c.is_numeric() => S::Escape(2),
                S::Escape(0) | S::Escape(1) => S::Quote,
                S::Escape(n) => S::Escape(n - 1),
                S::List => match c {
                    ';' => S::Comment { list: true },
                    ')' => S::Rest,
                    c if c.is_whitespace() || c.is_control() => S::List,
                    _ => S::CharData { list: true },
                },
                S::CharData { list } => {
                    if c.is_whitespace() || c == ')' || c == ';' || c.is_control() {
                        s = if list { S::List } else { S::Rest };
                        continue;
                    }
                    s
                }
            };
            break;
        }
    }
    if let S::Dollar { start, .. } = s {
        if &text[start + 1..] == "INCLUDE" {
            includes.push(start);
        }
    }
    let open_at_end = matches!(s, S::Quote | S::Escape(_) | S::List | S::Comment { list: true } | S::CharData { list: true });
    LexerScan { includes, open_at_end }
}

/// Per owner and type, the first line that has it: one pass over the entries, reading
/// only each entry's owner, class and type the way hickory's parser does.
struct EntryIndex {
    first: HashMap<(Vec<u8>, RecordType), usize>,
    first_not_in: HashMap<(Vec<u8>, RecordType), usize>,
    first_cname: HashMap<Vec<u8>, usize>,
    first_other: HashMap<Vec<u8>, usize>,
}

impl EntryIndex {
    fn new(text: &str, bounds: &[Boundary], origin: Option<&Name>) -> EntryIndex {
        let mut index = EntryIndex { first: HashMap::new(), first_not_in: HashMap::new(), first_cname: HashMap::new(), first_other: HashMap::new() };
        let mut origin = origin.cloned();
        let mut owner: Option<Vec<u8>> = None;
        let mut class = DNSClass::IN;
        let mut start = 0;
        for b in bounds {
            let entry = &text[start..b.end];
            start = b.end;
            let inherits = entry.starts_with([' ', '\t']);
            let mut tokens = entry_tokens(entry);
            if !inherits {
                match tokens.next() {
                    None => continue,
                    Some("$ORIGIN") => {
                        origin = tokens.next().and_then(|o| Name::parse(o, None).ok());
                        continue;
                    }
                    Some(t) if t.starts_with('$') => continue,
                    Some("@") => owner = origin.as_ref().map(name_to_wire),
                    Some(t) => owner = Name::parse(t, origin.as_ref()).ok().map(|n| name_to_wire(&n)),
                }
            }
            let Some(name) = &owner else { continue };
            let rtype = loop {
                let Some(t) = tokens.next() else { break None };
                if hickory_proto::serialize::txt::parse_ttl(t).is_ok() {
                    continue;
                }
                let t = t.to_ascii_uppercase();
                if let Ok(c) = t.parse::<DNSClass>() {
                    class = c;
                    continue;
                }
                break t.parse::<RecordType>().ok();
            };
            let Some(rtype) = rtype else { continue };
            let line = b.first_line;
            index.first.entry((name.clone(), rtype)).or_insert(line);
            if class != DNSClass::IN {
                index.first_not_in.entry((name.clone(), rtype)).or_insert(line);
            }
            if rtype == RecordType::CNAME {
                index.first_cname.entry(name.clone()).or_insert(line);
            } else if !matches!(rtype, RecordType::RRSIG | RecordType::NSEC) {
                index.first_other.entry(name.clone()).or_insert(line);
            }
        }
        index
    }

    fn line_of(&self, cause: &Cause) -> Option<usize> {
        match cause {
            Cause::Record(owner, t) => self.first.get(&(owner.clone(), *t)).copied(),
            Cause::Class(owner, t) => self.first_not_in.get(&(owner.clone(), *t)).copied(),
            Cause::CnameAndOther(owner) => Some(*self.first_cname.get(owner)?.max(self.first_other.get(owner)?)),
            Cause::Zone => None,
        }
    }
}

/// The leading tokens of an entry: comments dropped, parentheses as separators. Enough
/// for owner, TTL, class and type (which are never quoted).
pub(super) fn entry_tokens(entry: &str) -> impl Iterator<Item = &str> {
    let code = entry.split(['\n']).map(|l| l.split(';').next().unwrap_or("")).collect::<Vec<_>>();
    // Only the first line can hold the owner; TTL, class and type may follow a '('.
    code.into_iter().flat_map(|l| l.split(|c: char| c.is_whitespace() || c == '(' || c == ')')).filter(|t| !t.is_empty())
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
                negative_soa =
                    Some(Rr { owner: owner.clone(), rtype, class: CLASS_IN, ttl: rec.ttl.min(soa.minimum), rdata: rdata.clone(), target: None });
            }
            rrs.push(Rr { owner: owner.clone(), rtype, class: CLASS_IN, ttl: rec.ttl, rdata, target: rdata_target(&rec.data) });
        }
        if rrs.is_empty() {
            continue;
        }
        rrs.shrink_to_fit();
        let node = nodes.entry(owner).or_default();
        node.rrsets.push(RRset { rtype, records: rrs });
        node.rrsets.sort_by_key(|s| s.rtype);
    }

    // Vec growth reserves room for four RRsets; most names have one or two.
    for node in nodes.values_mut() {
        node.rrsets.shrink_to_fit();
    }
    // Before cuts and empty non-terminals: NSEC3 owners are not names of the zone.
    let dnssec = ZoneDnssec::build(&apex_w, &mut nodes)?;
    let cuts: BTreeSet<Vec<u8>> = nodes.iter().filter(|(n, node)| **n != apex_w && node.get(TYPE_NS).is_some()).map(|(n, _)| n.clone()).collect();

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
        dnssec,
    };
    zone.has_wildcard = zone.nodes.keys().any(|n| n.starts_with(&[1, b'*']) && zone.cut_at_or_above(n).is_none());
    Ok(zone)
}

/// An entry boundary: the file prefix `text[..end]` holds complete entries only.
pub(super) struct Boundary {
    pub end: usize,
    /// First line of the last entry in the prefix that has content (not blank/comment).
    pub first_line: usize,
}

/// Split the text into entries: an entry ends at a newline outside parentheses and
/// quotes. This only tracks `( ) " ; \` (not a record parser): it exists so that a
/// prefix never cuts a multi-line entry, which keeps "the prefix shows the problem"
/// monotonic for the binary search in [`locate`].
pub(super) fn entry_boundaries(text: &str) -> Vec<Boundary> {
    let mut out = Vec::new();
    let (mut depth, mut in_quote, mut in_comment, mut escape) = (0i32, false, false, false);
    let mut line = 1;
    let mut first_content: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            in_comment = false;
            escape = false;
            if depth <= 0 && !in_quote {
                out.push(Boundary { end: i + 1, first_line: first_content.unwrap_or(line) });
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
        out.push(Boundary { end: text.len(), first_line: first_content.unwrap_or(line) });
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
        assert!(matches!(z.lookup(&w("NS1.Example.COM."), TYPE_A), Lookup::Node { wildcard: false, .. }));
        assert!(matches!(z.lookup(&w("x.w.example.com."), TYPE_A), Lookup::Node { wildcard: true, .. }));
        assert!(matches!(z.lookup(&w("b.c.example.com."), TYPE_A), Lookup::EmptyNonTerminal));
        assert!(matches!(z.lookup(&w("x.c.example.com."), TYPE_A), Lookup::NxDomain));
        assert!(matches!(z.lookup(&w("ns.sub.example.com."), TYPE_A), Lookup::Referral { .. }));
        assert!(matches!(z.lookup(&w("sub.example.com."), TYPE_DS), Lookup::Node { .. }));
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
        assert!(e.to_string().starts_with(&format!("{}", p.display())), "{e}");
        e.0[0].clone()
    }

    #[test]
    fn bad_zones_report_file_and_line() {
        // Parse error (unknown type) on line 6, after a multi-line SOA.
        let e = bad("badtype.zone", &GOOD.replace("ns1     IN A   192.0.2.1", "ns1     IN BOGUS 1"));
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
        let e = bad("apexcname.zone", &format!("{GOOD}\n; comment\n@ IN CNAME ns1\n"));
        assert_eq!(e.line, Some(13), "{e}");
        // Out of zone.
        let e = bad("outside.zone", &format!("{GOOD}www.example.net. IN A 192.0.2.9\n"));
        assert_eq!(e.line, Some(11), "{e}");
        assert!(e.message.contains("outside"), "{e}");
        // SOA not at the apex (with an origin argument fixing the apex).
        let p = write_zone("soaelsewhere.zone", &format!("{GOOD}x IN SOA ns1 hm 1 1 1 1 1\n"));
        let e = load_zone(&p, Some("example.com.")).unwrap_err().0.remove(0);
        assert_eq!(e.line, Some(11), "{e}");
        // No NS at the apex: no line.
        let e = bad("nons.zone", &GOOD.replace("        IN NS  ns1\n", ""));
        assert_eq!(e.line, None, "{e}");
        assert!(e.message.contains("no NS"), "{e}");
        // No SOA at all.
        let e = bad("nosoa.zone", "$ORIGIN example.com.\n@ 300 IN NS ns1\n");
        assert_eq!(e.line, None, "{e}");
        // Unclosed parenthesis starting on line 3.
        let e = bad("paren.zone", "$ORIGIN example.com.\n$TTL 60\n@ IN SOA ns1 hm ( 1 2 3 4 5\n@ IN NS ns1\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.to_string(), format!("{}:3: {}", e.file.display(), e.message));
    }

    #[test]
    fn ten_thousand_bad_lines_are_located_in_one_pass() {
        let mut text = GOOD.to_string();
        for i in 0..10_000 {
            text += &format!("x{i}.example.net. IN A 192.0.2.9\n");
        }
        let p = write_zone("many-bad.zone", &text);
        let started = std::time::Instant::now();
        let e = load_zone(&p, None).unwrap_err();
        // Re-parsing file prefixes per problem took minutes here (38 s for 800 lines).
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
        assert_eq!(e.0.len(), MAX_LISTED_ERRORS + 1, "{e}");
        for (i, err) in e.0[..MAX_LISTED_ERRORS].iter().enumerate() {
            assert_eq!(err.line, Some(11 + i), "{e}");
            assert_eq!(err.message, format!("x{i}.example.net. A is outside the zone example.com."), "{e}");
        }
        assert_eq!(e.0[MAX_LISTED_ERRORS].to_string(), format!("{}: 9980 more problems not listed (10000 in all)", p.display()));
        // CNAME-and-other-data problems too, each at the second of its two entries.
        let mut text = GOOD.to_string();
        for i in 0..10_000 {
            text += &format!("c{i} IN TXT \"t\"\nc{i} IN CNAME ns1\n");
        }
        let p = write_zone("many-cname.zone", &text);
        let e = load_zone(&p, None).unwrap_err();
        assert_eq!((e.0[0].line, e.0[1].line), (Some(12), Some(14)), "{e}");
        assert!(e.to_string().ends_with("9980 more problems not listed (10000 in all)"), "{e}");
    }

    /// A zone directory with `files` in it, and the zone file's path.
    fn zone_dir(files: &[(&str, &str)]) -> PathBuf {
        let zone = write_zone(files[0].0, files[0].1);
        for (name, text) in &files[1..] {
            let p = zone.parent().unwrap().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        zone
    }

    const HEAD: &str = "$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 hm 1 2 3 4 5\n@ IN NS ns1\n";

    #[test]
    fn includes_below_the_zone_directory_work_and_errors_name_the_included_file() {
        let zone = zone_dir(&[
            ("inc.zone", &format!("{HEAD}$INCLUDE hosts/ns.inc ; the name servers\nwww IN A 192.0.2.80\n")),
            ("hosts/ns.inc", "ns1 IN A 192.0.2.1\n$INCLUDE more.inc\nns2 IN A 192.0.2.2"),
            ("hosts/more.inc", "mail IN A 192.0.2.25\n"),
        ]);
        let z = load_zone(&zone, None).unwrap();
        for name in ["ns1", "ns2", "mail", "www"] {
            assert!(z.nodes().contains_key(&w(&format!("{name}.example.com."))), "{name}");
        }
        // A problem inside an include is reported at its own file and line.
        let zone = zone_dir(&[
            ("inc.zone", &format!("{HEAD}$INCLUDE hosts/ns.inc\nwww IN A 192.0.2.80\n")),
            ("hosts/ns.inc", "ns1 IN A 192.0.2.1\nx.example.net. IN A 192.0.2.2\n"),
        ]);
        let e = load_zone(&zone, None).unwrap_err();
        let inc = zone.parent().unwrap().canonicalize().unwrap().join("hosts/ns.inc");
        assert_eq!(e.to_string(), format!("{}:2: x.example.net. A is outside the zone example.com.", inc.display()));
        let zone = zone_dir(&[("inc.zone", &format!("{HEAD}$INCLUDE bad.inc\nwww IN A 192.0.2.80\n")), ("bad.inc", "\nns1 IN BOGUS 1\n")]);
        let e = load_zone(&zone, None).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{}:2: ", zone.parent().unwrap().canonicalize().unwrap().join("bad.inc").display())), "{e}");
        // And the lines after an include are still the zone file's own.
        let zone = zone_dir(&[("inc.zone", &format!("{HEAD}$INCLUDE a.inc\nwww IN BOGUS 1\n")), ("a.inc", "a IN A 192.0.2.1\nb IN A 192.0.2.2\n")]);
        assert_eq!(load_zone(&zone, None).unwrap_err().0[0].line, Some(6));
    }

    #[test]
    fn includes_outside_the_zone_directory_need_include_dirs() {
        let outside = write_zone("shared.inc", "ns1 IN A 192.0.2.1\n");
        let shared_dir = outside.parent().unwrap().to_path_buf();
        for target in [outside.display().to_string(), "/etc/passwd".into(), "../x.inc".into()] {
            let zone = zone_dir(&[("z.zone", &format!("{HEAD}$INCLUDE {target}\n"))]);
            std::fs::write(zone.parent().unwrap().parent().unwrap().join("x.inc"), "").ok();
            let e = load_zone(&zone, None).unwrap_err();
            assert_eq!(e.0.len(), 1, "{e}");
            assert_eq!(e.0[0].line, Some(5), "{e}");
            assert!(e.0[0].message.contains("is outside") && e.0[0].message.contains("include_dirs"), "{e}");
        }
        // A symbolic link below the directory that points out of it is outside too.
        let zone = zone_dir(&[("z.zone", &format!("{HEAD}$INCLUDE link.inc\n"))]);
        std::os::unix::fs::symlink(&outside, zone.parent().unwrap().join("link.inc")).unwrap();
        assert!(load_zone(&zone, None).unwrap_err().to_string().contains("is outside"));
        // Listed in include_dirs, it is allowed.
        let limits = ZoneLimits { include_dirs: vec![shared_dir], ..ZoneLimits::default() };
        let z = load_zone_with(&zone, None, &limits).unwrap();
        assert!(z.nodes().contains_key(&w("ns1.example.com.")));
    }

    #[test]
    fn include_tricks_are_errors() {
        let cases = [
            // hickory's parser would open this one: $INCLUDE right after $TTL's value.
            ("$TTL 60 $INCLUDE ns.inc\n", "$INCLUDE must start a line"),
            ("$INCLUDE ns.inc example.org.\n", "origin after it is not supported"),
            ("$INCLUDE z.zone\n", "includes itself"),
            ("$INCLUDE missing.inc\n", "cannot read"),
            ("$INCLUDE open.inc\n", "ends inside parentheses"),
        ];
        for (line, want) in cases {
            let zone = zone_dir(&[
                ("z.zone", &format!("{HEAD}ns1 IN A 192.0.2.1\n{line}")),
                ("ns.inc", "ns2 IN A 192.0.2.2\n"),
                ("open.inc", "ns3 IN A ( 192.0.2.3\n"),
            ]);
            let e = load_zone(&zone, None).unwrap_err();
            assert_eq!(e.0[0].line, Some(6), "{line}: {e}");
            assert!(e.to_string().contains(want), "{line}: {e}");
        }
        // Text that merely mentions $INCLUDE (comments, quoted strings) is not an include.
        let zone = zone_dir(&[("z.zone", &format!("{HEAD}ns1 IN A 192.0.2.1 ; $INCLUDE /etc/passwd\nt IN TXT \"$INCLUDE /etc/passwd\"\n"))]);
        load_zone(&zone, None).unwrap();
    }

    #[test]
    fn zone_text_has_a_size_limit_checked_before_and_while_reading() {
        let big = "ns1 IN A 192.0.2.1\n".repeat(200);
        let zone = zone_dir(&[("z.zone", &format!("{HEAD}$INCLUDE big.inc\n")), ("big.inc", &big)]);
        let limits = ZoneLimits { max_bytes: 2048, ..ZoneLimits::default() };
        let e = load_zone_with(&zone, None, &limits).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("big.inc: 3800 bytes is over the zone size limit of 2048 bytes"), "{msg}");
        assert!(msg.contains("zone_max_bytes"), "{msg}");
        assert!(load_zone(&zone, None).is_ok());
        // The zone file itself.
        let e = load_zone_with(&write_zone("huge.zone", &format!("{HEAD}{big}")), None, &limits).unwrap_err();
        assert!(e.to_string().contains("bytes is over the zone size limit of 2048 bytes"), "{e}");
        // A device reports size 0: the read itself stops at the limit.
        let zone = write_zone("dev.zone", &format!("{HEAD}$INCLUDE /dev/zero\n"));
        let limits = ZoneLimits { include_dirs: vec!["/dev".into()], max_bytes: 1 << 20 };
        let e = load_zone_with(&zone, None, &limits).unwrap_err();
        assert!(e.to_string().contains("/dev/zero: more than that is over the zone size limit of 1048576 bytes"), "{e}");
    }

    #[test]
    fn zoneset_rejects_duplicates_and_finds_closest() {
        let p = write_zone("set.zone", GOOD);
        let z = load_zone(&p, None).unwrap();
        let sub_text = "$ORIGIN sub.example.com.\n@ 60 IN SOA ns hm 1 1 1 1 1\n@ 60 IN NS ns\nns 60 IN A 192.0.2.4\n";
        let sub = load_zone(&write_zone("sub.zone", sub_text), None).unwrap();
        let set = ZoneSet::new(vec![z.clone(), sub]).unwrap();
        assert_eq!(set.find(&w("x.Sub.example.com.")).unwrap().apex_text(), "sub.example.com.");
        assert_eq!(set.find(&w("x.example.com.")).unwrap().apex_text(), "example.com.");
        assert!(set.find(&w("example.net.")).is_none());
        assert_eq!(set.find_for(&w("sub.example.com."), TYPE_DS).unwrap().apex_text(), "example.com.");
        let e = ZoneSet::new(vec![z.clone(), z]).unwrap_err();
        assert!(e.to_string().contains("already loaded"), "{e}");
    }
}
