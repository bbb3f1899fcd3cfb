//! HTTP answered in XDP with no per-connection state: SYNs get a SYN-ACK whose sequence
//! number is pop's own SYN cookie (`pop_common::SynCookie`); the data segment that
//! verifies as the connection's first is parsed as an HTTP/1.x GET/HEAD request (request
//! line and Host in that segment) and answered by one segment carrying the whole
//! response and FIN. Later segments of the connection also verify: their data is dropped
//! (it was answered already), and the client's FIN is acknowledged, closing it. Forged
//! segments and everything else are dropped and counted. A retransmitted request simply
//! gets the same answer again.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_ktime_get_coarse_ns, bpf_loop, bpf_probe_read_kernel},
    programs::XdpContext,
};
use pop_common::{
    CookieCheck, Counter, HTTP_HOST_LEN, HTTP_PATH_BAD_REQUEST, HTTP_PATH_DEFAULT, HTTP_PATH_LEN, HTTP_PREFIX_MAX, HTTP_REQUEST_MAX,
    HTTP_RESPONSE_MAX, HTTP_SUFFIX_MAX, HTTP_TARGET_MAX, HttpResponse, HttpSiteRoutes, SYN_COOKIE_WINDOW_SHIFT, SynCookie,
};

use crate::{
    counters::Stats,
    csum, frame, latency,
    maps::{HTTP_ROUTE_STATS, HTTP_ROUTES, HTTP_SCRATCH, HTTP_SITE_ROUTES, HTTP_SYN_SECRET},
    packet,
    parse::Packet,
    secret,
    verdict::drop,
};

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
/// ECN negotiation bits a SYN may carry (RFC 3168).
const ECE_CWR: u8 = 0xc0;
const IPPROTO_TCP: u8 = 6;
const WINDOW: u16 = 65535;

/// What the reply needs of the received segment (its headers are in HTTP_SCRATCH).
type Seg = crate::maps::HttpSeg;

/// `handle`'s results for a verified segment that gets an answer, left in
/// `HttpScratch::seg`: the dispatcher calls [`reply`], so the answering frames do not
/// stack on the handler's (the verifier allows 512 bytes for the whole call chain).
/// The first segment with data (the site in the low 16 bits): [`respond`].
pub const RESPOND: u32 = 1 << 28;
/// The first segment is a FIN without a request: [`fin_ack`].
pub const FIN_ACK: u32 = 1 << 27;
/// The client's FIN after our answer: [`close_ack`].
pub const CLOSE_ACK: u32 = 1 << 26;
/// Any of them.
pub const REPLY: u32 = RESPOND | FIN_ACK | CLOSE_ACK;

/// The dispatcher's second half of `handle` (its result is `code`, see [`REPLY`]).
#[inline(always)]
pub fn reply(ctx: &XdpContext, stats: &Stats, pkt: &Packet, code: u32) -> u32 {
    if code & RESPOND != 0 {
        respond(ctx, stats, pkt, code & 0xffff)
    } else if code & FIN_ACK != 0 {
        fin_ack(ctx, stats, pkt)
    } else {
        close_ack(ctx, stats, pkt)
    }
}

/// A TCP segment to port `port` of a VIP of HTTP site `site`.
#[inline(never)]
pub fn handle(ctx: &XdpContext, stats: &Stats, pkt: &Packet, site: u32) -> u32 {
    stats.inc(Counter::HttpSegments);
    // The shared reply builder keeps the IPv4 header's length: options (source routes,
    // record route, ...) would be reflected back to the client.
    if !pkt.v6 && pkt.l4 - pkt.l3 != 20 {
        return drop(stats, Counter::HttpDropIpOptions);
    }
    let Some(sc) = scratch() else { return drop(stats, Counter::HttpDropMalformed) };
    let Some(seg) = read_segment(ctx, pkt, sc) else { return drop(stats, Counter::HttpDropMalformed) };
    if seg.flags & RST != 0 {
        return drop(stats, Counter::HttpDropRst);
    }
    if seg.flags & SYN != 0 {
        // Only a plain SYN (ECN bits allowed) opens a connection: SYN|FIN, SYN|ACK,
        // SYN|URG, SYN|PSH and SYNs carrying data are scans or forgeries.
        if seg.flags & !(SYN | ECE_CWR) != 0 || seg.payload_len != 0 {
            return drop(stats, Counter::HttpDropMalformed);
        }
        // Every response fits HTTP_RESPONSE_MAX (checked at config time): a client
        // asking for a smaller MSS cannot be served without splitting the answer,
        // which takes state.
        let (mss, syn_ts) = syn_options(sc, seg.tcp_len);
        if mss.is_some_and(|mss| (mss as usize) < HTTP_RESPONSE_MAX) {
            return drop(stats, Counter::HttpDropSmallMss);
        }
        // Our MSS: what the client offers (RFC 9293's default without the option), at
        // most what an Ethernet MTU carries.
        let most = if pkt.v6 { 1440 } else { 1460 };
        let ours = match mss {
            Some(m) if m < most => m,
            Some(_) => most,
            None => 536,
        };
        // Timestamps, for the client's round trip (see `latency`): echoed when the SYN
        // offers them and the client's MSS leaves room for the 12 option bytes every
        // later segment of ours then carries beside a whole response.
        let ts = syn_ts && mss.is_some_and(|m| m as usize >= HTTP_RESPONSE_MAX + TS_OPTION_LEN);
        let Some(isn) = syn_isn(pkt, &seg) else { return drop(stats, Counter::HttpDropMalformed) };
        return syn_ack(ctx, stats, pkt, &seg, isn as u64 | (ours as u64) << 32 | (ts as u64) << 48);
    }
    if seg.flags & ACK == 0 {
        return drop(stats, Counter::HttpDropMalformed);
    }
    if seg.payload_len == 0 && seg.flags & FIN == 0 {
        return drop(stats, Counter::HttpDropBareAck);
    }
    match verify(pkt, &seg) {
        FIRST if seg.payload_len == 0 => {
            sc.seg = seg;
            FIN_ACK
        }
        FIRST => {
            sc.seg = seg;
            RESPOND | (site & 0xffff)
        }
        // The client's FIN after our answer (with the rest of its request, maybe):
        // acknowledged, so its socket closes at once.
        LATER if seg.flags & FIN != 0 => {
            sc.seg = seg;
            CLOSE_ACK
        }
        // The rest of a request answered from its first segment: never answered again.
        LATER => drop(stats, Counter::HttpDropLater),
        _ => drop(stats, Counter::HttpDropCookie),
    }
}

// `verify`'s results (plain integers across the call).
const FIRST: u32 = 0;
const LATER: u32 = 1;
const FORGED: u32 = 2;

/// Checks `seg` against its connection's cookie of this time window, else the previous
/// one's. A call of its own: the hash state stays off the stack of the answer path.
#[inline(never)]
fn verify(pkt: &Packet, seg: &Seg) -> u32 {
    for back in 0..2u64 {
        let Some(cookie) = cookie(pkt, seg, back) else { return FORGED };
        match cookie.check(seg.seq, seg.ack, SENT_MAX) {
            CookieCheck::First => return FIRST,
            CookieCheck::Later => return LATER,
            CookieCheck::Forged => {}
        }
    }
    FORGED
}

/// Most bytes of sequence space we send after the SYN-ACK: a response and FIN.
const SENT_MAX: u32 = HTTP_RESPONSE_MAX as u32 + 1;

/// The cookie of `seg`'s connection in the current time window, or `back` windows ago.
#[inline(always)]
fn cookie(pkt: &Packet, seg: &Seg, back: u64) -> Option<SynCookie> {
    let key = secret::key(&HTTP_SYN_SECRET)?;
    // Windows of 2^36 ns (69 s): the coarse clock (a jiffy behind at most, no
    // clocksource read) names the same window as the precise one.
    let window = (unsafe { bpf_ktime_get_coarse_ns() } >> SYN_COOKIE_WINDOW_SHIFT).wrapping_sub(back);
    Some(SynCookie::new(key, &pkt.src, &pkt.dst, u32::from_be_bytes(seg.ports), window))
}

#[inline(always)]
fn read_segment(ctx: &XdpContext, pkt: &Packet, sc: &mut crate::maps::HttpScratch) -> Option<Seg> {
    let mut seg = Seg { ports: [0; 4], tcp_len: 0, payload_len: 0, seq: 0, ack: 0, flags: 0 };
    let ip_len;
    if pkt.v6 {
        if packet::load_bytes(ctx, pkt.l3 as u32, sc.ip6.as_mut_ptr() as *mut _, 40) != 0 {
            return None;
        }
        ip_len = u16::from_be_bytes([sc.ip6[4], sc.ip6[5]]) as usize + 40;
    } else {
        if packet::load_bytes(ctx, pkt.l3 as u32, sc.ip4.as_mut_ptr() as *mut _, 20) != 0 {
            return None;
        }
        ip_len = u16::from_be_bytes([sc.ip4[2], sc.ip4[3]]) as usize;
    }
    if packet::load_bytes(ctx, pkt.l4 as u32, sc.tcp.as_mut_ptr() as *mut _, 20) != 0 {
        return None;
    }
    let tcp_len = ((sc.tcp[12] >> 4) as usize) * 4;
    let ip_hdr = pkt.l4 - pkt.l3;
    if tcp_len < 20 || ip_len < ip_hdr + tcp_len {
        return None;
    }
    if tcp_len > 20 && packet::load_bytes(ctx, pkt.l4 as u32, sc.tcp.as_mut_ptr() as *mut _, (tcp_len & 0x3f) as u32) != 0 {
        return None;
    }
    let t = &sc.tcp;
    seg.ports = [t[0], t[1], t[2], t[3]];
    seg.tcp_len = tcp_len;
    seg.payload_len = ip_len - ip_hdr - tcp_len;
    seg.seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    seg.ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    seg.flags = t[13];
    // Kept in scratch, not in `seg`: flags in map memory do not multiply the states the
    // verifier walks the answer paths with.
    sc.ts.has = (tcp_len >= 32 && t[20] == 1 && t[21] == 1 && t[22] == 8 && t[23] == 10) as u32;
    sc.ts.val = u32::from_be_bytes([t[24], t[25], t[26], t[27]]);
    sc.ts.ecr = u32::from_be_bytes([t[28], t[29], t[30], t[31]]);
    Some(seg)
}

/// Bytes of the timestamp option with its two NOPs of padding.
const TS_OPTION_LEN: usize = 12;

/// `HttpScan::found` bits of `scan_options`.
const FOUND_MSS: u32 = 1;
const FOUND_TS: u32 = 2;

/// The MSS option of the SYN in scratch (TCP header of `tcp_len` bytes), if it has one,
/// and whether it offers timestamps (its TSval left in `scan.ts`). A bpf_loop, so the
/// verifier checks the option walk once, not once per position.
#[inline(always)]
fn syn_options(sc: &mut crate::maps::HttpScratch, tcp_len: usize) -> (Option<u16>, bool) {
    // Linux's SYN, read in place: MSS, SACK permitted, timestamps, NOP, window scale.
    let t = &sc.tcp;
    if tcp_len == 40 && t[20] == 2 && t[21] == 4 && t[24] == 4 && t[25] == 2 && t[26] == 8 && t[27] == 10 {
        sc.scan.ts = u32::from_be_bytes([t[28], t[29], t[30], t[31]]);
        return (Some(u16::from_be_bytes([t[22], t[23]])), true);
    }
    // Volatile: the loop body writes scratch through a pointer of its own, which the
    // compiler cannot see from here (it would keep or drop these as it likes).
    unsafe {
        core::ptr::write_volatile(&mut sc.scan.pos, 20);
        core::ptr::write_volatile(&mut sc.scan.n, tcp_len as u32);
        core::ptr::write_volatile(&mut sc.scan.found, 0);
        bpf_loop(40, scan_options as *mut _, core::ptr::null_mut(), 0);
        let found = core::ptr::read_volatile(&sc.scan.found);
        let mss = if found & FOUND_MSS != 0 { Some(core::ptr::read_volatile(&sc.scan.end) as u16) } else { None };
        (mss, found & FOUND_TS != 0)
    }
}

/// One TCP option: notes MSS (value in `end`) and timestamps (TSval in `ts`); stops at
/// the end of the list or a malformed length.
extern "C" fn scan_options(_i: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(sc) = scratch() else { return 1 };
    let i = sc.scan.pos as usize;
    let n = sc.scan.n as usize;
    if i >= n || i >= 60 {
        return 1;
    }
    let at = |k: usize| sc.tcp[(i + k) % 60];
    match at(0) {
        0 => return 1,
        1 => sc.scan.pos += 1,
        kind => {
            let len = at(1) as usize;
            if i + 2 > n || len < 2 {
                return 1;
            }
            if kind == 2 && len == 4 && i + 4 <= n {
                sc.scan.end = u16::from_be_bytes([at(2), at(3)]) as u32;
                sc.scan.found |= FOUND_MSS;
            }
            if kind == 8 && len == 10 && i + 10 <= n {
                sc.scan.ts = u32::from_be_bytes([at(2), at(3), at(4), at(5)]);
                sc.scan.found |= FOUND_TS;
            }
            sc.scan.pos += len as u32;
        }
    }
    0
}

/// Our timestamp option at `th[at..at + 12]`: NOP, NOP, TS with `tsval` and `echo`.
/// The SYN-ACK's TSval is our clock (or 0, see `syn_ack`); every later segment repeats
/// it (the client's TSecr gives it back): RFC 7323 asks TSval never to go backwards, and
/// only our SYN-ACK's TSval measures anything, so no later segment reads the clock.
#[inline(always)]
fn timestamps(th: &mut [u8], at: usize, tsval: u32, echo: u32) {
    th[at] = 1;
    th[at + 1] = 1;
    th[at + 2] = 8;
    th[at + 3] = 10;
    th[at + 4..at + 8].copy_from_slice(&tsval.to_be_bytes());
    th[at + 8..at + 12].copy_from_slice(&echo.to_be_bytes());
}

/// Our ISN for the SYN `seg`: its cookie. A call of its own, like `verify`.
#[inline(never)]
fn syn_isn(pkt: &Packet, seg: &Seg) -> Option<u32> {
    Some(cookie(pkt, seg, 0)?.isn(seg.seq))
}

/// SYN-ACK with our ISN (low half of `isn_mss`, see `syn_isn`) and MSS (high half):
/// one argument, as BPF passes at most five.
#[inline(never)]
fn syn_ack(ctx: &XdpContext, stats: &Stats, pkt: &Packet, seg: &Seg, isn_mss_ts: u64) -> u32 {
    let (isn, mss) = (isn_mss_ts as u32, (isn_mss_ts >> 32) as u16);
    let mss_option = |th: &mut [u8]| {
        th[20] = 2;
        th[21] = 4;
        th[22..24].copy_from_slice(&mss.to_be_bytes());
    };
    // One buffer for both shapes: the verifier's stack budget is 512 bytes for the
    // whole call chain.
    let mut th = [0u8; 36];
    if isn_mss_ts >> 48 != 0 {
        let Some(sc) = scratch() else { return drop(stats, Counter::HttpDropMalformed) };
        let echo = sc.scan.ts;
        header(&mut th, seg, isn, seg.seq.wrapping_add(1), SYN | ACK, 9);
        mss_option(&mut th);
        // The connections sampled for a round trip (drawn here, so a SYN flood does
        // not read the clock) get our clock as TSval; the others 0, which the client
        // echoes back as a TSecr measuring nothing. Both are valid: RFC 7323 only asks
        // that TSval not go backwards, and every later segment repeats this one.
        let tsval = if latency::sampled() { latency::now_us() | 1 } else { 0 };
        timestamps(&mut th, 24, tsval, echo);
        return send_segment(ctx, stats, pkt, &mut th, Counter::HttpSynAnswered);
    }
    header(&mut th, seg, isn, seg.seq.wrapping_add(1), SYN | ACK, 6);
    mss_option(&mut th);
    // SAFETY: the first 24 bytes of `th`, as an array of that length.
    send_segment(ctx, stats, pkt, unsafe { &mut *(th.as_mut_ptr() as *mut [u8; 24]) }, Counter::HttpSynAnswered)
}

/// Checksums `th` (a whole TCP segment without payload) and sends it back in place of
/// the received one.
#[inline(always)]
fn send_segment<const N: usize>(ctx: &XdpContext, stats: &Stats, pkt: &Packet, th: &mut [u8; N], counter: Counter) -> u32 {
    let sum = add_words(frame::pseudo_sum(pkt, IPPROTO_TCP, N as u16), th);
    let c = !csum::fold(sum);
    th[16..18].copy_from_slice(&c.to_be_bytes());
    if !frame::resize(ctx, pkt.l4, pkt.l4 + N)
        || frame::turn_ip_around(ctx, pkt, N as u16) != 0
        || packet::store_bytes(ctx, pkt.l4 as u32, th.as_mut_ptr() as *mut _, N as u32) != 0
    {
        return drop(stats, Counter::HttpDropNoRoom);
    }
    stats.inc(counter);
    xdp_action::XDP_TX
}

/// A 20-byte TCP header from our side of the connection in `seg`.
#[inline(always)]
fn header(th: &mut [u8], seg: &Seg, seq: u32, ack: u32, flags: u8, words: u8) {
    th[0..2].copy_from_slice(&seg.ports[2..4]);
    th[2..4].copy_from_slice(&seg.ports[0..2]);
    th[4..8].copy_from_slice(&seq.to_be_bytes());
    th[8..12].copy_from_slice(&ack.to_be_bytes());
    th[12] = words << 4;
    th[13] = flags;
    th[14..16].copy_from_slice(&WINDOW.to_be_bytes());
}

#[inline(always)]
fn add_words(mut sum: u64, b: &[u8]) -> u64 {
    let mut i = 0;
    while i + 1 < b.len() {
        sum += ((b[i] as u64) << 8) | b[i + 1] as u64;
        i += 2;
    }
    sum
}

/// Our FIN and the ACK of the client's, for a verified FIN that carried no request
/// (at most 5 arguments: BPF passes no more in registers).
#[inline(never)]
fn fin_ack(ctx: &XdpContext, stats: &Stats, pkt: &Packet) -> u32 {
    let Some(sc) = scratch() else { return drop(stats, Counter::HttpDropMalformed) };
    let seg = sc.seg;
    control_segment(ctx, stats, pkt, &seg, seg.ack, seg.seq.wrapping_add(1), FIN | ACK, Counter::HttpFinAcked)
}

/// A segment without data in answer to `seg`, with our timestamps when `seg` has them
/// (RFC 7323: once negotiated, every segment carries them; see `HttpScratch::ts`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn control_segment(ctx: &XdpContext, stats: &Stats, pkt: &Packet, seg: &Seg, seq: u32, ack: u32, flags: u8, counter: Counter) -> u32 {
    let Some(sc) = scratch() else { return drop(stats, Counter::HttpDropMalformed) };
    // Built in scratch, off the verifier's 512 bytes of stack (see `respond`).
    let (has_ts, tsval, echo) = (sc.ts.has != 0, sc.ts.ecr, sc.ts.val);
    let th = &mut sc.reply;
    *th = [0u8; 20 + TS_OPTION_LEN];
    if has_ts {
        header(th, seg, seq, ack, flags, 8);
        timestamps(th, 20, tsval, echo);
        send_segment(ctx, stats, pkt, th, counter)
    } else {
        header(th, seg, seq, ack, flags, 5);
        // SAFETY: the first 20 bytes of `th`, as an array of that length.
        send_segment(ctx, stats, pkt, unsafe { &mut *(th.as_mut_ptr() as *mut [u8; 20]) }, counter)
    }
}

/// The ACK of a verified FIN after our answer (and of any data with it): nothing more
/// will come from us, so this ends the client's connection.
#[inline(never)]
fn close_ack(ctx: &XdpContext, stats: &Stats, pkt: &Packet) -> u32 {
    let Some(sc) = scratch() else { return drop(stats, Counter::HttpDropMalformed) };
    let seg = sc.seg;
    control_segment(ctx, stats, pkt, &seg, seg.ack, seg.seq.wrapping_add(seg.payload_len as u32 + 1), ACK, Counter::HttpFinClosed)
}

// ---- request parsing (bpf_loop bodies) ---------------------------------------------------

/// The scan state and request bytes, for the loop bodies.
#[inline(always)]
fn scratch() -> Option<&'static mut crate::maps::HttpScratch> {
    HTTP_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Target bytes examined per call of `scan_target` and `sum_target`: a call costs
/// more than the few instructions a byte takes.
const BYTES_PER_CALL: u32 = 16;

/// Finds the end of the request target (and of its path, before '?'): bytes
/// `i * BYTES_PER_CALL ..` of it.
extern "C" fn scan_target(i: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(sc) = scratch() else { return 1 };
    let s = &mut sc.scan;
    for j in 0..BYTES_PER_CALL {
        let pos = (s.start + i * BYTES_PER_CALL + j) as usize;
        if pos >= s.n as usize {
            return 1;
        }
        let b = sc.req[pos & (HTTP_REQUEST_MAX - 1)];
        if b == b'?' && s.path_end == 0 {
            s.path_end = pos as u32;
        }
        if b == b' ' {
            s.end = pos as u32;
            if s.path_end == 0 {
                s.path_end = pos as u32;
            }
            s.found = 1;
            return 1;
        }
        if !(0x21..=0x7e).contains(&b) {
            return 1; // control bytes or non-ASCII in the target: bad request
        }
    }
    0
}

/// Words examined per call of `scan_header` while it looks for a line's end.
const WORDS_PER_CALL: usize = 8;
/// Host value bytes examined per call of `scan_header`.
const HOST_BYTES_PER_CALL: usize = 16;

/// Offset of the first '\n' in the 8 bytes of `w` (little-endian), or 8.
#[inline(always)]
fn first_newline(w: u64) -> usize {
    let x = w ^ 0x0a0a_0a0a_0a0a_0a0a;
    // High bit of each zero byte of x; bytes above the first zero may be flagged too
    // (borrows), the lowest flag is always a real one.
    let t = x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080;
    if t == 0 {
        return 8;
    }
    let lowest = (t & t.wrapping_neg()) >> 7;
    (lowest.wrapping_mul(0x0001_0203_0405_0607) >> 56) as usize
}

/// The header section, from `pos`: at a line's start, the empty line (done) or a Host
/// header; in a Host value, its bytes (the value ends at CR, ':', ' ' or LF; leading
/// blanks skipped); anywhere else only the next LF matters, found a word at a time.
/// The last byte of the request is never examined (CR LF needs two).
extern "C" fn scan_header(_i: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(sc) = scratch() else { return 1 };
    let h = &mut sc.scan;
    let req = &sc.req;
    let n = h.n as usize;
    let mut pos = h.pos as usize;
    if pos + 1 >= n {
        return 1;
    }
    if h.in_host == 1 {
        for _ in 0..HOST_BYTES_PER_CALL {
            if pos + 1 >= n {
                return 1;
            }
            let b = req[pos & (HTTP_REQUEST_MAX - 1)];
            pos += 1;
            if (b == b' ' || b == b'\t') && h.host_len == 0 {
                continue;
            }
            if b == b'\r' || b == b':' || b == b' ' {
                h.in_host = 2; // the value ends (a port or trailing space is not part of it)
            } else {
                if h.host_len == 0 {
                    h.host_start = (pos - 1) as u32;
                }
                h.host_len += 1;
            }
            if b == b'\n' {
                h.line_start = 1;
                h.in_host = 2;
            }
            if h.in_host != 1 {
                break;
            }
        }
        h.pos = pos as u32;
        return 0;
    }
    if h.line_start != 0 {
        h.line_start = 0;
        let b = req[pos & (HTTP_REQUEST_MAX - 1)];
        if b == b'\r' && req[(pos + 1) & (HTTP_REQUEST_MAX - 1)] == b'\n' {
            h.done = 1;
            return 1;
        }
        let lower = |k: usize| req[(pos + k) & (HTTP_REQUEST_MAX - 1)] | 0x20;
        if pos + 5 <= n
            && lower(0) == b'h'
            && lower(1) == b'o'
            && lower(2) == b's'
            && lower(3) == b't'
            && req[(pos + 4) & (HTTP_REQUEST_MAX - 1)] == b':'
        {
            if h.in_host != 0 {
                h.dup_host = 1; // two Host headers: which one is meant is ambiguous (RFC 9112 3.2)
                return 1;
            }
            h.in_host = 1;
            h.pos += 5;
            return 0;
        }
    }
    for _ in 0..WORDS_PER_CALL {
        // SAFETY: pos is masked below HTTP_REQUEST_MAX and req has slack past it.
        let w = u64::from_le(unsafe { core::ptr::read_unaligned(req.as_ptr().add(pos & (HTTP_REQUEST_MAX - 1)) as *const u64) });
        let at = pos + first_newline(w);
        // Bytes from n - 1 on are not the request's to examine.
        if at + 1 >= n {
            return 1;
        }
        if at < pos + 8 {
            h.line_start = 1;
            h.pos = (at + 1) as u32;
            return 0;
        }
        pos += 8;
    }
    h.pos = pos as u32;
    0
}

/// Adds target bytes `i * BYTES_PER_CALL ..` (of `count`) to the checksum at their
/// place in the response.
extern "C" fn sum_target(i: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(sc) = scratch() else { return 1 };
    for j in 0..BYTES_PER_CALL {
        let k = i * BYTES_PER_CALL + j;
        if k >= sc.scan.count {
            return 1;
        }
        let b = sc.req[((sc.scan.start + k) as usize) & (HTTP_REQUEST_MAX - 1)];
        sc.scan.sum = csum::add_byte(sc.scan.sum, (sc.scan.parity + k) as usize, b);
    }
    0
}

/// Answers the verified first segment `handle` left in scratch (see [`REPLY`]): parses
/// the request, picks the response, sends it with FIN; when the client echoes a TSval of
/// our clock (one SYN-ACK in `pop.client_rtt_sample`), also measures its round trip.
#[inline(never)]
fn respond(ctx: &XdpContext, stats: &Stats, pkt: &Packet, site: u32) -> u32 {
    match answer(ctx, stats, pkt, site) {
        // TSecr is the TSval of our SYN-ACK: this segment came one client round trip (and
        // its turn-around) after it.
        xdp_action::XDP_TX => match scratch() {
            Some(sc) if sc.ts.has != 0 && sc.ts.ecr != 0 => xdp_action::XDP_TX | latency::measured(latency::now_us().wrapping_sub(sc.ts.ecr)),
            _ => xdp_action::XDP_TX,
        },
        v => v,
    }
}

/// The request in scratch parsed and answered.
#[inline(always)]
fn answer(ctx: &XdpContext, stats: &Stats, pkt: &Packet, site: u32) -> u32 {
    let Some(sc) = HTTP_SCRATCH.get_ptr_mut(0) else { return drop(stats, Counter::HttpDropMalformed) };
    let sc = unsafe { &mut *sc };
    let payload_at = pkt.l4 + sc.seg.tcp_len;
    let n = sc.seg.payload_len;
    // A browser's first segment is a full MSS of headers and cookies: the request line
    // and Host come first, so the first HTTP_REQUEST_MAX bytes are all we parse.
    let take = core::hint::black_box(if n > HTTP_REQUEST_MAX { HTTP_REQUEST_MAX } else { n });
    let mut bad = take == 0 || take > HTTP_REQUEST_MAX || packet::load_bytes(ctx, payload_at as u32, sc.req.as_mut_ptr() as *mut _, take as u32) != 0;
    let head = !bad && sc.req[0] == b'H' && sc.req[1] == b'E' && sc.req[2] == b'A' && sc.req[3] == b'D' && sc.req[4] == b' ';
    let get = !bad && sc.req[0] == b'G' && sc.req[1] == b'E' && sc.req[2] == b'T' && sc.req[3] == b' ';
    let start = if head { 5 } else { 4 };
    sc.scan = crate::maps::HttpScan {
        n: take as u32,
        start,
        end: 0,
        path_end: 0,
        found: 0,
        pos: 0,
        line_start: 0,
        in_host: 0,
        host_start: 0,
        host_len: 0,
        done: 0,
        dup_host: 0,
        parity: 0,
        count: 0,
        ts: 0,
        sum: 0,
    };
    if (head || get) && sc.req[start as usize] == b'/' {
        unsafe { bpf_loop((HTTP_TARGET_MAX as u32 + 1).div_ceil(BYTES_PER_CALL), scan_target as *mut _, core::ptr::null_mut(), 0) };
        let v = sc.scan.end as usize;
        // " HTTP/1.0\r\n" or " HTTP/1.1\r\n" after the target.
        let at = |k: usize| sc.req[(v + k) & (HTTP_REQUEST_MAX - 1)];
        let version_ok = sc.scan.found != 0
            && v + 11 <= take
            && at(1) == b'H'
            && at(2) == b'T'
            && at(3) == b'T'
            && at(4) == b'P'
            && at(5) == b'/'
            && at(6) == b'1'
            && at(7) == b'.'
            && (at(8) == b'0' || at(8) == b'1')
            && at(9) == b'\r'
            && at(10) == b'\n';
        if version_ok {
            sc.scan.pos = (v + 11) as u32;
            sc.scan.line_start = 1;
            unsafe { bpf_loop(HTTP_REQUEST_MAX as u32, scan_header as *mut _, core::ptr::null_mut(), 0) };
        }
        // Answered from this segment when it holds the request line and one whole Host
        // header (the rest may follow in later segments), or the whole header section.
        let host_whole = sc.scan.in_host == 2 && sc.scan.host_len > 0;
        if !version_ok || sc.scan.dup_host != 0 || (sc.scan.done == 0 && !host_whole) {
            bad = true;
        }
    } else {
        bad = true;
    }

    // Key: host and path as sent (host lowercased), or a marker.
    let key = &mut sc.key;
    key.site = site;
    // Plain stores (LLVM writes them inline): a helper call per clear costs more.
    key.host = [0; HTTP_HOST_LEN];
    key.path = [0; HTTP_PATH_LEN];
    let target_start = sc.scan.start as usize;
    let target_len = (sc.scan.end as usize).saturating_sub(target_start);
    let path_len = (sc.scan.path_end as usize).saturating_sub(target_start);
    let mut found: Option<*const HttpResponse> = None;
    if bad {
        key.path[0] = HTTP_PATH_BAD_REQUEST;
        found = HTTP_ROUTES.get_ptr(&*key);
    } else {
        // Which lookups can match at all (no site entry: try them all).
        let (with_host, any_host) = match HTTP_SITE_ROUTES.get(site) {
            Some(r) => (HttpSiteRoutes::has(&r.with_host, path_len), HttpSiteRoutes::has(&r.any_host, path_len)),
            None => (true, true),
        };
        if path_len < HTTP_PATH_LEN && (with_host || any_host) {
            let src = unsafe { sc.req.as_ptr().add(target_start & (HTTP_REQUEST_MAX - 1)) };
            unsafe { bpf_probe_read_kernel(key.path.as_mut_ptr() as *mut _, (core::hint::black_box(path_len) & 0x7f) as u32, src as *const _) };
            let host_len = sc.scan.host_len as usize;
            if with_host && host_len > 0 && host_len < HTTP_HOST_LEN {
                let src = unsafe { sc.req.as_ptr().add(sc.scan.host_start as usize & (HTTP_REQUEST_MAX - 1)) };
                unsafe { bpf_probe_read_kernel(key.host.as_mut_ptr() as *mut _, (core::hint::black_box(host_len) & 0x3f) as u32, src as *const _) };
                for i in 0..HTTP_HOST_LEN {
                    if key.host[i].is_ascii_uppercase() {
                        key.host[i] += 32;
                    }
                }
                found = HTTP_ROUTES.get_ptr(&*key);
                if found.is_none() {
                    key.host = [0; HTTP_HOST_LEN];
                }
            }
            if found.is_none() && any_host {
                found = HTTP_ROUTES.get_ptr(&*key);
            }
        }
        if found.is_none() {
            key.path = [0; HTTP_PATH_LEN];
            key.path[0] = HTTP_PATH_DEFAULT;
            found = HTTP_ROUTES.get_ptr(&*key);
        }
    }
    let Some(resp) = found else { return drop(stats, Counter::HttpDropMalformed) };
    let resp = unsafe { &*resp };

    // Response: prefix, [target], suffix (less the body for HEAD).
    let prefix_len = resp.prefix_len as usize;
    let append = !bad && resp.append_path != 0;
    let tlen = if append { target_len & 0xff } else { 0 };
    let suffix_len = if head { (resp.suffix_len - resp.body_len) as usize } else { resp.suffix_len as usize };
    if prefix_len > HTTP_PREFIX_MAX || suffix_len > HTTP_SUFFIX_MAX {
        return drop(stats, Counter::HttpDropMalformed);
    }
    let resp_len = prefix_len + tlen + suffix_len;
    // With timestamps the header carries them (12 bytes); without, those bytes stay
    // zero and add nothing to the checksum.
    let ts = sc.ts.has != 0;
    let hdr_len = if ts { 20 + TS_OPTION_LEN } else { 20 };
    let tcp_len = hdr_len + resp_len;
    let fin = if sc.seg.flags & FIN != 0 { 1 } else { 0 };
    // The header is built in scratch, off the verifier's 512 bytes of stack.
    let th = &mut sc.reply;
    *th = [0u8; 20 + TS_OPTION_LEN];
    let seg = &sc.seg;
    header(th, seg, seg.ack, seg.seq.wrapping_add(n as u32).wrapping_add(fin), PSH | ACK | FIN, (hdr_len / 4) as u8);
    if ts {
        timestamps(th, 20, sc.ts.ecr, sc.ts.val);
    }
    let mut sum = frame::pseudo_sum(pkt, IPPROTO_TCP, tcp_len as u16);
    sum = add_words(sum, th);
    if prefix_len > 0 {
        sum = csum::add_run(sum, 0, resp.prefix_sum as u64);
    }
    if tlen > 0 {
        sc.scan.parity = prefix_len as u32;
        sc.scan.sum = 0;
        sc.scan.count = tlen as u32;
        unsafe { bpf_loop((tlen as u32).div_ceil(BYTES_PER_CALL), sum_target as *mut _, core::ptr::null_mut(), 0) };
        sum += sc.scan.sum;
    }
    if suffix_len > 0 {
        sum = csum::add_run(sum, prefix_len + tlen, if head { resp.head_sum } else { resp.suffix_sum } as u64);
    }
    let c = !csum::fold(sum);
    th[16..18].copy_from_slice(&c.to_be_bytes());

    let at = pkt.l4 + hdr_len;
    let stored = |ctx: &XdpContext, th: &[u8; 20 + TS_OPTION_LEN]| {
        if ts {
            packet::store_bytes(ctx, pkt.l4 as u32, th.as_ptr() as *mut _, (20 + TS_OPTION_LEN) as u32)
        } else {
            packet::store_bytes(ctx, pkt.l4 as u32, th.as_ptr() as *mut _, 20)
        }
    };
    if !frame::resize(ctx, pkt.l4, at + resp_len) || frame::turn_ip_around(ctx, pkt, tcp_len as u16) != 0 || stored(ctx, &sc.reply) != 0 {
        return drop(stats, Counter::HttpDropNoRoom);
    }
    // Each length is bounded right before its copy (black_box keeps LLVM from moving
    // the check away from the call), so the verifier sees the copy stays in the map value.
    let pl = core::hint::black_box(prefix_len);
    if pl > 0 && (pl > HTTP_PREFIX_MAX || packet::store_bytes(ctx, at as u32, resp.prefix.as_ptr() as *mut _, pl as u32) != 0) {
        return drop(stats, Counter::HttpDropNoRoom);
    }
    let tl = core::hint::black_box(tlen);
    if tl > 0
        && (tl > HTTP_TARGET_MAX
            || unsafe {
                packet::store_bytes(ctx, (at + prefix_len) as u32, sc.req.as_ptr().add(target_start & (HTTP_REQUEST_MAX - 1)) as *mut _, tl as u32)
            } != 0)
    {
        return drop(stats, Counter::HttpDropNoRoom);
    }
    let sl = core::hint::black_box(suffix_len);
    if sl > 0 && (sl > HTTP_SUFFIX_MAX || packet::store_bytes(ctx, (at + prefix_len + tlen) as u32, resp.suffix.as_ptr() as *mut _, sl as u32) != 0) {
        return drop(stats, Counter::HttpDropNoRoom);
    }
    let ok = true;
    if !ok {
        return drop(stats, Counter::HttpDropNoRoom);
    }
    if let Some(c) = HTTP_ROUTE_STATS.get_ptr_mut(resp.route) {
        unsafe { *c += 1 };
    }
    stats.inc(if bad { Counter::HttpBadRequest } else { Counter::HttpResponses });
    xdp_action::XDP_TX
}
