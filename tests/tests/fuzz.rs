//! Adversarial test: mutated Ethernet, IP, UDP/DNS and TCP/HTTP frames fed to the live
//! XDP program through BPF_PROG_TEST_RUN, with invariants checked on every output:
//!
//! - never XDP_ABORTED;
//! - every frame sent back (XDP_TX) or forwarded parses, with valid IP and L4 checksums
//!   and lengths;
//! - it answers only what it may: a DNS answer only to a UDP query (QR=0, QUERY) to a
//!   DNS VIP, an HTTP segment only to TCP to the HTTP VIP, a tunnelled packet only for
//!   the LB service, ICMP too-big only for it too;
//! - a DNS answer parses, is no larger than the client allowed, and equals the
//!   authoritative server's answer to the same query (rate-limit slips aside);
//! - full DNS answers to one client prefix stay within the rate limit.
//!
//! Bounded by POP_FUZZ_SECONDS (default 45) so CI stays short; `cargo xtask fuzz
//! --seconds N` runs longer.

use std::{
    collections::HashMap,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use pop_lab::{Host, Lab, frames, testrun};

const DNS_VIP: [u8; 4] = [203, 0, 113, 53];
const SERVER_VIP: &str = "203.0.113.54";
const HTTP_VIP: [u8; 4] = [203, 0, 113, 80];
const LB_VIP: [u8; 4] = [203, 0, 113, 10];
const RATE: u64 = 2000;

/// xorshift64*: deterministic, so a failing case can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn dns_query(id: u16, name: &str, qtype: u16, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, if edns.is_some() { 1 } else { 0 }]);
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0]);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some((size, dok)) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, if dok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    q
}

/// An IPv4 packet of `proto` from `src` to `dst` carrying `l4` as is, in an Ethernet frame.
fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    frames::ip4(src, dst, proto, &[], l4)
}

/// An ICMP fragmentation-needed from a router toward `vip`, quoting a packet the VIP
/// (a backend, through DSR) sent to the client on TCP `sport` -> `client_port`.
fn icmp_frag_needed(vip: [u8; 4], sport: u16, client_port: u16) -> Vec<u8> {
    let quoted = &frames::tcp4([192, 0, 2, 1], client_port, 7, 9, 0x10, &[])[14..];
    // The quoted header: from the VIP to the client (swap the addresses and ports).
    let mut q = quoted[..28].to_vec();
    q[12..16].copy_from_slice(&vip);
    q[16..20].copy_from_slice(&[192, 0, 2, 1]);
    q[20..22].copy_from_slice(&sport.to_be_bytes());
    q[22..24].copy_from_slice(&client_port.to_be_bytes());
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&q);
    let c = testrun::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ip4([192, 0, 2, 254], vip, 1, &icmp)
}

/// Valid frames of every kind to start mutating from.
fn seeds(cookie: u32) -> Vec<Vec<u8>> {
    let l2 = frames::L2::default();
    let vlan = frames::L2 { vlans: &[(0x8100, 7)] };
    let c = [192, 0, 2, 1];
    let c6: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let v6: [u8; 16] = "2001:db8:53::53".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let mut s = Vec::new();
    for (i, (name, t)) in [
        ("www.example.com", 1),
        ("Example.COM", 15),
        ("nope.example.com", 28),
        ("big.example.com", 16),
        ("alias.example.com", 1),
        ("x.wild.test", 1),
        ("id.server", 16),
    ]
    .iter()
    .enumerate()
    {
        s.push(frames::udp4(l2, c, DNS_VIP, 5300 + i as u16, 53, &[], &dns_query(i as u16, name, *t, None)));
        s.push(frames::udp4(vlan, c, DNS_VIP, 5400 + i as u16, 53, &[], &dns_query(i as u16, name, *t, Some((1232, true)))));
        s.push(frames::udp6(l2, c6, v6, 5500 + i as u16, 53, &dns_query(i as u16, name, *t, Some((4096, false)))));
    }
    s.push(frames::tcp4(HTTP_VIP, 40000, 1000, 0, 0x02, &[]));
    s.push(frames::tcp4(HTTP_VIP, 40000, 1001, cookie.wrapping_add(1), 0x18, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"));
    s.push(frames::tcp4(HTTP_VIP, 40000, 1001, cookie.wrapping_add(1), 0x19, b"HEAD /x?y=1 HTTP/1.0\r\n\r\n"));
    s.push(frames::tcp4(LB_VIP, 41000, 5, 0, 0x02, &[]));
    s.push(frames::udp4(l2, c, LB_VIP, 42000, 7, &[], b"echo"));
    s.push(frames::udp4(l2, c, [192, 0, 2, 2], 1, 9, &[], b"not a vip"));
    // Answers of 900-1400 bytes and a 70-address RRset (z.zone), meta and reserved qtypes
    // that once reached the table's internal entries.
    for (i, (name, t)) in
        [("t1100.z", 16), ("t1300.z", 16), ("a70.z", 1), ("example.com", 65535), ("www.example.com", 0), ("example.com", 250), ("z", 65280)]
            .iter()
            .enumerate()
    {
        s.push(frames::udp4(l2, c, DNS_VIP, 5600 + i as u16, 53, &[], &dns_query(i as u16, name, *t, Some((1232, false)))));
        s.push(frames::udp4(l2, c, DNS_VIP, 5700 + i as u16, 53, &[], &dns_query(i as u16, name, *t, None)));
    }
    // A browser-sized request over several segments: the first holds the request line
    // and Host, the next (no longer verifiable against the cookie) the rest.
    let cookies = format!("GET /a?b=c HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0\r\nCookie: {}", "k=v; ".repeat(180));
    s.push(frames::tcp4(HTTP_VIP, 40001, 1001, cookie.wrapping_add(1), 0x10, cookies.as_bytes()));
    s.push(frames::tcp4(HTTP_VIP, 40001, 1001 + cookies.len() as u32, cookie.wrapping_add(1), 0x18, b"x=y\r\n\r\n"));
    // IPIP to VIPs and elsewhere, with inner destinations that are not the PoP's.
    let inner = &frames::udp4(l2, c, [198, 51, 100, 77], 1, 53, &[], b"inner")[14..];
    for dst in [LB_VIP, DNS_VIP, [192, 0, 2, 2]] {
        s.push(ip4(c, dst, 4, inner));
    }
    // ICMP errors toward the LB VIP about a backend's reply, and toward the DNS VIP.
    s.push(icmp_frag_needed(LB_VIP, 80, 41000));
    s.push(icmp_frag_needed(DNS_VIP, 53, 41001));
    s
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        while f.len() < 14 {
            f.push(rng.next() as u8);
        }
        match rng.below(7) {
            0 | 1 => {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            2 => {
                let i = rng.below(f.len());
                f[i] = rng.next() as u8;
            }
            3 => {
                let keep = rng.below(f.len());
                f.truncate(keep.max(14));
            }
            4 => {
                for _ in 0..rng.below(64) {
                    f.push(rng.next() as u8);
                }
            }
            5 => {
                // Field-aware: poke the bytes where lengths, counts and flags live.
                let spots = [16, 17, 23, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53];
                let i = spots[rng.below(spots.len())];
                if i < f.len() {
                    f[i] = rng.next() as u8;
                }
            }
            _ => {
                let i = rng.below(f.len());
                let n = rng.below(8).min(f.len() - i);
                f.drain(i..i + n);
            }
        }
    }
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (so does a NIC).
    while f.len() < 14 {
        f.push(rng.next() as u8);
    }
    f
}

/// The server's answer to `query` (as a client on the PoP-facing side would get it).
fn server_answer(client: &Host, query: Vec<u8>) -> Result<Option<Vec<u8>>> {
    let server: SocketAddr = SocketAddr::new(SERVER_VIP.parse()?, 53);
    client.in_netns(move || -> Result<Option<Vec<u8>>> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_millis(300)))?;
        s.send_to(&query, server)?;
        let mut buf = [0u8; 65535];
        Ok(s.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec()))
    })?
}

/// What the input frame is, as far as the invariants care.
struct Input {
    proto: u8,
    dst4: Option<[u8; 4]>,
    v6_dns: bool,
    dport: u16,
    l4: Vec<u8>,
    src_prefix: Vec<u8>,
}

fn classify(f: &[u8]) -> Option<Input> {
    let (l3, et) = frames::l3_offset(f)?;
    let ip = f.get(l3..)?;
    match et {
        0x0800 if ip.len() >= 20 && ip[0] >> 4 == 4 => {
            let ihl = (ip[0] & 0xf) as usize * 4;
            let l4 = ip.get(ihl..)?.to_vec();
            let dport = if l4.len() >= 4 { u16::from_be_bytes([l4[2], l4[3]]) } else { 0 };
            Some(Input { proto: ip[9], dst4: Some([ip[16], ip[17], ip[18], ip[19]]), v6_dns: false, dport, l4, src_prefix: ip[12..15].to_vec() })
        }
        0x86dd if ip.len() >= 40 => {
            let l4 = ip[40..].to_vec();
            let dport = if l4.len() >= 4 { u16::from_be_bytes([l4[2], l4[3]]) } else { 0 };
            let dns6: [u8; 16] = "2001:db8:53::53".parse::<std::net::Ipv6Addr>().unwrap().octets();
            Some(Input { proto: ip[6], dst4: None, v6_dns: ip[24..40] == dns6, dport, l4, src_prefix: ip[8..15].to_vec() })
        }
        _ => None,
    }
}

#[test]
fn fuzzed_frames_never_break_the_invariants() -> Result<()> {
    let seconds: u64 = std::env::var("POP_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(45);
    let mut lab = Lab::new()?;
    let client = lab.host("client")?;
    let pop = lab.host("pop")?;
    let backend = lab.host("backend")?;
    lab.link(&client, "c0", &pop, "p0")?;
    lab.link(&pop, "p1", &backend, "b0")?;
    lab.addr(&client, "c0", "192.0.2.1/24")?;
    lab.addr(&pop, "p0", "192.0.2.2/24")?;
    lab.addr(&pop, "p1", "198.51.100.1/24")?;
    lab.addr(&backend, "b0", "198.51.100.2/24")?;
    for vip in ["203.0.113.53", SERVER_VIP, "203.0.113.80"] {
        lab.addr(&pop, "lo", &format!("{vip}/32"))?;
    }
    lab.addr(&pop, "lo", "2001:db8:53::53/128")?;
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    for i in ["p0", "p1", "lo"] {
        pop.sysctl(&format!("net.ipv4.conf.{i}.forwarding"), "1")?;
    }
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
    let zones = format!(
        "[\"{}\", \"{}\", \"{}\"]",
        data.join("example.com.zone").display(),
        data.join("wild.test.zone").display(),
        data.join("z.zone").display()
    );
    let config = lab.pop_config(
        &pop,
        &format!(
            "[[interface]]\nname = \"p0\"\n[[interface]]\nname = \"p1\"\n\
             [[dns]]\nvips = [\"203.0.113.53\", \"2001:db8:53::53\"]\nzones = {zones}\nrate_limit = {RATE}\n\
             [[dns]]\nvips = [\"{SERVER_VIP}\"]\nzones = {zones}\nfast_path = false\nrate_limit = 0\n\
             [[http]]\nname = \"edge\"\nvips = [\"203.0.113.80\"]\n[http.default]\nstatus = 301\nlocation = \"https://x.example\"\nappend_path = true\n\
             [[http.routes]]\npath = \"/healthz\"\nstatus = 200\nbody = \"ok\\n\"\n\
             [[service]]\nname = \"web\"\nvips = [\"203.0.113.10\"]\nport = 80\nbackends = [{{ address = \"198.51.100.2\" }}]\n\
             [[service]]\nname = \"echo\"\nvips = [\"203.0.113.10\"]\nport = 7\nprotocol = \"udp\"\nbackends = [{{ address = \"198.51.100.2\" }}]\n"
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    // The PoP's next hop to the backend must be resolved for forwarding.
    pop.run(&["ping", "-c", "1", "-W", "2", "198.51.100.2"])?;

    let prog_path = lab.bpffs_dir().join("pop").join("prog");
    let client2 = client.clone();
    let report = pop.in_netns(move || -> Result<String> {
        let prog = testrun::pinned_program(&prog_path)?;
        let syn = frames::tcp4(HTTP_VIP, 40000, 1000, 0, 0x02, &[]);
        let cookie = u32::from_be_bytes(testrun::run(&prog, &syn)?.frame[38..42].try_into().unwrap());
        let seeds = seeds(cookie);
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let started = Instant::now();
        let (mut runs, mut tx, mut compared) = (0u64, 0u64, 0u64);
        let mut full_answers: HashMap<Vec<u8>, u64> = HashMap::new();
        while started.elapsed() < Duration::from_secs(seconds) {
            let seed = &seeds[rng.below(seeds.len())];
            let input = if rng.below(8) == 0 { seed.clone() } else { mutate(&mut rng, seed) };
            let out = testrun::run(&prog, &input)?;
            runs += 1;
            let fail = |why: String| -> Result<()> { bail!("{why}\ninput: {input:02x?}\noutput: {:02x?}", out.frame) };
            match out.verdict {
                testrun::XDP_PASS | testrun::XDP_DROP => continue,
                testrun::XDP_TX | 4 => {}
                v => fail(format!("verdict {v}"))?,
            }
            tx += 1;
            let Some(inp) = classify(&input) else {
                fail("answered a frame that is not IP".into())?;
                unreachable!()
            };
            let Some((l3, _)) = frames::l3_offset(&out.frame) else {
                fail("output not Ethernet".into())?;
                unreachable!()
            };
            let ip = match frames::parse_ip(&out.frame[l3..]) {
                Ok(ip) => ip,
                Err(e) => return fail(format!("output does not parse: {e}")).map(|_| String::new()),
            };
            if let Some(inner) = &ip.inner {
                // Tunnelled to a backend: only LB service traffic, carried unchanged.
                // ICMP errors toward the VIP go to the backend owning the quoted flow.
                let lb_traffic = inp.proto == 6 && inp.dport == 80 || inp.proto == 17 && inp.dport == 7 || inp.proto == 1;
                if inp.dst4 != Some(LB_VIP) || !lb_traffic {
                    fail("tunnelled a packet that is not for the LB service".into())?;
                }
                if inner.l4 != inp.l4[..inner.l4.len().min(inp.l4.len())] || inner.dst != LB_VIP {
                    fail("the tunnelled packet is not the client's".into())?;
                }
                continue;
            }
            match ip.proto {
                17 => {
                    // A DNS answer: only to a query to a DNS VIP.
                    if !(inp.proto == 17 && inp.dport == 53 && (inp.dst4 == Some(DNS_VIP) || inp.v6_dns)) {
                        fail("UDP sent back for something that is not a DNS query to a VIP".into())?;
                    }
                    // The query is the UDP payload (the frame may carry padding after it).
                    let ulen = (u16::from_be_bytes([inp.l4[4], inp.l4[5]]) as usize).clamp(8, inp.l4.len());
                    let q = &inp.l4[8..ulen];
                    let a = &ip.l4[8..];
                    if q.len() < 12 || q[2] & 0x80 != 0 || (q[2] >> 3) & 0xf != 0 {
                        fail("answered a DNS message that is not a query".into())?;
                    }
                    if a[..2] != q[..2] || a[2] & 0x80 == 0 {
                        fail("answer ID or QR wrong".into())?;
                    }
                    if hickory_proto::op::Message::from_vec(a).is_err() {
                        fail("answer does not parse with hickory".into())?;
                    }
                    let Ok(query) = hickory_proto::op::Message::from_vec(q) else {
                        fail("answered a query hickory cannot parse".into())?;
                        unreachable!()
                    };
                    let limit = (query.max_payload() as usize).clamp(512, 1232);
                    if a.len() > limit {
                        fail(format!("answer of {} bytes over the client's limit {limit}", a.len()))?;
                    }
                    let slipped = a[2] & 0x02 != 0 && a[2] & 0x04 == 0;
                    if !slipped {
                        *full_answers.entry(inp.src_prefix.clone()).or_default() += 1;
                        let limit = RATE * (started.elapsed().as_secs() + 2);
                        if full_answers[&inp.src_prefix] > limit {
                            fail(format!("more than {limit} full answers to one client prefix"))?;
                        }
                        // The authoritative server must give the same bytes (sampled: it
                        // is a round trip).
                        if compared < 400
                            && inp.dst4 == Some(DNS_VIP)
                            && let Some(expected) = server_answer(&client2, q.to_vec())?
                        {
                            compared += 1;
                            if expected != a {
                                fail(format!("XDP answer differs from the server's:\nserver: {expected:02x?}\nxdp:    {a:02x?}"))?;
                            }
                        }
                    }
                }
                6 => {
                    if inp.dst4 != Some(HTTP_VIP) || inp.proto != 6 || inp.dport != 80 {
                        fail("TCP sent back for something that is not for the HTTP VIP".into())?;
                    }
                    let flags_in = inp.l4[13];
                    let flags_out = ip.l4[13];
                    let payload = &ip.l4[((ip.l4[12] >> 4) as usize * 4)..];
                    let ok = (flags_in & 0x02 != 0 && flags_out == 0x12)
                        || (flags_out == 0x19 && payload.starts_with(b"HTTP/1.1 "))
                        || (flags_in & 0x01 != 0 && (flags_out == 0x10 || flags_out == 0x11));
                    if !ok {
                        fail(format!("unexpected HTTP reply flags {flags_out:#x} to {flags_in:#x}"))?;
                    }
                }
                1 | 58 => {
                    if inp.dst4 != Some(LB_VIP) {
                        fail("ICMP sent for something that is not for the LB service".into())?;
                    }
                }
                p => fail(format!("sent back protocol {p}"))?,
            }
        }
        Ok(format!("{runs} frames in {seconds} s, {tx} answered or forwarded, {compared} DNS answers compared with the server"))
    })??;
    eprintln!("fuzz: {report}");
    Ok(())
}
