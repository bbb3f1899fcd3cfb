//! The XDP fast-path table: precomputed responses the XDP program can send itself.
//!
//! Every entry is produced by calling [`Responder::respond`] on a synthetic query
//! (lowercase qname, RD=0, no EDNS, TCP so nothing truncates) and slicing the
//! response: flags and counts from its header, `tail` = every byte after the question.
//! Because the engine writes the qname as `0xC00C` and every other name in full (see
//! `answer.rs`), the tail is valid for any letter case of the qname, so the XDP program
//! and the server cannot disagree.
//!
//! What the XDP program must do with it (and what it must pass to userspace):
//! * look up `(lowercase qname, qtype, qclass)` in `entries`;
//! * else, for IN queries, `nodata_any` by qname, except for qtypes AXFR/IXFR (251/252:
//!   answered NOTIMP) which it must pass;
//! * else pass names at or below any of `cuts` (referrals);
//! * else, in the closest enclosing `zones` apex without a wildcard, answer `nxdomain`;
//! * pass anything else (other classes, EDNS handling it does not implement, ...).
//!
//! A signed zone's entries are marked `signed`: they answer DO=0 queries only. Its
//! exact questions also get a `dnssec_ok` twin, the DO=1 answer (RRSIGs, the NSEC or
//! NSEC3 of a NODATA); a DO=1 query without a twin (denials, whose proofs depend on
//! the name) goes to the server.

use std::collections::BTreeSet;

use super::answer::{Responder, TYPE_ANY, Transport};
use super::zone::{self, CLASS_IN, TYPE_A, TYPE_DS, TYPE_TXT, Zone};

/// One precomputed response for `(qname, qtype, qclass)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastEntry {
    /// Wire format, lowercase, uncompressed.
    pub qname: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
    /// The response header's flags word for an RD=0 QUERY (the XDP copies RD itself).
    pub flags: u16,
    pub ancount: u16,
    pub nscount: u16,
    /// Excluding any OPT.
    pub arcount: u16,
    /// The bytes after the question, excluding OPT.
    pub tail: Vec<u8>,
    /// Of a signed zone: this DO=0 answer must not answer a DO=1 query.
    pub signed: bool,
    /// The answer to the question asked with DO=1 (RRSIGs and proofs included).
    pub dnssec_ok: bool,
}

/// Per zone: its apex and the NXDOMAIN response for any non-existent name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastZone {
    /// Lowercase wire format.
    pub apex: Vec<u8>,
    /// When true, non-existent names may be wildcard-synthesized: `nxdomain` must not
    /// be used (pass to userspace).
    pub has_wildcard: bool,
    /// qname = apex, qtype = 0.
    pub nxdomain: FastEntry,
}

/// The whole table; see the module doc for how it is meant to be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastPath {
    pub entries: Vec<FastEntry>,
    /// qtype 0: per existing non-CNAME name, the NODATA response for qtypes not in `entries`.
    pub nodata_any: Vec<FastEntry>,
    pub zones: Vec<FastZone>,
    /// Delegation points (lowercase wire): pass any name at or below them.
    pub cuts: Vec<Vec<u8>>,
}

/// Receives the fast-path table as it is compiled: the controller streams it straight
/// into map entries (a million-name zone never exists as a [`FastPath`] too); tests
/// collect it into one.
pub trait FastSink {
    /// A response for `(qname, qtype, qclass)`.
    fn entry(&mut self, e: FastEntry);
    /// For an existing name, the NODATA response for qtypes without an entry (qtype 0).
    fn nodata(&mut self, e: FastEntry);
    fn zone(&mut self, z: FastZone);
    /// A delegation point (may repeat).
    fn cut(&mut self, cut: &[u8]);
}

impl FastSink for FastPath {
    fn entry(&mut self, e: FastEntry) {
        self.entries.push(e);
    }
    fn nodata(&mut self, e: FastEntry) {
        self.nodata_any.push(e);
    }
    fn zone(&mut self, z: FastZone) {
        self.zones.push(z);
    }
    fn cut(&mut self, cut: &[u8]) {
        if !self.cuts.iter().any(|c| c == cut) {
            self.cuts.push(cut.to_vec());
        }
    }
}

/// A minimal query: ID 0, flags 0 (QUERY, RD=0), one question, nothing else.
fn synthetic_query(qname: &[u8], qtype: u16, qclass: u16) -> Vec<u8> {
    let mut q = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(qname);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    q
}

impl Responder {
    /// Run one synthetic query and slice the response into a [`FastEntry`].
    fn fast_entry(&self, qname: &[u8], qtype: u16, qclass: u16) -> FastEntry {
        let query = synthetic_query(qname, qtype, qclass);
        let resp = self.respond(&query, Transport::Tcp).expect("a well-formed query always gets a response");
        let be16 = |i: usize| u16::from_be_bytes([resp[i], resp[i + 1]]);
        FastEntry {
            qname: qname.to_vec(),
            qtype,
            qclass,
            flags: be16(2),
            ancount: be16(6),
            nscount: be16(8),
            arcount: be16(10),
            tail: resp[query.len()..].to_vec(),
            signed: false,
            dnssec_ok: false,
        }
    }

    /// The DO=1 answer to the question, for a signed zone's table: the server's reply
    /// to the question with an OPT (DO=1) with that OPT cut off the end. None when the
    /// reply does not end with the plain OPT the XDP program writes itself.
    fn fast_entry_do(&self, qname: &[u8], qtype: u16, qclass: u16) -> Option<FastEntry> {
        let mut query = synthetic_query(qname, qtype, qclass);
        query[11] = 1;
        query.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        let resp = self.respond(&query, Transport::Tcp)?;
        let be16 = |i: usize| u16::from_be_bytes([resp[i], resp[i + 1]]);
        let question_end = query.len() - 11;
        let opt = resp.len().checked_sub(11).filter(|&o| o >= question_end)?;
        // Root owner, type OPT, any size, extended rcode 0 (the rcode fits the header),
        // version 0, DO set, no options.
        let r = &resp[opt..];
        if r[0] != 0 || r[1..3] != [0, 41] || r[5] != 0 || r[6] != 0 || r[7] & 0x80 == 0 || r[9..11] != [0, 0] || be16(10) == 0 {
            return None;
        }
        Some(FastEntry {
            qname: qname.to_vec(),
            qtype,
            qclass,
            flags: be16(2),
            ancount: be16(6),
            nscount: be16(8),
            arcount: be16(10) - 1,
            tail: resp[question_end..opt].to_vec(),
            signed: false,
            dnssec_ok: true,
        })
    }

    /// `fp.entry` of the answer to (name, qtype, IN) and, in a signed zone, of its DO=1 answer.
    fn entries(&self, fp: &mut impl FastSink, name: &[u8], qtype: u16, signed: bool) {
        let mut e = self.fast_entry(name, qtype, CLASS_IN);
        e.signed = signed;
        fp.entry(e);
        if signed && let Some(d) = self.fast_entry_do(name, qtype, CLASS_IN) {
            fp.entry(d);
        }
    }

    /// Compile the fast-path table from the current zones.
    pub fn compile_fast_path(&self) -> FastPath {
        let mut fp = FastPath::default();
        self.compile_fast_path_into(&mut fp);
        fp.cuts.sort();
        fp
    }

    /// Compile the fast-path table into `fp`, entry by entry.
    pub fn compile_fast_path_into(&self, fp: &mut impl FastSink) {
        let zones = self.zones().zones();

        // Every type present anywhere: the answer for a CNAME owner depends on qtype.
        let all_types: BTreeSet<u16> = zones.iter().flat_map(|z| z.nodes().values()).flat_map(|n| n.rrsets.iter().map(|s| s.rtype)).collect();

        for z in zones {
            // A signed zone's entries answer DO=0 queries; its exact questions also get
            // their DO=1 answers, and DO=1 denials go to the server (see DNS_ACTION_SIGNED).
            let signed = z.is_signed();
            let parent_signed = zone::parent(z.apex()).and_then(|p| self.zones().find(p)).is_some_and(|p| p.is_signed());
            // The qtype-independence check of NODATA runs on the zone's first name: the
            // engine takes the same path for a private-use qtype at every name.
            let mut verify = true;
            for (name, node) in z.nodes() {
                if !self.fast_servable(z, name) {
                    continue;
                }
                let mut types: BTreeSet<u16> = node.rrsets.iter().map(|s| s.rtype).collect();
                types.insert(TYPE_ANY);
                if node.has_cname() {
                    types.extend(all_types.iter().copied());
                }
                for t in types {
                    self.entries(fp, name, t, signed);
                }
                if !node.has_cname()
                    && let Some(mut e) = self.nodata_entry(name, &node.rrsets.iter().map(|s| s.rtype).collect(), std::mem::take(&mut verify))
                {
                    e.signed = signed;
                    fp.nodata(e);
                }
            }
            for name in z.ents() {
                if self.fast_servable(z, name)
                    && let Some(mut e) = self.nodata_entry(name, &BTreeSet::new(), std::mem::take(&mut verify))
                {
                    e.signed = signed;
                    fp.nodata(e);
                }
            }
            // A zone apex whose parent we also serve: DS is answered from the parent,
            // unlike what `nodata_any` for the apex (from the child) would say.
            if zone::parent(z.apex()).and_then(|p| self.zones().find(p)).is_some() {
                self.entries(fp, z.apex(), TYPE_DS, parent_signed);
            }

            let mut nxdomain = self.nxdomain_entry(z);
            nxdomain.signed = signed;
            fp.zone(FastZone { apex: z.apex().to_vec(), has_wildcard: z.has_wildcard(), nxdomain });

            for cut in z.top_cuts() {
                // A cut that is the apex of a zone we serve is answered from that zone.
                if self.zones().find(cut).is_some_and(|c| c.apex() == cut) {
                    continue;
                }
                fp.cut(cut);
            }
        }

        for name in [&b"\x02id\x06server\x00"[..], b"\x08hostname\x04bind\x00"] {
            fp.entry(self.fast_entry(name, TYPE_TXT, 3));
        }
    }

    /// Whether the XDP may answer for `name` from `zone`: it must be the closest zone,
    /// not at/below a cut, and not a wildcard owner (those are passed).
    fn fast_servable(&self, zone: &Zone, name: &[u8]) -> bool {
        let closest = self.zones().find(name).is_some_and(|c| c.apex() == zone.apex());
        closest && zone.cut_at_or_above(name).is_none() && !name.starts_with(&[1, b'*'])
    }

    /// The NODATA response for `name` with a qtype it does not have. With `verify`, it
    /// is computed with two different absent types and kept only if identical (it is:
    /// the question, the only qtype-dependent part, is not in the tail).
    fn nodata_entry(&self, name: &[u8], present: &BTreeSet<u16>, verify: bool) -> Option<FastEntry> {
        let mut absent = (0xff00u16..).filter(|t| !present.contains(t));
        let (t1, t2) = (absent.next()?, absent.next()?);
        let mut a = self.fast_entry(name, t1, CLASS_IN);
        let b = if verify { self.fast_entry(name, t2, CLASS_IN) } else { a.clone() };
        if (a.flags, a.ancount, a.nscount, a.arcount, &a.tail) != (b.flags, b.ancount, b.nscount, b.arcount, &b.tail) {
            log::warn!("NODATA for {} depends on qtype; not fast-pathed", zone::wire_to_text(name));
            return None;
        }
        a.qtype = 0;
        Some(a)
    }

    /// NXDOMAIN for a made-up name directly under the apex, re-labelled qname = apex,
    /// qtype = 0. Without wildcards its tail (SOA written in full) is qname-independent.
    fn nxdomain_entry(&self, z: &Zone) -> FastEntry {
        let mut probe = Vec::new();
        for i in 0u32.. {
            let label = format!("nx-probe-{i}");
            probe.clear();
            probe.push(label.len() as u8);
            probe.extend_from_slice(label.as_bytes());
            probe.extend_from_slice(z.apex());
            if !z.exists(&probe) && self.zones().find(&probe).is_some_and(|c| c.apex() == z.apex()) {
                break;
            }
        }
        let mut e = self.fast_entry(&probe, TYPE_A, CLASS_IN);
        e.qname = z.apex().to_vec();
        e.qtype = 0;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::answer::tests::{query, responder};
    use crate::dns::zone::name_to_wire;
    use hickory_proto::rr::Name;

    fn w(s: &str) -> Vec<u8> {
        name_to_wire(&Name::from_ascii(s).unwrap())
    }

    fn find<'a>(v: &'a [FastEntry], name: &str, qtype: u16) -> Option<&'a FastEntry> {
        v.iter().find(|e| e.qname == w(name) && e.qtype == qtype)
    }

    /// What the XDP program would send: header (ID and RD from the query), the question
    /// as received, the tail.
    fn xdp_response(q: &[u8], e: &FastEntry) -> Vec<u8> {
        let mut out = q[..2].to_vec();
        let flags = e.flags | (u16::from(q[2] & 1) << 8);
        out.extend_from_slice(&flags.to_be_bytes());
        for c in [1, e.ancount, e.nscount, e.arcount] {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out.extend_from_slice(&q[12..]);
        out.extend_from_slice(&e.tail);
        out
    }

    #[test]
    fn table_matches_the_server_for_any_case() {
        let r = responder();
        let fp = r.compile_fast_path();
        let check = |name: &str, qtype: u16, qclass: u16, e: &FastEntry| {
            let q = query(name, qtype, qclass);
            assert_eq!(r.respond(&q, Transport::Tcp).unwrap(), xdp_response(&q, e), "{name} {qtype}");
        };

        // Positive entries, for every type at the owner, plus ANY.
        let e = find(&fp.entries, "www.example.com.", 1).unwrap();
        assert_eq!((e.ancount, e.nscount, e.arcount), (2, 0, 0));
        assert_eq!(e.flags, 0x8400); // QR|AA, NOERROR
        check("WWW.example.COM", 1, 1, e);
        check("www.example.com", 28, 1, find(&fp.entries, "www.example.com.", 28).unwrap());
        check("Www.Example.Com", 255, 1, find(&fp.entries, "www.example.com.", 255).unwrap());
        check("example.com", 15, 1, find(&fp.entries, "example.com.", 15).unwrap());

        // CNAME owners: every type in the zones, and no nodata_any.
        for t in [1, 2, 5, 6, 15, 16, 28, 33, 255] {
            check("Alias.Example.Com", t, 1, find(&fp.entries, "alias.example.com.", t).unwrap());
        }
        assert!(find(&fp.nodata_any, "alias.example.com.", 0).is_none());

        // NODATA for any other qtype, including empty non-terminals.
        let nd = find(&fp.nodata_any, "www.example.com.", 0).unwrap();
        check("www.EXAMPLE.com", 15, 1, nd);
        check("www.example.com", 99, 1, nd);
        check("B.Ent.Example.Com", 1, 1, find(&fp.nodata_any, "b.ent.example.com.", 0).unwrap());
        assert!(find(&fp.entries, "ent.example.com.", 255).is_none());

        // CH identity.
        check("ID.SERVER", 16, 3, find(&fp.entries, "id.server.", 16).unwrap());
        check("hostname.bind", 16, 3, fp.entries.iter().find(|e| e.qclass == 3 && e.qname == w("hostname.bind.")).unwrap());

        // Cuts: only the delegation, nothing at/below it in the tables.
        assert_eq!(fp.cuts, vec![w("sub.example.com.")]);
        let below = |e: &FastEntry| crate::dns::zone::is_at_or_below(&e.qname, &w("sub.example.com."));
        assert!(!fp.entries.iter().chain(&fp.nodata_any).any(below));
        // Wildcard owners are not in the tables.
        assert!(!fp.entries.iter().chain(&fp.nodata_any).any(|e| e.qname.starts_with(b"\x01*")));

        // Zones and their NXDOMAIN.
        let zone = |apex: &str| fp.zones.iter().find(|z| z.apex == w(apex)).unwrap();
        assert!(zone("other.test.").has_wildcard);
        let ex = zone("example.com.");
        assert!(!ex.has_wildcard);
        assert_eq!(ex.nxdomain.flags & 0x0f, 3);
        assert_eq!(ex.nxdomain.flags, 0x8403);
        for name in ["qwzx.example.com", "A.B.C.D.Example.Com", "x.a.b.ent.example.com", "nx-probe-0.example.com"] {
            for qtype in [1, 16, 255] {
                check(name, qtype, 1, &ex.nxdomain);
            }
        }
        check("anything.big.test", 1, 1, &zone("big.test.").nxdomain);
    }

    #[test]
    fn every_entry_reproduces_the_server() {
        let r = responder();
        let fp = r.compile_fast_path();
        for e in &fp.entries {
            let mut q = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            q.extend_from_slice(&e.qname);
            q.extend_from_slice(&e.qtype.to_be_bytes());
            q.extend_from_slice(&e.qclass.to_be_bytes());
            assert_eq!(r.respond(&q, Transport::Tcp).unwrap(), xdp_response(&q, e));
            // The flags never carry RD, TC or RA: the XDP adds RD from the query.
            assert_eq!(e.flags & 0x0380, 0);
        }
        assert!(fp.entries.len() > 40, "{}", fp.entries.len());
    }
}
