//! DNSSEC for pre-signed zones: which RRSIGs go with an RRset, and which NSEC or NSEC3
//! records prove a denial (RFC 4035 section 3.1.3, RFC 5155 section 7.2). pop never
//! signs: every record sent comes from the zone file as loaded.
//!
//! NSEC owners are kept in canonical order (RFC 4034 section 6.1) to find the record
//! covering a name; NSEC3 records live apart from the zone's names (their owners are
//! not names of the zone), keyed by the hash their owner label spells, and names are
//! hashed with the zone's NSEC3PARAM (SHA-1, RFC 5155 section 5).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use sha1::{Digest, Sha1};

use super::dnssec_text::{TYPE_NSEC, TYPE_NSEC3, TYPE_NSEC3PARAM, TYPE_RRSIG};
use super::zone::{Node, Rr, Zone, ancestors, parent};

/// A wire name ordered canonically: label by label from the root, each compared as
/// bytes (names are already lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Canonical(pub Vec<u8>);

fn labels(name: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = name;
    while let Some(&len) = rest.first() {
        if len == 0 || rest.len() < 1 + len as usize {
            break;
        }
        out.push(&rest[1..1 + len as usize]);
        rest = &rest[1 + len as usize..];
    }
    out
}

impl Ord for Canonical {
    fn cmp(&self, other: &Self) -> Ordering {
        labels(&self.0).iter().rev().cmp(labels(&other.0).iter().rev())
    }
}

impl PartialOrd for Canonical {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The most NSEC3 iterations a zone may use.
const MAX_NSEC3_ITERATIONS: u16 = 2500;

/// NSEC3 hashing parameters (RFC 5155 section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Nsec3Param {
    pub iterations: u16,
    pub salt: Vec<u8>,
}

/// A zone's DNSSEC data beyond its RRsets.
#[derive(Debug, Clone, Default)]
pub(crate) struct ZoneDnssec {
    /// The apex has RRSIGs: answers to DO=1 queries carry signatures and proofs.
    pub signed: bool,
    /// Owners of NSEC records, canonically ordered.
    nsec: BTreeSet<Canonical>,
    /// NSEC3 (and their RRSIGs) by the hash of the name they stand for.
    nsec3: BTreeMap<Vec<u8>, Node>,
    nsec3param: Option<Nsec3Param>,
}

impl ZoneDnssec {
    /// Takes the NSEC3 owners out of `nodes` and indexes the NSEC chain.
    pub(crate) fn build(apex: &[u8], nodes: &mut BTreeMap<Vec<u8>, Node>) -> Result<ZoneDnssec, String> {
        let mut d = ZoneDnssec::default();
        let nsec3_owners: Vec<Vec<u8>> = nodes.iter().filter(|(_, n)| n.get(TYPE_NSEC3).is_some()).map(|(o, _)| o.clone()).collect();
        for owner in nsec3_owners {
            let node = nodes.remove(&owner).expect("listed above");
            let text = super::zone::wire_to_text(&owner);
            if parent(&owner) != Some(apex) {
                return Err(format!("NSEC3 at {text} is not directly below the zone apex"));
            }
            let label = labels(&owner)[0].to_ascii_uppercase();
            let hash = data_encoding::BASE32HEX_NOPAD
                .decode(&label)
                .map_err(|_| format!("NSEC3 at {text}: the owner's first label is not a base32hex hash"))?;
            d.nsec3.insert(hash, node);
        }
        let apex_node = nodes.get(apex);
        d.signed = apex_node.is_some_and(|n| n.get(TYPE_RRSIG).is_some());
        // NSEC3PARAM at the apex, else the parameters of the NSEC3 records themselves.
        let param_rdata = apex_node
            .and_then(|n| n.get(TYPE_NSEC3PARAM))
            .or_else(|| d.nsec3.values().next().and_then(|n| n.get(TYPE_NSEC3)))
            .and_then(|s| s.records.first())
            .map(|r| r.rdata.clone());
        if let Some(r) = param_rdata {
            if r.len() < 5 || r.len() < 5 + r[4] as usize {
                return Err("NSEC3PARAM RDATA is too short".into());
            }
            if r[0] != 1 {
                return Err(format!("NSEC3 hash algorithm {} is not supported (only 1, SHA-1)", r[0]));
            }
            let iterations = u16::from_be_bytes([r[2], r[3]]);
            // Each answer hashes a few names this many times over: RFC 5155 section
            // 10.3 allows at most 2500 (for 4096-bit keys); RFC 9276 asks for 0.
            if iterations > MAX_NSEC3_ITERATIONS {
                return Err(format!(
                    "NSEC3 with {iterations} iterations: at most {MAX_NSEC3_ITERATIONS} are served (RFC 5155 section 10.3; RFC 9276 recommends 0)"
                ));
            }
            d.nsec3param = Some(Nsec3Param { iterations, salt: r[5..5 + r[4] as usize].to_vec() });
        }
        d.nsec = nodes.iter().filter(|(_, n)| n.get(TYPE_NSEC).is_some()).map(|(o, _)| Canonical(o.clone())).collect();
        Ok(d)
    }

    pub(crate) fn uses_nsec3(&self) -> bool {
        self.nsec3param.is_some()
    }

    fn hash(&self, name: &[u8]) -> Vec<u8> {
        let p = self.nsec3param.as_ref().expect("only called in NSEC3 zones");
        nsec3_hash(name, &p.salt, p.iterations)
    }

    fn nsec3_matching(&self, name: &[u8]) -> Option<&Node> {
        self.nsec3.get(&self.hash(name))
    }

    /// The NSEC3 whose owner hash is the closest before `name`'s (wrapping round).
    fn nsec3_covering(&self, name: &[u8]) -> Option<&Node> {
        let h = self.hash(name);
        self.nsec3.range(..h).next_back().or_else(|| self.nsec3.iter().next_back()).map(|(_, n)| n)
    }
}

/// RFC 5155 section 5: IH(salt, x, 0) = H(x || salt), IH(k) = H(IH(k-1) || salt).
pub(crate) fn nsec3_hash(name: &[u8], salt: &[u8], iterations: u16) -> Vec<u8> {
    let mut digest = Sha1::new().chain_update(name).chain_update(salt).finalize();
    for _ in 0..iterations {
        digest = Sha1::new().chain_update(digest).chain_update(salt).finalize();
    }
    digest.to_vec()
}

/// The RRSIGs in `node` covering `rtype`.
pub(crate) fn sigs_for(node: &Node, rtype: u16) -> impl Iterator<Item = &Rr> {
    node.get(TYPE_RRSIG)
        .map(|s| s.records.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(move |r| r.rdata.len() >= 2 && u16::from_be_bytes([r.rdata[0], r.rdata[1]]) == rtype)
}

/// An NSEC or NSEC3 RRset (with its RRSIGs) to add to the authority section.
#[derive(Clone, Copy)]
pub(crate) struct Proof<'z> {
    pub node: &'z Node,
    pub rtype: u16,
}

/// The proofs for one negative or wildcard answer, without duplicates.
#[derive(Default)]
pub(crate) struct Proofs<'z>(pub Vec<Proof<'z>>);

impl<'z> Proofs<'z> {
    fn add(&mut self, node: Option<&'z Node>, rtype: u16) {
        if let Some(node) = node
            && !self.0.iter().any(|p| std::ptr::eq(p.node, node) && p.rtype == rtype)
        {
            self.0.push(Proof { node, rtype });
        }
    }
}

/// NSEC owned by `name`.
fn nsec_at<'z>(zone: &'z Zone, name: &[u8]) -> Option<&'z Node> {
    zone.nodes().get(name).filter(|n| n.get(TYPE_NSEC).is_some())
}

/// The NSEC at `name` or the closest before it in canonical order.
fn nsec_covering<'z>(zone: &'z Zone, name: &[u8]) -> Option<&'z Node> {
    let key = Canonical(name.to_vec());
    let owner = zone.dnssec().nsec.range(..=key).next_back()?;
    zone.nodes().get(&owner.0)
}

/// The closest ancestor of `name` that has a matching NSEC3, and the name one label
/// below it towards `name` (RFC 5155 section 7.2.1).
fn closest_provable_encloser<'n>(zone: &Zone, name: &'n [u8]) -> (&'n [u8], Option<&'n [u8]>) {
    let d = zone.dnssec();
    let mut below = None;
    for anc in ancestors(name) {
        // Only names of the zone can have an NSEC3: a query name of 127 made-up labels
        // costs no more hashing than the zone is deep.
        if anc.len() <= zone.apex().len() || (zone.exists(anc) && d.nsec3_matching(anc).is_some()) {
            return (anc, below);
        }
        below = Some(anc);
    }
    (name, None)
}

/// The closest existing ancestor of `name` (a non-existent name).
fn closest_encloser<'n>(zone: &Zone, name: &'n [u8]) -> &'n [u8] {
    ancestors(name).skip(1).find(|a| a.len() <= zone.apex().len() || zone.exists(a)).unwrap_or(name)
}

fn wildcard_of(name: &[u8]) -> Vec<u8> {
    let mut w = vec![1, b'*'];
    w.extend_from_slice(name);
    w
}

/// The ancestor of `name` one label longer than `encloser`.
fn next_closer<'n>(name: &'n [u8], encloser: &[u8]) -> Option<&'n [u8]> {
    ancestors(name).take_while(|a| a.len() > encloser.len()).last()
}

fn nsec3_closest_encloser_proof<'z>(zone: &'z Zone, name: &[u8], p: &mut Proofs<'z>) -> Vec<u8> {
    let d = zone.dnssec();
    let (ce, nc) = closest_provable_encloser(zone, name);
    p.add(d.nsec3_matching(ce), TYPE_NSEC3);
    if let Some(nc) = nc {
        p.add(d.nsec3_covering(nc), TYPE_NSEC3);
    }
    ce.to_vec()
}

/// `name` does not exist, nor does a wildcard that could have answered for it.
pub(crate) fn nxdomain<'z>(zone: &'z Zone, name: &[u8]) -> Proofs<'z> {
    let mut p = Proofs::default();
    if zone.dnssec().uses_nsec3() {
        let ce = nsec3_closest_encloser_proof(zone, name, &mut p);
        p.add(zone.dnssec().nsec3_covering(&wildcard_of(&ce)), TYPE_NSEC3);
    } else {
        p.add(nsec_covering(zone, name), TYPE_NSEC);
        p.add(nsec_covering(zone, &wildcard_of(closest_encloser(zone, name))), TYPE_NSEC);
    }
    p
}

/// `name` exists without the type asked for. `wildcard` is the wildcard owner when the
/// name exists only through it.
pub(crate) fn nodata<'z>(zone: &'z Zone, name: &[u8], wildcard: Option<&[u8]>) -> Proofs<'z> {
    let mut p = Proofs::default();
    let d = zone.dnssec();
    match (d.uses_nsec3(), wildcard) {
        (false, None) => p.add(nsec_at(zone, name).or_else(|| nsec_covering(zone, name)), TYPE_NSEC),
        (false, Some(w)) => {
            p.add(nsec_covering(zone, name), TYPE_NSEC);
            p.add(nsec_at(zone, w), TYPE_NSEC);
        }
        (true, None) => match d.nsec3_matching(name) {
            Some(n) => p.add(Some(n), TYPE_NSEC3),
            // Opt-out: no NSEC3 for this name; the one covering the next closer name
            // has the opt-out flag (RFC 5155 section 7.2.4).
            None => {
                nsec3_closest_encloser_proof(zone, name, &mut p);
            }
        },
        // RFC 5155 section 7.2.5; the wildcard's own NSEC3 first, as Knot DNS orders
        // them (which decides what fits in a truncated answer).
        (true, Some(w)) => {
            let ce = parent(w).unwrap_or(w);
            p.add(d.nsec3_matching(w), TYPE_NSEC3);
            p.add(d.nsec3_matching(ce), TYPE_NSEC3);
            if let Some(nc) = next_closer(name, ce) {
                p.add(d.nsec3_covering(nc), TYPE_NSEC3);
            }
        }
    }
    p
}

/// A wildcard answered for `name`: no closer name exists (RFC 4035 section 3.1.3.3,
/// RFC 5155 section 7.2.6).
pub(crate) fn wildcard_answer<'z>(zone: &'z Zone, name: &[u8], wildcard: &[u8]) -> Proofs<'z> {
    let mut p = Proofs::default();
    if zone.dnssec().uses_nsec3() {
        let ce = parent(wildcard).unwrap_or(wildcard);
        if let Some(nc) = next_closer(name, ce) {
            p.add(zone.dnssec().nsec3_covering(nc), TYPE_NSEC3);
        }
    } else {
        p.add(nsec_covering(zone, name), TYPE_NSEC);
    }
    p
}

/// A delegation without DS: the cut's NSEC or NSEC3, or under opt-out the closest
/// provable encloser proof (RFC 4035 section 3.1.4, RFC 5155 section 7.2.7).
pub(crate) fn no_ds<'z>(zone: &'z Zone, cut: &[u8]) -> Proofs<'z> {
    nodata(zone, cut, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsec3_hash_matches_rfc5155_appendix_a() {
        // example and x.w.example, salt aabbccdd, 12 iterations.
        let h = nsec3_hash(b"\x07example\x00", &[0xaa, 0xbb, 0xcc, 0xdd], 12);
        assert_eq!(data_encoding::BASE32HEX_NOPAD.encode(&h).to_ascii_lowercase(), "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom");
        let h = nsec3_hash(b"\x01x\x01w\x07example\x00", &[0xaa, 0xbb, 0xcc, 0xdd], 12);
        assert_eq!(data_encoding::BASE32HEX_NOPAD.encode(&h).to_ascii_lowercase(), "b4um86eghhds6nea196smvmlo4ors995");
    }

    #[test]
    fn canonical_order_is_rfc4034s() {
        // RFC 4034 section 6.1's example, in order.
        let names: [&[u8]; 9] = [
            b"\x07example\x00",
            b"\x01a\x07example\x00",
            b"\x08yljkjljk\x01a\x07example\x00",
            b"\x01Z\x01a\x07example\x00",
            b"\x04zABC\x01a\x07example\x00",
            b"\x01z\x07example\x00",
            b"\x01\x01\x01z\x07example\x00",
            b"\x01*\x01z\x07example\x00",
            b"\x01\xc8\x01z\x07example\x00",
        ];
        let lower: Vec<Canonical> = names.iter().map(|n| Canonical(n.to_ascii_lowercase())).collect();
        for w in lower.windows(2) {
            assert!(w[0] < w[1], "{:?} < {:?}", w[0], w[1]);
        }
    }
}
