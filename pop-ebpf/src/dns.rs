//! DNS over UDP answered in XDP: validate the query, look the question up in DNS_TABLE
//! (exact type, then "any other type", then the walk up to the enclosing zone), apply
//! response rate limiting, and rewrite the frame into the answer in place (XDP_TX).
//! Anything the table cannot answer exactly as the server would goes to the server.

use aya_ebpf::{bindings::xdp_action, helpers::generated::bpf_loop, maps::HashMap, programs::XdpContext};
use aya_log_ebpf::error;
use pop_common::{
    Counter, DNS_ACTION_ANSWER, DNS_ACTION_SIGNED, DNS_EDNS_UDP_SIZE, DNS_KIND_ANSWER, DNS_KIND_ANSWER_DO, DNS_KIND_OTHER, DNS_KIND_ZONE,
    DNS_LABELS_MAX, DNS_TAG_MASK, DNS_TAIL_CLASS_SHIFT, DNS_TAIL_INDEX_MASK, DNS_TAIL_MAX, DnsAnswer, DnsTailKey, name_hash_finish, name_hash_word,
    name_word_lower,
};

use crate::{
    counters::Stats,
    csum, frame,
    maps::{DNS_BLOCKS, DNS_NAME_FILTER, DNS_NAME_WORDS, DNS_SCRATCH, DNS_SEEDS, DNS_TABLE, DNS_TAILS_L, DNS_TAILS_M, DNS_TAILS_S, DnsScratch},
    packet::{self, load, ptr_at},
    parse::Packet,
    rrl,
    verdict::{drop, pass},
};

const UDP_HLEN: usize = 8;
const DNS_HLEN: usize = 12;
const OPT_LEN: usize = 11;
const QR: u16 = 0x8000;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const OPT_NSID: u16 = 3;
/// Labels stripped while walking up to the enclosing zone before giving up (passing).
const MAX_WALK: usize = 16;
/// Offsets are bounded so the verifier can follow packet arithmetic.
const MAX_OFFSET: usize = 0x1fff;

// ---- loops, run with bpf_loop so the verifier checks each body once ---------------------

#[repr(C)]
struct Measure {
    off: u32,
    cap: u32,
    ended: u32,
    labels: u32,
}

/// One label of the question name in scratch.raw, its offset noted in scratch.starts:
/// stop at the root label, on a compression pointer, or past 255 bytes.
extern "C" fn measure_label(_i: u32, ctx: *mut core::ffi::c_void) -> i64 {
    let m = unsafe { &mut *(ctx as *mut Measure) };
    let Some(scratch) = DNS_SCRATCH.get_ptr_mut(0) else { return 1 };
    let scratch = unsafe { &mut *scratch };
    let off = m.off as usize;
    if off >= m.cap as usize || m.labels as usize >= DNS_LABELS_MAX {
        return 1;
    }
    scratch.starts[m.labels as usize & (DNS_LABELS_MAX - 1)] = off as u8;
    m.labels += 1;
    let len = scratch.raw[off & 0xff] as usize;
    if len == 0 {
        m.ended = 1;
        return 1;
    }
    if len & 0xc0 != 0 || off + len + 1 > 254 {
        return 1;
    }
    m.off = (off + len + 1) as u32;
    0
}

/// The `n` (< 8) or 8 bytes of scratch.raw at `at` as a little-endian word, zero-padded.
#[inline(always)]
fn raw_word(scratch: &DnsScratch, at: usize, n: usize) -> u64 {
    // SAFETY: the offset is below 256 and raw has 8 bytes of slack past that.
    let p = unsafe { scratch.raw.as_ptr().add(at & 0xff) } as *const u64;
    let w = u64::from_le(unsafe { core::ptr::read_unaligned(p) });
    if n >= 8 { w } else { w & ((1u64 << (n * 8)) - 1) }
}

/// Sum of a word's four 16-bit lanes.
#[inline(always)]
fn lanes(w: u64) -> u64 {
    (w & 0xffff) + ((w >> 16) & 0xffff) + ((w >> 32) & 0xffff) + (w >> 48)
}

/// Hashes the question name (`len` bytes of scratch.raw) a word at a time from its end
/// (pop_common::name_hash) into scratch.states, and sums those words into
/// scratch.name_sum; 0 on success. A subprogram of its own, called once, with one
/// branch per word (the loop's exit), so the verifier follows it once.
#[inline(never)]
fn hash_name_words(len: u32) -> u32 {
    let Some(scratch) = DNS_SCRATCH.get_ptr_mut(0) else { return 1 };
    let scratch = unsafe { &mut *scratch };
    let len = len as usize;
    if len == 0 || len > 255 {
        return 1;
    }
    let Some(seed) = DNS_SEEDS.get(scratch.key.tag & DNS_TAG_MASK) else { return 1 };
    let mut h = *seed;
    scratch.states[0] = h;
    let mut total = 0u64;
    let full = len / 8;
    for k in 1..DNS_NAME_WORDS {
        if k > full {
            break;
        }
        let word = raw_word(scratch, len - 8 * k, 8);
        total += lanes(word);
        h = name_hash_word(h, name_word_lower(word));
        scratch.states[k] = h;
    }
    scratch.name_sum = total;
    0
}

/// The key of the name's suffix starting at byte `o` (< len): the state after its
/// whole words, then its partial word.
#[inline(always)]
fn suffix_key(scratch: &DnsScratch, o: usize, len: usize) -> [u64; 2] {
    let n = (len - o) & 0xff;
    let mut h = scratch.states[(n / 8) & (DNS_NAME_WORDS - 1)];
    if n % 8 != 0 {
        h = name_hash_word(h, name_word_lower(raw_word(scratch, o, n % 8)));
    }
    name_hash_finish(h, n)
}

#[repr(C)]
struct Walk {
    labels: u32,
    /// Length of the whole name.
    len: u32,
    found: u32,
}

/// Whether DNS_TABLE may hold entries for the name hash `name` (see NameFilter).
#[inline(always)]
fn may_hold(name: &[u64; 2]) -> bool {
    match DNS_NAME_FILTER.get(0) {
        Some(f) => f.may_hold(name),
        None => true,
    }
}

/// Looks suffix `i` (0 = the whole name) up as a zone or delegation.
extern "C" fn walk_up(i: u32, ctx: *mut core::ffi::c_void) -> i64 {
    let w = unsafe { &mut *(ctx as *mut Walk) };
    if i >= w.labels {
        return 1;
    }
    let Some(scratch) = DNS_SCRATCH.get_ptr_mut(0) else { return 1 };
    let scratch = unsafe { &mut *scratch };
    let start = scratch.starts[i as usize & (DNS_LABELS_MAX - 1)] as usize;
    if start >= w.len as usize {
        return 1;
    }
    scratch.key.name = suffix_key(scratch, start, w.len as usize);
    if may_hold(&scratch.key.name) && DNS_TABLE.get_ptr(&scratch.key).is_some() {
        w.found = 1;
        return 1;
    }
    0
}

/// Copies `len` bytes of tail `key` from its size class's map to packet offset `at`.
#[inline(always)]
fn store_tail_from<const N: usize>(ctx: &XdpContext, map: &HashMap<DnsTailKey, [u8; N]>, key: &DnsTailKey, at: usize, len: usize) -> u32 {
    let Some(tail) = (unsafe { map.get(key) }) else { return 1 };
    let len = core::hint::black_box(len);
    if len == 0 || len > N {
        return 1;
    }
    if packet::store_bytes(ctx, at as u32, tail.as_ptr() as *mut _, len as u32) != 0 {
        return 1;
    }
    0
}

/// Copies the answer's tail into the packet; 0 on success, 1 if it is gone.
#[inline(never)]
fn store_tail(ctx: &XdpContext, tag: u32, tail_ref: u32, at: u32, len: u32) -> u32 {
    let key = DnsTailKey { tag, index: tail_ref & DNS_TAIL_INDEX_MASK };
    let (at, len) = (at as usize, len as usize);
    match tail_ref >> DNS_TAIL_CLASS_SHIFT {
        0 => store_tail_from(ctx, &DNS_TAILS_S, &key, at, len),
        1 => store_tail_from(ctx, &DNS_TAILS_M, &key, at, len),
        _ => store_tail_from(ctx, &DNS_TAILS_L, &key, at, len),
    }
}

/// A UDP datagram to port 53 of a VIP of DNS block `block`. A BPF subprogram of its
/// own: its stack frame must not add to the dispatcher's. Whatever is passed to the
/// server is rate limited here, as XDP's own answers are in `answer`.
#[inline(never)]
pub fn handle(ctx: &XdpContext, stats: &Stats, pkt: &Packet, block_idx: u32) -> u32 {
    match answer(ctx, stats, pkt, block_idx) {
        xdp_action::XDP_PASS => rrl::limit_passed(stats, pkt, block_idx),
        v if v & PASS_CHARGED != 0 => xdp_action::XDP_PASS,
        verdict => verdict,
    }
}

/// `answer`'s flag on XDP_PASS: the query was already charged to its rate-limit bucket.
const PASS_CHARGED: u32 = 1 << 8;

#[inline(never)]
fn answer(ctx: &XdpContext, stats: &Stats, pkt: &Packet, block_idx: u32) -> u32 {
    stats.inc(Counter::DnsQueries);
    let udp = pkt.l4;
    let dns = udp + UDP_HLEN;
    if dns > MAX_OFFSET {
        return pass(stats, Counter::PassMalformed);
    }
    // UDP and DNS headers read in place when the frame holds both (offsets bounded for
    // the verifier: IPv4 options or IPv6, behind at most two VLAN tags).
    let direct = if udp <= frame::MAX_L3 + 60 { ptr_at::<[u8; UDP_HLEN + DNS_HLEN]>(ctx, udp).map(|p| unsafe { *p }) } else { None };
    let udp_len = match direct {
        Some(h) => [h[4], h[5]],
        None => match load::<[u8; 2]>(ctx, udp + 4) {
            Some(l) => l,
            None => return pass(stats, Counter::PassMalformed),
        },
    };
    let udp_len = u16::from_be_bytes(udp_len) as usize;
    if udp_len < UDP_HLEN + DNS_HLEN {
        return drop(stats, Counter::DnsDropRunt);
    }
    // The UDP length bounds the message, and must end where the IP packet does (parse
    // keeps that within the frame; link padding may follow). On any disagreement the
    // kernel decides what the datagram is, and the server answers that.
    if udp + udp_len != pkt.l3_end {
        return pass(stats, Counter::DnsPassIpLength);
    }
    let dns_len = udp_len - UDP_HLEN;
    let hdr = match direct {
        Some(h) => [h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]],
        None => match load::<[u8; DNS_HLEN]>(ctx, dns) {
            Some(h) => h,
            None => return drop(stats, Counter::DnsDropRunt),
        },
    };
    let flags = u16::from_be_bytes([hdr[2], hdr[3]]);
    if flags & QR != 0 {
        return drop(stats, Counter::DnsDropResponse);
    }
    let Some(block) = DNS_BLOCKS.get(block_idx) else { return pass(stats, Counter::DnsPassDisabled) };
    if block.fast_path == 0 {
        return pass(stats, Counter::DnsPassDisabled);
    }
    // The kernel's reply carries no IP options; an answer from here must not either.
    if !pkt.v6 && pkt.l4 - pkt.l3 != 20 {
        return pass(stats, Counter::DnsPassIpOptions);
    }
    if (flags >> 11) & 0xf != 0 {
        return pass(stats, Counter::DnsPassOpcode);
    }
    let qd = u16::from_be_bytes([hdr[4], hdr[5]]);
    let an = u16::from_be_bytes([hdr[6], hdr[7]]);
    let ns = u16::from_be_bytes([hdr[8], hdr[9]]);
    let ar = u16::from_be_bytes([hdr[10], hdr[11]]);
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return pass(stats, Counter::DnsPassCounts);
    }

    // Question name: copy up to 255 bytes to scratch and measure it there
    // (uncompressed labels only).
    let Some(scratch_ptr) = DNS_SCRATCH.get_ptr_mut(0) else { return pass(stats, Counter::PassMalformed) };
    let scratch = unsafe { &mut *scratch_ptr };
    let qname = dns + DNS_HLEN;
    let avail = dns_len - DNS_HLEN;
    let cap = if avail > 255 { 255 } else { avail };
    if cap == 0 || packet::load_bytes(ctx, qname as u32, scratch.raw.as_mut_ptr() as *mut _, cap as u32) != 0 {
        return pass(stats, Counter::DnsPassName);
    }
    let mut measure = Measure { off: 0, cap: cap as u32, ended: 0, labels: 0 };
    unsafe { bpf_loop(DNS_LABELS_MAX as u32, measure_label as *mut _, &mut measure as *mut _ as *mut _, 0) };
    if measure.ended == 0 {
        return pass(stats, Counter::DnsPassName);
    }
    let off = measure.off as usize;
    let name_len = (off + 1) & 0xff;
    // Type and class: copied with the name when the copy reached them.
    let q = if name_len + 4 <= cap {
        let r = &scratch.raw;
        [r[name_len & 0xff], r[(name_len + 1) & 0xff], r[(name_len + 2) & 0xff], r[(name_len + 3) & 0xff]]
    } else {
        let Some(q) = load::<[u8; 4]>(ctx, qname + name_len) else {
            return pass(stats, Counter::DnsPassName);
        };
        q
    };
    let qtype = u16::from_be_bytes([q[0], q[1]]);
    let qclass = u16::from_be_bytes([q[2], q[3]]);
    // Zone transfers get NOTIMP from the server; the table's NODATA would be wrong.
    if qtype == 251 || qtype == 252 {
        return pass(stats, Counter::DnsPassOpcode);
    }
    let after_q = DNS_HLEN + name_len + 4;
    if after_q > dns_len {
        return pass(stats, Counter::DnsPassName);
    }

    // EDNS: at most one additional record, and it must be a version-0 OPT without NSID.
    let mut edns = false;
    let mut do_bit = false;
    let mut limit = 512usize;
    if ar == 1 {
        let rest = dns_len - after_q;
        let opt_at = dns + after_q;
        let Some(opt) = load::<[u8; OPT_LEN]>(ctx, opt_at) else { return pass(stats, Counter::DnsPassTrailing) };
        if opt[0] != 0 || opt[1] != 0 || opt[2] != 41 {
            return pass(stats, Counter::DnsPassTrailing);
        }
        if opt[6] != 0 {
            return pass(stats, Counter::DnsPassEdns);
        }
        let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
        if rest != OPT_LEN + rdlen {
            return pass(stats, Counter::DnsPassEdns);
        }
        let mut o = 0usize;
        for _ in 0..16 {
            if o >= rdlen {
                break;
            }
            let Some(op) = load::<[u8; 4]>(ctx, opt_at + OPT_LEN + o) else { break };
            if u16::from_be_bytes([op[0], op[1]]) == OPT_NSID {
                return pass(stats, Counter::DnsPassEdns);
            }
            o += 4 + u16::from_be_bytes([op[2], op[3]]) as usize;
        }
        if o != rdlen {
            return pass(stats, Counter::DnsPassEdns);
        }
        edns = true;
        do_bit = opt[7] & 0x80 != 0;
        let size = u16::from_be_bytes([opt[3], opt[4]]) as usize;
        limit = if size < 512 {
            512
        } else if size > DNS_EDNS_UDP_SIZE as usize {
            DNS_EDNS_UDP_SIZE as usize
        } else {
            size
        };
    } else if dns_len != after_q {
        return pass(stats, Counter::DnsPassTrailing);
    }

    // Lookup key: the name's keyed hash (a suffix's is computed only if the walk up to
    // the zone needs it). The question's checksum is summed on the way (as sent: the
    // answer echoes it).
    let tag = (block_idx << 8) | (block.generation & 0xff);
    let labels = measure.labels;
    scratch.key.tag = tag;
    if hash_name_words(name_len as u32) != 0 {
        return pass(stats, Counter::DnsPassUnknown);
    }
    let scratch = unsafe { &mut *scratch_ptr };
    scratch.key.name = suffix_key(scratch, 0, name_len);
    // The name's checksum as sent: its whole words (read at offsets of the length's
    // parity) and the partial word at its start (even offset).
    let words = csum::fold(scratch.name_sum);
    let head = csum::fold(lanes(raw_word(scratch, 0, name_len % 8))).swap_bytes();
    let mut qsum = head as u64 + if name_len & 1 == 1 { words } else { words.swap_bytes() } as u64;
    for (j, b) in q.iter().enumerate() {
        qsum = csum::add_byte(qsum, name_len + j, *b);
    }
    // The exact question first; markers ("other types", zones) are keys of their own
    // kind with qtype 0, out of reach of any qtype a client sends.
    let key = &mut scratch.key;
    key.tag = DNS_KIND_ANSWER | tag;
    key.qclass = qclass;
    key.qtype = qtype;

    let named = may_hold(&key.name);
    if !named {
        stats.inc(Counter::DnsUnknownName);
    }
    let mut found = if named { DNS_TABLE.get_ptr(&*key) } else { None };
    let exact = found.is_some();
    if found.is_none() && named {
        key.tag = DNS_KIND_OTHER | tag;
        key.qtype = 0;
        found = DNS_TABLE.get_ptr(&*key);
    }
    if found.is_none() {
        // Walk up the suffixes, looking each up as a zone or delegation.
        let key = &mut scratch.key;
        key.tag = DNS_KIND_ZONE | tag;
        key.qtype = 0;
        let mut walk = Walk { labels, len: name_len as u32, found: 0 };
        unsafe { bpf_loop(MAX_WALK as u32, walk_up as *mut _, &mut walk as *mut _ as *mut _, 0) };
        if walk.found != 0 {
            // The key now holds the suffix that matched.
            found = DNS_TABLE.get_ptr(&scratch.key);
        }
    }
    let Some(mut ans) = found else { return pass(stats, Counter::DnsPassUnknown) };
    let opt_len = if edns { OPT_LEN } else { 0 };
    if unsafe { (*ans).action } & DNS_ACTION_SIGNED != 0 {
        // A signed zone's entry answers DO=0; DO=1 takes the exact question's signed
        // answer (none for denials: the server writes their proofs).
        if do_bit {
            if !exact {
                return pass(stats, Counter::DnsPassSigned);
            }
            let scratch = unsafe { &mut *scratch_ptr };
            scratch.key.tag = DNS_KIND_ANSWER_DO | tag;
            match DNS_TABLE.get_ptr(&scratch.key) {
                Some(d) => ans = d,
                None => return pass(stats, Counter::DnsPassSigned),
            }
        }
        // Over the client's size (or stored truncated), the server truncates it as Knot
        // does, keeping the RRsets that fit.
        let a = unsafe { &*ans };
        if a.flags & TC != 0 || DNS_HLEN + name_len + 4 + a.tail_len as usize + opt_len > limit {
            return pass(stats, Counter::DnsPassSigned);
        }
    }
    let ans: &DnsAnswer = unsafe { &*ans };
    if ans.tail_len as usize > DNS_TAIL_MAX {
        // Only a controller bug writes this; say so in its log and let the server answer.
        error!(ctx, "DNS_TABLE entry with tail_len {} > {}", ans.tail_len, DNS_TAIL_MAX);
        return pass(stats, Counter::DnsPassUnknown);
    }
    if ans.action & !DNS_ACTION_SIGNED != DNS_ACTION_ANSWER {
        return pass(stats, Counter::DnsPassTableSays);
    }

    let mut slip = false;
    if block.rrl_cost_ns != 0 {
        match rrl::rate_limit(pkt, block_idx, block.rrl_cost_ns) {
            rrl::DROP => return drop(stats, Counter::DnsRrlDropped),
            rrl::SLIP => slip = true,
            _ => {}
        }
    }

    // Size the answer; over the client's limit it becomes TC=1 with no records.
    let qlen = name_len + 4;
    let mut tail_len = ans.tail_len as usize;
    let (mut out_flags, mut out_an, mut out_ns, mut out_ar) = (ans.flags, ans.ancount, ans.nscount, ans.arcount);
    if slip || DNS_HLEN + qlen + tail_len + opt_len > limit {
        tail_len = 0;
        out_an = 0;
        out_ns = 0;
        out_ar = 0;
        out_flags |= TC;
        if slip {
            out_flags = QR | TC;
        }
    }
    out_flags |= flags & RD;
    if edns {
        out_ar += 1;
    }
    let resp_len = DNS_HLEN + qlen + tail_len + opt_len;
    if !frame::resize(ctx, dns + DNS_HLEN + qlen, dns + resp_len) {
        // The bucket was charged above for this answer: the server's is not charged again.
        return pass(stats, Counter::DnsPassNoRoom) | PASS_CHARGED;
    }

    let tail_at = dns + DNS_HLEN + qlen;
    let tl = tail_len & 0x7ff;
    if tl > 0 && store_tail(ctx, tag, ans.tail_ref, tail_at as u32, tl as u32) != 0 {
        return drop(stats, Counter::DnsDropTailGone);
    }
    let mut opt = [0u8, 0, 41, (DNS_EDNS_UDP_SIZE >> 8) as u8, DNS_EDNS_UDP_SIZE as u8, 0, 0, 0, 0, 0, 0];
    if do_bit {
        opt[7] = 0x80;
    }
    let opt_at = tail_at + tl;
    if edns && packet::store_bytes(ctx, opt_at as u32, opt.as_mut_ptr() as *mut _, OPT_LEN as u32) != 0 {
        return xdp_action::XDP_ABORTED;
    }
    let mut out_hdr = [0u8; 10];
    out_hdr[0..2].copy_from_slice(&out_flags.to_be_bytes());
    out_hdr[2..4].copy_from_slice(&1u16.to_be_bytes());
    out_hdr[4..6].copy_from_slice(&out_an.to_be_bytes());
    out_hdr[6..8].copy_from_slice(&out_ns.to_be_bytes());
    out_hdr[8..10].copy_from_slice(&out_ar.to_be_bytes());
    if packet::store_bytes(ctx, (dns + 2) as u32, out_hdr.as_mut_ptr() as *mut _, 10) != 0 {
        return xdp_action::XDP_ABORTED;
    }

    // UDP checksum over the answer, from parts: pseudo-header, UDP and DNS headers, the
    // echoed question (summed above), the compiled tail (pre-summed), the OPT record.
    let udp_out = (UDP_HLEN + resp_len) as u16;
    // Pseudo-header, then the UDP length once more as a header field.
    let mut sum = frame::pseudo_sum(pkt, 17, udp_out) + udp_out as u64;
    sum += u16::from_be(pkt.dport_be) as u64; // the new source port
    sum += u16::from_be(pkt.sport_be) as u64; // the new destination port
    sum += u16::from_be_bytes([hdr[0], hdr[1]]) as u64;
    sum += out_flags as u64 + 1 + out_an as u64 + out_ns as u64 + out_ar as u64;
    sum += qsum;
    if tl > 0 {
        sum = csum::add_run(sum, qlen, ans.tail_csum as u64);
    }
    if edns {
        for (k, b) in opt.iter().enumerate() {
            sum = csum::add_byte(sum, qlen + tl + k, *b);
        }
    }

    if rewrite_headers(ctx, pkt, udp_out, csum::finish_udp(sum)) != 0 {
        return xdp_action::XDP_ABORTED;
    }
    stats.inc(if slip {
        Counter::DnsRrlSlipped
    } else if out_flags & TC != 0 {
        Counter::DnsTruncated
    } else {
        match out_flags & 0xf {
            0 => Counter::DnsAnsweredNoerror,
            3 => Counter::DnsAnsweredNxdomain,
            _ => Counter::DnsAnsweredOther,
        }
    });
    xdp_action::XDP_TX
}

/// Turns the query's Ethernet and IP headers around (shared with the HTTP responder)
/// and writes the answer's UDP header; 0 on success.
#[inline(never)]
fn rewrite_headers(ctx: &XdpContext, pkt: &Packet, udp_len: u16, udp_csum: u16) -> u32 {
    if frame::turn_ip_around(ctx, pkt, udp_len) != 0 {
        return 1;
    }
    // Direct packet access: IPv4 without options or IPv6 (answer refuses the rest).
    let l4 = pkt.l4;
    if l4 > frame::MAX_L3 + 40 {
        return 1;
    }
    let Some(udp) = ptr_at::<[u8; 8]>(ctx, l4) else { return 1 };
    let udp = unsafe { &mut *(udp as *mut [u8; 8]) };
    udp.swap(0, 2);
    udp.swap(1, 3);
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&udp_csum.to_be_bytes());
    0
}
