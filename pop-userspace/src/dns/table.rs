//! Writing a block's [`FastPath`] into DNS_TABLE without a moment where names go
//! missing: entries are written under a new generation tag, the block's live
//! generation in DNS_BLOCKS is flipped (one array write), then the old generation is
//! deleted. A failure before the flip removes what it wrote and leaves the old table
//! serving.

use anyhow::{Context as _, Result, anyhow, bail};
use aya::maps::{Array, HashMap, MapData};
use pop_common::{
    DNS_ACTION_ANSWER, DNS_ACTION_PASS, DNS_BLOCKS_MAX, DNS_NAME_LEN, DNS_QTYPE_OTHER, DNS_QTYPE_ZONE,
    DNS_TAIL_MAX, DnsAnswer, DnsBlock, DnsKey,
};

use super::{FastEntry, FastPath};

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
    /// Answers too long for a table entry: the server answers those.
    pub too_long: usize,
    pub generation: u32,
}

/// The DNS maps of the loaded program.
pub struct DnsMaps {
    pub table: HashMap<MapData, DnsKey, DnsAnswer>,
    pub blocks: Array<MapData, DnsBlock>,
}

/// The DNS_TABLE key for `name` (lowercase wire format), right-aligned.
pub fn key(tag: u32, name: &[u8], qtype: u16, qclass: u16) -> Result<DnsKey> {
    if name.is_empty() || name.len() > 255 {
        bail!("name of {} bytes cannot be a DNS name", name.len());
    }
    let mut k = DnsKey { tag, qtype, qclass, name: [0; DNS_NAME_LEN] };
    k.name[DNS_NAME_LEN - name.len()..].copy_from_slice(name);
    Ok(k)
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

/// The table value for a compiled response, or None if its tail does not fit.
pub fn answer(e: &FastEntry) -> Option<DnsAnswer> {
    if e.tail.len() > DNS_TAIL_MAX {
        return None;
    }
    let mut a = DnsAnswer {
        action: DNS_ACTION_ANSWER,
        flags: e.flags,
        ancount: e.ancount,
        nscount: e.nscount,
        arcount: e.arcount,
        tail_len: e.tail.len() as u16,
        tail_csum: partial_csum(&e.tail),
        tail: [0; DNS_TAIL_MAX],
    };
    a.tail[..e.tail.len()].copy_from_slice(&e.tail);
    Some(a)
}

fn pass_marker() -> DnsAnswer {
    DnsAnswer { action: DNS_ACTION_PASS, flags: 0, ancount: 0, nscount: 0, arcount: 0, tail_len: 0, tail_csum: 0, tail: [0; DNS_TAIL_MAX] }
}

/// Every (key, value) of a block's table under `tag`; counts answers too long to hold.
pub fn entries(tag: u32, fast: &FastPath) -> Result<(Vec<(DnsKey, DnsAnswer)>, usize)> {
    let mut out = Vec::with_capacity(fast.entries.len() + fast.nodata_any.len() + fast.zones.len());
    let mut too_long = 0;
    for e in fast.entries.iter().chain(fast.nodata_any.iter()) {
        // nodata_any entries carry qtype 0 = DNS_QTYPE_OTHER already.
        match answer(e) {
            Some(a) => out.push((key(tag, &e.qname, e.qtype, e.qclass)?, a)),
            None => too_long += 1,
        }
    }
    debug_assert_eq!(DNS_QTYPE_OTHER, 0);
    // Names with entries but no "any other type" answer (CNAME owners, CH names): other
    // qtypes must reach the server, not fall through to the zone's NXDOMAIN.
    let with_other: std::collections::HashSet<&[u8]> = fast.nodata_any.iter().map(|e| e.qname.as_slice()).collect();
    let mut marked = std::collections::HashSet::new();
    for e in &fast.entries {
        if !with_other.contains(e.qname.as_slice()) && marked.insert(e.qname.as_slice()) {
            out.push((key(tag, &e.qname, DNS_QTYPE_OTHER, CLASS_IN)?, pass_marker()));
        }
    }
    for z in &fast.zones {
        let value = if z.has_wildcard { Some(pass_marker()) } else { answer(&z.nxdomain) };
        out.push((key(tag, &z.apex, DNS_QTYPE_ZONE, CLASS_IN)?, value.unwrap_or_else(pass_marker)));
    }
    for cut in &fast.cuts {
        out.push((key(tag, cut, DNS_QTYPE_ZONE, CLASS_IN)?, pass_marker()));
    }
    Ok((out, too_long))
}

impl DnsMaps {
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<DnsMaps> {
        let table = ebpf.take_map(pop_common::MAP_DNS_TABLE).ok_or_else(|| anyhow!("DNS_TABLE missing"))?;
        let blocks = ebpf.take_map(pop_common::MAP_DNS_BLOCKS).ok_or_else(|| anyhow!("DNS_BLOCKS missing"))?;
        Ok(DnsMaps { table: HashMap::try_from(table)?, blocks: Array::try_from(blocks)? })
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
        // A previous run may have died between writing and flipping: clear that first.
        self.remove_where(|t| t == tag)?;
        let (entries, too_long) = entries(tag, fast)?;
        for (i, (k, v)) in entries.iter().enumerate() {
            if let Err(e) = self.table.insert(k, v, 0) {
                self.remove_where(|t| t == tag)?;
                return Err(anyhow!(e)).with_context(|| {
                    format!(
                        "DNS table full after {i} of {} entries (at most {} in all, and a reload \
                         needs room for old and new): nothing changed, the old answers stay",
                        entries.len(),
                        pop_common::DNS_TABLE_MAX
                    )
                });
            }
        }
        let cost = if settings.rate_limit == 0 { 0 } else { 1_000_000_000 / settings.rate_limit as u64 };
        let value = DnsBlock { generation, fast_path: settings.fast_path as u32, rrl_cost_ns: cost };
        self.blocks.set(block, value, 0)?;
        self.remove_where(|t| t >> 8 == block && t != tag)?;
        Ok(Installed { entries: entries.len(), too_long, generation })
    }

    /// Turns off and empties every block from `first` on (blocks no longer configured).
    pub fn retire_from(&mut self, first: u32) -> Result<()> {
        for b in first..DNS_BLOCKS_MAX {
            let cur = self.blocks.get(&b, 0)?;
            if cur != DnsBlock::default() {
                self.blocks.set(b, DnsBlock { generation: cur.generation, ..Default::default() }, 0)?;
            }
        }
        self.remove_where(|t| t >> 8 >= first)
    }

    fn remove_where(&mut self, doomed: impl Fn(u32) -> bool) -> Result<()> {
        let keys: Vec<DnsKey> = self.table.keys().filter_map(|k| k.ok()).filter(|k| doomed(k.tag)).collect();
        for k in keys {
            let _ = self.table.remove(&k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_right_aligned() {
        let k = key(7, b"\x03www\x07example\x03com\x00", 1, 1).unwrap();
        assert_eq!(&k.name[DNS_NAME_LEN - 17..], b"\x03www\x07example\x03com\x00");
        assert!(k.name[..DNS_NAME_LEN - 17].iter().all(|&b| b == 0));
        // The parent name is the same buffer with the first label zeroed.
        let parent = key(7, b"\x07example\x03com\x00", 1, 1).unwrap();
        let mut walked = k;
        walked.name[DNS_NAME_LEN - 17..DNS_NAME_LEN - 13].fill(0);
        assert_eq!(walked.name, parent.name);
        assert!(key(0, &[], 1, 1).is_err());
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
        let e = FastEntry { qname: b"\x01a\x00".to_vec(), qtype: 16, qclass: 1, flags: 0x8400, ancount: 1, nscount: 0, arcount: 0, tail: vec![0; DNS_TAIL_MAX + 1] };
        assert!(answer(&e).is_none());
        let fast = FastPath { entries: vec![e], ..Default::default() };
        let (entries, too_long) = entries(1, &fast).unwrap();
        // Only the name's "other types go to the server" marker is written.
        assert_eq!((entries.len(), too_long), (1, 1));
        assert_eq!(entries[0].0.qtype, DNS_QTYPE_OTHER);
        assert_eq!(entries[0].1.action, DNS_ACTION_PASS);
    }
}
