//! Writing a block's [`FastPath`] into DNS_TABLE without a moment where names go
//! missing: entries are written under a new generation tag, the block's live
//! generation in DNS_BLOCKS is flipped (one array write), then the old generation is
//! deleted. A failure before the flip removes what it wrote and leaves the old table
//! serving.
//!
//! Sizes: a name is keyed by a 24-byte hash (keyed by a secret seed per generation), and
//! the answer bytes are stored once per distinct tail in the smallest of three size
//! classes, so a zone of a million one-address names costs a few hundred bytes per name
//! instead of a kilobyte per answer.

use std::collections::HashMap as StdHashMap;

use anyhow::{Context as _, Result, anyhow, bail};
use aya::maps::{Array, HashMap, IterableMap as _, MapData};
use pop_common::{
    DNS_ACTION_ANSWER, DNS_ACTION_PASS, DNS_BLOCKS_MAX, DNS_QTYPE_OTHER, DNS_QTYPE_ZONE, DNS_TAIL_CLASS_SHIFT,
    DNS_TAIL_CLASSES, DNS_TAIL_INDEX_MASK, DnsAnswer, DnsBlock, DnsKey, DnsSeed, DnsTailKey, name_hash,
};

use super::{FastEntry, FastPath};
use crate::map_batch;

const CLASS_IN: u16 = 1;

/// Settings of one `[[dns]]` block in the data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSettings {
    pub fast_path: bool,
    /// Responses per second per client prefix; 0 = unlimited.
    pub rate_limit: u32,
}

/// What an install wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Installed {
    pub entries: usize,
    /// Distinct answer tails written (answers share equal tails).
    pub tails: usize,
    /// Answers too long for a table entry: the server answers those.
    pub too_long: usize,
    pub generation: u32,
}

/// The DNS maps of the loaded program.
pub struct DnsMaps {
    pub table: HashMap<MapData, DnsKey, DnsAnswer>,
    pub tails_s: HashMap<MapData, DnsTailKey, [u8; DNS_TAIL_CLASSES[0]]>,
    pub tails_m: HashMap<MapData, DnsTailKey, [u8; DNS_TAIL_CLASSES[1]]>,
    pub tails_l: HashMap<MapData, DnsTailKey, [u8; DNS_TAIL_CLASSES[2]]>,
    pub seeds: Array<MapData, DnsSeed>,
    pub blocks: Array<MapData, DnsBlock>,
}

/// The DNS_TABLE key for `name` (lowercase wire format) under `seed`.
pub fn key(tag: u32, seed: DnsSeed, name: &[u8], qtype: u16, qclass: u16) -> Result<DnsKey> {
    if name.is_empty() || name.len() > 255 {
        bail!("name of {} bytes cannot be a DNS name", name.len());
    }
    Ok(DnsKey { tag, qtype, qclass, name: name_hash(seed, name) })
}

/// Ones'-complement sum of `bytes` as big-endian 16-bit words from an even offset.
pub fn partial_csum(bytes: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    for chunk in bytes.chunks(2) {
        let word = if chunk.len() == 2 { u16::from_be_bytes([chunk[0], chunk[1]]) } else { (chunk[0] as u16) << 8 };
        sum += word as u64;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u32
}

/// Size class of a tail of `len` bytes (index into DNS_TAIL_CLASSES), None if too long.
pub fn tail_class(len: usize) -> Option<usize> {
    DNS_TAIL_CLASSES.iter().position(|&max| len <= max)
}

/// A block's table compiled for one generation: answers, and the distinct tails they
/// point at (`tails[class]` in index order).
#[derive(Debug, Default)]
pub struct Compiled<'a> {
    /// Keys and their answers, as two arrays: the batch update takes them so.
    pub keys: Vec<DnsKey>,
    pub answers: Vec<DnsAnswer>,
    pub tails: [Vec<&'a [u8]>; 3],
    /// Answers too long for any tail class: the server answers those.
    pub too_long: usize,
}

impl Compiled<'_> {
    pub fn tail_count(&self) -> usize {
        self.tails.iter().map(Vec::len).sum()
    }
}

fn pass_marker() -> DnsAnswer {
    DnsAnswer { action: DNS_ACTION_PASS, flags: 0, ancount: 0, nscount: 0, arcount: 0, tail_len: 0, tail_csum: 0, tail_ref: 0 }
}

/// Deduplicates tails while answers are compiled.
#[derive(Default)]
struct TailStore<'a> {
    seen: StdHashMap<&'a [u8], u32>,
    tails: [Vec<&'a [u8]>; 3],
}

impl<'a> TailStore<'a> {
    /// The table value for a compiled response, or None if its tail does not fit.
    fn answer(&mut self, e: &'a FastEntry) -> Option<DnsAnswer> {
        let class = tail_class(e.tail.len())?;
        let tail_ref = if e.tail.is_empty() {
            0
        } else {
            *self.seen.entry(e.tail.as_slice()).or_insert_with(|| {
                let list = &mut self.tails[class];
                list.push(e.tail.as_slice());
                ((class as u32) << DNS_TAIL_CLASS_SHIFT) | (list.len() as u32 - 1)
            })
        };
        Some(DnsAnswer {
            action: DNS_ACTION_ANSWER,
            flags: e.flags,
            ancount: e.ancount,
            nscount: e.nscount,
            arcount: e.arcount,
            tail_len: e.tail.len() as u16,
            tail_csum: partial_csum(&e.tail),
            tail_ref,
        })
    }
}

/// Every (key, value) of a block's table under `tag` and `seed`, and the tails they use.
pub fn compile(tag: u32, seed: DnsSeed, fast: &FastPath) -> Result<Compiled<'_>> {
    let capacity = fast.entries.len() + fast.nodata_any.len() + fast.zones.len() + fast.cuts.len();
    let mut c = Compiled { keys: Vec::with_capacity(capacity), answers: Vec::with_capacity(capacity), ..Default::default() };
    let mut store = TailStore::default();
    let push = |c: &mut Compiled, name: &[u8], qtype: u16, qclass: u16, answer: DnsAnswer| -> Result<()> {
        c.keys.push(key(tag, seed, name, qtype, qclass)?);
        c.answers.push(answer);
        Ok(())
    };
    for e in fast.entries.iter().chain(fast.nodata_any.iter()) {
        // nodata_any entries carry qtype 0 = DNS_QTYPE_OTHER already.
        match store.answer(e) {
            Some(a) => push(&mut c, &e.qname, e.qtype, e.qclass, a)?,
            None => c.too_long += 1,
        }
    }
    debug_assert_eq!(DNS_QTYPE_OTHER, 0);
    // Names with entries but no "any other type" answer (CNAME owners, CH names): other
    // qtypes must reach the server, not fall through to the zone's NXDOMAIN.
    let with_other: std::collections::HashSet<&[u8]> = fast.nodata_any.iter().map(|e| e.qname.as_slice()).collect();
    let mut marked = std::collections::HashSet::new();
    for e in &fast.entries {
        if !with_other.contains(e.qname.as_slice()) && marked.insert(e.qname.as_slice()) {
            push(&mut c, &e.qname, DNS_QTYPE_OTHER, CLASS_IN, pass_marker())?;
        }
    }
    for z in &fast.zones {
        let value = if z.has_wildcard { Some(pass_marker()) } else { store.answer(&z.nxdomain) };
        push(&mut c, &z.apex, DNS_QTYPE_ZONE, CLASS_IN, value.unwrap_or_else(pass_marker))?;
    }
    for cut in &fast.cuts {
        push(&mut c, cut, DNS_QTYPE_ZONE, CLASS_IN, pass_marker())?;
    }
    if store.tails.iter().any(|t| t.len() > DNS_TAIL_INDEX_MASK as usize) {
        bail!("more distinct DNS answers than a tail map can index");
    }
    c.tails = store.tails;
    Ok(c)
}

/// A fresh secret name-hash key for a new generation.
fn random_seed() -> Result<DnsSeed> {
    use std::io::Read as _;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom for the DNS name-hash key")?;
    Ok([u64::from_ne_bytes(b[..8].try_into()?), u64::from_ne_bytes(b[8..].try_into()?)])
}

fn write_tails<const N: usize>(map: &HashMap<MapData, DnsTailKey, [u8; N]>, tag: u32, tails: &[&[u8]]) -> Result<()> {
    for (c, chunk) in tails.chunks(4096).enumerate() {
        let keys: Vec<DnsTailKey> = (0..chunk.len()).map(|i| DnsTailKey { tag, index: (c * 4096 + i) as u32 }).collect();
        let values: Vec<[u8; N]> = chunk
            .iter()
            .map(|t| {
                let mut v = [0u8; N];
                v[..t.len()].copy_from_slice(t);
                v
            })
            .collect();
        map_batch::update(map.map(), &keys, &values).map_err(|(done, e)| {
            anyhow!(e).context(format!("DNS answer store ({N}-byte class) full after {} of {} answers", c * 4096 + done, tails.len()))
        })?;
    }
    Ok(())
}

/// Keys of one generation-tagged map to delete.
#[derive(Default)]
struct Doomed {
    answers: Vec<DnsKey>,
    tails: [Vec<DnsTailKey>; 3],
}

impl Doomed {
    /// Splits off the keys whose tag satisfies `which`.
    fn take(&mut self, which: impl Fn(u32) -> bool) -> Doomed {
        let mut out = Doomed::default();
        let (a, b): (Vec<DnsKey>, Vec<DnsKey>) = self.answers.drain(..).partition(|k| which(k.tag));
        (out.answers, self.answers) = (a, b);
        for (mine, theirs) in self.tails.iter_mut().zip(out.tails.iter_mut()) {
            let (a, b): (Vec<DnsTailKey>, Vec<DnsTailKey>) = mine.drain(..).partition(|k| which(k.tag));
            (*theirs, *mine) = (a, b);
        }
        out
    }
}

impl DnsMaps {
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<DnsMaps> {
        let mut take = |name: &str| ebpf.take_map(name).ok_or_else(|| anyhow!("{name} missing from the XDP object"));
        let [s, m, l] = pop_common::MAP_DNS_TAILS;
        Ok(DnsMaps {
            table: HashMap::try_from(take(pop_common::MAP_DNS_TABLE)?)?,
            tails_s: HashMap::try_from(take(s)?)?,
            tails_m: HashMap::try_from(take(m)?)?,
            tails_l: HashMap::try_from(take(l)?)?,
            seeds: Array::try_from(take(pop_common::MAP_DNS_SEEDS)?)?,
            blocks: Array::try_from(take(pop_common::MAP_DNS_BLOCKS)?)?,
        })
    }

    /// Replaces block `block`'s table with `fast` and applies `settings`, atomically
    /// from the data path's point of view.
    pub fn install(&mut self, block: u32, fast: &FastPath, settings: BlockSettings) -> Result<Installed> {
        if block >= DNS_BLOCKS_MAX {
            bail!("at most {DNS_BLOCKS_MAX} [[dns]] blocks");
        }
        let current = self.blocks.get(&block, 0)?;
        let generation = (current.generation + 1) & 0xff;
        let tag = block << 8 | generation;
        // One scan finds both what a previous run may have left under the new tag (it died
        // between writing and flipping: cleared now) and the live generation (cleared
        // after the flip).
        let mut old = self.collect(|t| t >> 8 == block)?;
        self.delete(&old.take(|t| t == tag))?;
        let seed = random_seed()?;
        let compiled = compile(tag, seed, fast)?;
        // The seed is in place before any entry of its generation can be looked up.
        self.seeds.set(tag, seed, 0)?;
        if let Err(e) = self.write(tag, &compiled) {
            self.collect(|t| t == tag).and_then(|written| self.delete(&written))?;
            return Err(e.context(format!(
                "DNS table full (pop.dns_table_size is the limit, and a reload needs room for the old \
                 and the new answers at once): nothing changed, the old answers stay; this block needs \
                 {} answers and {} distinct answer tails",
                compiled.keys.len(),
                compiled.tail_count()
            )));
        }
        let cost = if settings.rate_limit == 0 { 0 } else { 1_000_000_000 / settings.rate_limit as u64 };
        let value = DnsBlock { generation, fast_path: settings.fast_path as u32, rrl_cost_ns: cost };
        self.blocks.set(block, value, 0)?;
        self.delete(&old)?;
        Ok(Installed { entries: compiled.keys.len(), tails: compiled.tail_count(), too_long: compiled.too_long, generation })
    }

    /// Tails first, so an answer never points at bytes not yet written.
    fn write(&mut self, tag: u32, c: &Compiled) -> Result<()> {
        write_tails(&self.tails_s, tag, &c.tails[0])?;
        write_tails(&self.tails_m, tag, &c.tails[1])?;
        write_tails(&self.tails_l, tag, &c.tails[2])?;
        map_batch::update(self.table.map(), &c.keys, &c.answers)
            .map_err(|(done, e)| anyhow!(e).context(format!("after {done} of {} answers", c.keys.len())))
    }

    /// Turns off and empties every block from `first` on (blocks no longer configured).
    pub fn retire_from(&mut self, first: u32) -> Result<()> {
        for b in first..DNS_BLOCKS_MAX {
            let cur = self.blocks.get(&b, 0)?;
            if cur != DnsBlock::default() {
                self.blocks.set(b, DnsBlock { generation: cur.generation, ..Default::default() }, 0)?;
            }
        }
        let doomed = self.collect(|t| t >> 8 >= first)?;
        self.delete(&doomed)
    }

    /// Keys of answers and tails whose tag satisfies `doomed`.
    fn collect(&self, doomed: impl Fn(u32) -> bool) -> Result<Doomed> {
        let scan = |what: &str| format!("reading {what} to find old DNS answers");
        Ok(Doomed {
            answers: map_batch::keys_where::<DnsKey, DnsAnswer>(self.table.map(), |k| doomed(k.tag)).with_context(|| scan("DNS_TABLE"))?,
            tails: [
                map_batch::keys_where::<DnsTailKey, [u8; DNS_TAIL_CLASSES[0]]>(self.tails_s.map(), |k| doomed(k.tag)).with_context(|| scan("DNS_TAILS_S"))?,
                map_batch::keys_where::<DnsTailKey, [u8; DNS_TAIL_CLASSES[1]]>(self.tails_m.map(), |k| doomed(k.tag)).with_context(|| scan("DNS_TAILS_M"))?,
                map_batch::keys_where::<DnsTailKey, [u8; DNS_TAIL_CLASSES[2]]>(self.tails_l.map(), |k| doomed(k.tag)).with_context(|| scan("DNS_TAILS_L"))?,
            ],
        })
    }

    /// Deletes answers before tails: an answer still found always has its bytes.
    fn delete(&self, d: &Doomed) -> Result<()> {
        map_batch::delete(self.table.map(), &d.answers).context("deleting old DNS answers")?;
        map_batch::delete(self.tails_s.map(), &d.tails[0]).context("deleting old DNS answer tails")?;
        map_batch::delete(self.tails_m.map(), &d.tails[1]).context("deleting old DNS answer tails")?;
        map_batch::delete(self.tails_l.map(), &d.tails[2]).context("deleting old DNS answer tails")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use pop_common::DNS_TAIL_MAX;

    const SEED: DnsSeed = [7, 11];

    fn entry(qname: &[u8], qtype: u16, tail: Vec<u8>) -> FastEntry {
        FastEntry { qname: qname.to_vec(), qtype, qclass: 1, flags: 0x8400, ancount: 1, nscount: 0, arcount: 0, tail }
    }

    #[test]
    fn keys_hash_the_name_under_the_seed() {
        let k = key(7, SEED, b"\x03www\x07example\x03com\x00", 1, 1).unwrap();
        assert_eq!((k.tag, k.qtype, k.qclass), (7, 1, 1));
        assert_eq!(k.name, name_hash(SEED, b"\x03www\x07example\x03com\x00"));
        assert_ne!(k.name, key(7, [7, 12], b"\x03www\x07example\x03com\x00", 1, 1).unwrap().name);
        assert!(key(0, SEED, &[], 1, 1).is_err());
        assert!(key(0, SEED, &[1; 256], 1, 1).is_err());
    }

    #[test]
    fn partial_checksum_matches_rfc1071() {
        // Example from RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to 0xddf2.
        assert_eq!(partial_csum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
        // An odd length pads with a zero byte.
        assert_eq!(partial_csum(&[0x01]), 0x0100);
    }

    #[test]
    fn long_tails_are_left_to_the_server() {
        let fast = FastPath { entries: vec![entry(b"\x01a\x00", 16, vec![0; DNS_TAIL_MAX + 1])], ..Default::default() };
        let c = compile(1, SEED, &fast).unwrap();
        // Only the name's "other types go to the server" marker is written.
        assert_eq!((c.keys.len(), c.too_long, c.tail_count()), (1, 1, 0));
        assert_eq!(c.keys[0].qtype, DNS_QTYPE_OTHER);
        assert_eq!(c.answers[0].action, DNS_ACTION_PASS);
    }

    #[test]
    fn equal_tails_are_stored_once_in_their_size_class() {
        let small = vec![1u8; 16];
        let medium = vec![2u8; 65];
        let large = vec![3u8; 1000];
        let fast = FastPath {
            entries: vec![
                entry(b"\x01a\x00", 1, small.clone()),
                entry(b"\x01a\x00", 255, small.clone()),
                entry(b"\x01b\x00", 1, small.clone()),
                entry(b"\x01b\x00", 16, medium.clone()),
                entry(b"\x01c\x00", 16, large.clone()),
                entry(b"\x01d\x00", 16, vec![]),
            ],
            ..Default::default()
        };
        let c = compile(3, SEED, &fast).unwrap();
        assert_eq!(c.tails[0], vec![small.as_slice()]);
        assert_eq!(c.tails[1], vec![medium.as_slice()]);
        assert_eq!(c.tails[2], vec![large.as_slice()]);
        let refs: Vec<(u32, u16)> = c.keys.iter().zip(&c.answers).filter(|(k, _)| k.qtype != DNS_QTYPE_OTHER).map(|(_, a)| (a.tail_ref, a.tail_len)).collect();
        assert_eq!(refs, vec![(0, 16), (0, 16), (0, 16), (1 << 30, 65), (2 << 30, 1000), (0, 0)]);
        let a = c.answers.iter().find(|a| a.tail_len == 65).unwrap();
        assert_eq!(a.tail_csum, partial_csum(&medium));
        assert_eq!((tail_class(64), tail_class(65), tail_class(1024), tail_class(1025)), (Some(0), Some(1), Some(2), None));
    }
}
