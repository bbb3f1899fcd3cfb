//! Pre-signed zones: pop serves what ldns-signzone wrote as Knot DNS serves the same
//! files. Three zones are signed at test time, with NSEC, with NSEC3, and with NSEC3
//! opt-out (insecure delegations added unsigned after signing, as ldns-signzone's
//! manual says); every name × type × DO × EDNS size is asked of both servers over UDP
//! and TCP and the answers must mean the same: rcode, AA, TC and each section's records
//! (sorted within the section; the ID is the query's). delv (BIND's validating lookup
//! tool), trusting each zone's KSK, then validates a sample of pop's answers.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use pop_lab::{Host, Lab};

const POP4: &str = "203.0.113.53";
const KNOT4: &str = "203.0.113.57";

const TEMPLATE: &str = r#"$TTL 3600
@        IN SOA ns1 hostmaster ( 2024010101 7200 3600 1209600 300 )
@        IN NS  ns1
@        IN MX  10 mail
ns1      IN A   192.0.2.1
ns1      IN AAAA 2001:db8::1
www      IN A   192.0.2.10
www      IN TXT "v=spf1 -all"
mail     IN A   192.0.2.25
alias    IN CNAME www
walias   IN CNAME x.wild
dangling IN CNAME nothere
a.b.ent  IN A   192.0.2.30
*.wild   IN A   192.0.2.99
*.wild   IN TXT "wild"
sub      IN NS  ns.sub
ns.sub   IN A   192.0.2.53
sub      IN DS  12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
big      IN TXT "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
big      IN TXT "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
"#;

/// Insecure delegations: signed over in the NSEC and NSEC3 zones, added after signing
/// (so without NSEC3) in the opt-out zone. `x.oo` makes `oo` an empty non-terminal
/// that only an insecure delegation creates.
const INSECURE: &str = "insec    IN NS  ns.insec\nns.insec IN A   192.0.2.54\nx.oo     IN NS  ns.x.oo\nns.x.oo  IN A   192.0.2.55\n";

/// (apex, ldns-signzone options, sign the insecure delegations).
const ZONES: [(&str, &[&str], bool); 3] =
    [("nsec.test", &[], true), ("nsec3.test", &["-n", "-s", "aabbccdd", "-t", "2"], true), ("optout.test", &["-n", "-p", "-t", "0"], false)];

fn tool(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?} (ldnsutils installed?)"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Writes and signs one zone in `dir`; returns the signed file.
fn sign(dir: &Path, apex: &str, options: &[&str], sign_insecure: bool) -> Result<String> {
    let unsigned = dir.join(format!("{apex}.zone"));
    let mut text = format!("$ORIGIN {apex}.\n{TEMPLATE}");
    if sign_insecure {
        text += INSECURE;
    }
    std::fs::write(&unsigned, text)?;
    let keygen = |ksk: bool| {
        let mut c = Command::new("ldns-keygen");
        c.current_dir(dir).args(["-a", "ECDSAP256SHA256"]);
        if ksk {
            c.arg("-k");
        }
        tool(c.arg(apex))
    };
    let (ksk, zsk) = (keygen(true)?, keygen(false)?);
    let signed = dir.join(format!("{apex}.signed"));
    let mut c = Command::new("ldns-signzone");
    c.current_dir(dir).args(["-e", "20370101000000", "-i", "20240101000000", "-f"]).arg(&signed).args(options);
    tool(c.arg(&unsigned).arg(&ksk).arg(&zsk))?;
    if !sign_insecure {
        let mut f = std::fs::OpenOptions::new().append(true).open(&signed)?;
        f.write_all(format!("$ORIGIN {apex}.\n$TTL 3600\n{INSECURE}").as_bytes())?;
    }
    Ok(signed.display().to_string())
}

fn query(id: u16, name: &str, qtype: u16, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, if edns.is_some() { 1 } else { 0 }]);
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    if let Some((size, dnssec_ok)) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    q
}

/// One TCP connection per batch of queries, one at a time (RFC 7766 framing).
fn tcp_exchange(host: &Host, server: &str, queries: Vec<Vec<u8>>) -> Result<Vec<Option<Vec<u8>>>> {
    let server = SocketAddr::new(server.parse()?, 53);
    host.in_netns(move || -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::new();
        for batch in queries.chunks(50) {
            let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            for q in batch {
                let mut msg = (q.len() as u16).to_be_bytes().to_vec();
                msg.extend_from_slice(q);
                s.write_all(&msg)?;
                let mut len = [0u8; 2];
                if s.read_exact(&mut len).is_err() {
                    out.push(None);
                    continue;
                }
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                out.push(s.read_exact(&mut buf).ok().map(|_| buf));
            }
        }
        Ok(out)
    })?
}

/// What a resolver takes from an answer: rcode, AA, TC, the OPT's DO bit and each
/// section's records, sorted within the section.
fn meaning(a: &[u8]) -> String {
    let flags = u16::from_be_bytes([a[2], a[3]]);
    let mut out = format!("rcode {} aa {} tc {}", flags & 0xf, flags >> 10 & 1, flags >> 9 & 1);
    match hickory_proto::op::Message::from_vec(a) {
        Ok(m) => {
            if let Some(e) = &m.edns {
                out += &format!(" do {}", e.flags().dnssec_ok);
            }
            for (what, section) in [("answer", &m.answers), ("authority", &m.authorities), ("additional", &m.additionals)] {
                let mut rrs: Vec<String> = section
                    .iter()
                    .filter(|r| u16::from(r.record_type()) != 41)
                    .map(|r| format!("{} {} {} {}", r.name.to_ascii().to_lowercase(), r.ttl, u16::from(r.record_type()), r.data).to_lowercase())
                    .collect();
                rrs.sort();
                out += &format!("\n{what}: {rrs:#?}");
            }
        }
        Err(e) => out += &format!("\nunparsable: {e}"),
    }
    out
}

const EDNS: [Option<(u16, bool)>; 5] = [None, Some((1232, false)), Some((512, true)), Some((1232, true)), Some((4096, true))];

/// Where Knot answers otherwise and pop follows the RFC, the reason.
fn knot_differs(name: &str, qtype: u16, ours: &str, knots: &str) -> Option<&'static str> {
    // qtype NSEC at a name a wildcard answers in an NSEC zone: both send the synthesized
    // NSEC; pop adds the NSEC proving that no closer name exists, as RFC 4035 section
    // 3.1.3.3 asks of every wildcard answer, Knot does not. (NSD differs here too.)
    let wildcard_nsec = qtype == 47
        && name.ends_with(".wild.nsec.test")
        && knots.contains("authority: []")
        && ours.replace(|c: char| c.is_whitespace(), "").contains("authority:[\"*.wild.nsec.test.30046")
        && ours.split("authority:").next() == knots.split("authority:").next();
    wildcard_nsec.then_some("the wildcard proof for qtype NSEC")
}

fn questions() -> Vec<(String, u16)> {
    let names = [
        "", "ns1", "www", "mail", "alias", "walias", "dangling", "a.b.ent", "b.ent", "ent", "x.wild", "y.z.wild", "wild", "*.wild", "sub", "ns.sub",
        "deep.sub", "insec", "ns.insec", "a.insec", "x.oo", "oo", "y.oo", "big", "nope", "x.nope", "zzz", "0",
    ];
    // A NS CNAME SOA MX TXT AAAA DS RRSIG NSEC DNSKEY NSEC3 NSEC3PARAM ANY, a type no name has.
    let types = [1u16, 2, 5, 6, 15, 16, 28, 43, 46, 47, 48, 50, 51, 255, 99];
    let mut qs = Vec::new();
    for (apex, _, _) in ZONES {
        for n in names {
            let name = if n.is_empty() { apex.to_string() } else { format!("{n}.{apex}") };
            for t in types {
                qs.push((name.clone(), t));
            }
        }
    }
    qs
}

#[test]
fn signed_zones_are_answered_as_knot_answers_them() -> Result<()> {
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    for vip in [POP4, KNOT4] {
        lab.addr(&pop, "lo", &format!("{vip}/32"))?;
    }
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    let signdir = lab.dir.join("sign");
    std::fs::create_dir_all(&signdir)?;
    let mut files = Vec::new();
    for (apex, options, sign_insecure) in ZONES {
        files.push((apex, sign(&signdir, apex, options, sign_insecure)?));
    }

    let zones = files.iter().map(|(_, f)| format!("\"{f}\"")).collect::<Vec<_>>().join(", ");
    let config =
        lab.pop_config(&pop, &format!("[[interface]]\nname = \"p0\"\n\n[[dns]]\nvips = [\"{POP4}\"]\nzones = [{zones}]\nrate_limit = 0\n"))?;
    lab.start_pop(&pop, "pop", &config)?;

    let run = lab.dir.join("knot");
    std::fs::create_dir_all(run.join("db"))?;
    let mut conf = format!(
        "server:\n    rundir: \"{r}\"\n    listen: {KNOT4}@53\n    udp-workers: 1\n    tcp-workers: 1\n\
         database:\n    storage: \"{r}/db\"\nlog:\n  - target: stderr\n    any: warning\nzone:\n",
        r = run.display()
    );
    for (apex, file) in &files {
        conf += &format!("  - domain: {apex}\n    file: \"{file}\"\n    journal-content: none\n    zonefile-sync: -1\n");
    }
    let conf = lab.write("knot.conf", &conf)?;
    lab.spawn(&pop, "knot", &["knotd", "-c", conf.to_str().unwrap()])?;
    pop_lab::wait_until(Duration::from_secs(20), "knotd answering", || {
        pop_lab::udp_exchange(&client, KNOT4, vec![query(1, "optout.test", 6, None)]).ok()?.remove(0)
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", lab.daemon_log("knot").unwrap_or_default()))?;

    let qs = questions();
    let mut queries = Vec::new();
    for (i, (name, qtype)) in qs.iter().enumerate() {
        for (j, edns) in EDNS.into_iter().enumerate() {
            queries.push(query((i * EDNS.len() + j) as u16, name, *qtype, edns));
        }
    }
    let before = lab.pop_counters(&pop, &config)?;
    let mut differences = Vec::new();
    let mut signed_answers = 0;
    let mut nsec3_proofs = 0;
    let mut truncated = 0;
    for transport in ["udp", "tcp"] {
        let exchange = if transport == "udp" { pop_lab::udp_exchange } else { tcp_exchange };
        let ours = exchange(&client, POP4, queries.clone())?;
        let knots = exchange(&client, KNOT4, queries.clone())?;
        for (k, (a, b)) in ours.iter().zip(&knots).enumerate() {
            let (name, qtype) = &qs[k / EDNS.len()];
            let edns = EDNS[k % EDNS.len()];
            let (Some(a), Some(b)) = (a, b) else {
                bail!("{transport} {name} type {qtype} {edns:?}: no answer (pop {}, knot {})", a.is_some(), b.is_some())
            };
            let (m_ours, m_knot) = (meaning(a), meaning(b));
            if m_ours != m_knot && knot_differs(name, *qtype, &m_ours, &m_knot).is_none() {
                differences.push(format!("{transport} {name} type {qtype} edns {edns:?}:\npop:  {m_ours}\nknot: {m_knot}"));
            }
            signed_answers += usize::from(m_knot.contains(" 46 "));
            nsec3_proofs += usize::from(m_knot.contains(" 50 "));
            truncated += usize::from(b[2] & 0x02 != 0);
        }
    }
    if let Ok(path) = std::env::var("POP_DNSSEC_DIFFS") {
        std::fs::write(path, differences.join("\n\n"))?;
    }
    let shown: Vec<&String> = differences.iter().take(12).collect();
    assert!(
        differences.is_empty(),
        "{} of {} answers differ from Knot's; the first:\n{}",
        differences.len(),
        2 * queries.len(),
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n\n")
    );
    // Not a comparison of unsigned or empty answers.
    assert!(
        signed_answers > 1000 && nsec3_proofs > 300 && truncated > 50,
        "{signed_answers} signed, {nsec3_proofs} with NSEC3, {truncated} truncated"
    );

    // A validator agrees: delv, trusting each zone's KSK, validates pop's positive,
    // NXDOMAIN, NODATA, wildcard, CNAME, empty non-terminal, DS and DNSKEY answers.
    for (apex, file) in &files {
        let signed = std::fs::read_to_string(file)?;
        let ksk = signed
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|t| t.len() > 7 && t[3] == "DNSKEY" && t[4] == "257")
            .with_context(|| format!("no KSK in {file}"))?;
        let key: String = ksk[7..].iter().take_while(|t| !t.starts_with(';')).copied().collect();
        let anchor =
            lab.write(&format!("{apex}.anchor"), &format!("trust-anchors {{\n  {} static-key 257 3 {} \"{key}\";\n}};\n", ksk[0], ksk[6]))?;
        for (label, qtype) in [
            ("www", "A"),
            ("nope", "A"),
            ("www", "AAAA"),
            ("x.wild", "A"),
            ("x.wild", "MX"),
            ("alias", "A"),
            ("b.ent", "A"),
            ("sub", "DS"),
            ("", "DNSKEY"),
        ] {
            let name = if label.is_empty() { apex.to_string() } else { format!("{label}.{apex}") };
            // A wildcard answer whose next closer name is covered by an opt-out NSEC3
            // could hide an unsigned delegation: it can only be insecure (RFC 5155
            // section 9.2), from Knot as from pop. (delv accepts the denials.)
            let want = if *apex == "optout.test" && (label, qtype) == ("x.wild", "A") { "unsigned" } else { "fully validated" };
            let root = format!("+root={apex}");
            let out = client.output(&["delv", &format!("@{POP4}"), "-a", anchor.to_str().unwrap(), &root, &name, qtype])?;
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(text.contains(want), "delv does not say {want:?} of pop's answer to {name} {qtype}:\n{text}");
        }
    }

    // XDP answered most of them (DO=0, and DO=1 to exact questions from the signed
    // twins), all alike Knot's as checked above; DO=1 denials and signed answers over
    // the client's size went to the server.
    let after = lab.pop_counters(&pop, &config)?;
    let delta = |k: &str| after[k] - before[k];
    let xdp = delta("dns.xdp.noerror") + delta("dns.xdp.nxdomain") + delta("dns.xdp.other_rcode") + delta("dns.xdp.truncated");
    let signed_pass = delta("dns.pass.signed");
    println!("XDP answered {xdp} of {} UDP queries; {signed_pass} passed as signed", queries.len());
    // (Most of the questions are under delegations, wildcards or not there: the server's.)
    assert!(xdp > 1000, "XDP answered only {xdp} of {} queries for signed zones: {after:?}", queries.len());
    assert!(signed_pass > 0, "no DO=1 denial went to the server: {after:?}");
    // One DO=1 question: its signed answer, from XDP.
    let one = pop_lab::udp_exchange(&client, POP4, vec![query(7, "www.nsec3.test", 1, Some((1232, true)))])?.remove(0).context("no answer")?;
    let later = lab.pop_counters(&pop, &config)?;
    assert_eq!(later["dns.xdp.noerror"], after["dns.xdp.noerror"] + 1, "not answered by XDP: {later:?}");
    let m = meaning(&one);
    assert!(m.contains("do true") && m.contains("www.nsec3.test. 3600 46 "), "no RRSIG in the answer: {m}");
    Ok(())
}
