//! Compiling a block's fast-path answers ([`TableBuilder`], fed by the answer engine)
//! and writing them into DNS_TABLE without a moment where names go missing: entries are
//! written under a new generation tag, the block's live generation in DNS_BLOCKS is
//! flipped (one array write), then the old generation is deleted. A failure before the
//! flip removes what it wrote and leaves the old table serving.
//!
//! Sizes: a name is keyed by a 24-byte hash (keyed by a secret seed per generation), and
//! the answer bytes are stored once per distinct tail in the smallest of three size
//! classes, so a zone of a million one-address names costs a few hundred bytes per name
//! instead of a kilobyte per answer.

use std::{
    collections::{HashMap as StdHashMap, HashSet},
    sync::Arc,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::maps::{Array, HashMap, IterableMap as _, MapData};
use pop_common::{
    DNS_ACTION_ANSWER, DNS_ACTION_PASS, DNS_ACTION_SIGNED, DNS_BLOCKS_MAX, DNS_EDNS_UDP_SIZE, DNS_KIND_ANSWER, DNS_KIND_ANSWER_DO, DNS_KIND_OTHER,
    DNS_KIND_ZONE, DNS_TAG_MASK, DNS_TAIL_CLASS_SHIFT, DNS_TAIL_CLASSES, DNS_TAIL_INDEX_MASK, DnsAnswer, DnsBlock, DnsKey, DnsSeed, DnsTailKey,
    name_hash,
};

use super::{FastEntry, FastSink, FastZone, name_filter::NameFilters};
use crate::datapath::map_batch;

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
    names: NameFilters,
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

const FLAG_TC: u16 = 0x0200;
/// The OPT record pop sends: root owner, type, class, TTL, empty RDATA.
const OPT_LEN: usize = 11;

/// Whether an answer to a question for a name of `qname_len` wire bytes, with `tail_len`
/// bytes after the question, exceeds the largest UDP response pop sends (with OPT).
pub fn always_truncated(qname_len: usize, tail_len: usize) -> bool {
    12 + qname_len + 4 + tail_len + OPT_LEN > DNS_EDNS_UDP_SIZE as usize
}

/// Size class of a tail of `len` bytes (index into DNS_TAIL_CLASSES), None if too long.
pub fn tail_class(len: usize) -> Option<usize> {
    DNS_TAIL_CLASSES.iter().position(|&max| len <= max)
}

/// A block's table compiled under a fresh secret seed: answers, and the distinct tails
/// they point at (`tails[class]` in index order). Keys carry only their kind bits in
/// the tag until installed.
#[derive(Debug, Default)]
pub struct Compiled {
    pub seed: DnsSeed,
    /// Keys and their answers, as two arrays: the batch update takes them so.
    pub keys: Vec<DnsKey>,
    pub answers: Vec<DnsAnswer>,
    pub tails: [Vec<Arc<[u8]>>; 3],
    /// Answers too long for any tail class: the server answers those (none, while
    /// DNS_TAIL_MAX holds every sendable tail).
    pub too_long: usize,
    /// Answers too long for any UDP response, stored as their truncated form.
    pub truncated: usize,
}

impl Compiled {
    pub fn tail_count(&self) -> usize {
        self.tails.iter().map(Vec::len).sum()
    }
}

/// The value answering `e` with its tail stored at `tail_ref`.
fn answer_with_tail(e: &FastEntry, tail_ref: u32) -> DnsAnswer {
    DnsAnswer {
        action: DNS_ACTION_ANSWER,
        flags: e.flags,
        ancount: e.ancount,
        nscount: e.nscount,
        arcount: e.arcount,
        tail_len: e.tail.len() as u16,
        tail_csum: partial_csum(&e.tail),
        tail_ref,
    }
}

/// The value of an answer always sent as an empty TC=1 reply (`flags` include TC).
fn truncated_answer(flags: u16) -> DnsAnswer {
    DnsAnswer { action: DNS_ACTION_ANSWER, flags, ancount: 0, nscount: 0, arcount: 0, tail_len: 0, tail_csum: 0, tail_ref: 0 }
}

fn pass_marker() -> DnsAnswer {
    DnsAnswer { action: DNS_ACTION_PASS, flags: 0, ancount: 0, nscount: 0, arcount: 0, tail_len: 0, tail_csum: 0, tail_ref: 0 }
}

/// Builds a [`Compiled`] table from the fast-path compiler's output as it streams in.
pub struct TableBuilder {
    c: Compiled,
    /// Tail bytes -> tail_ref, so equal answers share one copy.
    seen: StdHashMap<Arc<[u8]>, u32>,
    /// Names with answers, and those with a NODATA answer for other types.
    named: HashSet<[u64; 2]>,
    with_other: HashSet<[u64; 2]>,
    cuts: HashSet<Vec<u8>>,
    error: Option<anyhow::Error>,
}

impl TableBuilder {
    pub fn new(seed: DnsSeed) -> TableBuilder {
        TableBuilder {
            c: Compiled { seed, ..Default::default() },
            seen: StdHashMap::new(),
            named: HashSet::new(),
            with_other: HashSet::new(),
            cuts: HashSet::new(),
            error: None,
        }
    }

    /// The table value for a compiled response, or None if its tail does not fit.
    /// An answer longer than any UDP response pop sends is stored as the truncated
    /// answer the server gives for it at every EDNS size: TC=1, AA and rcode kept, no
    /// records. (For a zone's NXDOMAIN, keyed by the apex, longer names only make the
    /// answer longer, and XDP truncates whatever exceeds the client's limit anyway.)
    fn answer(&mut self, e: &FastEntry) -> Option<DnsAnswer> {
        let mut a = self.unflagged_answer(e)?;
        if e.signed {
            a.action |= DNS_ACTION_SIGNED;
        }
        Some(a)
    }

    fn unflagged_answer(&mut self, e: &FastEntry) -> Option<DnsAnswer> {
        if always_truncated(e.qname.len(), e.tail.len()) {
            self.c.truncated += 1;
            let flags = e.flags | FLAG_TC;
            return Some(truncated_answer(flags));
        }
        let class = tail_class(e.tail.len())?;
        let tail_ref = if e.tail.is_empty() {
            0
        } else if let Some(&r) = self.seen.get(e.tail.as_slice()) {
            r
        } else {
            let bytes: Arc<[u8]> = Arc::from(e.tail.as_slice());
            let list = &mut self.c.tails[class];
            list.push(bytes.clone());
            let r = ((class as u32) << DNS_TAIL_CLASS_SHIFT) | (list.len() as u32 - 1);
            self.seen.insert(bytes, r);
            r
        };
        Some(answer_with_tail(e, tail_ref))
    }

    /// The key of `name`, hashed once per call; a name that cannot be a DNS name is
    /// noted as the build's error.
    fn name_key(&mut self, name: &[u8]) -> Option<[u64; 2]> {
        match key(0, self.c.seed, name, 0, 0) {
            Ok(k) => Some(k.name),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    fn push(&mut self, kind: u32, name: [u64; 2], qtype: u16, qclass: u16, answer: DnsAnswer) {
        self.c.keys.push(DnsKey { tag: kind, qtype, qclass, name });
        self.c.answers.push(answer);
    }

    /// A marker: its own kind and qtype 0, so no question can be mistaken for one.
    fn push_marker(&mut self, kind: u32, name: [u64; 2], qclass: u16, answer: DnsAnswer) {
        self.push(kind, name, 0, qclass, answer);
    }

    /// The table; names with answers but no "any other type" answer (CNAME owners, CH
    /// names) get a marker sending other qtypes to the server, not to the zone's NXDOMAIN.
    pub fn finish(mut self) -> Result<Compiled> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let unmarked: Vec<[u64; 2]> = self.named.difference(&self.with_other).copied().collect();
        for name in unmarked {
            self.push_marker(DNS_KIND_OTHER, name, CLASS_IN, pass_marker());
        }
        if self.c.tails.iter().any(|t| t.len() > DNS_TAIL_INDEX_MASK as usize) {
            bail!("more distinct DNS answers than a tail map can index");
        }
        Ok(self.c)
    }
}

impl FastSink for TableBuilder {
    fn entry(&mut self, e: FastEntry) {
        let Some(name) = self.name_key(&e.qname) else { return };
        if e.dnssec_ok {
            // A DO=1 answer no UDP reply can hold is the server's to truncate: no entry.
            if !always_truncated(e.qname.len(), e.tail.len())
                && let Some(a) = self.answer(&e)
            {
                self.push(DNS_KIND_ANSWER_DO, name, e.qtype, e.qclass, a);
            }
            return;
        }
        self.named.insert(name);
        // An answer the table cannot hold still gets an entry: sending the question to
        // the server, never on to the name's "other types" NODATA.
        let a = self.answer(&e).unwrap_or_else(|| {
            self.c.too_long += 1;
            pass_marker()
        });
        self.push(DNS_KIND_ANSWER, name, e.qtype, e.qclass, a);
    }

    fn nodata(&mut self, e: FastEntry) {
        debug_assert_eq!(e.qtype, 0);
        let Some(name) = self.name_key(&e.qname) else { return };
        self.with_other.insert(name);
        let a = self.answer(&e).unwrap_or_else(|| {
            self.c.too_long += 1;
            pass_marker()
        });
        self.push_marker(DNS_KIND_OTHER, name, e.qclass, a);
    }

    fn zone(&mut self, z: FastZone) {
        let Some(apex) = self.name_key(&z.apex) else { return };
        let value = if z.has_wildcard { Some(pass_marker()) } else { self.answer(&z.nxdomain) };
        self.push_marker(DNS_KIND_ZONE, apex, CLASS_IN, value.unwrap_or_else(pass_marker));
    }

    fn cut(&mut self, cut: &[u8]) {
        if self.cuts.insert(cut.to_vec())
            && let Some(name) = self.name_key(cut)
        {
            self.push_marker(DNS_KIND_ZONE, name, CLASS_IN, pass_marker());
        }
    }
}

/// Compiles `responder`'s fast path into a table under a fresh secret seed.
///
/// Two stages on two threads: the answer engine producing responses, the builder
/// hashing and deduplicating them, joined by a bounded channel of batches.
pub fn compile(responder: &super::Responder) -> Result<Compiled> {
    let mut builder = TableBuilder::new(random_seed()?);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Piece>>(4);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut batcher = Batcher { batch: Vec::with_capacity(BATCH), tx };
            responder.compile_fast_path_into(&mut batcher);
            let rest = std::mem::take(&mut batcher.batch);
            let _ = batcher.tx.send(rest);
        });
        for batch in rx {
            for piece in batch {
                match piece {
                    Piece::Entry(e) => builder.entry(e),
                    Piece::Nodata(e) => builder.nodata(e),
                    Piece::Zone(z) => builder.zone(z),
                    Piece::Cut(c) => builder.cut(&c),
                }
            }
        }
    });
    builder.finish()
}

/// One call of [`FastSink`], carried between the compile stages.
enum Piece {
    Entry(FastEntry),
    Nodata(FastEntry),
    Zone(FastZone),
    Cut(Vec<u8>),
}

const BATCH: usize = 4096;

/// The producing stage's sink: batches pieces onto the channel.
struct Batcher {
    batch: Vec<Piece>,
    tx: std::sync::mpsc::SyncSender<Vec<Piece>>,
}

impl Batcher {
    fn add(&mut self, p: Piece) {
        self.batch.push(p);
        if self.batch.len() == BATCH {
            // A closed channel means the builder is gone; nothing left to do then.
            let _ = self.tx.send(std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH)));
        }
    }
}

impl FastSink for Batcher {
    fn entry(&mut self, e: FastEntry) {
        self.add(Piece::Entry(e));
    }
    fn nodata(&mut self, e: FastEntry) {
        self.add(Piece::Nodata(e));
    }
    fn zone(&mut self, z: FastZone) {
        self.add(Piece::Zone(z));
    }
    fn cut(&mut self, cut: &[u8]) {
        self.add(Piece::Cut(cut.to_vec()));
    }
}

/// A fresh secret name-hash key for a new generation.
fn random_seed() -> Result<DnsSeed> {
    use std::io::Read as _;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).context("reading /dev/urandom for the DNS name-hash key")?;
    Ok([u64::from_ne_bytes(b[..8].try_into()?), u64::from_ne_bytes(b[8..].try_into()?)])
}

fn write_tails<const N: usize>(map: &HashMap<MapData, DnsTailKey, [u8; N]>, tag: u32, tails: &[Arc<[u8]>]) -> Result<()> {
    // A chunk at a time, so the padded values never exist all at once.
    for (c, chunk) in tails.chunks(map_batch::CHUNK).enumerate() {
        let first = c * map_batch::CHUNK;
        let keys: Vec<DnsTailKey> = (0..chunk.len()).map(|i| DnsTailKey { tag, index: (first + i) as u32 }).collect();
        let values: Vec<[u8; N]> = chunk
            .iter()
            .map(|t| {
                let mut v = [0u8; N];
                v[..t.len()].copy_from_slice(t);
                v
            })
            .collect();
        map_batch::update(map.map(), &keys, &values).map_err(|(done, e)| {
            anyhow!(e).context(format!("DNS answer store ({N}-byte class) full after {} of {} answers", first + done, tails.len()))
        })?;
    }
    Ok(())
}

/// A block's next generation, written but not live yet (see [`DnsMaps::stage`]).
pub struct Staged {
    pub block: u32,
    tag: u32,
    /// `DNS_BLOCKS[block]` before and after the flip.
    previous: DnsBlock,
    value: DnsBlock,
    /// The keys of the generation this one replaces.
    old: Doomed,
    pub installed: Installed,
}

impl Staged {
    /// The `DNS_BLOCKS[block]` entry once flipped.
    pub fn value(&self) -> DnsBlock {
        self.value
    }
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
        let (a, b): (Vec<DnsKey>, Vec<DnsKey>) = self.answers.drain(..).partition(|k| which(k.tag & DNS_TAG_MASK));
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
        let blocks = Array::try_from(take(pop_common::MAP_DNS_BLOCKS)?)?;
        let names = NameFilters::new(Array::try_from(take(pop_common::MAP_DNS_NAME_FILTER)?)?, &blocks)?;
        Ok(DnsMaps {
            table: HashMap::try_from(take(pop_common::MAP_DNS_TABLE)?)?,
            tails_s: HashMap::try_from(take(s)?)?,
            tails_m: HashMap::try_from(take(m)?)?,
            tails_l: HashMap::try_from(take(l)?)?,
            seeds: Array::try_from(take(pop_common::MAP_DNS_SEEDS)?)?,
            blocks,
            names,
        })
    }

    /// Replaces block `block`'s table with `compiled` (stamping it with the new
    /// generation's tag) and applies `settings`, atomically from the data path's view.
    pub fn install(&mut self, block: u32, compiled: &mut Compiled, settings: BlockSettings) -> Result<Installed> {
        let staged = self.stage(block, compiled, settings)?;
        if let Err(e) = self.flip(&staged) {
            self.abort(staged)?;
            return Err(e);
        }
        self.finish(staged)
    }

    /// Writes `compiled` under block `block`'s next generation without making it live:
    /// the data path keeps answering from the current one until [`DnsMaps::flip`]. A
    /// failure removes what it wrote.
    pub fn stage(&mut self, block: u32, compiled: &mut Compiled, settings: BlockSettings) -> Result<Staged> {
        if block >= DNS_BLOCKS_MAX {
            bail!("at most {DNS_BLOCKS_MAX} [[dns]] blocks");
        }
        let current = self.blocks.get(&block, 0)?;
        // 1..=255: generation 0 means the block was never installed (see retire_from).
        let generation = current.generation % 255 + 1;
        let tag = block << 8 | generation;
        // One scan finds both what a previous run may have left under the new tag (it died
        // between writing and flipping: cleared now) and the live generation (cleared
        // after the flip).
        let mut old = self.collect(|t| t >> 8 == block)?;
        self.delete(&old.take(|t| t == tag))?;
        for k in &mut compiled.keys {
            k.tag = (k.tag & !DNS_TAG_MASK) | tag;
        }
        // The seed and the names' filter bits are in place before any entry of the
        // generation can be looked up.
        self.seeds.set(tag, compiled.seed, 0)?;
        self.names.stage(block, &compiled.keys)?;
        if let Err(e) = self.write(tag, compiled) {
            self.collect(|t| t == tag).and_then(|written| self.delete(&written))?;
            self.names.abort(block)?;
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
        let installed = Installed { entries: compiled.keys.len(), tails: compiled.tail_count(), too_long: compiled.too_long, generation };
        Ok(Staged { block, tag, previous: current, value, old, installed })
    }

    /// Makes a staged generation live (one array write).
    pub fn flip(&mut self, staged: &Staged) -> Result<()> {
        Ok(self.blocks.set(staged.block, staged.value, 0)?)
    }

    /// Makes the generation that was live before `staged` live again.
    pub fn unflip(&mut self, staged: &Staged) -> Result<()> {
        Ok(self.blocks.set(staged.block, staged.previous, 0)?)
    }

    /// Removes a staged generation that was never flipped (or was unflipped).
    pub fn abort(&mut self, staged: Staged) -> Result<()> {
        let written = self.collect(|t| t == staged.tag)?;
        self.delete(&written)?;
        self.names.abort(staged.block)
    }

    /// After the flip: removes the generation the staged one replaced.
    pub fn finish(&mut self, staged: Staged) -> Result<Installed> {
        self.delete(&staged.old)?;
        self.names.finish(staged.block)?;
        Ok(staged.installed)
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
    /// Scans the table only if such a block was ever installed: a reload of the same
    /// blocks does not read a million-entry table twice. (Entries a crash left under a
    /// never-flipped tag of such a block are cleared when the block is configured again.)
    pub fn retire_from(&mut self, first: u32) -> Result<()> {
        let mut any = false;
        for b in first..DNS_BLOCKS_MAX {
            let cur = self.blocks.get(&b, 0)?;
            if cur.generation != 0 {
                any = true;
            }
            if cur != DnsBlock::default() {
                self.blocks.set(b, DnsBlock { generation: cur.generation, ..Default::default() }, 0)?;
            }
        }
        if any {
            let doomed = self.collect(|t| t >> 8 >= first)?;
            self.delete(&doomed)?;
        }
        self.names.retire_from(first)
    }

    /// Keys of answers and tails whose tag (kind bits aside) satisfies `doomed`.
    fn collect(&self, doomed: impl Fn(u32) -> bool) -> Result<Doomed> {
        let scan = |what: &str| format!("reading {what} to find old DNS answers");
        Ok(Doomed {
            answers: map_batch::keys_where::<DnsKey, DnsAnswer>(self.table.map(), |k| doomed(k.tag & DNS_TAG_MASK))
                .with_context(|| scan(pop_common::MAP_DNS_TABLE))?,
            tails: [
                map_batch::keys_where::<DnsTailKey, [u8; DNS_TAIL_CLASSES[0]]>(self.tails_s.map(), |k| doomed(k.tag))
                    .with_context(|| scan(pop_common::MAP_DNS_TAILS[0]))?,
                map_batch::keys_where::<DnsTailKey, [u8; DNS_TAIL_CLASSES[1]]>(self.tails_m.map(), |k| doomed(k.tag))
                    .with_context(|| scan(pop_common::MAP_DNS_TAILS[1]))?,
                map_batch::keys_where::<DnsTailKey, [u8; DNS_TAIL_CLASSES[2]]>(self.tails_l.map(), |k| doomed(k.tag))
                    .with_context(|| scan(pop_common::MAP_DNS_TAILS[2]))?,
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

// ---- Per-name updates in the live generation ------------------------------------------
//
// A full build writes a second generation and flips to it. A change to a few names
// (IXFR, a reloaded zone file with a few edits) rewrites only those names' entries in
// the live generation, with no second generation and no extra `dns_table_size`:
//
// - Each DNS_TABLE entry (name, qtype) is replaced by one map update, which the kernel
//   makes atomic for readers (a lookup sees the old or the new value, never a mix).
// - Tail bytes are never rewritten in place: new bytes get a free slot of their size
//   class, written before any answer points at them; a tail no answer uses any more is
//   deleted after the answers that used it. So `tail_csum` (kept in the answer) always
//   matches the bytes an answer points at, and XDP never copies missing bytes.
// - The order of one name's writes: new tails, upserts, deletes of the types it lost,
//   freed tails. Between two writes a reader may see one type of the name updated and
//   another not yet (each answer is one the zone had at some point).
// - Zone markers (apex NXDOMAIN, delegations) are zone-level and stay with full builds.
//
// `LiveTable` mirrors what the live generation holds (per name: its keys; per tail:
// bytes and uses) and turns a name's new answers into a `NamePlan`; `DnsMaps::apply`
// writes a plan in that order.

/// The live generation of one block, as the writer of per-name updates needs it.
#[derive(Debug)]
pub struct LiveTable {
    pub tag: u32,
    pub seed: DnsSeed,
    /// Name key -> its ANSWER and OTHER entries.
    names: StdHashMap<[u64; 2], Vec<(DnsKey, DnsAnswer)>>,
    /// tail_ref -> (bytes, answers using it).
    tails: StdHashMap<u32, (Arc<[u8]>, usize)>,
    by_bytes: StdHashMap<Arc<[u8]>, u32>,
    /// Per size class: next never-used index, and indices freed by earlier plans.
    next: [u32; 3],
    free: [Vec<u32>; 3],
}

/// The map writes of one name's update, in the order `DnsMaps::apply` makes them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NamePlan {
    /// New tails (size class, key, bytes), written first.
    pub add_tails: Vec<(usize, DnsTailKey, Arc<[u8]>)>,
    /// Entries whose value is new or changed.
    pub upsert: Vec<(DnsKey, DnsAnswer)>,
    /// Entries of types the name no longer has.
    pub delete: Vec<DnsKey>,
    /// Tails no answer uses any more, deleted last.
    pub free_tails: Vec<(usize, DnsTailKey)>,
}

impl NamePlan {
    pub fn is_empty(&self) -> bool {
        self.add_tails.is_empty() && self.upsert.is_empty() && self.delete.is_empty() && self.free_tails.is_empty()
    }
}

impl LiveTable {
    /// What `compiled` put in the maps once installed under `tag` (`DnsMaps::install`
    /// stamps the tag into its keys).
    pub fn from_compiled(tag: u32, c: &Compiled) -> LiveTable {
        let mut t = LiveTable {
            tag,
            seed: c.seed,
            names: StdHashMap::new(),
            tails: StdHashMap::new(),
            by_bytes: StdHashMap::new(),
            next: [0; 3],
            free: Default::default(),
        };
        for (class, list) in c.tails.iter().enumerate() {
            for (i, bytes) in list.iter().enumerate() {
                let r = ((class as u32) << DNS_TAIL_CLASS_SHIFT) | i as u32;
                t.tails.insert(r, (bytes.clone(), 0));
                t.by_bytes.insert(bytes.clone(), r);
            }
            t.next[class] = list.len() as u32;
        }
        for (k, a) in c.keys.iter().zip(&c.answers) {
            let kind = k.tag & !DNS_TAG_MASK;
            if kind != DNS_KIND_ANSWER && kind != DNS_KIND_ANSWER_DO && kind != DNS_KIND_OTHER {
                continue;
            }
            if a.tail_len > 0
                && let Some(e) = t.tails.get_mut(&a.tail_ref)
            {
                e.1 += 1;
            }
            let key = DnsKey { tag: kind | tag, ..*k };
            t.names.entry(k.name).or_default().push((key, *a));
        }
        t
    }

    /// Names the live generation holds answers for.
    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    /// Replaces every answer of `name` (lowercase wire format) with `answers` (one per
    /// qtype asked as a client asks it) and `nodata` (the NODATA answer for any other
    /// type, qtype 0; None for a name whose other types the server must answer, such as
    /// a CNAME owner). Returns the writes to make; `self` then describes the maps after them.
    pub fn upsert_name(&mut self, name: &[u8], answers: &[FastEntry], nodata: Option<&FastEntry>) -> Result<NamePlan> {
        let name_key = key(self.tag, self.seed, name, 0, 0)?.name;
        if let Some(e) = answers.iter().chain(nodata).find(|e| e.qname.as_slice() != name) {
            bail!("per-name update of one name got an answer for another ({} bytes)", e.qname.len());
        }
        let mut plan = NamePlan::default();
        let mut new: Vec<(DnsKey, DnsAnswer)> = Vec::new();
        for e in answers {
            let mut a = self.value(e, &mut plan)?;
            if e.signed {
                a.action |= DNS_ACTION_SIGNED;
            }
            let kind = if e.dnssec_ok { DNS_KIND_ANSWER_DO } else { DNS_KIND_ANSWER };
            new.push((DnsKey { tag: kind | self.tag, qtype: e.qtype, qclass: e.qclass, name: name_key }, a));
        }
        let other = match nodata {
            Some(e) => Some(self.value(e, &mut plan)?),
            None if !answers.is_empty() => Some(pass_marker()),
            None => None,
        };
        if let Some(a) = other {
            new.push((DnsKey { tag: DNS_KIND_OTHER | self.tag, qtype: 0, qclass: CLASS_IN, name: name_key }, a));
        }
        let old = self.names.remove(&name_key).unwrap_or_default();
        for (k, a) in &new {
            if old.iter().find(|(ok, _)| ok == k).map(|(_, oa)| oa) != Some(a) {
                plan.upsert.push((*k, *a));
            }
        }
        for (k, _) in &old {
            if !new.iter().any(|(nk, _)| nk == k) {
                plan.delete.push(*k);
            }
        }
        // Released after the new ones are taken: a slot freed here is reused only by a
        // later plan, once this one's deletes are done.
        for (_, a) in &old {
            self.release(a, &mut plan);
        }
        if !new.is_empty() {
            self.names.insert(name_key, new);
        }
        Ok(plan)
    }

    /// Removes every answer of `name`: the server (and the zone's NXDOMAIN) answers it.
    pub fn delete_name(&mut self, name: &[u8]) -> Result<NamePlan> {
        self.upsert_name(name, &[], None)
    }

    /// The table value for `e`, taking (or sharing) a tail slot for its bytes.
    fn value(&mut self, e: &FastEntry, plan: &mut NamePlan) -> Result<DnsAnswer> {
        if always_truncated(e.qname.len(), e.tail.len()) {
            return Ok(truncated_answer(e.flags | FLAG_TC));
        }
        let Some(class) = tail_class(e.tail.len()) else { return Ok(pass_marker()) };
        let tail_ref = if e.tail.is_empty() {
            0
        } else if let Some(&r) = self.by_bytes.get(e.tail.as_slice()) {
            self.tails.get_mut(&r).expect("indexed tail").1 += 1;
            r
        } else {
            let index = match self.free[class].pop() {
                Some(i) => i,
                None => {
                    if self.next[class] > DNS_TAIL_INDEX_MASK {
                        bail!("more distinct DNS answers than a tail map can index");
                    }
                    self.next[class] += 1;
                    self.next[class] - 1
                }
            };
            let r = ((class as u32) << DNS_TAIL_CLASS_SHIFT) | index;
            let bytes: Arc<[u8]> = Arc::from(e.tail.as_slice());
            self.tails.insert(r, (bytes.clone(), 1));
            self.by_bytes.insert(bytes.clone(), r);
            plan.add_tails.push((class, DnsTailKey { tag: self.tag, index }, bytes));
            r
        };
        Ok(answer_with_tail(e, tail_ref))
    }

    fn release(&mut self, a: &DnsAnswer, plan: &mut NamePlan) {
        if a.tail_len == 0 {
            return;
        }
        let Some(entry) = self.tails.get_mut(&a.tail_ref) else { return };
        entry.1 -= 1;
        if entry.1 == 0 {
            let (bytes, _) = self.tails.remove(&a.tail_ref).expect("present");
            self.by_bytes.remove(&bytes);
            let (class, index) = ((a.tail_ref >> DNS_TAIL_CLASS_SHIFT) as usize, a.tail_ref & DNS_TAIL_INDEX_MASK);
            self.free[class].push(index);
            plan.free_tails.push((class, DnsTailKey { tag: self.tag, index }));
        }
    }
}

fn insert_tail<const N: usize>(map: &mut HashMap<MapData, DnsTailKey, [u8; N]>, key: DnsTailKey, bytes: &[u8]) -> Result<()> {
    let mut v = [0u8; N];
    v[..bytes.len()].copy_from_slice(bytes);
    map.insert(key, v, 0).with_context(|| format!("DNS answer store ({N}-byte class) full"))
}

impl DnsMaps {
    /// Writes one name's update (see `LiveTable`) in its safe order. A failure part way
    /// leaves every entry either old or new, never pointing at missing bytes.
    pub fn apply(&mut self, plan: &NamePlan) -> Result<()> {
        for (class, k, bytes) in &plan.add_tails {
            match class {
                0 => insert_tail(&mut self.tails_s, *k, bytes)?,
                1 => insert_tail(&mut self.tails_m, *k, bytes)?,
                _ => insert_tail(&mut self.tails_l, *k, bytes)?,
            }
        }
        let added: Vec<DnsKey> = plan.upsert.iter().map(|(k, _)| *k).collect();
        if let Some(k) = added.first() {
            self.names.add((k.tag & DNS_TAG_MASK) >> 8, &added)?;
        }
        for (k, a) in &plan.upsert {
            self.table.insert(k, a, 0).context("DNS table full (pop.dns_table_size is the limit)")?;
        }
        let gone = |r: Result<(), aya::maps::MapError>| match r {
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            r => r,
        };
        for k in &plan.delete {
            gone(self.table.remove(k)).context("deleting a DNS answer")?;
        }
        for (class, k) in &plan.free_tails {
            let r = match class {
                0 => self.tails_s.remove(k),
                1 => self.tails_m.remove(k),
                _ => self.tails_l.remove(k),
            };
            gone(r).context("deleting a DNS answer tail")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use pop_common::{DNS_EDNS_UDP_SIZE, DNS_TAIL_MAX};

    use crate::dns::FastPath;

    const SEED: DnsSeed = [7, 11];

    fn entry(qname: &[u8], qtype: u16, tail: Vec<u8>) -> FastEntry {
        FastEntry {
            qname: qname.to_vec(),
            qtype,
            qclass: 1,
            flags: 0x8400,
            ancount: 1,
            nscount: 0,
            arcount: 0,
            tail,
            signed: false,
            dnssec_ok: false,
        }
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

    /// What the controller writes for `fast` (the builder fed from a collected table).
    fn compile_fast(fast: &FastPath) -> Compiled {
        let mut b = TableBuilder::new(SEED);
        fast.entries.iter().for_each(|e| b.entry(e.clone()));
        fast.nodata_any.iter().for_each(|e| b.nodata(e.clone()));
        fast.zones.iter().for_each(|z| b.zone(z.clone()));
        fast.cuts.iter().for_each(|c| b.cut(c));
        b.finish().unwrap()
    }

    /// Answers over 1 KiB (the old largest class) used to get no entry, so XDP fell
    /// through to the name's "other types" NODATA. Every answer now gets an entry: its
    /// bytes if some UDP response can carry them, else the truncated form.
    #[test]
    fn every_answer_gets_an_entry_up_to_the_largest_udp_answer() {
        let name = b"\x01a\x00"; // question: 3 + 4 bytes
        let fits = DNS_EDNS_UDP_SIZE as usize - 12 - 7 - 11;
        assert!(fits <= DNS_TAIL_MAX && !always_truncated(3, fits) && always_truncated(3, fits + 1));
        let sizes = [1024 + 1, 1100, fits, fits + 1, 1400, 4000];
        let fast =
            FastPath { entries: sizes.iter().enumerate().map(|(t, &n)| entry(name, 16 + t as u16, vec![7; n])).collect(), ..Default::default() };
        let c = compile_fast(&fast);
        assert_eq!((c.too_long, c.truncated), (0, 3));
        for (t, &n) in sizes.iter().enumerate() {
            let (k, a) =
                c.keys.iter().zip(&c.answers).find(|(k, _)| k.tag == DNS_KIND_ANSWER && k.qtype == 16 + t as u16).expect("an entry for every answer");
            assert_eq!(k.name, name_hash(SEED, name));
            assert_eq!(a.action, DNS_ACTION_ANSWER, "{n} bytes");
            if n <= fits {
                assert_eq!((a.tail_len as usize, a.tail_ref >> DNS_TAIL_CLASS_SHIFT, a.flags, a.ancount), (n, 2, 0x8400, 1), "{n} bytes");
            } else {
                // What the server sends for it at every EDNS size: TC=1, AA kept, no records.
                assert_eq!((a.tail_len, a.flags, a.ancount, a.nscount, a.arcount), (0, 0x8600, 0, 0, 0), "{n} bytes");
            }
        }
        assert_eq!(c.tails[2].len(), 3, "the sendable long tails are stored in the largest class");
    }

    #[test]
    fn markers_only_for_names_without_nodata_and_cuts_once() {
        let mut nodata = entry(b"\x01b\x00", 0, vec![9; 20]);
        nodata.flags = 0x8400;
        let fast = FastPath {
            entries: vec![entry(b"\x01a\x00", 5, vec![1; 10]), entry(b"\x01b\x00", 1, vec![2; 10])],
            nodata_any: vec![nodata],
            cuts: vec![b"\x03sub\x00".to_vec(), b"\x03sub\x00".to_vec()],
            ..Default::default()
        };
        let c = compile_fast(&fast);
        let others: Vec<_> = c.keys.iter().zip(&c.answers).filter(|(k, _)| k.tag == DNS_KIND_OTHER).collect();
        assert_eq!(others.len(), 2, "{others:?}");
        let a = others.iter().find(|(k, _)| k.name == name_hash(SEED, b"\x01a\x00")).unwrap();
        assert_eq!(a.1.action, DNS_ACTION_PASS, "a CNAME-like name sends other types to the server");
        let b = others.iter().find(|(k, _)| k.name == name_hash(SEED, b"\x01b\x00")).unwrap();
        assert_eq!((b.1.action, b.1.tail_len), (DNS_ACTION_ANSWER, 20));
        assert_eq!(c.keys.iter().filter(|k| k.tag == DNS_KIND_ZONE).count(), 1);
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
        let c = compile_fast(&fast);
        let bytes = |class: usize| c.tails[class].iter().map(|t| t.to_vec()).collect::<Vec<_>>();
        assert_eq!((bytes(0), bytes(1), bytes(2)), (vec![small.clone()], vec![medium.clone()], vec![large.clone()]));
        let refs: Vec<(u32, u16)> =
            c.keys.iter().zip(&c.answers).filter(|(k, _)| k.tag == DNS_KIND_ANSWER).map(|(_, a)| (a.tail_ref, a.tail_len)).collect();
        assert_eq!(refs, vec![(0, 16), (0, 16), (0, 16), (1 << 30, 65), (2 << 30, 1000), (0, 0)]);
        let a = c.answers.iter().find(|a| a.tail_len == 65).unwrap();
        assert_eq!(a.tail_csum, partial_csum(&medium));
        assert_eq!((tail_class(64), tail_class(65), tail_class(DNS_TAIL_MAX), tail_class(DNS_TAIL_MAX + 1)), (Some(0), Some(1), Some(2), None));
    }

    /// Queries for qtype 0 and 65535 used to hit the "other types" and zone markers
    /// (TYPE65535 at an apex got the zone's NXDOMAIN): markers now have a key space of
    /// their own, and every answer key is the question as a client would ask it.
    #[test]
    fn no_question_can_reach_a_marker() {
        let apex = b"\x07example\x00";
        let mut nxdomain = entry(apex, 0, vec![5; 30]);
        nxdomain.flags = 0x8403;
        let fast = FastPath {
            entries: vec![entry(apex, 0, vec![1; 10]), entry(apex, 0xffff, vec![2; 10]), entry(b"\x01a\x07example\x00", 5, vec![3; 10])],
            nodata_any: vec![entry(apex, 0, vec![4; 20])],
            zones: vec![FastZone { apex: apex.to_vec(), has_wildcard: false, nxdomain }],
            cuts: vec![b"\x03sub\x07example\x00".to_vec()],
        };
        let c = compile_fast(&fast);
        let keys: HashSet<DnsKey> = c.keys.iter().copied().collect();
        assert_eq!(keys.len(), c.keys.len(), "two entries share a key: {:?}", c.keys);
        for k in &c.keys {
            match k.tag {
                DNS_KIND_ANSWER => {}
                DNS_KIND_OTHER | DNS_KIND_ZONE => assert_eq!(k.qtype, 0, "{k:?}"),
                t => panic!("unknown kind {t:#x} in {k:?}"),
            }
        }
        let apex_key = name_hash(SEED, apex);
        let at_apex =
            |tag: u32, qtype: u16| c.keys.iter().zip(&c.answers).find(|(k, _)| (k.tag, k.qtype, k.name) == (tag, qtype, apex_key)).map(|(_, a)| *a);
        // What a question for qtype 65535 or 0 at the apex looks up first: its own answers.
        assert_eq!(at_apex(DNS_KIND_ANSWER, 0xffff).map(|a| a.tail_len), Some(10));
        assert_eq!(at_apex(DNS_KIND_ANSWER, 0).map(|a| a.tail_len), Some(10));
        assert_eq!(at_apex(DNS_KIND_OTHER, 0).map(|a| a.tail_len), Some(20));
        assert_eq!(at_apex(DNS_KIND_ZONE, 0).map(|a| (a.flags, a.tail_len)), Some((0x8403, 30)));
    }

    /// A live table of two names sharing one tail, as a full build leaves it.
    fn live() -> (LiveTable, Vec<u8>) {
        let shared = vec![1u8; 16];
        let fast = FastPath {
            entries: vec![entry(b"\x01a\x00", 1, shared.clone()), entry(b"\x01a\x00", 28, vec![2; 100]), entry(b"\x01b\x00", 1, shared.clone())],
            ..Default::default()
        };
        (LiveTable::from_compiled(0x0105, &compile_fast(&fast)), shared)
    }

    #[test]
    fn an_unchanged_name_writes_nothing() {
        let (mut t, shared) = live();
        let plan = t.upsert_name(b"\x01b\x00", &[entry(b"\x01b\x00", 1, shared)], None).unwrap();
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_changed_answer_takes_a_new_tail_and_frees_the_old_one_only_when_unused() {
        let (mut t, shared) = live();
        let a_key = |qtype: u16, kind: u32| DnsKey { tag: kind | 0x0105, qtype, qclass: 1, name: name_hash(SEED, b"\x01a\x00") };
        // a's AAAA changes; its A keeps the shared tail.
        let plan = t.upsert_name(b"\x01a\x00", &[entry(b"\x01a\x00", 1, shared.clone()), entry(b"\x01a\x00", 28, vec![3; 100])], None).unwrap();
        assert_eq!(plan.add_tails.len(), 1);
        let (class, tk, bytes) = &plan.add_tails[0];
        assert_eq!((*class, tk.tag, tk.index, bytes.len()), (1, 0x0105, 1, 100), "a fresh slot of the 256-byte class");
        assert_eq!(plan.upsert.len(), 1);
        assert_eq!(plan.upsert[0].0, a_key(28, DNS_KIND_ANSWER));
        assert_eq!((plan.upsert[0].1.tail_ref, plan.upsert[0].1.tail_csum), ((1 << 30) | 1, partial_csum(&[3; 100])));
        assert!(plan.delete.is_empty());
        assert_eq!(plan.free_tails, vec![(1, DnsTailKey { tag: 0x0105, index: 0 })]);
        // a loses its A: deleted, but the shared tail stays (b still uses it).
        let plan = t.upsert_name(b"\x01a\x00", &[entry(b"\x01a\x00", 28, vec![3; 100])], None).unwrap();
        assert_eq!(plan.delete, vec![a_key(1, DNS_KIND_ANSWER)]);
        assert!(plan.free_tails.is_empty() && plan.add_tails.is_empty() && plan.upsert.is_empty(), "{plan:?}");
        // Deleting b releases the shared tail at last; the slot is reused by a later plan.
        let plan = t.delete_name(b"\x01b\x00").unwrap();
        assert_eq!(plan.free_tails, vec![(0, DnsTailKey { tag: 0x0105, index: 0 })]);
        assert_eq!(plan.delete.len(), 2, "its A and its other-types marker: {plan:?}");
        let plan = t.upsert_name(b"\x01c\x00", &[entry(b"\x01c\x00", 1, vec![9; 10])], None).unwrap();
        assert_eq!(plan.add_tails[0].1.index, 0);
        assert_eq!(t.name_count(), 2);
    }

    #[test]
    fn a_new_name_gets_its_other_types_marker_and_big_answers_their_truncated_form() {
        let (mut t, _) = live();
        let mut nodata = entry(b"\x01n\x00", 0, vec![4; 30]);
        nodata.flags = 0x8400;
        let plan = t.upsert_name(b"\x01n\x00", &[entry(b"\x01n\x00", 48, vec![5; 4000])], Some(&nodata)).unwrap();
        let kinds: Vec<(u32, u16, u16)> = plan.upsert.iter().map(|(k, a)| (k.tag & !DNS_TAG_MASK, k.qtype, a.tail_len)).collect();
        assert_eq!(kinds, vec![(DNS_KIND_ANSWER, 48, 0), (DNS_KIND_OTHER, 0, 30)]);
        assert_eq!(plan.upsert[0].1.flags & FLAG_TC, FLAG_TC, "a 4000-byte DNSKEY answer is stored as TC=1");
        assert!(t.upsert_name(b"\x01n\x00", &[entry(b"\x01m\x00", 1, vec![])], None).is_err(), "an answer for another name");
    }
}
