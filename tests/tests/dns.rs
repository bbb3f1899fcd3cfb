//! DNS answered in XDP, checked against the controller's own authoritative server.
//!
//! The PoP serves the same zones on two VIPs: `.53` with the XDP fast path, `.54` with
//! it off (every query reaches the server). A differential check sends byte-identical
//! queries to both and requires byte-identical answers; the counters prove which path
//! answered. dig and kdig from the client namespace check what an operator would see.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Result, bail};
use pop_lab::{Host, Lab};

const FAST4: &str = "203.0.113.53";
const SLOW4: &str = "203.0.113.54";
const RRL4: &str = "203.0.113.55";
const FAST6: &str = "2001:db8:53::53";
const SLOW6: &str = "2001:db8:53::54";

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join(name).display().to_string()
}

struct DnsLab {
    lab: Lab,
    client: Host,
    pop: Host,
    config: PathBuf,
    zone: PathBuf,
}

/// client (c0) <-> (p0) pop; VIPs on the PoP's lo; the client's c0 runs XDP_PASS so it
/// receives the frames the PoP sends back with XDP_TX.
fn dns_lab(rate_limit: u32) -> Result<DnsLab> {
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    for vip in [FAST4, SLOW4, RRL4] {
        lab.addr(&pop, "lo", &format!("{vip}/32"))?;
    }
    for vip in [FAST6, SLOW6] {
        lab.addr(&pop, "lo", &format!("{vip}/128"))?;
    }
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    lab.route(&client, "2001:db8:53::/64 via 2001:db8::2")?;
    // A copy of the zone the reload tests may edit.
    let zone = lab.dir.join("example.com.zone");
    std::fs::copy(data("example.com.zone"), &zone)?;
    let zones = format!("[\"{}\", \"{}\", \"{}\"]", zone.display(), data("wild.test.zone"), data("z.zone"));
    let config = lab.pop_config(
        &pop,
        &format!(
            "[[interface]]\nname = \"p0\"\n\n\
             [[dns]]\nvips = [\"{FAST4}\", \"{FAST6}\"]\nzones = {zones}\nrate_limit = 0\n\n\
             [[dns]]\nvips = [\"{SLOW4}\", \"{SLOW6}\"]\nzones = {zones}\nfast_path = false\nrate_limit = 0\n\n\
             [[dns]]\nvips = [\"{RRL4}\"]\nzones = {zones}\nrate_limit = {rate_limit}\n"
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    Ok(DnsLab { lab, client, pop, config, zone })
}

impl DnsLab {
    fn counters(&self) -> Result<BTreeMap<String, u64>> {
        self.lab.pop_counters(&self.pop, &self.config)
    }
}

/// A query in wire format, the name exactly as given (case kept).
fn query(id: u16, name: &str, qtype: u16, qclass: u16, edns: Option<(u16, bool)>, rd: bool) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&(if rd { 0x0100u16 } else { 0 }).to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, if edns.is_some() { 1 } else { 0 }]);
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    if let Some((size, dnssec_ok)) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    q
}

/// Every (name, type) of the test zones, plus names that do not exist.
fn question_set() -> Vec<(String, u16, u16)> {
    const A: u16 = 1;
    const NS: u16 = 2;
    const CNAME: u16 = 5;
    const SOA: u16 = 6;
    const MX: u16 = 15;
    const TXT: u16 = 16;
    const AAAA: u16 = 28;
    const SRV: u16 = 33;
    const ANY: u16 = 255;
    const IN: u16 = 1;
    let mut qs = Vec::new();
    let names = [
        "example.com",
        "ns1.example.com",
        "ns2.example.com",
        "www.example.com",
        "mail.example.com",
        "alias.example.com",
        "chain.example.com",
        "out.example.com",
        "_sip._udp.example.com",
        "sip.example.com",
        "a.b.c.example.com",
        "b.c.example.com",
        "c.example.com",
        "big.example.com",
        "sub.example.com",
        "deep.sub.example.com",
        "ns.sub.example.com",
        "nope.example.com",
        "x.y.nope.example.com",
        "wild.test",
        "fixed.wild.test",
        "anything.wild.test",
        "a.b.wild.test",
        "ns.wild.test",
        "example.org",
        "id.server",
    ];
    for n in names {
        for t in [A, NS, CNAME, SOA, MX, TXT, AAAA, SRV, ANY, 99] {
            qs.push((n.to_string(), t, IN));
        }
    }
    // Random names in both zones, and mixed case.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let label: String = (0..(3 + seed % 20)).map(|k| (b'a' + ((seed >> (k % 50)) % 26) as u8) as char).collect();
        let zone = if i % 2 == 0 { "example.com" } else { "wild.test" };
        qs.push((format!("{label}.{zone}"), A, IN));
    }
    for n in ["WwW.ExAmPlE.CoM", "EXAMPLE.COM", "Mail.Example.Com", "NoPe.ExAmPlE.cOm", "Fixed.Wild.TEST"] {
        qs.push((n.to_string(), A, IN));
        qs.push((n.to_string(), MX, IN));
    }
    // CHAOS identity queries.
    for n in ["id.server", "ID.SERVER", "hostname.bind", "version.bind"] {
        qs.push((n.to_string(), TXT, 3));
    }
    qs
}

/// Every assigned qtype, the meta ones (0, OPT, 128-255 with TKEY, TSIG, IXFR, AXFR,
/// MAILB, MAILA, ANY) and the private range 65280-65535, at the apex, at names (an
/// address owner, a CNAME owner, an empty non-terminal) and below a name. Qtypes 0 and
/// 65535 once hit the table's internal markers (65535 at an apex got NXDOMAIN).
fn qtype_sweep() -> Vec<(String, u16, u16)> {
    let qtypes = (0..=66u16).chain(99..=109).chain(128..=261).chain([32768, 32769]).chain(65280..=65535);
    let names = ["example.com", "www.example.com", "alias.example.com", "c.example.com", "x.www.example.com", "wild.test"];
    let mut qs = Vec::new();
    for t in qtypes {
        for n in names {
            qs.push((n.to_string(), t, 1));
        }
    }
    qs
}

/// Answers of 900-1400 bytes (z.zone: tNNNN is NNNN bytes without EDNS; a70 holds 70
/// addresses), once answered from XDP as NODATA when over 1 KiB; and names of 1, 16,
/// 17, 64 and 127 labels (the walk up to the zone stops after 16), existing or not,
/// in mixed case.
fn big_and_long_questions() -> Vec<(String, u16, u16)> {
    let labels = |first: &str, fill: &str, n: usize| {
        let mut v = vec![first.to_string()];
        v.extend((1..n - 1).map(|i| if i % 3 == 0 { fill.to_uppercase() } else { fill.to_string() }));
        v.push("z".into());
        v.join(".")
    };
    let mut names: Vec<String> = [900, 1000, 1100, 1150, 1190, 1200, 1210, 1221, 1222, 1232, 1300, 1400].iter().map(|t| format!("t{t}.z")).collect();
    names.push("a70.Z".into());
    names.push("z".into());
    for n in [16, 17, 127] {
        names.push(labels("a", "a", n)); // the 127-label name has an address; shorter ones are empty non-terminals
        names.push(labels("B", "a", n)); // does not exist
    }
    names.push(labels("d", "d", 64));
    names.push(labels("e", "d", 64));
    let mut qs = Vec::new();
    for n in names {
        for t in [1, 16, 28, 255, 99] {
            qs.push((n.clone(), t, 1));
        }
    }
    qs
}

/// The EDNS variants every answer is checked at: none (512), 512, 1232 and 4096 (DO).
const EDNS_VARIANTS: [Option<(u16, bool)>; 4] = [None, Some((512, false)), Some((1232, false)), Some((4096, true))];

#[test]
fn xdp_answers_equal_the_servers_byte_for_byte() -> Result<()> {
    let d = dns_lab(0)?;
    let mut queries = Vec::new();
    let mut id = 1u16;
    for (name, qtype, qclass) in question_set().into_iter().chain(big_and_long_questions()) {
        for edns in EDNS_VARIANTS {
            for rd in [false, true] {
                queries.push(query(id, &name, qtype, qclass, edns, rd));
                id = id.wrapping_add(1);
            }
        }
    }
    // The qtype sweep is large: each question once, at one EDNS variant in turn.
    for (i, (name, qtype, qclass)) in qtype_sweep().into_iter().enumerate() {
        queries.push(query(id, &name, qtype, qclass, EDNS_VARIANTS[i % 4], i % 3 == 0));
        id = id.wrapping_add(1);
    }
    let n = queries.len() as u64;
    for (fast, slow) in [(FAST4, SLOW4), (FAST6, SLOW6)] {
        let before = d.counters()?;
        let from_xdp = pop_lab::udp_exchange(&d.client, fast, queries.clone())?;
        let from_server = pop_lab::udp_exchange(&d.client, slow, queries.clone())?;
        let after = d.counters()?;
        let delta = |k: &str| after[k] - before[k];
        for (i, (a, b)) in from_xdp.iter().zip(&from_server).enumerate() {
            let (Some(a), Some(b)) = (a, b) else {
                bail!("query {i} ({:?}) got no answer: fast={} server={}", &queries[i], a.is_some(), b.is_some());
            };
            assert_eq!(a, b, "{fast} vs {slow}: answers to query {i} differ: {:02x?}", &queries[i]);
        }
        let answered = delta("dns.xdp.noerror") + delta("dns.xdp.nxdomain") + delta("dns.xdp.other_rcode") + delta("dns.xdp.truncated");
        assert_eq!(delta("dns.queries"), 2 * n, "every query to a DNS VIP is seen by XDP");
        assert_eq!(delta("dns.pass.fast_path_off"), n, "every query to {slow} goes to the server");
        // Most of the set is answerable in XDP; the rest went to the server for a counted reason.
        assert!(answered * 10 > n * 6, "XDP answered only {answered} of {n}: {after:?}");
        assert!(delta("dns.xdp.nxdomain") > 0 && delta("dns.xdp.truncated") > 0, "{after:?}");
        assert!(delta("dns.pass.delegated") > 0 && delta("dns.pass.not_in_table") > 0, "{after:?}");
        assert_eq!(delta("action.tx"), answered, "{after:?}");
    }
    // Over 1 KiB and within 1232 bytes: answered in XDP with the records, not NODATA.
    // Run through BPF_PROG_TEST_RUN (page-sized frames, as on a NIC): a veth frame from
    // a local socket often has too little tailroom to grow by a kilobyte, and XDP then
    // passes the query to the server (dns.pass.no_room), which is also seen above.
    use pop_lab::{frames, testrun};
    let prog = testrun::pinned_program(&d.lab.bpffs_dir().join("pop").join("prog"))?;
    for (i, (name, qtype, edns, records)) in
        [("t1200.z", 16, (1232, false), 1u16), ("A70.z", 1, (4096, true), 70), ("t1300.z", 16, (4096, false), 0)].into_iter().enumerate()
    {
        let q = query(0x5000 + i as u16, name, qtype, 1, Some(edns), true);
        let from_server = pop_lab::udp_exchange(&d.client, SLOW4, vec![q.clone()])?.remove(0).expect("server answers");
        let frame = frames::udp4(frames::L2::default(), [192, 0, 2, 1], [203, 0, 113, 53], 41000, 53, &[], &q);
        let out = testrun::run(&prog, &frame)?;
        assert_eq!(out.verdict, testrun::XDP_TX, "{name}: not answered in XDP");
        let a = frames::parse_udp(&out.frame).map_err(|e| anyhow::anyhow!("{name}: {e}"))?.payload;
        assert_eq!(a, from_server, "{name}: differs from the server");
        // t1300 is too long for any UDP answer: TC=1, AA kept, no records, as the server.
        let tc = if records == 0 { 0x02 } else { 0 };
        assert_eq!((a[2] & 0x06, a[3] & 0x0f, u16::from_be_bytes([a[6], a[7]])), (0x04 | tc, 0, records), "{name}");
    }
    Ok(())
}

fn dig(host: &Host, args: &[&str]) -> Result<String> {
    let mut argv = vec!["dig", "+tries=1", "+time=2"];
    argv.extend_from_slice(args);
    host.stdout(&argv)
}

#[test]
fn dig_and_kdig_see_answers_from_xdp() -> Result<()> {
    let d = dns_lab(0)?;
    let before = d.counters()?;
    let out = dig(&d.client, &["+norec", &format!("@{FAST4}"), "WWW.example.COM", "A"])?;
    assert!(out.contains("status: NOERROR") && out.contains("flags: qr aa;"), "{out}");
    assert!(out.contains(";WWW.example.COM.\t\tIN\tA"), "question echoed as sent: {out}");
    assert!(out.contains("192.0.2.80") && out.contains("192.0.2.81"), "{out}");
    let out = dig(&d.client, &[&format!("@{FAST6}"), "nope.example.com", "AAAA"])?;
    assert!(out.contains("status: NXDOMAIN") && out.contains("SOA"), "{out}");
    // CH TXT id.server names the PoP, from XDP.
    let out = dig(&d.client, &["+short", &format!("@{FAST4}"), "id.server", "TXT", "CH"])?;
    assert_eq!(out.trim(), "\"pop\"");
    let after = d.counters()?;
    assert_eq!(after["dns.xdp.noerror"] - before["dns.xdp.noerror"], 2);
    assert_eq!(after["dns.xdp.nxdomain"] - before["dns.xdp.nxdomain"], 1, "{after:?}");

    // NSID goes to the server, which answers with the PoP's name.
    let out = d.client.stdout(&["kdig", "+nsid", &format!("@{FAST4}"), "www.example.com", "A"])?;
    assert!(out.contains("NSID: 706f70") || out.contains("NSID: \"pop\"") || out.contains("pop"), "{out}");
    let c = d.counters()?;
    assert_eq!(c["dns.pass.edns"] - after["dns.pass.edns"], 1, "{out}\n{c:?}");

    // A big answer: without EDNS it does not fit 512 bytes, so TC=1; with EDNS it fits.
    let out = dig(&d.client, &["+norec", "+ignore", "+noedns", &format!("@{FAST4}"), "big.example.com", "TXT"])?;
    assert!(out.contains("flags: qr aa tc;") && out.contains("ANSWER: 0"), "{out}");
    let out = dig(&d.client, &["+norec", "+bufsize=1232", &format!("@{FAST4}"), "big.example.com", "TXT"])?;
    assert!(out.contains("ANSWER: 1") && !out.contains(" tc"), "{out}");
    // TCP goes through the kernel to the server.
    let out = d.client.stdout(&["kdig", "+tcp", &format!("@{FAST4}"), "big.example.com", "TXT"])?;
    assert!(out.contains("NOERROR") && out.contains("0123456789"), "{out}");
    let c2 = d.counters()?;
    assert_eq!(c2["dns.xdp.truncated"] - c["dns.xdp.truncated"], 1);
    Ok(())
}

#[test]
fn malformed_queries_and_responses_are_not_answered_by_xdp() -> Result<()> {
    let d = dns_lab(0)?;
    let before = d.counters()?;
    // A compression pointer in the question: the server answers FORMERR, XDP passes it.
    let mut bad = query(7, "www.example.com", 1, 1, None, false);
    bad.truncate(12);
    bad.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    // Two questions: FORMERR from the server.
    let mut two = query(8, "www.example.com", 1, 1, None, false);
    two[5] = 2;
    let answers = pop_lab::udp_exchange(&d.client, FAST4, vec![bad, two])?;
    for a in &answers {
        let a = a.as_ref().expect("the server answers malformed queries");
        assert_eq!(a[3] & 0x0f, 1, "FORMERR expected, got rcode {}", a[3] & 0x0f);
    }
    // A response sent to the VIP and a runt: dropped by XDP, no answer.
    let mut resp = query(9, "www.example.com", 1, 1, None, false);
    resp[2] |= 0x80;
    let runt = vec![0u8, 10, 0, 0, 0];
    let answers = pop_lab::udp_exchange(&d.client, FAST4, vec![resp, runt])?;
    assert!(answers.iter().all(|a| a.is_none()), "{answers:?}");
    let after = d.counters()?;
    assert_eq!(after["dns.pass.qname"] - before["dns.pass.qname"], 1);
    assert_eq!(after["dns.pass.sections"] - before["dns.pass.sections"], 1);
    assert_eq!(after["drop.dns_response"] - before["drop.dns_response"], 1);
    assert_eq!(after["drop.dns_runt"] - before["drop.dns_runt"], 1);
    assert_eq!(after["action.tx"], before["action.tx"], "XDP must not answer any of these");
    Ok(())
}

#[test]
fn response_rate_limiting_holds_the_rate_and_slips() -> Result<()> {
    let d = dns_lab(20)?;
    let queries: Vec<_> = (0..400u16).map(|i| query(i, "www.example.com", 1, 1, None, false)).collect();
    let started = std::time::Instant::now();
    let answers = pop_lab::udp_exchange(&d.client, RRL4, queries)?;
    let secs = started.elapsed().as_secs_f64();
    let full = answers.iter().flatten().filter(|a| a[2] & 0x02 == 0).count() as f64;
    let slipped = answers.iter().flatten().filter(|a| a[2] & 0x02 != 0).count();
    let c = d.counters()?;
    // One second of burst plus the rate over the run (with slack for timer granularity).
    assert!(full <= 20.0 * (secs + 1.0) + 2.0, "{full} full answers in {secs:.1}s at rate 20");
    assert!(full >= 20.0, "{full}");
    assert!(slipped > 0 && c["dns.rrl.slipped"] as usize == slipped, "{slipped} {c:?}");
    assert!(c["dns.rrl.dropped"] > 0, "{c:?}");
    Ok(())
}

#[test]
fn reload_swaps_zones_without_failures_and_rejects_broken_zones() -> Result<()> {
    let d = dns_lab(0)?;
    let q = |id| query(id, "new.example.com", 1, 1, None, false);
    let first = pop_lab::udp_exchange(&d.client, FAST4, vec![q(1)])?;
    assert_eq!(first[0].as_ref().unwrap()[3] & 0x0f, 3, "new.example.com is NXDOMAIN before the reload");

    // Reload while queries run: none may fail.
    let zone_text = std::fs::read_to_string(&d.zone)?;
    std::fs::write(&d.zone, format!("{zone_text}new IN A 192.0.2.123\n"))?;
    let client = d.client.clone();
    let load = std::thread::spawn(move || {
        let queries: Vec<_> = (0..3000u16).map(|i| query(i, "www.example.com", 1, 1, None, false)).collect();
        pop_lab::udp_exchange(&client, FAST4, queries)
    });
    let out = d.lab.pop(&d.pop, &d.config, &["reload"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers = load.join().unwrap()?;
    assert!(answers.iter().all(|a| a.as_ref().is_some_and(|a| a[3] & 0x0f == 0)), "a query failed during reload");
    let after = pop_lab::udp_exchange(&d.client, FAST4, vec![q(2)])?;
    let a = after[0].as_ref().unwrap();
    assert_eq!(a[3] & 0x0f, 0);
    assert!(a.windows(4).any(|w| w == [192, 0, 2, 123]), "new record not served after reload");

    // A broken zone: reload refused with file:line, old data still served.
    std::fs::write(&d.zone, format!("{zone_text}broken IN A 999.1.2.3\n"))?;
    let out = d.lab.pop(&d.pop, &d.config, &["reload"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = zone_text.lines().count() + 1;
    assert!(err.contains(&format!("{}:{line}:", d.zone.display())), "{err}");
    let still = pop_lab::udp_exchange(&d.client, FAST4, vec![q(3)])?;
    assert!(still[0].as_ref().unwrap().windows(4).any(|w| w == [192, 0, 2, 123]));
    // SIGHUP with the broken zone: the controller logs the rejection and keeps serving.
    let pid = d.lab.daemon_pid("pop").unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    pop_lab::wait_until(Duration::from_secs(10), "the rejection in the log", || {
        d.lab.daemon_log("pop").filter(|l| l.contains("reload 2 rejected")).map(|_| ())
    })?;
    let still = pop_lab::udp_exchange(&d.client, FAST4, vec![q(4)])?;
    assert!(still[0].as_ref().unwrap().windows(4).any(|w| w == [192, 0, 2, 123]));
    Ok(())
}

#[test]
fn broken_zone_at_start_names_file_and_line_and_attaches_nothing() -> Result<()> {
    let mut lab = Lab::new()?;
    let pop = lab.host("pop")?;
    let client = lab.host("client")?;
    lab.link(&client, "c0", &pop, "p0")?;
    let zone = lab.write("bad.zone", "$ORIGIN bad.test.\n$TTL 300\n@ IN SOA ns hm 1 2 3 4 5\n@ IN NS ns\nns IN A 192.0.2.1\nx IN MX mail\n")?;
    let config = lab.pop_config(&pop, &format!("[[interface]]\nname = \"p0\"\n[[dns]]\nvips = [\"{FAST4}\"]\nzones = [\"{}\"]\n", zone.display()))?;
    for cmd in ["check", "run"] {
        let out = lab.pop(&pop, &config, &[cmd])?;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{}:6:", zone.display())), "{cmd}: {err}");
    }
    assert_eq!(pop.xdp_prog_id("p0")?, None);
    let _ = &mut lab;
    Ok(())
}

/// Frames veth cannot carry here (VLAN tags: no 802.1Q devices in this kernel), link
/// padding, IPv4 options and IP lengths that disagree with the UDP length, fed to the
/// PoP's live program with BPF_PROG_TEST_RUN. An answer must keep the tags, turn
/// addresses and ports around, carry valid checksums and lengths, and equal the
/// server's answer to the same query. Options (once echoed into the answer) and length
/// mismatches (once answered from bytes past the IP packet) go to the server, counted.
#[test]
fn vlan_tagged_and_ip_options_frames_are_answered_correctly() -> Result<()> {
    use pop_lab::{frames, testrun};
    let d = dns_lab(0)?;
    let prog = testrun::pinned_program(&d.lab.bpffs_dir().join("pop").join("prog"))?;
    let q = query(0x4242, "Www.Example.com", 1, 1, Some((1232, true)), true);
    let from_server = pop_lab::udp_exchange(&d.client, SLOW4, vec![q.clone()])?.remove(0).expect("server answers");
    let client4 = [192, 0, 2, 1];
    let fast4 = [203, 0, 113, 53];
    let fast6: [u8; 16] = FAST6.parse::<std::net::Ipv6Addr>()?.octets();
    let client6: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>()?.octets();
    const ONE_TAG: &[(u16, u16)] = &[(0x8100, 100)];
    const TWO_TAGS: &[(u16, u16)] = &[(0x88a8, 200), (0x8100, 100)];
    const PAD: usize = 30;
    let mut padded = frames::udp4(frames::L2::default(), client4, fast4, 40002, 53, &[], &q);
    padded.extend_from_slice(&[0xee; PAD]);
    let mut padded6 = frames::udp6(frames::L2 { vlans: ONE_TAG }, client6, fast6, 40007, 53, &q);
    padded6.extend_from_slice(&[0xee; PAD]);
    let cases = [
        ("802.1Q IPv4", frames::udp4(frames::L2 { vlans: ONE_TAG }, client4, fast4, 40000, 53, &[], &q), 0),
        ("802.1ad+802.1Q IPv4", frames::udp4(frames::L2 { vlans: TWO_TAGS }, client4, fast4, 40001, 53, &[], &q), 0),
        ("IPv4 with link padding", padded, PAD),
        ("802.1Q IPv6", frames::udp6(frames::L2 { vlans: ONE_TAG }, client6, fast6, 40003, 53, &q), 0),
        ("802.1ad+802.1Q IPv6", frames::udp6(frames::L2 { vlans: TWO_TAGS }, client6, fast6, 40004, 53, &q), 0),
        ("802.1Q IPv6 with link padding", padded6, PAD),
    ];
    for (what, frame, pad) in cases {
        let input = frames::parse_udp(&frame[..frame.len() - pad]).map_err(anyhow::Error::msg)?;
        let out = testrun::run(&prog, &frame)?;
        assert_eq!(out.verdict, testrun::XDP_TX, "{what}: not answered in XDP");
        let ans = frames::parse_udp(&out.frame).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        assert_eq!(ans.vlans, input.vlans, "{what}: VLAN tags");
        assert_eq!((ans.dst_mac, ans.src_mac), (input.src_mac, input.dst_mac), "{what}: MACs");
        assert_eq!((&ans.src, &ans.dst), (&input.dst, &input.src), "{what}: addresses");
        assert_eq!((ans.sport, ans.dport), (53, input.sport), "{what}: ports");
        assert_eq!(ans.payload, from_server, "{what}: DNS answer differs from the server's");
    }

    // Passed to the server, each with its counter. IPv4 lengths are patched with the
    // header checksum redone, so only the length is wrong.
    let set_ip_len = |mut f: Vec<u8>, extra: &[u8], delta: i32| {
        f.extend_from_slice(extra);
        let (l3, ethertype) = frames::l3_offset(&f).expect("an IP frame");
        let at = if ethertype == 0x0800 { l3 + 2 } else { l3 + 4 };
        let len = u16::from_be_bytes([f[at], f[at + 1]]) as i32 + delta;
        f[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
        if ethertype == 0x0800 {
            f[l3 + 10..l3 + 12].fill(0);
            let c = testrun::checksum(&f[l3..l3 + 20]);
            f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        f
    };
    let v4 = || frames::udp4(frames::L2::default(), client4, fast4, 40010, 53, &[], &q);
    let v6 = || frames::udp6(frames::L2::default(), client6, fast6, 40011, 53, &q);
    let nop_options = [1, 1, 1, 0]; // NOP NOP NOP EOL
    let passed = [
        ("IPv4 with options", frames::udp4(frames::L2 { vlans: ONE_TAG }, client4, fast4, 40012, 53, &nop_options, &q), "dns.pass.ip_options"),
        ("IPv4 total length 8 past the UDP datagram", set_ip_len(v4(), &[0; 8], 8), "dns.pass.ip_length"),
        ("IPv4 total length 8 short of the UDP datagram", set_ip_len(v4(), &[], -8), "dns.pass.ip_length"),
        ("IPv4 total length past the frame", set_ip_len(v4(), &[], 100), "pass.malformed"),
        ("IPv6 payload length 8 past the UDP datagram", set_ip_len(v6(), &[0; 8], 8), "dns.pass.ip_length"),
        ("IPv6 payload length 8 short of the UDP datagram", set_ip_len(v6(), &[], -8), "dns.pass.ip_length"),
        ("IPv6 payload length past the frame", set_ip_len(v6(), &[], 100), "pass.malformed"),
    ];
    for (what, frame, counter) in passed {
        let before = d.counters()?;
        let out = testrun::run(&prog, &frame)?;
        assert_eq!(out.verdict, testrun::XDP_PASS, "{what}");
        assert_eq!(out.frame, frame, "{what}: passed frames are not modified");
        let after = d.counters()?;
        assert_eq!(after[counter] - before[counter], 1, "{what}: {counter}");
    }

    // A VLAN-tagged response (QR=1) is dropped, and a non-VIP tagged frame passes.
    let mut resp = q.clone();
    resp[2] |= 0x80;
    let f = frames::udp4(frames::L2 { vlans: ONE_TAG }, client4, fast4, 40005, 53, &[], &resp);
    assert_eq!(testrun::run(&prog, &f)?.verdict, testrun::XDP_DROP);
    let f = frames::udp4(frames::L2 { vlans: TWO_TAGS }, client4, [192, 0, 2, 2], 40006, 53, &[], &q);
    assert_eq!(testrun::run(&prog, &f)?.verdict, testrun::XDP_PASS);
    Ok(())
}

/// SIGKILL the controller under load: XDP keeps answering from the pinned table, and a
/// new controller takes the pinned state over (new table generation, atomic flip)
/// without a lost query.
/// The name filter spares names with no answers (a random-subdomain flood) their table
/// lookups, and never a name that has answers: not after a reload adds one, not after a
/// controller restart rebuilds the filter.
#[test]
fn unknown_names_skip_the_table_and_names_added_by_reload_or_restart_are_found() -> Result<()> {
    let mut d = dns_lab(0)?;
    let rcode = |a: &Option<Vec<u8>>| a.as_ref().map(|a| a[3] & 0x0f);
    let random = |from: u16| -> Vec<Vec<u8>> { (from..from + 200).map(|i| query(i, &format!("r{i}x.example.com"), 1, 1, None, false)).collect() };
    let known = |names: &[&str]| -> Vec<Vec<u8>> {
        names.iter().enumerate().flat_map(|(i, n)| [query(i as u16, n, 1, 1, None, false), query(10 + i as u16, n, 28, 1, None, false)]).collect()
    };
    // Random names: NXDOMAIN from XDP, nearly all without a lookup (a few share a bit
    // with a real name).
    let check_random = |d: &DnsLab, from: u16| -> Result<()> {
        let before = d.counters()?;
        let answers = pop_lab::udp_exchange(&d.client, FAST4, random(from))?;
        assert!(answers.iter().all(|a| rcode(a) == Some(3)), "{answers:?}");
        let after = d.counters()?;
        assert_eq!(after["dns.xdp.nxdomain"] - before["dns.xdp.nxdomain"], 200);
        let unknown = after["dns.unknown_name"] - before["dns.unknown_name"];
        assert!(unknown >= 190, "only {unknown} of 200 random names skipped the table");
        Ok(())
    };
    check_random(&d, 0)?;
    // Every owner name of the zone has entries (answers, or NODATA for other types):
    // none may count as unknown. (Names found through a wildcard or below a cut have
    // none of their own, and do count.)
    let owners = ["example.com", "ns1", "ns2", "www", "mail", "alias", "chain", "out", "_sip._udp", "sip", "a.b.c", "sub"];
    let owners: Vec<String> = owners.iter().map(|o| if *o == "example.com" { o.to_string() } else { format!("{o}.example.com") }).collect();
    let owners: Vec<&str> = owners.iter().map(|o| o.as_str()).collect();
    let before = d.counters()?;
    let answers = pop_lab::udp_exchange(&d.client, FAST4, known(&owners))?;
    assert!(answers.iter().all(|a| rcode(a) == Some(0)), "{answers:?}");
    assert_eq!(d.counters()?["dns.unknown_name"], before["dns.unknown_name"], "a name with answers was taken for unknown");

    // A name added by reload: found in the table at once, answered from XDP.
    let zone_text = std::fs::read_to_string(&d.zone)?;
    std::fs::write(&d.zone, format!("{zone_text}new IN A 192.0.2.123\n"))?;
    let out = d.lab.pop(&d.pop, &d.config, &["reload"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = d.counters()?;
    let a = pop_lab::udp_exchange(&d.client, FAST4, vec![query(1, "new.example.com", 1, 1, None, false)])?;
    let a = a[0].as_ref().expect("new.example.com answered");
    assert!(a[3] & 0x0f == 0 && a.windows(4).any(|w| w == [192, 0, 2, 123]), "{a:?}");
    let after = d.counters()?;
    assert_eq!(after["dns.xdp.noerror"] - before["dns.xdp.noerror"], 1, "new.example.com not answered from XDP");
    assert_eq!(after["dns.unknown_name"], before["dns.unknown_name"]);
    check_random(&d, 1000)?;

    // A restarted controller cannot know the names the old one wrote: it looks every
    // name up until it has written the table again, then filters again.
    let pid = d.lab.daemon_pid("pop").unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    d.lab.stop_daemon("pop")?;
    d.lab.start_pop(&d.pop, "pop", &d.config)?;
    let mut round = 2000;
    pop_lab::wait_until(Duration::from_secs(10), "random names skipping the table again", || {
        round += 200;
        check_random(&d, round).ok()
    })?;
    let before = d.counters()?;
    let answers = pop_lab::udp_exchange(&d.client, FAST4, known(&["www.example.com", "example.com", "new.example.com"]))?;
    assert!(answers.iter().all(|a| rcode(a) == Some(0)), "{answers:?}");
    let after = d.counters()?;
    assert_eq!(after["dns.unknown_name"], before["dns.unknown_name"]);
    assert_eq!(after["dns.xdp.noerror"] - before["dns.xdp.noerror"], 6);
    Ok(())
}

#[test]
fn sigkill_of_the_controller_under_load_loses_no_query() -> Result<()> {
    let mut d = dns_lab(0)?;
    // Queries back to back until told to stop; each must be answered.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (client, stop2) = (d.client.clone(), stop.clone());
    let load = std::thread::spawn(move || -> Result<(u64, u64)> {
        client.in_netns(move || -> Result<(u64, u64)> {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            sock.set_read_timeout(Some(Duration::from_secs(1)))?;
            let server: SocketAddr = format!("{FAST4}:53").parse()?;
            let (mut sent, mut lost) = (0u64, 0u64);
            let mut buf = [0u8; 1500];
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let q = query(sent as u16, "www.example.com", 1, 1, None, false);
                sock.send_to(&q, server)?;
                sent += 1;
                loop {
                    match sock.recv_from(&mut buf) {
                        Ok((n, _)) if n > 3 && buf[..2] == q[..2] => {
                            if buf[3] & 0x0f != 0 {
                                lost += 1;
                            }
                            break;
                        }
                        Ok(_) => continue,
                        Err(_) => {
                            lost += 1;
                            break;
                        }
                    }
                }
            }
            Ok((sent, lost))
        })?
    });
    let before = d.counters()?["dns.xdp.noerror"];
    pop_lab::wait_until(Duration::from_secs(10), "load to start", || d.counters().ok().filter(|c| c["dns.xdp.noerror"] > before + 1000).map(|_| ()))?;
    let pid = d.lab.daemon_pid("pop").unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let log = d.lab.stop_daemon("pop")?;
    assert!(!log.contains("controller stopped"), "the controller was not killed: {log}");
    let during = d.counters()?["dns.xdp.noerror"];
    d.lab.start_pop(&d.pop, "pop", &d.config)?;
    pop_lab::wait_until(Duration::from_secs(10), "more answers after the restart", || {
        d.counters().ok().filter(|c| c["dns.xdp.noerror"] > during + 1000).map(|_| ())
    })?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, lost) = load.join().unwrap()?;
    assert_eq!(lost, 0, "{lost} of {sent} queries lost across SIGKILL and restart");

    // The new controller serves: the pass-to-server path works again too.
    let wild = pop_lab::udp_exchange(&d.client, FAST4, vec![query(1, "anything.wild.test", 1, 1, None, false)])?;
    assert!(wild[0].is_some(), "the restarted controller's server does not answer");
    let _ = &mut d;
    Ok(())
}

/// `pop top` shows the VIP's rate and the busiest client prefix; a burst far above the
/// VIP's moving baseline is logged as a spike and counted.
#[test]
fn top_shows_busy_prefixes_and_a_burst_is_flagged_as_a_spike() -> Result<()> {
    let d = dns_lab(0)?;
    // A quiet baseline: a few queries a second for the analyzer's warm-up.
    for round in 0..7u16 {
        let start = std::time::Instant::now();
        pop_lab::udp_exchange(&d.client, FAST4, (0..20).map(|i| query(round * 100 + i, "www.example.com", 1, 1, None, false)).collect())?;
        pop_lab::wait_until(Duration::from_secs(2), "the next second", || (start.elapsed() >= Duration::from_secs(1)).then_some(()))?;
    }
    // A burst (tens of thousands of queries a second) while `pop top` samples.
    let client = d.client.clone();
    let burst = std::thread::spawn(move || {
        pop_lab::udp_exchange(&client, FAST4, (0..40000u32).map(|i| query(i as u16, "www.example.com", 1, 1, None, false)).collect())
    });
    let top = d.lab.pop(&d.pop, &d.config, &["top", "--count", "1", "--interval", "1"])?;
    burst.join().unwrap()?;
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(text.contains("203.0.113.53") && text.contains("192.0.2.0/24"), "{text}");
    pop_lab::wait_until(Duration::from_secs(5), "a spike in the controller's log", || {
        d.lab.daemon_log("pop").filter(|l| l.contains("traffic spike: VIP 203.0.113.53")).map(|_| ())
    })?;
    Ok(())
}

const KNOT4: &str = "203.0.113.57";

/// What a resolver takes from an answer: rcode, AA, TC and each section's records
/// (sorted: the order within an RRset is not significant), OPT aside.
fn meaning(a: &[u8]) -> String {
    let flags = u16::from_be_bytes([a[2], a[3]]);
    let mut out = format!("rcode {} aa {} tc {}", flags & 0xf, flags >> 10 & 1, flags >> 9 & 1);
    match hickory_proto::op::Message::from_vec(a) {
        Ok(m) => {
            for (what, section) in [("answer", &m.answers), ("authority", &m.authorities), ("additional", &m.additionals)] {
                let mut rrs: Vec<String> =
                    section.iter().filter(|r| u16::from(r.record_type()) != 41).map(|r| r.to_string().to_lowercase()).collect();
                rrs.sort();
                out += &format!("\n{what}: {rrs:?}");
            }
        }
        Err(e) => out += &format!("\nunparsable: {e}"),
    }
    out
}

/// Knot DNS, serving the same zone files, agrees with the answers XDP sends for the
/// big answers and the meta and reserved qtypes (the table's old weak spots), except
/// where the RFCs leave the choice to the server (see `knot_differs`).
#[test]
fn big_answers_and_meta_qtypes_agree_with_knot() -> Result<()> {
    let d = dns_lab(0)?;
    d.lab.addr(&d.pop, "lo", &format!("{KNOT4}/32"))?;
    let run = d.lab.dir.join("knot");
    std::fs::create_dir_all(run.join("db"))?;
    let mut conf = format!(
        "server:\n    rundir: \"{r}\"\n    listen: {KNOT4}@53\n    udp-workers: 1\n    tcp-workers: 1\n\
         database:\n    storage: \"{r}/db\"\nlog:\n  - target: stderr\n    any: warning\nzone:\n",
        r = run.display()
    );
    for (domain, file) in [("example.com", d.zone.display().to_string()), ("wild.test", data("wild.test.zone")), ("z", data("z.zone"))] {
        conf += &format!("  - domain: {domain}\n    file: \"{file}\"\n    journal-content: none\n    zonefile-sync: -1\n");
    }
    let conf = d.lab.write("knot.conf", &conf)?;
    let mut lab = d.lab;
    lab.spawn(&d.pop, "knot", &["knotd", "-c", conf.to_str().unwrap()])?;
    pop_lab::wait_until(Duration::from_secs(20), "knotd answering", || {
        pop_lab::udp_exchange(&d.client, KNOT4, vec![query(1, "t900.z", 16, 1, None, false)]).ok()?.remove(0)
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", lab.daemon_log("knot").unwrap_or_default()))?;

    let mut questions = Vec::new();
    for name in ["t900.z", "t1100.z", "t1200.z", "t1221.z", "t1222.z", "t1300.z", "t1400.z", "a70.z"] {
        for qtype in [1, 16] {
            questions.push((name, qtype));
        }
    }
    for name in ["example.com", "www.example.com", "x.www.example.com", "z"] {
        for qtype in [0u16, 41, 128, 249, 250, 251, 252, 253, 254, 256, 65280, 65534, 65535] {
            questions.push((name, qtype));
        }
    }
    let mut queries = Vec::new();
    for (i, (name, qtype)) in questions.iter().enumerate() {
        for (j, edns) in EDNS_VARIANTS.into_iter().enumerate() {
            queries.push(query((i * 4 + j) as u16, name, *qtype, 1, edns, false));
        }
    }
    let from_xdp = pop_lab::udp_exchange(&d.client, FAST4, queries.clone())?;
    let from_knot = pop_lab::udp_exchange(&d.client, KNOT4, queries.clone())?;
    let mut differences = Vec::new();
    for (k, (a, b)) in from_xdp.iter().zip(&from_knot).enumerate() {
        let (name, qtype) = questions[k / 4];
        let (Some(a), Some(b)) = (a, b) else { bail!("{name} type {qtype}: no answer (pop {}, knot {})", a.is_some(), b.is_some()) };
        let (ours, knots) = (meaning(a), meaning(b));
        if ours != knots && knot_differs(qtype, b).is_none() {
            differences.push(format!("{name} type {qtype} edns {:?}:\npop:  {ours}\nknot: {knots}", EDNS_VARIANTS[k % 4]));
        }
    }
    assert!(differences.is_empty(), "{} answers differ from Knot's:\n{}", differences.len(), differences.join("\n\n"));
    // Not a comparison of empty answers: big RRsets came back whole and truncated.
    let with_records = from_knot.iter().flatten().filter(|a| a[6..8] != [0, 0]).count();
    let truncated = from_knot.iter().flatten().filter(|a| a[2] & 0x02 != 0).count();
    assert!(with_records >= 10 && truncated >= 20, "{with_records} answers with records, {truncated} truncated");
    Ok(())
}

/// Where Knot answers otherwise and the RFCs leave the choice open, the reason.
fn knot_differs(qtype: u16, knot: &[u8]) -> Option<&'static str> {
    let rcode = knot[3] & 0x0f;
    match qtype {
        // RFC 6895 reserves TYPE0 and says nothing of answering it: Knot says NOTIMP,
        // pop's server (and so XDP) treats it as any type the name lacks (NODATA).
        0 if rcode == 4 => Some("TYPE0 is NOTIMP in Knot"),
        // Neither server transfers zones to this client: Knot says NOTAUTH to IXFR,
        // pop's server NOTIMP (as to AXFR, where Knot agrees). XDP passes both to it.
        251 if rcode == 9 => Some("IXFR is NOTAUTH in Knot"),
        _ => None,
    }
}

// ---- Rate limiting across both answerers, and the TCP fallback ---------------------------

const RRL_A4: &str = "203.0.113.61";
const RRL_A6: &str = "2001:db8:53::61";
const RRL_B6: &str = "2001:db8:53::62";

/// Two rate-limited blocks serving the test zones: A on RRL_A4 and RRL_A6, B on RRL_B6.
fn rrl_lab(rate_limit: u32) -> Result<DnsLab> {
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    lab.addr(&pop, "lo", &format!("{RRL_A4}/32"))?;
    for vip in [RRL_A6, RRL_B6] {
        lab.addr(&pop, "lo", &format!("{vip}/128"))?;
    }
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    lab.route(&client, "2001:db8:53::/64 via 2001:db8::2")?;
    let zone = PathBuf::from(data("example.com.zone"));
    let zones = format!("[\"{}\", \"{}\"]", zone.display(), data("wild.test.zone"));
    let config = lab.pop_config(
        &pop,
        &format!(
            "[[interface]]\nname = \"p0\"\n\n\
             [[dns]]\nvips = [\"{RRL_A4}\", \"{RRL_A6}\"]\nzones = {zones}\nrate_limit = {rate_limit}\n\n\
             [[dns]]\nvips = [\"{RRL_B6}\"]\nzones = {zones}\nrate_limit = {rate_limit}\n"
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    Ok(DnsLab { lab, client, pop, config, zone })
}

/// Sends every query back to back from one socket in `host`, then collects answers until
/// none has come for a second. Returns the answers and how long the sending took.
fn blast(host: &Host, server: &str, queries: Vec<Vec<u8>>) -> Result<(Vec<Vec<u8>>, Duration)> {
    let server = SocketAddr::new(server.parse()?, 53);
    host.in_netns(move || -> Result<(Vec<Vec<u8>>, Duration)> {
        let sock = UdpSocket::bind(if server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" })?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        let started = std::time::Instant::now();
        for q in &queries {
            sock.send_to(q, server)?;
        }
        let sending = started.elapsed();
        let mut answers = Vec::new();
        let mut buf = [0u8; 65535];
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            answers.push(buf[..n].to_vec());
        }
        Ok((answers, sending))
    })?
}

fn truncated(answer: &[u8]) -> bool {
    answer.len() > 2 && answer[2] & 0x02 != 0
}

/// Queries XDP passes to the server (NSID, a trailing byte, an answer count, a wildcard,
/// a delegation, a name deeper than XDP walks) cost the client's bucket like XDP's own
/// answers: at most the rate's worth of full answers come back, whichever side answers.
#[test]
fn rate_limit_holds_for_queries_the_server_answers() -> Result<()> {
    const RATE: u32 = 20;
    let d = rrl_lab(RATE)?;
    let nsid = {
        let mut q = query(0, "www.example.com", 1, 1, Some((1232, false)), false);
        let rdlen = q.len() - 2;
        q[rdlen..].copy_from_slice(&4u16.to_be_bytes());
        q.extend_from_slice(&[0, 3, 0, 0]);
        q
    };
    let trailing = {
        let mut q = query(0, "www.example.com", 1, 1, None, false);
        q.push(0);
        q
    };
    let answer_count = {
        let mut q = query(0, "www.example.com", 1, 1, None, false);
        q[7] = 1;
        q
    };
    let deep = format!("{}example.com", "a.".repeat(20));
    let shapes = [
        nsid,
        trailing,
        answer_count,
        query(0, "anything.wild.test", 1, 1, None, false),
        query(0, "deep.sub.example.com", 1, 1, None, false),
        query(0, &deep, 1, 1, None, false),
        query(0, "www.example.com", 1, 1, None, false),
    ];
    let mut queries = Vec::new();
    for i in 0..420u16 {
        let mut q = shapes[i as usize % shapes.len()].clone();
        q[..2].copy_from_slice(&(i + 1).to_be_bytes());
        queries.push(q);
    }
    let before = d.counters()?;
    let (answers, sending) = blast(&d.client, RRL_A4, queries)?;
    let after = d.counters()?;
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    let full = answers.iter().filter(|a| !truncated(a)).count() as f64;
    let allowed = RATE as f64 * (sending.as_secs_f64() + 1.0) + 2.0;
    assert!(full <= allowed, "{full} full answers in {sending:?} at rate {RATE} (at most {allowed}): {after:?}");
    assert!(full >= RATE as f64, "the burst is served: {full}");
    for k in ["dns.pass.edns", "dns.pass.trailing", "dns.pass.sections", "dns.pass.delegated", "dns.pass.not_in_table"] {
        assert!(delta(k) > 0, "{k} not exercised: {after:?}");
    }
    assert!(delta("dns.rrl.dropped_passed") > 0, "{after:?}");
    Ok(())
}

/// A query for www.example.com from `src` to `vip`, as a frame for BPF_PROG_TEST_RUN.
fn rrl_frame(src: [u8; 16], vip: &str, id: u16) -> Result<Vec<u8>> {
    let vip: [u8; 16] = vip.parse::<std::net::Ipv6Addr>()?.octets();
    let q = query(id, "www.example.com", 1, 1, None, false);
    Ok(pop_lab::frames::udp6(pop_lab::frames::L2::default(), src, vip, 40000 + id % 1000, 53, &q))
}

/// Full (not TC=1) answers XDP gives `n` queries from `src` to `vip`.
fn full_answers(prog: &std::os::fd::OwnedFd, src: [u8; 16], vip: &str, n: u16) -> Result<usize> {
    use pop_lab::{frames, testrun};
    let mut full = 0;
    for id in 0..n {
        let out = testrun::run(prog, &rrl_frame(src, vip, id)?)?;
        if out.verdict == testrun::XDP_TX {
            let a = frames::parse_udp(&out.frame).map_err(anyhow::Error::msg)?;
            full += usize::from(!truncated(&a.payload));
        }
    }
    Ok(full)
}

/// Frames to `vip` from `count` random /56s of 2001:db8::/32 (a spoofing flood), built
/// up front so the flood itself runs as fast as BPF_PROG_TEST_RUN can.
fn random_sources(vip: &str, count: u32) -> Result<Vec<Vec<u8>>> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut frames = Vec::new();
    for i in 0..count {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        src[4..7].copy_from_slice(&seed.to_be_bytes()[..3]);
        frames.push(rrl_frame(src, vip, i as u16)?);
    }
    Ok(frames)
}

/// BPF_PROG_TEST_RUN of `frame`, the output not copied back: as fast as a run can be.
fn run_quietly(prog: &std::os::fd::OwnedFd, frame: &[u8]) -> Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut attr = [0u8; 80];
    attr[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    attr[16..24].copy_from_slice(&(frame.as_ptr() as u64).to_ne_bytes());
    attr[32..36].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: BPF_PROG_TEST_RUN (10) reads `frame` and writes only into `attr`.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 10, attr.as_mut_ptr(), attr.len() as u32) };
    anyhow::ensure!(r == 0, "BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
    Ok(())
}

/// Each spoofed source twice (an LRU keeps entries seen once at the back; a second query
/// makes the flood's entries as "recently used" as a real client's), on two threads.
fn flood(prog: &std::os::fd::OwnedFd, frames: &[Vec<u8>]) -> Result<()> {
    std::thread::scope(|s| {
        let runs: Vec<_> = frames
            .chunks(frames.len().div_ceil(2))
            .map(|part| {
                s.spawn(move || -> Result<()> {
                    for f in part {
                        run_quietly(prog, f)?;
                        run_quietly(prog, f)?;
                    }
                    Ok(())
                })
            })
            .collect();
        runs.into_iter().try_for_each(|r| r.join().map_err(|_| anyhow::anyhow!("flood thread panicked"))?)
    })
}

const VICTIM: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 7];
/// More distinct prefixes than the old LRU of buckets held (65536). The flood must take
/// well under a second: a limited client's bucket refills fully in one anyway.
const FLOOD: u32 = 80_000;

/// Asserts `victim` got no more full answers from `vip` than its rate allows since
/// `since`: its bucket was not handed back full.
fn assert_not_reset(prog: &std::os::fd::OwnedFd, vip: &str, rate: u32, first: usize, since: std::time::Instant) -> Result<()> {
    let again = full_answers(prog, VICTIM, vip, 300)?;
    let elapsed = since.elapsed().as_secs_f64();
    let allowed = rate as f64 * (elapsed + 1.0) + 2.0;
    assert!(
        (first + again) as f64 <= allowed,
        "{first} + {again} full answers in {elapsed:.2}s at rate {rate} (at most {allowed:.0}): the flood reset the bucket"
    );
    Ok(())
}

/// A fresh client's first answers: one burst, plus what the rate refilled meanwhile.
fn assert_one_burst(full: usize, rate: u32, since: std::time::Instant) {
    let most = rate as f64 * (1.0 + since.elapsed().as_secs_f64()) + 2.0;
    assert!(full >= rate as usize && full as f64 <= most, "{full} full answers at first, rate {rate}");
}

#[test]
fn random_source_flood_does_not_reset_a_limited_clients_bucket() -> Result<()> {
    const RATE: u32 = 100;
    let d = rrl_lab(RATE)?;
    let prog = pop_lab::testrun::pinned_program(&d.lab.bpffs_dir().join("pop").join("prog"))?;
    let spoofed = random_sources(RRL_A6, FLOOD)?;
    let since = std::time::Instant::now();
    let first = full_answers(&prog, VICTIM, RRL_A6, 300)?;
    assert_one_burst(first, RATE, since);
    flood(&prog, &spoofed)?;
    println!("flood of {FLOOD} sources after {:?}", since.elapsed());
    assert_not_reset(&prog, RRL_A6, RATE, first, since)
}

/// Each [[dns]] block has buckets of its own: a flood on block A neither resets nor
/// drains the buckets of block B.
#[test]
fn rate_limit_buckets_are_per_dns_block() -> Result<()> {
    const RATE: u32 = 100;
    let d = rrl_lab(RATE)?;
    let prog = pop_lab::testrun::pinned_program(&d.lab.bpffs_dir().join("pop").join("prog"))?;
    let spoofed = random_sources(RRL_A6, FLOOD)?;
    let since = std::time::Instant::now();
    let first = full_answers(&prog, VICTIM, RRL_B6, 300)?;
    assert_one_burst(first, RATE, since);
    flood(&prog, &spoofed)?;
    println!("flood of {FLOOD} sources after {:?}", since.elapsed());
    assert_not_reset(&prog, RRL_B6, RATE, first, since)?;
    let mut fresh = VICTIM;
    fresh[6] = 0x02;
    let burst = full_answers(&prog, fresh, RRL_B6, RATE as u16)?;
    assert_eq!(burst, RATE as usize, "a new client of block B gets its whole burst");
    Ok(())
}

/// DNS over TCP (where TC=1 sends resolvers): one client holding hundreds of idle
/// connections and one never reading its answers do not lock others out. The hog is
/// held to its per-client share, the never-reader is closed, and another client's
/// `dig +tcp` is answered at once.
#[test]
fn tcp_hogs_are_capped_and_other_clients_stay_served() -> Result<()> {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let d = rrl_lab(0)?;
    let vip = SocketAddr::new(RRL_A4.parse()?, 53);
    let (never_reader, idle) = d.client.in_netns(move || -> Result<(TcpStream, Vec<TcpStream>)> {
        // First a client that pipelines queries for a big answer and never reads: a small
        // receive buffer so the server's writes block soon.
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.set_recv_buffer_size(4096)?;
        s.connect(&vip.into())?;
        let mut never_reader: TcpStream = s.into();
        never_reader.set_write_timeout(Some(Duration::from_secs(2)))?;
        let q = query(1, "big.example.com", 16, 1, None, false);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        for _ in 0..20000 {
            if never_reader.write_all(&framed).is_err() {
                break; // the server stopped reading: its writes are blocked
            }
        }
        let idle = (0..600).map(|_| TcpStream::connect(vip)).collect::<std::io::Result<Vec<_>>>()?;
        Ok((never_reader, idle))
    })??;
    let started = std::time::Instant::now();
    let out = dig(&d.client, &["+tcp", "+short", &format!("@{RRL_A6}"), "www.example.com", "A"])?;
    assert!(out.contains("192.0.2.80"), "another client over TCP: {out}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered in {:?}", started.elapsed());

    // The hog's connections over its share are closed by the server.
    for s in &idle {
        s.set_nonblocking(true)?;
    }
    // Well within TCP_IDLE (10 s): these are refused, not timed out.
    pop_lab::wait_until(Duration::from_secs(5), "the server to close the hog's extra connections", || {
        let closed = idle
            .iter()
            .filter(|s| match (&**s).read(&mut [0u8; 1]) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            })
            .count();
        (closed >= 600 - 16).then_some(())
    })?;
    // The never-reader is closed once an answer has waited too long to be taken.
    let port = never_reader.local_addr()?.port();
    pop_lab::wait_until(Duration::from_secs(20), "the server to close the connection that never reads", || {
        let ss = d.pop.stdout(&["ss", "-Htn", "state", "established", &format!("( dport = :{port} )")]).ok()?;
        ss.trim().is_empty().then_some(())
    })?;
    Ok(())
}

/// XDP cannot charge IP fragments to a bucket (only the first has ports): a query sent as
/// two fragments must not get an (unlimited) answer from anyone.
#[test]
fn fragmented_queries_get_no_unlimited_answers() -> Result<()> {
    const RATE: u32 = 20;
    let d = rrl_lab(RATE)?;
    let vip: std::net::Ipv4Addr = RRL_A4.parse()?;
    let (fragmented, whole) = d.client.in_netns(move || -> Result<(usize, bool)> {
        let sock = UdpSocket::bind("192.0.2.1:0")?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        let sport = sock.local_addr()?.port();
        // SAFETY: a raw IPv4 socket (IP_HDRINCL implied); closed below.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        anyhow::ensure!(raw >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let dst = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(vip.octets()) },
            sin_zero: [0; 8],
        };
        for id in 0..100u16 {
            let q = query(id, "www.example.com", 1, 1, None, false);
            let frame = pop_lab::frames::udp4(pop_lab::frames::L2::default(), [192, 0, 2, 1], vip.octets(), sport, 53, &[], &q);
            let ip = &frame[14..];
            // First fragment: the UDP header and 8 bytes of DNS (MF); second: the rest.
            for (flags_offset, part) in [(0x2000u16, &ip[20..36]), (2, &ip[36..])] {
                let mut p = ip[..20].to_vec();
                p[2..4].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
                p[4..6].copy_from_slice(&(0x4000 + id).to_be_bytes());
                p[6..8].copy_from_slice(&flags_offset.to_be_bytes());
                p[10..12].copy_from_slice(&[0, 0]);
                let c = pop_lab::testrun::checksum(&p);
                p[10..12].copy_from_slice(&c.to_be_bytes());
                p.extend_from_slice(part);
                // SAFETY: buffers valid for the call.
                let n = unsafe { libc::sendto(raw, p.as_ptr().cast(), p.len(), 0, (&raw const dst).cast(), size_of::<libc::sockaddr_in>() as u32) };
                anyhow::ensure!(n == p.len() as isize, "sending a fragment: {}", std::io::Error::last_os_error());
            }
        }
        unsafe { libc::close(raw) };
        let mut buf = [0u8; 4096];
        let mut answers = 0;
        while sock.recv_from(&mut buf).is_ok() {
            answers += 1;
        }
        // The same query unfragmented is answered (the fragments were never charged).
        let mut whole = false;
        for id in 1000..1010u16 {
            sock.send_to(&query(id, "www.example.com", 1, 1, None, false), (vip, 53))?;
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                whole |= n > 2 && buf[..2] == id.to_be_bytes();
                if whole {
                    break;
                }
            }
        }
        Ok((answers, whole))
    })??;
    let c = d.counters()?;
    // Fragments to a VIP are dropped in XDP (no handler reassembles them); the server
    // also refuses reassembled queries, for a VIP that opts out of that drop.
    assert!(c["drop.vip_fragment"] + c["pass.fragment"] >= 200, "the fragments reached the PoP: {c:?}");
    assert_eq!(fragmented, 0, "answers to fragmented queries");
    assert!(whole, "an ordinary query is still answered");
    Ok(())
}

/// Likewise IPv6 behind an extension header: XDP sees no UDP header and passes it, so
/// the server must not answer it either.
#[test]
fn ipv6_queries_behind_extension_headers_get_no_unlimited_answers() -> Result<()> {
    const RATE: u32 = 20;
    let d = rrl_lab(RATE)?;
    let vip: SocketAddr = SocketAddr::new(RRL_A6.parse()?, 53);
    let (with_options, whole) = d.client.in_netns(move || -> Result<(usize, bool)> {
        let sock = UdpSocket::bind("[2001:db8::1]:0")?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        let plain = UdpSocket::bind("[2001:db8::1]:0")?;
        plain.set_read_timeout(Some(Duration::from_secs(1)))?;
        // A destination options header (one PadN option) on every datagram sent.
        let dstopts: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
        use std::os::fd::AsRawFd as _;
        // SAFETY: a valid socket and an 8-byte option buffer.
        let r = unsafe { libc::setsockopt(sock.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_DSTOPTS, dstopts.as_ptr().cast(), 8) };
        anyhow::ensure!(r == 0, "IPV6_DSTOPTS: {}", std::io::Error::last_os_error());
        for id in 0..100u16 {
            sock.send_to(&query(id, "www.example.com", 1, 1, None, false), vip)?;
        }
        let mut buf = [0u8; 4096];
        let mut answers = 0;
        while sock.recv_from(&mut buf).is_ok() {
            answers += 1;
        }
        plain.send_to(&query(1000, "www.example.com", 1, 1, None, false), vip)?;
        let whole = matches!(plain.recv_from(&mut buf), Ok((n, _)) if n > 2 && buf[..2] == 1000u16.to_be_bytes());
        Ok((answers, whole))
    })??;
    let c = d.counters()?;
    assert!(c["l4.other"] >= 100, "the queries reached the PoP behind the header: {c:?}");
    assert_eq!(with_options, 0, "answers to queries behind an extension header");
    assert!(whole, "an ordinary query is still answered");
    Ok(())
}
