//! The authoritative answer engine: one query in wire format → one response in wire
//! format (or nothing). Pure logic, no I/O.
//!
//! The response is encoded by hand (header, echoed question, records) from RDATA that
//! the zone loader pre-encoded with hickory. This gives exact control over names:
//!
//! * the question is echoed byte for byte as the client sent it (same letter case);
//! * a record owner equal (case-insensitively) to the qname is the pointer `0xC00C`;
//! * every other name (other owners, names inside RDATA) is written in full,
//!   uncompressed and lowercase.
//!
//! So the bytes after the question depend only on the lowercase qname, never on its
//! case; the XDP fast path relies on this to reuse them (see `fastpath.rs`).
//!
//! Additional-section processing: for every MX, NS and SRV RRset in the answer section,
//! the A then AAAA RRsets of each target (in RDATA order, deduplicated) are added when
//! the target is an authoritative owner in any served zone (exact match: no wildcard
//! synthesis, no CNAME following, nothing at/below a zone cut). Referrals carry A/AAAA
//! for NS targets inside the referring zone (glue below the cut, or in-zone data).

use std::borrow::Cow;
use std::sync::Arc;

use super::dnssec::{self, Proofs, sigs_for};
use super::zone::{CLASS_IN, Lookup, Node, Rr, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_DS, TYPE_MX, TYPE_NS, TYPE_SRV, TYPE_TXT, Zone, ZoneSet};

const TYPE_SOA: u16 = 6;
const TYPE_RRSIG: u16 = 46;
const TYPE_NSEC: u16 = 47;
const TYPE_PTR: u16 = 12;

/// The transport a query arrived on; decides the response size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

pub(crate) const RCODE_NOERROR: u8 = 0;
pub(crate) const RCODE_FORMERR: u8 = 1;
pub(crate) const RCODE_NXDOMAIN: u8 = 3;
pub(crate) const RCODE_NOTIMP: u8 = 4;
pub(crate) const RCODE_REFUSED: u8 = 5;
/// Extended rcode 16 (RFC 6891): upper 8 bits of the 12-bit rcode, as carried in OPT.
const EXT_RCODE_BADVERS: u8 = 1;

const CLASS_CH: u16 = 3;
const TYPE_OPT: u16 = 41;
const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;
pub(crate) const TYPE_ANY: u16 = 255;
const EDNS_OPTION_NSID: u16 = 3;

/// The UDP payload size we advertise and the most we send over UDP with EDNS
/// (DNS flag day 2020 recommendation).
const EDNS_UDP_SIZE: u16 = 1232;
const PLAIN_UDP_SIZE: usize = 512;
/// Longest CNAME chain we follow (counted in CNAME records added).
const MAX_CNAME_CHAIN: usize = 8;

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;

/// Answers queries from a set of zones; `identity` (the PoP name) answers
/// `id.server`/`hostname.bind` CH TXT and the EDNS NSID option.
#[derive(Debug, Clone)]
pub struct Responder {
    zones: Arc<ZoneSet>,
    identity: String,
}

/// The question as received.
struct Question<'q> {
    /// Name, type and class exactly as the client sent them (echoed verbatim).
    raw: &'q [u8],
    /// The qname, lowercase wire format.
    qname: Vec<u8>,
    qtype: u16,
    qclass: u16,
}

#[derive(Clone, Copy)]
struct Edns {
    payload: u16,
    version: u8,
    dnssec_ok: bool,
    nsid: bool,
}

enum Opt {
    Absent,
    One(Edns),
    Many,
}

struct Query<'q> {
    id: u16,
    opcode: u8,
    rd: bool,
    qdcount: u16,
    question: Option<Question<'q>>,
    opt: Opt,
    /// Something after the header could not be parsed.
    malformed: bool,
}

/// One record to write. Owners equal to the qname become `0xC00C` when written.
struct OutRr<'z> {
    owner: Cow<'z, [u8]>,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: Cow<'z, [u8]>,
}

impl<'z> OutRr<'z> {
    fn from_zone(rr: &'z Rr) -> Self {
        OutRr { owner: Cow::Borrowed(&rr.owner), rtype: rr.rtype, class: rr.class, ttl: rr.ttl, rdata: Cow::Borrowed(&rr.rdata) }
    }
}

/// The outcome of answering: rcode, AA and the three sections.
struct Answer<'z> {
    rcode: u8,
    aa: bool,
    /// From a signed zone: encoded as Knot DNS does (see [`encode_compressed`]).
    signed: bool,
    answer: Vec<OutRr<'z>>,
    authority: Vec<OutRr<'z>>,
    additional: Vec<OutRr<'z>>,
}

impl<'z> Answer<'z> {
    fn new(rcode: u8, aa: bool) -> Self {
        Answer { rcode, aa, signed: false, answer: Vec::new(), authority: Vec::new(), additional: Vec::new() }
    }
}

/// The OPT record to put in a response.
struct OptOut<'a> {
    ext_rcode: u8,
    dnssec_ok: bool,
    nsid: Option<&'a [u8]>,
}

impl Responder {
    pub fn new(zones: Arc<ZoneSet>, identity: impl Into<String>) -> Self {
        Responder { zones, identity: identity.into() }
    }

    pub fn zones(&self) -> &ZoneSet {
        &self.zones
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Answer one query. `None` means send nothing (too short, or not a query).
    pub fn respond(&self, msg: &[u8], transport: Transport) -> Option<Vec<u8>> {
        if msg.len() < 12 || msg[2] & 0x80 != 0 {
            return None;
        }
        let q = parse_query(msg);
        let edns = match q.opt {
            Opt::One(e) => Some(e),
            _ => None,
        };
        // A normal OPT for this query: NSID only if asked for.
        let opt_for = |e: Edns| OptOut { ext_rcode: 0, dnssec_ok: e.dnssec_ok, nsid: e.nsid.then_some(self.identity.as_bytes()) };

        let question = q.question.as_ref();
        // Opcode first: other opcodes may not follow QUERY's section rules.
        if q.opcode != 0 {
            let ans = Answer::new(RCODE_NOTIMP, false);
            return Some(self.finish(&q, question, ans, edns.map(opt_for), transport));
        }
        if q.malformed || q.qdcount != 1 || matches!(q.opt, Opt::Many) {
            let ans = Answer::new(RCODE_FORMERR, false);
            return Some(self.finish(&q, question, ans, None, transport));
        }
        let question = question.expect("qdcount == 1 and not malformed");
        if let Some(e) = edns
            && e.version != 0
        {
            let opt = OptOut { ext_rcode: EXT_RCODE_BADVERS, dnssec_ok: e.dnssec_ok, nsid: None };
            let ans = Answer::new(RCODE_NOERROR, false);
            return Some(self.finish(&q, Some(question), ans, Some(opt), transport));
        }
        let ans = self.answer(question, edns.is_some_and(|e| e.dnssec_ok));
        Some(self.finish(&q, Some(question), ans, edns.map(opt_for), transport))
    }

    /// Decide the answer for a well-formed QUERY.
    fn answer<'s>(&'s self, question: &Question<'_>, dnssec_ok: bool) -> Answer<'s> {
        let Question { qname, qtype, qclass, .. } = question;
        let (qtype, qclass) = (*qtype, *qclass);
        if qtype == TYPE_AXFR || qtype == TYPE_IXFR {
            return Answer::new(RCODE_NOTIMP, false); // we do not transfer zones
        }
        match qclass {
            CLASS_IN => self.answer_in(qname, qtype, dnssec_ok),
            CLASS_CH => self.answer_ch(qname, qtype),
            _ => Answer::new(RCODE_REFUSED, false),
        }
    }

    /// `id.server.` / `hostname.bind.` CH TXT → identity; anything else in CH is refused.
    fn answer_ch<'s>(&'s self, qname: &[u8], qtype: u16) -> Answer<'s> {
        const ID_SERVER: &[u8] = b"\x02id\x06server\x00";
        const HOSTNAME_BIND: &[u8] = b"\x08hostname\x04bind\x00";
        if qtype != TYPE_TXT || (qname != ID_SERVER && qname != HOSTNAME_BIND) {
            return Answer::new(RCODE_REFUSED, false);
        }
        let mut rdata = Vec::new();
        let id = self.identity.as_bytes();
        if id.is_empty() {
            rdata.push(0);
        }
        for chunk in id.chunks(255) {
            rdata.push(chunk.len() as u8);
            rdata.extend_from_slice(chunk);
        }
        let mut ans = Answer::new(RCODE_NOERROR, true);
        ans.answer.push(OutRr { owner: Cow::Owned(qname.to_vec()), rtype: TYPE_TXT, class: CLASS_CH, ttl: 0, rdata: Cow::Owned(rdata) });
        ans
    }

    /// An IN answer. With `dnssec_ok` and a signed zone, signed RRsets carry their
    /// RRSIGs and denials and wildcard answers their NSEC/NSEC3 proofs (RFC 4035
    /// section 3.1, RFC 5155 section 7.2).
    fn answer_in<'s>(&'s self, qname: &[u8], qtype: u16, dnssec_ok: bool) -> Answer<'s> {
        let Some(zone) = self.zones.find_for(qname, qtype) else {
            return Answer::new(RCODE_REFUSED, false); // not ours; we never recurse
        };
        let mut ans = Answer::new(RCODE_NOERROR, true);
        let mut zone: &Zone = zone;
        let mut name: Vec<u8> = qname.to_vec();
        let mut chain = 0;
        loop {
            let first = chain == 0;
            let sec = dnssec_ok && zone.is_signed();
            ans.signed |= zone.is_signed();
            match zone.lookup(&name, qtype) {
                Lookup::Referral { cut } => {
                    if first {
                        let mut r = referral(zone, cut, sec);
                        r.signed = zone.is_signed();
                        return r;
                    }
                    break; // a chain into a delegation: stop, the client follows it
                }
                Lookup::NxDomain => {
                    ans.rcode = RCODE_NXDOMAIN;
                    push_negative_soa(&mut ans.authority, zone, sec);
                    if sec {
                        push_proofs(&mut ans.authority, dnssec::nxdomain(zone, &name));
                    }
                    break;
                }
                Lookup::EmptyNonTerminal => {
                    push_negative_soa(&mut ans.authority, zone, sec);
                    if sec {
                        push_proofs(&mut ans.authority, dnssec::nodata(zone, &name, None));
                    }
                    break;
                }
                Lookup::Node { node, wildcard } => {
                    // Synthesized records are owned by the name asked for (RFC 4592).
                    let owner: Option<&[u8]> = wildcard.then_some(&name);
                    let source = node.rrsets.first().and_then(|s| s.records.first()).map(|r| r.owner.as_slice());
                    let wildcard_owner = if wildcard { source } else { None };
                    let mut proofs = Proofs::default();
                    if sec && let Some(w) = wildcard_owner {
                        proofs = dnssec::wildcard_answer(zone, &name, w);
                    }
                    if qtype == TYPE_ANY {
                        // RFC 8482: one RRset, deterministically the lowest type.
                        match node.rrsets.first() {
                            Some(set) => push_signed(&mut ans.answer, node, set.rtype, owner, sec),
                            None => ans.authority.push(OutRr::from_zone(zone.negative_soa())),
                        }
                        push_proofs(&mut ans.authority, proofs);
                        break;
                    }
                    if qtype == TYPE_RRSIG
                        && let Some(covered) = sigs_for_lowest_type(node)
                    {
                        // Like ANY: one covered type's RRSIGs, the lowest (as Knot does).
                        for sig in sigs_for(node, covered) {
                            push_rrset(&mut ans.answer, std::slice::from_ref(sig), owner);
                        }
                        push_proofs(&mut ans.authority, proofs);
                        break;
                    }
                    if node.get(qtype).is_some() {
                        push_signed(&mut ans.answer, node, qtype, owner, sec);
                        push_proofs(&mut ans.authority, proofs);
                        break;
                    }
                    // NSEC and RRSIG are about the name itself: no CNAME is followed
                    // for them in a signed zone (as Knot DNS answers).
                    let chase = !(zone.is_signed() && matches!(qtype, TYPE_NSEC | TYPE_RRSIG));
                    if chase && let Some(cname) = cname_of(node) {
                        push_signed(&mut ans.answer, node, TYPE_CNAME, owner, sec);
                        push_proofs(&mut ans.authority, proofs);
                        chain += 1;
                        let Some(target) = cname.target.as_ref() else {
                            break;
                        };
                        // Follow only within served zones, and boundedly (loops included).
                        match self.zones.find(target) {
                            Some(z) if chain < MAX_CNAME_CHAIN => {
                                zone = z;
                                name = target.clone();
                                continue;
                            }
                            _ => break,
                        }
                    }
                    push_negative_soa(&mut ans.authority, zone, sec);
                    if sec {
                        push_proofs(&mut ans.authority, dnssec::nodata(zone, &name, wildcard_owner));
                    }
                    break;
                }
            }
        }
        self.additional_for_answer(&mut ans, dnssec_ok);
        ans
    }

    /// A/AAAA for the targets of MX/NS/SRV answers (see the module doc), with their
    /// RRSIGs for a DO query.
    fn additional_for_answer<'s>(&'s self, ans: &mut Answer<'s>, dnssec_ok: bool) {
        let mut targets: Vec<&[u8]> = Vec::new();
        for rr in &ans.answer {
            if matches!(rr.rtype, TYPE_MX | TYPE_NS | TYPE_SRV)
                && let Some(t) = target_of(&rr.rdata, rr.rtype)
                && !targets.contains(&t)
            {
                targets.push(t);
            }
        }
        let mut add = Vec::new();
        for t in targets {
            let Some(zone) = self.zones.find(t) else {
                continue;
            };
            if zone.cut_at_or_above(t).is_some() {
                continue;
            }
            if let Some(node) = zone.nodes().get(t) {
                push_addresses(&mut add, node, dnssec_ok && zone.is_signed());
            }
        }
        ans.additional = add;
    }

    /// Encode the response; on UDP overflow, the truncated form (TC=1, no records).
    fn finish(&self, q: &Query<'_>, question: Option<&Question<'_>>, ans: Answer<'_>, opt: Option<OptOut<'_>>, transport: Transport) -> Vec<u8> {
        let mut flags = FLAG_QR | (u16::from(q.opcode) << 11) | u16::from(ans.rcode & 0x0f);
        if q.rd {
            flags |= FLAG_RD;
        }
        if ans.aa {
            flags |= FLAG_AA;
        }
        let limit = match (transport, &q.opt) {
            (Transport::Tcp, _) => u16::MAX as usize,
            (Transport::Udp, Opt::One(e)) => e.payload.clamp(PLAIN_UDP_SIZE as u16, EDNS_UDP_SIZE) as usize,
            (Transport::Udp, _) => PLAIN_UDP_SIZE,
        };
        let full = encode(q.id, flags, question, &ans, opt.as_ref());
        if full.len() <= limit {
            return full;
        }
        if ans.signed {
            return encode_compressed(q.id, flags, question, &ans, opt.as_ref(), limit);
        }
        encode(q.id, flags | FLAG_TC, question, &Answer::new(ans.rcode, ans.aa), opt.as_ref())
    }
}

fn cname_of(node: &Node) -> Option<&Rr> {
    node.get(TYPE_CNAME).and_then(|s| s.records.first())
}

/// Append an RRset, re-owned to `owner` when synthesized from a wildcard.
fn push_rrset<'z>(out: &mut Vec<OutRr<'z>>, records: &'z [Rr], owner: Option<&[u8]>) {
    for rr in records {
        let mut o = OutRr::from_zone(rr);
        if let Some(owner) = owner {
            o.owner = Cow::Owned(owner.to_vec());
        }
        out.push(o);
    }
}

/// Append `node`'s RRset of `rtype`, then (with `sec`) the RRSIGs covering it, all
/// re-owned to `owner` when synthesized from a wildcard.
fn push_signed<'z>(out: &mut Vec<OutRr<'z>>, node: &'z Node, rtype: u16, owner: Option<&[u8]>, sec: bool) {
    if let Some(set) = node.get(rtype) {
        push_rrset(out, &set.records, owner);
    }
    if sec {
        for sig in sigs_for(node, rtype) {
            push_rrset(out, std::slice::from_ref(sig), owner);
        }
    }
}

/// The lowest type the RRSIGs at `node` cover.
fn sigs_for_lowest_type(node: &Node) -> Option<u16> {
    let sigs = node.get(TYPE_RRSIG)?;
    sigs.records.iter().filter_map(|r| Some(u16::from_be_bytes([*r.rdata.first()?, *r.rdata.get(1)?]))).min()
}

/// The zone's SOA for a negative answer, and with `sec` its RRSIGs at the same
/// (negative) TTL.
fn push_negative_soa<'z>(out: &mut Vec<OutRr<'z>>, zone: &'z Zone, sec: bool) {
    let soa = zone.negative_soa();
    out.push(OutRr::from_zone(soa));
    if sec {
        for sig in sigs_for(zone.apex_node(), TYPE_SOA) {
            let mut o = OutRr::from_zone(sig);
            o.ttl = soa.ttl;
            out.push(o);
        }
    }
}

/// Append each proof's NSEC or NSEC3 RRset and its RRSIGs.
fn push_proofs<'z>(out: &mut Vec<OutRr<'z>>, proofs: Proofs<'z>) {
    for p in proofs.0 {
        push_signed(out, p.node, p.rtype, None, true);
    }
}

/// Append a node's A then AAAA records (with `sec`, each with its RRSIGs), skipping
/// any already present.
fn push_addresses<'z>(out: &mut Vec<OutRr<'z>>, node: &'z Node, sec: bool) {
    for t in [TYPE_A, TYPE_AAAA] {
        if let Some(set) = node.get(t) {
            let mut added = false;
            for rr in &set.records {
                let dup = out.iter().any(|o| o.rtype == t && *o.owner == *rr.owner && *o.rdata == *rr.rdata);
                if !dup {
                    out.push(OutRr::from_zone(rr));
                    added = true;
                }
            }
            if sec && added {
                out.extend(sigs_for(node, t).map(OutRr::from_zone));
            }
        }
    }
}

/// The target name inside pre-encoded RDATA (uncompressed, so it can be sliced).
fn target_of(rdata: &[u8], rtype: u16) -> Option<&[u8]> {
    let start = match rtype {
        TYPE_NS | TYPE_CNAME => 0,
        TYPE_MX => 2,
        TYPE_SRV => 6,
        _ => return None,
    };
    rdata.get(start..)
}

/// Referral to the cut: NS RRset in authority, A/AAAA of in-zone NS targets in
/// additional. Not authoritative. With `sec` (a DO query, a signed zone), the DS
/// RRset and its RRSIGs, or the proof that there is no DS; glue stays unsigned.
fn referral<'z>(zone: &'z Zone, cut: &[u8], sec: bool) -> Answer<'z> {
    let mut ans = Answer::new(RCODE_NOERROR, false);
    let Some(cut_node) = zone.nodes().get(cut) else {
        return ans; // cannot happen: cuts are NS owners
    };
    let Some(ns) = cut_node.get(TYPE_NS) else {
        return ans;
    };
    ans.authority.extend(ns.records.iter().map(OutRr::from_zone));
    if sec {
        if cut_node.get(TYPE_DS).is_some() {
            push_signed(&mut ans.authority, cut_node, TYPE_DS, None, true);
        } else {
            push_proofs(&mut ans.authority, dnssec::no_ds(zone, cut));
        }
    }
    for rr in &ns.records {
        let Some(target) = rr.target.as_deref() else {
            continue;
        };
        if !super::zone::is_at_or_below(target, zone.apex()) {
            continue; // out of bailiwick: no glue
        }
        if let Some(node) = zone.nodes().get(target) {
            // Glue below the cut is not signed; in-zone addresses keep their RRSIGs.
            let glue = zone.cut_at_or_above(target).is_some();
            push_addresses(&mut ans.additional, node, sec && !glue);
        }
    }
    ans
}

// ---------------------------------------------------------------------------------
// Wire format.

/// Parse what we need from a query; never fails (problems set `malformed`).
fn parse_query(msg: &[u8]) -> Query<'_> {
    let be16 = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    let mut q = Query {
        id: be16(0),
        opcode: (msg[2] >> 3) & 0x0f,
        rd: msg[2] & 0x01 != 0,
        qdcount: be16(4),
        question: None,
        opt: Opt::Absent,
        malformed: false,
    };
    let (an, ns, ar) = (be16(6), be16(8), be16(10));
    let mut pos = 12;
    if q.qdcount >= 1 {
        match parse_question(msg, pos) {
            Some((question, next)) => {
                q.question = Some(question);
                pos = next;
            }
            None => {
                q.malformed = true;
                return q;
            }
        }
    }
    // Further questions (only to check that the message is well formed).
    for _ in 1..q.qdcount {
        match skip_name(msg, pos).filter(|p| p + 4 <= msg.len()) {
            Some(p) => pos = p + 4,
            None => {
                q.malformed = true;
                return q;
            }
        }
    }
    let total = u32::from(an) + u32::from(ns) + u32::from(ar);
    for i in 0..total {
        let Some((rtype, class, ttl, rdata, next)) = parse_rr(msg, pos) else {
            q.malformed = true;
            return q;
        };
        pos = next;
        let in_additional = i >= u32::from(an) + u32::from(ns);
        if in_additional && rtype == TYPE_OPT {
            let Some(nsid) = opt_has_nsid(rdata) else {
                q.malformed = true;
                return q;
            };
            let edns = Edns { payload: class, version: (ttl >> 16) as u8, dnssec_ok: ttl & 0x8000 != 0, nsid };
            q.opt = match q.opt {
                Opt::Absent => Opt::One(edns),
                _ => Opt::Many,
            };
        }
    }
    q
}

/// The question at `pos`: an uncompressed name (a pointer can only point back into
/// the header here), type and class.
fn parse_question(msg: &[u8], pos: usize) -> Option<(Question<'_>, usize)> {
    let mut qname = Vec::new();
    let mut p = pos;
    loop {
        let len = *msg.get(p)? as usize;
        if len & 0xc0 != 0 {
            return None;
        }
        qname.push(len as u8);
        if len == 0 {
            p += 1;
            break;
        }
        let label = msg.get(p + 1..p + 1 + len)?;
        qname.extend(label.iter().map(|b| b.to_ascii_lowercase()));
        p += 1 + len;
        if qname.len() > 255 {
            return None;
        }
    }
    if qname.len() > 255 {
        return None;
    }
    let tail = msg.get(p..p + 4)?;
    let question =
        Question { raw: &msg[pos..p + 4], qname, qtype: u16::from_be_bytes([tail[0], tail[1]]), qclass: u16::from_be_bytes([tail[2], tail[3]]) };
    Some((question, p + 4))
}

/// Skip a possibly compressed name; returns the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + len as usize,
            0xc0 => return (pos + 2 <= msg.len()).then_some(pos + 2),
            _ => return None,
        }
    }
}

/// One resource record: (type, class, ttl, rdata, next position).
fn parse_rr(msg: &[u8], pos: usize) -> Option<(u16, u16, u32, &[u8], usize)> {
    let p = skip_name(msg, pos)?;
    let h = msg.get(p..p + 10)?;
    let rtype = u16::from_be_bytes([h[0], h[1]]);
    let class = u16::from_be_bytes([h[2], h[3]]);
    let ttl = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let rdlen = u16::from_be_bytes([h[8], h[9]]) as usize;
    let rdata = msg.get(p + 10..p + 10 + rdlen)?;
    Some((rtype, class, ttl, rdata, p + 10 + rdlen))
}

/// Walk the EDNS options; `Some(true)` if NSID is among them, `None` if malformed.
fn opt_has_nsid(mut rdata: &[u8]) -> Option<bool> {
    let mut nsid = false;
    while !rdata.is_empty() {
        let h = rdata.get(..4)?;
        let code = u16::from_be_bytes([h[0], h[1]]);
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        rdata.get(4..4 + len)?;
        nsid |= code == EDNS_OPTION_NSID;
        rdata = &rdata[4 + len..];
    }
    Some(nsid)
}

/// Serialize a response (see the module doc for the name rules).
fn encode(id: u16, flags: u16, question: Option<&Question<'_>>, ans: &Answer<'_>, opt: Option<&OptOut<'_>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let count = |v: &Vec<OutRr<'_>>| v.len().min(u16::MAX as usize) as u16;
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
    out.extend_from_slice(&count(&ans.answer).to_be_bytes());
    out.extend_from_slice(&count(&ans.authority).to_be_bytes());
    out.extend_from_slice(&(count(&ans.additional) + u16::from(opt.is_some())).to_be_bytes());
    let qname: &[u8] = match question {
        Some(q) => {
            out.extend_from_slice(q.raw);
            &q.qname
        }
        None => &[],
    };
    for rr in ans.answer.iter().chain(&ans.authority).chain(&ans.additional) {
        if question.is_some() && *rr.owner == *qname {
            out.extend_from_slice(&[0xc0, 0x0c]); // the qname right after the header
        } else {
            out.extend_from_slice(&rr.owner);
        }
        out.extend_from_slice(&rr.rtype.to_be_bytes());
        out.extend_from_slice(&rr.class.to_be_bytes());
        out.extend_from_slice(&rr.ttl.to_be_bytes());
        out.extend_from_slice(&(rr.rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rr.rdata);
    }
    if let Some(opt) = opt {
        out.push(0); // root owner
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
        // TTL field: extended rcode, version 0, DO flag.
        let ttl = (u32::from(opt.ext_rcode) << 24) | if opt.dnssec_ok { 0x8000 } else { 0 };
        out.extend_from_slice(&ttl.to_be_bytes());
        match opt.nsid {
            Some(id) => {
                let id = &id[..id.len().min(u16::MAX as usize - 4)];
                out.extend_from_slice(&((id.len() + 4) as u16).to_be_bytes());
                out.extend_from_slice(&EDNS_OPTION_NSID.to_be_bytes());
                out.extend_from_slice(&(id.len() as u16).to_be_bytes());
                out.extend_from_slice(id);
            }
            None => out.extend_from_slice(&0u16.to_be_bytes()),
        }
    }
    out
}

/// Names already written and where, for compression pointers (RFC 1035 section 4.1.4).
struct Compressor {
    known: Vec<(Vec<u8>, u16)>,
}

impl Compressor {
    /// Writes `name` (lowercase wire) at the end of `out`, pointing at the longest
    /// suffix written before.
    fn name(&mut self, out: &mut Vec<u8>, name: &[u8]) {
        let mut rest = name;
        while rest.first().is_some_and(|&l| l != 0) {
            if let Some(&(_, at)) = self.known.iter().find(|(n, _)| n == rest) {
                out.extend_from_slice(&(0xc000 | at).to_be_bytes());
                return;
            }
            if out.len() < 0x3fff {
                self.known.push((rest.to_vec(), out.len() as u16));
            }
            let len = 1 + rest[0] as usize;
            out.extend_from_slice(&rest[..len]);
            rest = &rest[len..];
        }
        out.push(0);
    }
}

/// The length of the uncompressed wire name at the start of `b`.
fn name_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let l = *b.get(i)? as usize;
        i += 1 + l;
        if l == 0 {
            return Some(i);
        }
    }
}

/// RDATA with the names RFC 3597 section 4 lets a server compress (NS, CNAME, PTR,
/// MX, SOA) compressed; others as they are.
fn rdata_compressed(c: &mut Compressor, out: &mut Vec<u8>, rtype: u16, rdata: &[u8]) {
    let (prefix, names) = match rtype {
        TYPE_NS | TYPE_CNAME | TYPE_PTR => (0, 1),
        TYPE_MX => (2, 1),
        TYPE_SOA => (0, 2),
        _ => (0, 0),
    };
    let mut pos = prefix.min(rdata.len());
    out.extend_from_slice(&rdata[..pos]);
    for _ in 0..names {
        let Some(n) = name_len(&rdata[pos..]) else { break };
        c.name(out, &rdata[pos..pos + n]);
        pos += n;
    }
    out.extend_from_slice(&rdata[pos..]);
}

/// A response over the client's size from a signed zone, as Knot DNS sends it: names
/// compressed; per section its RRsets in order, then their RRSIGs, while they fit. The
/// first answer or authority RRset or RRSIG set that does not fit sets TC and ends the
/// message; additional ones that do not fit are left out (RFC 2181 section 9).
fn encode_compressed(id: u16, flags: u16, question: Option<&Question<'_>>, ans: &Answer<'_>, opt: Option<&OptOut<'_>>, limit: usize) -> Vec<u8> {
    let mut c = Compressor { known: Vec::new() };
    let mut out = Vec::with_capacity(limit);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    if let Some(q) = question {
        out.extend_from_slice(q.raw);
        c.known.push((q.qname.clone(), 12));
    }
    // Room for the OPT record, which always goes in.
    let opt_bytes = {
        let mut v = encode(0, 0, None, &Answer::new(0, false), opt);
        v.drain(..12);
        v
    };
    let room = limit.saturating_sub(opt_bytes.len());
    let mut counts = [0u16; 3];
    let mut truncated = false;
    let covered = |r: &OutRr<'_>| if r.rtype == TYPE_RRSIG && r.rdata.len() >= 2 { u16::from_be_bytes([r.rdata[0], r.rdata[1]]) } else { 0 };
    'sections: for (i, section) in [&ans.answer, &ans.authority, &ans.additional].into_iter().enumerate() {
        let (sigs, sets): (Vec<&OutRr<'_>>, Vec<&OutRr<'_>>) = section.iter().partition(|r| r.rtype == TYPE_RRSIG);
        for list in [sets, sigs] {
            let mut k = 0;
            while k < list.len() {
                let first = list[k];
                let same = |r: &&&OutRr<'_>| r.owner == first.owner && r.rtype == first.rtype && covered(r) == covered(first);
                let unit = list[k..].iter().take_while(same).count();
                let (before, known) = (out.len(), c.known.len());
                for rr in &list[k..k + unit] {
                    c.name(&mut out, &rr.owner);
                    out.extend_from_slice(&rr.rtype.to_be_bytes());
                    out.extend_from_slice(&rr.class.to_be_bytes());
                    out.extend_from_slice(&rr.ttl.to_be_bytes());
                    let len_at = out.len();
                    out.extend_from_slice(&[0, 0]);
                    rdata_compressed(&mut c, &mut out, rr.rtype, &rr.rdata);
                    let rdlen = (out.len() - len_at - 2) as u16;
                    out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
                }
                if out.len() > room {
                    out.truncate(before);
                    c.known.truncate(known);
                    truncated = i < 2;
                    break 'sections;
                }
                counts[i] += unit as u16;
                k += unit;
            }
        }
    }
    if truncated {
        let f = flags | FLAG_TC;
        out[2..4].copy_from_slice(&f.to_be_bytes());
    }
    out[6..8].copy_from_slice(&counts[0].to_be_bytes());
    out[8..10].copy_from_slice(&counts[1].to_be_bytes());
    out[10..12].copy_from_slice(&(counts[2] + u16::from(opt.is_some())).to_be_bytes());
    out.extend_from_slice(&opt_bytes);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dns::zone::{load_zone, tests::write_zone};
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::{Name, Record, RecordType};

    pub(crate) const EXAMPLE: &str = r#"$ORIGIN example.com.
$TTL 3600
@        IN SOA ns1.example.com. hostmaster.example.com. ( 2024010101 7200 3600 1209600
                    300 )
@        IN NS  ns1
@        IN NS  ns2.example.net.
@        IN MX  10 mail
ns1      IN A   192.0.2.1
ns1      IN AAAA 2001:db8::1
www      IN A   192.0.2.10
www      IN A   192.0.2.11
www      IN AAAA 2001:db8::10
mail     IN A   192.0.2.25
txt      IN TXT "hello" "world"
alias    IN CNAME chain1
chain1   IN CNAME WWW
ext      IN CNAME www.example.org.
loop1    IN CNAME loop2
loop2    IN CNAME loop1
toother  IN CNAME host.other.test.
deadend  IN CNAME nothere
a.b.ent  IN A   192.0.2.30
_sip._udp IN SRV 0 5 5060 www
sub      IN NS  ns.sub
sub      IN NS  ns.elsewhere.net.
ns.sub   IN A   192.0.2.53
"#;

    pub(crate) const OTHER: &str = r#"$ORIGIN other.test.
@     600 IN SOA ns.other.test. hm.other.test. 1 2 3 4 60
@     600 IN NS  ns.example.com.
host  600 IN A   198.51.100.1
*     600 IN A   198.51.100.99
*     600 IN MX  10 host
*.cn  600 IN CNAME host
"#;

    /// A zone with a TXT RRset too big for 512 bytes.
    fn big_zone() -> String {
        let s = |c: char| std::iter::repeat_n(c, 200).collect::<String>();
        format!(
            "$ORIGIN big.test.\n@ 60 IN SOA ns hm 1 1 1 1 1\n@ 60 IN NS ns\nns 60 IN A 192.0.2.9\nbig 60 IN TXT \"{}\" \"{}\" \"{}\"\n",
            s('a'),
            s('b'),
            s('c')
        )
    }

    pub(crate) fn responder() -> Responder {
        let zones = vec![
            load_zone(&write_zone("ans-example.zone", EXAMPLE), None).unwrap(),
            load_zone(&write_zone("ans-other.zone", OTHER), None).unwrap(),
            load_zone(&write_zone("ans-big.zone", &big_zone()), None).unwrap(),
        ];
        Responder::new(Arc::new(ZoneSet::new(zones).unwrap()), "pop-test-1")
    }

    /// Wire name keeping the given case.
    fn wire(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    /// A query with ID 0xBEEF and RD=1.
    pub(crate) fn query(name: &str, qtype: u16, qclass: u16) -> Vec<u8> {
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(&wire(name));
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&qclass.to_be_bytes());
        q
    }

    /// Append an OPT RR (and bump ARCOUNT).
    fn with_opt(mut q: Vec<u8>, payload: u16, version: u8, dnssec_ok: bool, options: &[(u16, &[u8])]) -> Vec<u8> {
        let mut rdata = Vec::new();
        for (code, val) in options {
            rdata.extend_from_slice(&code.to_be_bytes());
            rdata.extend_from_slice(&(val.len() as u16).to_be_bytes());
            rdata.extend_from_slice(val);
        }
        q.push(0);
        q.extend_from_slice(&41u16.to_be_bytes());
        q.extend_from_slice(&payload.to_be_bytes());
        let ttl = (u32::from(version) << 16) | if dnssec_ok { 0x8000 } else { 0 };
        q.extend_from_slice(&ttl.to_be_bytes());
        q.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        q.extend_from_slice(&rdata);
        let ar = u16::from_be_bytes([q[10], q[11]]) + 1;
        q[10..12].copy_from_slice(&ar.to_be_bytes());
        q
    }

    fn ask(r: &Responder, q: &[u8], t: Transport) -> (Vec<u8>, Message) {
        let resp = r.respond(q, t).expect("a response");
        let msg = Message::from_vec(&resp).expect("hickory parses our response");
        (resp, msg)
    }

    fn udp(r: &Responder, name: &str, qtype: u16) -> Message {
        ask(r, &query(name, qtype, 1), Transport::Udp).1
    }

    /// `name TYPE data` per record, for compact assertions.
    fn show(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| format!("{} {} {} {}", r.name.to_ascii().to_ascii_lowercase(), r.ttl, r.record_type(), r.data)).collect()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn rcode(m: &Message) -> ResponseCode {
        m.metadata.response_code
    }

    #[test]
    fn header_and_positive_answer() {
        let r = responder();
        let (resp, m) = ask(&r, &query("www.example.com", 1, 1), Transport::Udp);
        assert_eq!(m.metadata.id, 0xbeef);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert!(!m.metadata.recursion_available && !m.metadata.truncation);
        assert_eq!(m.metadata.op_code, OpCode::Query);
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert_eq!(show(&m.answers), ["www.example.com. 3600 A 192.0.2.10", "www.example.com. 3600 A 192.0.2.11"]);
        assert!(m.authorities.is_empty() && m.additionals.is_empty() && m.edns.is_none());
        // RD=0 is copied too.
        let mut q = query("www.example.com", 1, 1);
        q[2] = 0;
        assert_eq!(r.respond(&q, Transport::Udp).unwrap()[2] & 0x01, 0);
        // Deterministic.
        assert_eq!(r.respond(&query("www.example.com", 1, 1), Transport::Udp).unwrap(), resp);
        let m = udp(&r, "txt.example.com", 16);
        assert_eq!(show(&m.answers), ["txt.example.com. 3600 TXT helloworld"]);
    }

    #[test]
    fn not_answered_at_all() {
        let r = responder();
        assert!(r.respond(&[0; 11], Transport::Udp).is_none());
        let mut q = query("www.example.com", 1, 1);
        q[2] |= 0x80; // a response
        assert!(r.respond(&q, Transport::Udp).is_none());
    }

    #[test]
    fn formerr_and_notimp() {
        let r = responder();
        // Truncated question: no question echoed.
        let q = query("www.example.com", 1, 1);
        let (resp, m) = ask(&r, &q[..q.len() - 2], Transport::Udp);
        assert_eq!(rcode(&m), ResponseCode::FormErr);
        assert!(m.queries.is_empty() && !m.metadata.authoritative);
        assert_eq!(resp.len(), 12);
        // Header only, QDCOUNT 0.
        let mut q0 = q[..12].to_vec();
        q0[5] = 0;
        assert_eq!(rcode(&ask(&r, &q0, Transport::Udp).1), ResponseCode::FormErr);
        // QDCOUNT 2 (two valid questions): FORMERR, first question echoed.
        let mut q2 = q.clone();
        q2.extend_from_slice(&q[12..]);
        q2[5] = 2;
        let m = ask(&r, &q2, Transport::Udp).1;
        assert_eq!(rcode(&m), ResponseCode::FormErr);
        assert_eq!(m.queries.len(), 1);
        // ARCOUNT says 1 but nothing follows: FORMERR with the question echoed.
        let mut qa = q.clone();
        qa[11] = 1;
        let m = ask(&r, &qa, Transport::Udp).1;
        assert_eq!(rcode(&m), ResponseCode::FormErr);
        assert_eq!(m.queries.len(), 1);
        // Two OPT records: FORMERR.
        let two = with_opt(with_opt(q.clone(), 1232, 0, false, &[]), 1232, 0, false, &[]);
        assert_eq!(r.respond(&two, Transport::Udp).unwrap()[3] & 0x0f, 1);
        // Opcode STATUS (2): NOTIMP.
        let mut qs = q.clone();
        qs[2] = (2 << 3) | 1;
        let m = ask(&r, &qs, Transport::Udp).1;
        assert_eq!(rcode(&m), ResponseCode::NotImp);
        assert_eq!(m.metadata.op_code, OpCode::Status);
        // AXFR and IXFR: NOTIMP, on both transports.
        for t in [252, 251] {
            let m = ask(&r, &query("example.com", t, 1), Transport::Tcp).1;
            assert_eq!(rcode(&m), ResponseCode::NotImp);
            assert!(m.answers.is_empty() && !m.metadata.authoritative);
        }
    }

    #[test]
    fn chaos_identity_and_other_classes() {
        let r = responder();
        for name in ["id.server", "ID.Server.", "hostname.bind", "HOSTNAME.BIND"] {
            let (resp, m) = ask(&r, &query(name, 16, 3), Transport::Udp);
            assert_eq!(rcode(&m), ResponseCode::NoError, "{name}");
            assert!(m.metadata.authoritative);
            assert_eq!(m.answers.len(), 1);
            assert_eq!(u16::from(m.answers[0].dns_class), 3);
            assert_eq!(m.answers[0].ttl, 0);
            assert_eq!(m.answers[0].data.to_string(), "pop-test-1");
            assert_eq!(m.answers[0].name.to_ascii(), format!("{}.", name.trim_end_matches('.')));
            let tail = &resp[12 + wire(name).len() + 4..];
            assert_eq!(&tail[..2], &[0xc0, 0x0c]);
        }
        for (name, qtype, class) in [("version.bind", 16, 3), ("id.server", 1, 3), ("www.example.com", 1, 4), ("www.example.com", 1, 255)] {
            let m = udp_class(&r, name, qtype, class);
            assert_eq!(rcode(&m), ResponseCode::Refused, "{name} {qtype} {class}");
            assert!(!m.metadata.authoritative);
        }
    }

    fn udp_class(r: &Responder, name: &str, qtype: u16, class: u16) -> Message {
        ask(r, &query(name, qtype, class), Transport::Udp).1
    }

    #[test]
    fn refused_outside_our_zones() {
        let r = responder();
        for name in ["example.net", "com", ".", "www.example.org"] {
            let m = udp(&r, name, 1);
            assert_eq!(rcode(&m), ResponseCode::Refused, "{name}");
            assert!(!m.metadata.authoritative && m.answers.is_empty() && m.authorities.is_empty());
        }
    }

    const NEG_SOA: &str = "example.com. 300 SOA ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300";

    #[test]
    fn cname_chains() {
        let r = responder();
        let m = udp(&r, "alias.example.com", 1);
        assert!(m.metadata.authoritative);
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert_eq!(
            show(&m.answers),
            [
                "alias.example.com. 3600 CNAME chain1.example.com.",
                "chain1.example.com. 3600 CNAME www.example.com.",
                "www.example.com. 3600 A 192.0.2.10",
                "www.example.com. 3600 A 192.0.2.11",
            ]
        );
        assert!(m.authorities.is_empty());
        // qtype CNAME: just the CNAME.
        assert_eq!(show(&udp(&r, "alias.example.com", 5).answers), ["alias.example.com. 3600 CNAME chain1.example.com."]);
        // Leaves our zones: stop after the CNAME.
        let m = udp(&r, "ext.example.com", 1);
        assert_eq!(show(&m.answers), ["ext.example.com. 3600 CNAME www.example.org."]);
        assert_eq!(rcode(&m), ResponseCode::NoError);
        // Into another served zone.
        let m = udp(&r, "toother.example.com", 1);
        assert_eq!(show(&m.answers), ["toother.example.com. 3600 CNAME host.other.test.", "host.other.test. 600 A 198.51.100.1"]);
        // A loop is bounded.
        let m = udp(&r, "loop1.example.com", 1);
        assert_eq!(m.answers.len(), MAX_CNAME_CHAIN);
        assert_eq!(rcode(&m), ResponseCode::NoError);
        // Target does not exist: NXDOMAIN for the final name, its SOA.
        let m = udp(&r, "deadend.example.com", 1);
        assert_eq!(rcode(&m), ResponseCode::NXDomain);
        assert_eq!(show(&m.answers), ["deadend.example.com. 3600 CNAME nothere.example.com."]);
        assert_eq!(show(&m.authorities), [NEG_SOA]);
        // Target exists without the type: NODATA.
        let m = udp(&r, "alias.example.com", 15);
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert_eq!(m.answers.len(), 2);
        assert_eq!(show(&m.authorities), [NEG_SOA]);
    }

    #[test]
    fn referrals_and_ds() {
        let r = responder();
        for (name, qtype) in [("www.sub.example.com", 1), ("sub.example.com", 2), ("sub.example.com", 1), ("ns.sub.example.com", 1)] {
            let m = udp(&r, name, qtype);
            assert_eq!(rcode(&m), ResponseCode::NoError, "{name}");
            assert!(!m.metadata.authoritative, "{name}");
            assert!(m.answers.is_empty(), "{name}");
            assert_eq!(
                show(&m.authorities),
                ["sub.example.com. 3600 NS ns.sub.example.com.", "sub.example.com. 3600 NS ns.elsewhere.net."],
                "{name}"
            );
            assert_eq!(show(&m.additionals), ["ns.sub.example.com. 3600 A 192.0.2.53"], "{name}");
        }
        // DS at the cut is the parent's: NODATA, authoritative.
        let m = udp(&r, "sub.example.com", 43);
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty());
        assert_eq!(show(&m.authorities), [NEG_SOA]);
    }

    #[test]
    fn nodata_nxdomain_and_empty_non_terminals() {
        let r = responder();
        for (name, qtype) in [("www.example.com", 15), ("ent.example.com", 1), ("b.ent.example.com", 28), ("ent.example.com", 255)] {
            let m = udp(&r, name, qtype);
            assert_eq!(rcode(&m), ResponseCode::NoError, "{name}");
            assert!(m.metadata.authoritative && m.answers.is_empty() && m.additionals.is_empty(), "{name}");
            assert_eq!(show(&m.authorities), [NEG_SOA], "{name}");
        }
        for name in ["nope.example.com", "x.a.b.ent.example.com", "x.www.example.com"] {
            let m = udp(&r, name, 1);
            assert_eq!(rcode(&m), ResponseCode::NXDomain, "{name}");
            assert!(m.metadata.authoritative && m.answers.is_empty(), "{name}");
            assert_eq!(show(&m.authorities), [NEG_SOA], "{name}");
        }
    }

    #[test]
    fn wildcards() {
        let r = responder();
        let m = udp(&r, "Foo.Other.Test", 1);
        assert!(m.metadata.authoritative);
        assert_eq!(show(&m.answers), ["foo.other.test. 600 A 198.51.100.99"]);
        // The synthesized MX gets the target's address in additional.
        let m = udp(&r, "deep.er.other.test", 15);
        assert_eq!(show(&m.answers), ["deep.er.other.test. 600 MX 10 host.other.test."]);
        assert_eq!(show(&m.additionals), ["host.other.test. 600 A 198.51.100.1"]);
        // Wildcard owner without the type: NODATA.
        let m = udp(&r, "foo.other.test", 16);
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].ttl, 60);
        // Wildcard CNAME, synthesized and followed.
        let m = udp(&r, "x.cn.other.test", 1);
        assert_eq!(show(&m.answers), ["x.cn.other.test. 600 CNAME host.other.test.", "host.other.test. 600 A 198.51.100.1"]);
        // An existing name is not covered: NODATA; below it, the closest encloser is
        // `host` which has no wildcard child: NXDOMAIN.
        assert!(udp(&r, "host.other.test", 28).answers.is_empty());
        assert_eq!(rcode(&udp(&r, "a.host.other.test", 1)), ResponseCode::NXDomain);
    }

    #[test]
    fn any_is_minimal() {
        let r = responder();
        assert_eq!(show(&udp(&r, "www.example.com", 255).answers), ["www.example.com. 3600 A 192.0.2.10", "www.example.com. 3600 A 192.0.2.11"]);
        let m = udp(&r, "example.com", 255);
        assert!(m.answers.iter().all(|a| a.record_type() == RecordType::NS), "{:?}", show(&m.answers));
        assert_eq!(m.answers.len(), 2);
        assert_eq!(show(&udp(&r, "alias.example.com", 255).answers), ["alias.example.com. 3600 CNAME chain1.example.com."]);
    }

    #[test]
    fn additional_section_processing() {
        let r = responder();
        let m = udp(&r, "example.com", 15);
        assert_eq!(show(&m.answers), ["example.com. 3600 MX 10 mail.example.com."]);
        assert_eq!(show(&m.additionals), ["mail.example.com. 3600 A 192.0.2.25"]);
        assert!(m.authorities.is_empty());
        let m = udp(&r, "example.com", 2);
        assert_eq!(show(&m.additionals), ["ns1.example.com. 3600 A 192.0.2.1", "ns1.example.com. 3600 AAAA 2001:db8::1"]);
        let m = udp(&r, "_sip._udp.example.com", 33);
        assert_eq!(
            show(&m.additionals),
            ["www.example.com. 3600 A 192.0.2.10", "www.example.com. 3600 A 192.0.2.11", "www.example.com. 3600 AAAA 2001:db8::10"]
        );
    }

    #[test]
    fn edns() {
        let r = responder();
        let q = query("www.example.com", 1, 1);
        // Plain EDNS: OPT 1232, version 0, DO copied, no options.
        for dnssec_ok in [false, true] {
            let m = ask(&r, &with_opt(q.clone(), 4096, 0, dnssec_ok, &[]), Transport::Udp).1;
            let e = m.edns.as_ref().expect("OPT");
            assert_eq!(e.max_payload(), 1232);
            assert_eq!(e.version(), 0);
            assert_eq!(e.flags().dnssec_ok, dnssec_ok);
            assert!(e.options().as_ref().is_empty());
            assert_eq!(m.answers.len(), 2);
        }
        // NSID is answered with the identity; cookie and padding are not echoed.
        let (resp, m) = ask(&r, &with_opt(q.clone(), 1232, 0, false, &[(10, &[1; 8]), (3, &[]), (12, &[0; 4])]), Transport::Udp);
        let opt_tail: &[u8] = &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 14, 0, 3, 0, 10];
        let expected = [opt_tail, b"pop-test-1"].concat();
        assert!(resp.ends_with(&expected), "{resp:02x?}");
        assert_eq!(m.additionals.len(), 0);
        // Without NSID, a cookie alone: empty OPT.
        let resp = r.respond(&with_opt(q.clone(), 1232, 0, false, &[(10, &[1; 8])]), Transport::Udp).unwrap();
        assert!(resp.ends_with(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]), "{resp:02x?}");
        // Version 1: BADVERS with an OPT, nothing else.
        let m = ask(&r, &with_opt(q.clone(), 1232, 1, true, &[(3, &[])]), Transport::Udp).1;
        assert_eq!(u16::from(rcode(&m)), 16, "BADVERS"); // hickory names 16 BADSIG
        assert!(m.answers.is_empty());
        let e = m.edns.as_ref().unwrap();
        assert_eq!(e.version(), 0);
        assert!(e.flags().dnssec_ok);
    }

    #[test]
    fn udp_truncation() {
        let r = responder();
        let q = query("big.big.test", 16, 1);
        // No EDNS, UDP: 512 limit -> TC, question only.
        let (resp, m) = ask(&r, &q, Transport::Udp);
        assert!(m.metadata.truncation && m.metadata.authoritative);
        assert_eq!(m.queries.len(), 1);
        assert!(m.answers.is_empty() && m.authorities.is_empty() && m.additionals.is_empty());
        assert_eq!(resp.len(), q.len());
        // TCP: complete.
        let (full, m) = ask(&r, &q, Transport::Tcp);
        assert!(!m.metadata.truncation && full.len() > 512);
        assert_eq!(m.answers.len(), 1);
        // EDNS 4096 -> limit 1232: fits.
        let m = ask(&r, &with_opt(q.clone(), 4096, 0, false, &[]), Transport::Udp).1;
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 1);
        // EDNS 100 -> limit 512: TC, with the OPT only.
        let (resp, m) = ask(&r, &with_opt(q.clone(), 100, 0, false, &[(3, &[])]), Transport::Udp);
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty() && m.additionals.is_empty());
        assert_eq!(u16::from_be_bytes([resp[10], resp[11]]), 1);
        assert!(m.edns.is_some());
        // Small answers are not affected.
        assert!(!udp(&r, "www.example.com", 1).metadata.truncation);
    }

    #[test]
    fn bytes_after_question_are_case_independent() {
        let r = responder();
        for (lower, mixed, qtype) in [
            ("www.example.com", "WwW.ExAmPlE.CoM", 1),
            ("example.com", "ExAmPlE.cOm", 15),
            ("alias.example.com", "ALIAS.example.COM", 1),
            ("foo.other.test", "FOO.OTHER.TEST", 15),
            ("www.sub.example.com", "Www.Sub.Example.Com", 1),
            ("nope.example.com", "NoPe.Example.Com", 1),
            ("id.server", "ID.SERVER", 16),
        ] {
            let qclass = if qtype == 16 { 3 } else { 1 };
            let a = r.respond(&query(lower, qtype, qclass), Transport::Udp).unwrap();
            let b = r.respond(&query(mixed, qtype, qclass), Transport::Udp).unwrap();
            let qend = 12 + wire(lower).len() + 4;
            assert_eq!(a[..12], b[..12], "{mixed}");
            assert_eq!(&b[12..qend], &query(mixed, qtype, qclass)[12..], "question echoed as sent");
            assert_eq!(a[qend..], b[qend..], "{mixed}");
            // Owners: 0xC00C exactly for the qname, else a full name without pointers.
            let m = Message::from_vec(&b).unwrap();
            let mut pos = qend;
            for rr in m.all_sections() {
                let is_qname = rr.name.to_ascii().eq_ignore_ascii_case(&format!("{}.", lower));
                if is_qname {
                    assert_eq!(&b[pos..pos + 2], &[0xc0, 0x0c], "{mixed}");
                    pos += 2;
                } else {
                    while b[pos] != 0 {
                        assert!(b[pos] < 0x40, "{mixed}: pointer in an owner");
                        pos += 1 + b[pos] as usize;
                    }
                    pos += 1;
                }
                let rdlen = u16::from_be_bytes([b[pos + 8], b[pos + 9]]) as usize;
                pos += 10 + rdlen;
            }
        }
        // Names inside RDATA are written in full (MX target, SOA names).
        let mx = r.respond(&query("ExAmPlE.cOm", 15, 1), Transport::Udp).unwrap();
        assert!(contains(&mx, b"\x04mail\x07example\x03com\x00"));
        let nx = r.respond(&query("NoPe.Example.Com", 1, 1), Transport::Udp).unwrap();
        assert!(contains(&nx, b"\x0ahostmaster\x07example\x03com\x00"));
        // Names inside RDATA are lowercase even if the zone wrote them otherwise (WWW).
        let resp = r.respond(&query("chain1.example.com", 1, 1), Transport::Udp).unwrap();
        assert!(contains(&resp, b"\x03www"));
        assert!(!contains(&resp, b"\x03WWW"));
    }

    // ---- DNSSEC: pre-signed zones (signatures are placeholders: pop never checks them) ----

    /// An RRSIG line covering `t` at `owner` (labels as RFC 4034 counts them).
    fn sig(owner: &str, t: &str, labels: u8, apex: &str) -> String {
        format!("{owner} 300 IN RRSIG {t} 13 {labels} 300 20370101000000 20240101000000 1 {apex} AAAA\n")
    }

    /// s.test, NSEC-signed: www, a wildcard, a signed and an insecure delegation.
    fn nsec_zone() -> String {
        let mut z = String::from("$ORIGIN s.test.\n$TTL 300\n@ IN SOA ns hm 1 2 3 4 60\n@ IN NS ns\n@ IN DNSKEY 257 3 13 AAAA\n");
        z += "ns IN A 192.0.2.1\nwww IN A 192.0.2.10\n*.w IN A 192.0.2.99\n";
        z += "sub IN NS ns.sub\nsub IN DS 1 13 2 00ff\nns.sub IN A 192.0.2.53\ninsec IN NS ns.insec\nns.insec IN A 192.0.2.54\n";
        // The chain: apex, insec, ns, sub, *.w, www (canonical order).
        for (owner, next, types) in [
            ("s.test.", "insec.s.test.", "NS SOA RRSIG NSEC DNSKEY"),
            ("insec.s.test.", "ns.s.test.", "NS NSEC"),
            ("ns.s.test.", "sub.s.test.", "A RRSIG NSEC"),
            ("sub.s.test.", "*.w.s.test.", "NS DS RRSIG NSEC"),
            ("*.w.s.test.", "www.s.test.", "A RRSIG NSEC"),
            ("www.s.test.", "s.test.", "A RRSIG NSEC"),
        ] {
            z += &format!("{owner} 60 IN NSEC {next} {types}\n");
            let labels = owner.trim_start_matches("*.").matches('.').count() as u8;
            z += &sig(owner, "NSEC", labels, "s.test.");
        }
        for (owner, t, labels) in [
            ("s.test.", "SOA", 2),
            ("s.test.", "NS", 2),
            ("s.test.", "DNSKEY", 2),
            ("ns.s.test.", "A", 3),
            ("www.s.test.", "A", 3),
            ("*.w.s.test.", "A", 3),
            ("sub.s.test.", "DS", 3),
        ] {
            z += &sig(owner, t, labels, "s.test.");
        }
        z
    }

    fn signed_responder(text: &str, file: &str) -> Responder {
        let zone = load_zone(&write_zone(file, text), None).unwrap();
        assert!(zone.is_signed());
        Responder::new(Arc::new(ZoneSet::new(vec![zone]).unwrap()), "pop-test-1")
    }

    fn do_query(r: &Responder, name: &str, qtype: u16) -> Message {
        ask(r, &with_opt(query(name, qtype, 1), 1232, 0, true, &[]), Transport::Udp).1
    }

    /// `owner TYPE` (and the covered type for RRSIGs), in section order.
    fn kinds(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                let t = u16::from(r.record_type());
                let name = r.name.to_ascii().to_ascii_lowercase();
                match &r.data {
                    hickory_proto::rr::RData::Unknown { rdata, .. } if t == 46 => {
                        let b = &rdata.anything;
                        format!("{name} RRSIG({})", u16::from_be_bytes([b[0], b[1]]))
                    }
                    _ => format!("{name} {t}"),
                }
            })
            .collect()
    }

    #[test]
    fn signed_answers_carry_rrsigs_only_with_do() {
        let r = signed_responder(&nsec_zone(), "s.zone");
        let m = udp(&r, "www.s.test", 1);
        assert_eq!(kinds(&m.answers), ["www.s.test. 1"]);
        let m = do_query(&r, "www.s.test", 1);
        assert_eq!(kinds(&m.answers), ["www.s.test. 1", "www.s.test. RRSIG(1)"]);
        assert!(m.authorities.is_empty());
        let m = do_query(&r, "s.test", 48);
        assert_eq!(kinds(&m.answers), ["s.test. 48", "s.test. RRSIG(48)"]);
        // qtype RRSIG: the RRSIGs of the lowest type covered (NS at the apex).
        assert_eq!(kinds(&do_query(&r, "s.test", 46).answers), ["s.test. RRSIG(2)"]);
    }

    #[test]
    fn nsec_denials_prove_what_they_say() {
        let r = signed_responder(&nsec_zone(), "s.zone");
        // NXDOMAIN: the NSEC covering the name (ns..sub covers nx) and the one covering
        // the wildcard at the closest encloser (*.s.test sorts right after the apex).
        let m = do_query(&r, "nx.s.test", 1);
        assert_eq!(rcode(&m), ResponseCode::NXDomain);
        assert_eq!(
            kinds(&m.authorities),
            ["s.test. 6", "s.test. RRSIG(6)", "ns.s.test. 47", "ns.s.test. RRSIG(47)", "s.test. 47", "s.test. RRSIG(47)"]
        );
        // The SOA's RRSIG takes the negative TTL (min(300, 60)).
        assert!(m.authorities[..2].iter().all(|r| r.ttl == 60), "{:?}", m.authorities);
        // NODATA: the name's own NSEC.
        let m = do_query(&r, "www.s.test", 28);
        assert_eq!(kinds(&m.authorities), ["s.test. 6", "s.test. RRSIG(6)", "www.s.test. 47", "www.s.test. RRSIG(47)"]);
        // Without DO, denials are as before.
        assert_eq!(kinds(&udp(&r, "nx.s.test", 1).authorities), ["s.test. 6"]);
    }

    #[test]
    fn wildcards_and_delegations_when_signed() {
        let r = signed_responder(&nsec_zone(), "s.zone");
        // A wildcard answer: re-owned RRSIG, and the NSEC proving x.w does not exist.
        let m = do_query(&r, "x.w.s.test", 1);
        assert_eq!(kinds(&m.answers), ["x.w.s.test. 1", "x.w.s.test. RRSIG(1)"]);
        assert_eq!(kinds(&m.authorities), ["*.w.s.test. 47", "*.w.s.test. RRSIG(47)"]);
        // Wildcard NODATA: the NSEC covering the name and the wildcard's own.
        let m = do_query(&r, "x.w.s.test", 16);
        assert_eq!(kinds(&m.authorities), ["s.test. 6", "s.test. RRSIG(6)", "*.w.s.test. 47", "*.w.s.test. RRSIG(47)"]);
        // A signed delegation: NS, then DS and its RRSIG; the glue unsigned.
        let m = do_query(&r, "a.sub.s.test", 1);
        assert!(!m.metadata.authoritative);
        assert_eq!(kinds(&m.authorities), ["sub.s.test. 2", "sub.s.test. 43", "sub.s.test. RRSIG(43)"]);
        assert_eq!(kinds(&m.additionals), ["ns.sub.s.test. 1"]);
        // An insecure one: the cut's NSEC (no DS bit) proves there is no DS.
        let m = do_query(&r, "insec.s.test", 1);
        assert_eq!(kinds(&m.authorities), ["insec.s.test. 2", "insec.s.test. 47", "insec.s.test. RRSIG(47)"]);
        // Without DO a referral is as before.
        assert_eq!(kinds(&udp(&r, "a.sub.s.test", 1).authorities), ["sub.s.test. 2"]);
    }

    /// n3.test with NSEC3 (salt ab, 1 iteration), hashes computed here: the apex, www,
    /// the empty non-terminal e (of a.e), a.e, and, unless `opt_out`, the insecure cut
    /// insec (with opt-out it has no NSEC3 and every NSEC3 has the opt-out flag).
    fn nsec3_zone(opt_out: bool) -> (String, Vec<(String, String)>) {
        let hash = |n: &str| {
            let wire = crate::dns::zone::name_to_wire(&Name::from_ascii(n).unwrap());
            data_encoding::BASE32HEX_NOPAD.encode(&crate::dns::dnssec::nsec3_hash(&wire, &[0xab], 1)).to_ascii_lowercase()
        };
        let mut names =
            vec![("n3.test.", "NS SOA RRSIG DNSKEY NSEC3PARAM"), ("www.n3.test.", "A RRSIG"), ("e.n3.test.", ""), ("a.e.n3.test.", "A RRSIG")];
        if !opt_out {
            names.push(("insec.n3.test.", "NS"));
        }
        let mut hashed: Vec<(String, String, &str)> = names.iter().map(|(n, t)| (hash(n), n.to_string(), *t)).collect();
        hashed.sort();
        let flags = if opt_out { 1 } else { 0 };
        let mut z = String::from(
            "$ORIGIN n3.test.\n$TTL 300\n@ IN SOA ns hm 1 2 3 4 60\n@ IN NS ns.example.\n@ IN DNSKEY 257 3 13 AAAA\n@ IN NSEC3PARAM 1 0 1 ab\n",
        );
        z += "www IN A 192.0.2.10\na.e IN A 192.0.2.11\ninsec IN NS ns.example.\n";
        z += &sig("n3.test.", "SOA", 2, "n3.test.");
        for (i, (h, _, types)) in hashed.iter().enumerate() {
            let next = &hashed[(i + 1) % hashed.len()].0;
            z += &format!("{h}.n3.test. 60 IN NSEC3 1 {flags} 1 ab {next} {types}\n");
            z += &sig(&format!("{h}.n3.test."), "NSEC3", 3, "n3.test.");
        }
        (z, hashed.into_iter().map(|(h, n, _)| (n, format!("{h}.n3.test."))).collect())
    }

    #[test]
    fn nsec3_closest_encloser_and_opt_out_proofs() {
        let (text, owners) = nsec3_zone(false);
        let of = |n: &str| owners.iter().find(|(name, _)| name == n).unwrap().1.clone();
        let covering = |h: &str| {
            // The NSEC3 whose hash is the closest before h's, wrapping round.
            let wire = crate::dns::zone::name_to_wire(&Name::from_ascii(h).unwrap());
            let target = data_encoding::BASE32HEX_NOPAD.encode(&crate::dns::dnssec::nsec3_hash(&wire, &[0xab], 1)).to_ascii_lowercase();
            let mut sorted: Vec<&String> = owners.iter().map(|(_, o)| o).collect();
            sorted.sort();
            sorted.iter().rev().find(|o| o.split('.').next().unwrap() < target.as_str()).unwrap_or(sorted.last().unwrap()).to_string()
        };
        let r = signed_responder(&text, "n3.zone");
        // NXDOMAIN below the empty non-terminal e: e's NSEC3 (closest encloser), the one
        // covering x.e (next closer) and the one covering *.e.
        let m = do_query(&r, "y.x.e.n3.test", 1);
        assert_eq!(rcode(&m), ResponseCode::NXDomain);
        let nsec3: Vec<String> = kinds(&m.authorities).into_iter().filter(|k| k.ends_with(" 50")).collect();
        let mut want =
            vec![format!("{} 50", of("e.n3.test.")), format!("{} 50", covering("x.e.n3.test.")), format!("{} 50", covering("*.e.n3.test."))];
        want.dedup();
        assert_eq!(nsec3, want);
        // NODATA at the empty non-terminal: its own NSEC3.
        let m = do_query(&r, "e.n3.test", 1);
        assert_eq!(kinds(&m.authorities)[2..], [format!("{} 50", of("e.n3.test.")), format!("{} RRSIG(50)", of("e.n3.test."))]);
        // An insecure delegation with its own NSEC3.
        let m = do_query(&r, "insec.n3.test", 1);
        assert_eq!(kinds(&m.authorities)[1..], [format!("{} 50", of("insec.n3.test.")), format!("{} RRSIG(50)", of("insec.n3.test."))]);
        // Opt-out: no NSEC3 for insec; the apex's (closest provable encloser) and the
        // opt-out one covering insec instead.
        let (text, owners) = nsec3_zone(true);
        let of = |n: &str| owners.iter().find(|(name, _)| name == n).unwrap().1.clone();
        let r = signed_responder(&text, "n3oo.zone");
        let m = do_query(&r, "insec.n3.test", 1);
        let nsec3: Vec<String> = kinds(&m.authorities).into_iter().filter(|k| k.ends_with(" 50")).collect();
        assert_eq!(nsec3.len(), 2, "{:?}", kinds(&m.authorities));
        assert_eq!(nsec3[0], format!("{} 50", of("n3.test.")));
        // NSEC3 owners are not names of the zone.
        assert_eq!(rcode(&udp(&r, of("www.n3.test.").trim_end_matches('.'), 50)), ResponseCode::NXDomain);
    }

    #[test]
    fn truncated_signed_answers_keep_what_fits() {
        let mut text = nsec_zone();
        text += &format!("big 300 IN TXT \"{}\" \"{}\"\n", "a".repeat(210), "b".repeat(210));
        text += &sig("big.s.test.", "TXT", 3, "s.test.");
        let r2 = signed_responder(&text, "s-big.zone");
        let (resp, m) = ask(&r2, &with_opt(query("big.s.test", 16, 1), 512, 0, true, &[]), Transport::Udp);
        assert!(resp.len() <= 512);
        // The TXT RRset fits, its RRSIG does not: TC, and the TXT kept (as Knot does).
        assert!(m.metadata.truncation);
        assert_eq!(kinds(&m.answers), ["big.s.test. 16"]);
        // An unsigned zone's truncation is unchanged: no records.
        let (_, m) = ask(&responder(), &with_opt(query("big.big.test", 16, 1), 512, 0, true, &[]), Transport::Udp);
        assert!(m.metadata.truncation && m.answers.is_empty());
    }

    #[test]
    fn bad_dnssec_records_name_their_line() {
        let text = format!("{}www 300 IN RRSIG A 13 3 300 20370101000000 2024x 1 s.test. AAAA\n", nsec_zone());
        let p = write_zone("bad-sig.zone", &text);
        let e = load_zone(&p, None).unwrap_err();
        let line = text.lines().count();
        assert_eq!(e.0[0].line, Some(line), "{e}");
        assert!(e.to_string().contains("www.s.test. RRSIG: invalid signature time \"2024x\""), "{e}");
        // NSEC3 iterations beyond RFC 5155's largest would make every denial costly.
        let text = nsec3_zone(false).0.replace("NSEC3PARAM 1 0 1 ab", "NSEC3PARAM 1 0 2501 ab");
        let e = load_zone(&write_zone("n3-iter.zone", &text), None).unwrap_err();
        assert!(e.to_string().contains("NSEC3 with 2501 iterations: at most 2500"), "{e}");
    }

    #[test]
    fn a_signed_zone_answers_do0_from_its_entries_and_do1_from_their_signed_twins() {
        let r = signed_responder(&nsec_zone(), "s.zone");
        let fp = r.compile_fast_path();
        let wire = |n: &str| crate::dns::zone::name_to_wire(&Name::from_ascii(n).unwrap());
        let www = wire("www.s.test.");
        let find = |dnssec_ok: bool| fp.entries.iter().find(|e| e.qname == www && e.qtype == 1 && e.dnssec_ok == dnssec_ok).unwrap();
        let (plain, twin) = (find(false), find(true));
        assert!(plain.signed, "a DO=0 answer of a signed zone must not answer DO=1");
        // The twin is the server's DO=1 answer: the A and its RRSIG, the OPT left to XDP.
        let m = do_query(&r, "www.s.test.", 1);
        assert_eq!((plain.ancount, twin.ancount), (1, 2));
        assert_eq!(
            (twin.ancount as usize, twin.nscount as usize, twin.arcount as usize + 1),
            (m.answers.len(), m.authorities.len(), m.additionals.len() + 1)
        );
        assert_eq!(kinds(&m.answers), ["www.s.test. 1", "www.s.test. RRSIG(1)"]);
        // NODATA at an existing name is fixed per (name, type): its twin carries the NSEC.
        let mx = fp.entries.iter().find(|e| e.qname == www && e.qtype == 15 && e.dnssec_ok);
        assert!(mx.is_none_or(|e| e.nscount >= 2), "{mx:?}");
        assert!(fp.entries.iter().filter(|e| e.qclass == 1).all(|e| e.signed || e.dnssec_ok));
        assert!(!fp.nodata_any.is_empty() && fp.nodata_any.iter().all(|e| e.signed), "other types: DO=0 only");
        assert!(fp.zones.iter().all(|z| z.nxdomain.signed), "NXDOMAIN: DO=0 only");
        assert!(!fp.cuts.contains(&wire("s.test.")), "the zone is in the table, not passed whole");
        assert!(fp.cuts.contains(&wire("sub.s.test.")), "delegations are still the server's");
    }
}
