//! DNS fast path: table keys and answers, the name hash both sides compute.
//!
//! ## Table layout
//! - DNS_TABLE: (kind | block | generation, qtype, qclass, 128-bit keyed name hash) ->
//!   DnsAnswer (header fields, tail length, checksum and reference). Kinds: the answer
//!   as asked, "any other type" of an existing name, zone apex / delegation.
//! - DNS_TAILS_S/M/L: the answer bytes after the question, one copy per distinct tail,
//!   in the smallest of three size classes (64, 256, DNS_TAIL_MAX bytes).
//! - Name hash: 8-byte words from the name's end ([`name_hash`]); XDP gets every
//!   suffix's key (the walk up to the zone) from one pass plus one step per suffix.
//! - Full builds: a new generation is written, flipped in DNS_BLOCKS, the old deleted.
//!   Per-name updates (pop-userspace `dns::table::LiveTable`, `DnsMaps::apply`): a
//!   name's entries are rewritten in the live generation, each entry by one atomic map
//!   update; tails go to free slots before any answer points at them and are deleted
//!   after the last answer using them, so no second generation and no extra capacity.
//! - Signed zones: every entry carries DNS_ACTION_SIGNED and answers DO=0 queries; the
//!   exact questions also have a DNS_KIND_ANSWER_DO entry holding the DO=1 answer.
//!
//! ## Not there yet (issue 13 / 14)
//! - Answers longer than DNS_TAIL_MAX (DNSSEC answers up to 4096 bytes) are stored as
//!   their TC=1 form: XDP never sends more than DNS_EDNS_UDP_SIZE. Carrying them needs
//!   a fourth tail class (e.g. 4096 bytes, few entries) and XDP sizing answers against
//!   the client's EDNS size up to the interface MTU; the per-name writer already
//!   allocates slots per class, so a class is one more map and one more arm.
//! - One lookup per answer: today a hit costs DNS_TABLE plus its tail map. Inlining
//!   tails of up to ~64 bytes in DnsAnswer would make most A/AAAA answers one lookup,
//!   at the price of 64 bytes more per entry (measure memory at 1M names first).
//! - Zone-level changes (apex NXDOMAIN, SOA in every NODATA tail, delegations) still
//!   need a full build: a new SOA serial changes the tail of every NODATA answer.

/// Default capacity of DNS_TABLE (entries; `pop.dns_table_size` changes it). A name
/// takes about three entries (its types, ANY, "other types"), and a reload holds the
/// old and the new generation at once.
pub const DNS_TABLE_MAX: u32 = 1 << 20;
pub const DNS_BLOCKS_MAX: u32 = 64;
/// Longest name in wire format, plus a spare byte for the XDP side's masking.
pub const DNS_NAME_LEN: usize = 256;
/// Most labels a wire-format name can have (root included).
pub const DNS_LABELS_MAX: usize = 128;
/// Bytes after the question an answer can hold (the largest tail class): every tail
/// pop can send, i.e. the largest UDP answer (DNS_EDNS_UDP_SIZE) less the header, the
/// shortest question (the root name, type, class) and the OPT record. Longer answers
/// are always sent truncated and stored without bytes (see `DnsAnswer`).
pub const DNS_TAIL_MAX: usize = DNS_EDNS_UDP_SIZE as usize - 12 - 5 - 11;
/// Capacity of DNS_TAILS_S/M/L for a DNS_TABLE of `table` entries: distinct tails are
/// fewer than answers (ANY and NODATA answers share), and long ones rarer. Each slot of
/// capacity costs 16 bytes of hash buckets up front; entries cost only when written.
pub const fn dns_tail_capacity(table: u32) -> [u32; 3] {
    const fn at_least(n: u32, min: u32) -> u32 {
        if n < min { min } else { n }
    }
    [at_least(table / 2, 512), at_least(table / 8, 128), at_least(table / 32, 64)]
}
/// Tail size classes: DNS_TAILS_S, DNS_TAILS_M, DNS_TAILS_L hold tails up to these sizes.
pub const DNS_TAIL_CLASSES: [usize; 3] = [64, 256, DNS_TAIL_MAX];
/// `DnsAnswer::tail_ref`: the size class in the top two bits, the index in the rest.
pub const DNS_TAIL_CLASS_SHIFT: u32 = 30;
pub const DNS_TAIL_INDEX_MASK: u32 = (1 << DNS_TAIL_CLASS_SHIFT) - 1;
/// `DnsKey::tag` bits above block and generation: what kind of entry a key is. Only
/// DNS_KIND_ANSWER keys carry a client's qtype; the markers below have their own kind
/// (and qtype 0), so no qtype a client sends (0 and 65535 included) can reach one.
pub const DNS_KIND_SHIFT: u32 = 24;
/// `block << 8 | generation`, without the kind bits.
pub const DNS_TAG_MASK: u32 = (1 << DNS_KIND_SHIFT) - 1;
/// The answer for (name, qtype, qclass) as asked.
pub const DNS_KIND_ANSWER: u32 = 0;
/// The answer for any qtype of an existing name without its own entry.
pub const DNS_KIND_OTHER: u32 = 1 << DNS_KIND_SHIFT;
/// A zone apex or delegation point (the walk up the name finds it).
pub const DNS_KIND_ZONE: u32 = 2 << DNS_KIND_SHIFT;
/// The answer for (name, qtype, qclass) asked with DO=1, in a signed zone: with its
/// RRSIGs (and NSEC/NSEC3 for NODATA). Looked up only after a DNS_ACTION_SIGNED hit.
pub const DNS_KIND_ANSWER_DO: u32 = 3 << DNS_KIND_SHIFT;
/// `DnsAnswer::action`: send this answer.
pub const DNS_ACTION_ANSWER: u16 = 1;
/// `DnsAnswer::action`: the server must answer (delegation, wildcard zone).
pub const DNS_ACTION_PASS: u16 = 2;
/// `DnsAnswer::action` flag: the entry is of a signed zone, so it answers DO=0 only. A
/// DO=1 query looks up its DNS_KIND_ANSWER_DO entry (none for denials, whose proofs
/// depend on the name: the server answers), and an answer over the client's size goes
/// to the server, which truncates it as Knot does (whole RRsets that fit).
pub const DNS_ACTION_SIGNED: u16 = 0x100;
/// What the fast path advertises and the biggest UDP answer it sends.
pub const DNS_EDNS_UDP_SIZE: u16 = 1232;

/// Key of DNS_TABLE: the question, with the name as a keyed 128-bit hash (see
/// [`name_hash`]) so a key is 24 bytes whatever the name's length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsKey {
    /// `kind | block << 8 | generation` (see DNS_KIND_SHIFT): a reload writes a new
    /// generation, then flips it.
    pub tag: u32,
    pub qtype: u16,
    pub qclass: u16,
    pub name: [u64; 2],
}

/// Value of DNS_TABLE: one answer compiled from the server's own response. The bytes
/// after the question live in a tail map, shared by every answer with the same bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    pub action: u16,
    /// Response header flags (QR, AA, rcode); XDP adds the query's RD and TC. An answer
    /// too long for any UDP response is stored as its truncated form: TC already set,
    /// no records, no tail (as the server sends it: AA and rcode kept).
    pub flags: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
    pub tail_len: u16,
    /// Ones'-complement sum of the tail as 16-bit big-endian words from an even offset.
    pub tail_csum: u32,
    /// Size class and index of the tail (see DNS_TAIL_CLASS_SHIFT); unused when tail_len is 0.
    pub tail_ref: u32,
}

/// Key of the tail maps: a tail belongs to one block's generation, like the answers.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsTailKey {
    pub tag: u32,
    pub index: u32,
}

/// Key of the name hash for one block's generation (DNS_SEEDS index = tag); chosen at
/// random by each install, so no one outside can aim a name at another name's hash.
pub type DnsSeed = [u64; 2];

/// Multipliers of the two hash lanes (odd, so each step is a bijection of its lane).
const HASH_MUL: [u64; 2] = [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f];

/// ASCII-lowercases the eight bytes of `w` at once (bytes >= 0x80 are left alone, as
/// DNS compares names: RFC 4343).
#[inline(always)]
pub const fn name_word_lower(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let heptets = w & LOW7;
    // High bit of each byte: its low 7 bits >= 'A' (0x41), and >= '[' (0x5b, past 'Z').
    let from_a = heptets + 0x3f3f_3f3f_3f3f_3f3f;
    let past_z = heptets + 0x2525_2525_2525_2525;
    let upper = from_a & !past_z & !w & HIGH;
    w | (upper >> 2)
}

/// One 8-byte word of a name (little-endian, already lowercased, zero-padded) into the
/// hash state. A name is hashed a word at a time from its *end*: first the whole words
/// ending at its last byte, last to first, then the partial word left at its start. So
/// every suffix (each enclosing zone) shares the name's states for its whole words, and
/// the XDP side gets any suffix's key from one pass plus one step.
#[inline(always)]
pub fn name_hash_word(h: [u64; 2], w: u64) -> [u64; 2] {
    let mut a = (h[0] ^ w).wrapping_mul(HASH_MUL[0]);
    a ^= a >> 32;
    let mut c = (h[1] ^ w.rotate_left(29)).wrapping_mul(HASH_MUL[1]);
    c ^= c >> 29;
    [a, c]
}

/// The `len` bytes of `name` at `at` as a little-endian word, zero-padded (len <= 8).
pub fn name_word(name: &[u8], at: usize, len: usize) -> u64 {
    let mut b = [0u8; 8];
    b[..len].copy_from_slice(&name[at..at + len]);
    u64::from_le_bytes(b)
}

/// The key of a name of `len` bytes whose words produced state `h`.
#[inline(always)]
pub fn name_hash_finish(h: [u64; 2], len: usize) -> [u64; 2] {
    let fmix = |mut k: u64| {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    };
    let a = fmix(h[0] ^ len as u64);
    let c = fmix(h[1] ^ (len as u64) << 32);
    [a ^ c.rotate_left(17), c ^ a.rotate_left(43)]
}

/// The DNS_TABLE name key of a wire-format name under `seed` (ASCII case ignored).
pub fn name_hash(seed: DnsSeed, name: &[u8]) -> [u64; 2] {
    let len = name.len();
    let mut h = seed;
    for k in 0..len / 8 {
        h = name_hash_word(h, name_word_lower(name_word(name, len - 8 * (k + 1), 8)));
    }
    if !len.is_multiple_of(8) {
        h = name_hash_word(h, name_word_lower(name_word(name, 0, len % 8)));
    }
    name_hash_finish(h, len)
}

/// Per-block settings in DNS_BLOCKS (index = block).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct DnsBlock {
    /// Generation of this block's live DNS_TABLE entries.
    pub generation: u32,
    /// 1 when XDP may answer; 0 passes every query to the server.
    pub fast_path: u32,
    /// Nanoseconds of credit one response costs (1e9 / rate); 0 disables rate limiting.
    pub rrl_cost_ns: u64,
}

/// Words of DNS_NAME_FILTER's bitmap: 2^22 bits (512 KiB, in a core's L2 cache here).
/// 100k names fill about 2% of it (4% while a reload holds two generations).
pub const NAME_FILTER_WORDS: usize = 1 << 16;

/// DNS_NAME_FILTER: bit `name_filter_bit(k.name)` is set for the name of every
/// DNS_TABLE key `k`, so a name whose bit is clear is certainly not in the table and
/// costs no hash lookup: the lookups of a random-subdomain flood miss a 16 MiB bucket
/// array at random, each a cache and TLB miss. Bits of a generation are set before it
/// goes live and cleared only once it is gone. Until the controller knows every live
/// name (`ready` 0) the data path looks every name up.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameFilter {
    pub ready: u64,
    pub bits: [u64; NAME_FILTER_WORDS],
}

impl NameFilter {
    /// Whether a name hashed to `name` may have entries (false: it certainly has none).
    #[inline(always)]
    pub fn may_hold(&self, name: &[u64; 2]) -> bool {
        let bit = name_filter_bit(name);
        self.ready == 0 || (self.bits[(bit / 64) % NAME_FILTER_WORDS] >> (bit % 64)) & 1 != 0
    }

    /// Sets the bit of `name`.
    pub fn add(&mut self, name: &[u64; 2]) {
        let bit = name_filter_bit(name);
        self.bits[bit / 64] |= 1 << (bit % 64);
    }
}

/// Bit of a name hash in NameFilter::bits: the hash is keyed and uniform already.
#[inline(always)]
pub fn name_filter_bit(name: &[u64; 2]) -> usize {
    (name[1] as usize) & (NAME_FILTER_WORDS * 64 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_lowercase_ascii_only() {
        let w = name_word(b"\x07ExAmPlE@[`{", 0, 8);
        assert_eq!(name_word_lower(w).to_le_bytes(), *b"\x07example");
        let w = name_word(b"@[`{\xc0\xdaZa", 0, 8);
        assert_eq!(name_word_lower(w).to_le_bytes(), *b"@[`{\xc0\xdaza");
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b; 8]);
            assert_eq!(name_word_lower(w), u64::from_le_bytes([b.to_ascii_lowercase(); 8]), "byte {b:#x}");
        }
    }

    #[test]
    fn suffix_keys_come_from_the_names_states_plus_one_step() {
        // What the XDP side does: one pass over the whole words from the end, keeping
        // the state after each, then any suffix = those states + its partial word.
        let seed = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
        let name = b"\x05stuff\x03www\x0dsome-examples\x03com\x00";
        let len = name.len();
        let mut states = vec![seed];
        for k in 0..len / 8 {
            let h = name_hash_word(states[k], name_word_lower(name_word(name, len - 8 * (k + 1), 8)));
            states.push(h);
        }
        for o in 0..len {
            let n = len - o;
            let mut h = states[n / 8];
            if !n.is_multiple_of(8) {
                h = name_hash_word(h, name_word_lower(name_word(name, o, n % 8)));
            }
            assert_eq!(name_hash_finish(h, n), name_hash(seed, &name[o..]), "suffix at {o}");
        }
    }

    #[test]
    fn name_hash_ignores_ascii_case_and_sees_length() {
        let seed = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
        assert_eq!(name_hash(seed, b"\x03WWW\x07Example\x03COM\x00"), name_hash(seed, b"\x03www\x07example\x03com\x00"));
        // Zero padding must not make a name equal to itself with trailing zero bytes.
        assert_ne!(name_hash(seed, b"\x01a\x00"), name_hash(seed, b"\x01a\x00\x00"));
        assert_ne!(name_hash(seed, b"\x03www\x07example\x03com\x00"), name_hash(seed, b"\x07example\x03com\x00"));
    }

    #[test]
    fn hashes_differ_by_name_and_by_seed() {
        let seed = [1, 2];
        let names: Vec<Vec<u8>> = (0..20000u32)
            .map(|i| {
                let l = format!("n{i}");
                let mut n = vec![l.len() as u8];
                n.extend_from_slice(l.as_bytes());
                n.extend_from_slice(b"\x07example\x00");
                n
            })
            .chain([b"\x00".to_vec(), b"\x01a\x00".to_vec(), b"\x01b\x00".to_vec(), b"\x02aa\x00".to_vec()])
            .collect();
        let keys: std::collections::HashSet<[u64; 2]> = names.iter().map(|n| name_hash(seed, n)).collect();
        assert_eq!(keys.len(), names.len());
        assert_ne!(name_hash([1, 2], b"\x01a\x00"), name_hash([1, 3], b"\x01a\x00"));
        assert_ne!(name_hash([1, 2], b"\x01a\x00"), name_hash([0, 2], b"\x01a\x00"));
    }

    #[test]
    fn the_name_filter_holds_what_was_added_and_little_else() {
        let seed = [7, 9];
        let mut f = Box::new(NameFilter { ready: 1, bits: [0; NAME_FILTER_WORDS] });
        let name = |i: u32| name_hash(seed, format!("\x05n{i:04}\x07example\x00").as_bytes());
        for i in 0..10000 {
            f.add(&name(i));
        }
        assert!((0..10000).all(|i| f.may_hold(&name(i))));
        let false_positives = (10000..110000).filter(|&i| f.may_hold(&name(i))).count();
        // 10k of 4M bits set: about 0.24% of other names pass.
        assert!(false_positives < 500, "{false_positives}");
        f.ready = 0;
        assert!(f.may_hold(&name(20000)), "not ready: every name is looked up");
    }
}
