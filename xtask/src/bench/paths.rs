//! Per-path XDP cost under load: for each of pop's packet paths, the same trafgen flood
//! is offered to pop and to the floor program doing the same frame work (pop-ebpf's
//! `pop-floor` object), attached in turn to the same veth of the same lab. The cost per
//! packet is the program's run_time_ns / run_cnt delta over the flood (kernel BPF
//! stats); the headline is pop / floor. PROG_TEST_RUN single runs (with their fixed
//! ~150 ns timer overhead) stay as a secondary column.

use std::{
    fmt::Write as _,
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use pop_lab::{Host, Lab, frames, testrun, wait_until};

use super::{bpf_stats, mac_of};

/// Packets per flood and the rate offered (what the figures were taken with).
pub const PACKETS: u64 = 300_000;
pub const RATE: u64 = 100_000;
/// Single PROG_TEST_RUN runs per path for the secondary column.
const TEST_RUNS: u32 = 5_000;

const DNS_VIP: [u8; 4] = [203, 0, 113, 53];
/// A second DNS block's VIP, with response rate limiting on.
const RRL_VIP: [u8; 4] = [203, 0, 113, 54];
/// Its limit per client /24: above what each of the flood's 256 source /24s sends
/// (100k/s over 256 is ~390/s), so every query is answered and charged.
const RRL_RATE: u32 = 1000;
const HTTP_VIP: [u8; 4] = [203, 0, 113, 80];
const LB_VIP: [u8; 4] = [203, 0, 113, 10];
const BACKEND: &str = "192.0.2.141";
const CLIENT: [u8; 4] = [192, 0, 2, 1];

/// What trafgen varies per packet in a path's frame.
#[derive(Clone, Copy, PartialEq)]
enum Vary {
    Nothing,
    /// Random bytes in the first label of the question name (a random-subdomain flood).
    QnameLabel,
    /// A random TCP source port: a new flow per packet.
    SourcePort,
    /// A random IPv4 source in 198.18.0.0/16 (RFC 2544's benchmarking range): a spoofed
    /// random-source flood, 256 client /24s as the rate limiter sees them.
    SourceAddr,
}

struct Path_ {
    name: &'static str,
    floor: &'static str,
    frame: Vec<u8>,
    vary: Vary,
    /// pop's verdict for the template frame (checked by a test run first).
    verdict: u32,
    goal: f64,
}

/// One measured path.
pub struct Measured {
    pub name: &'static str,
    pub floor: &'static str,
    pub floor_ns: f64,
    pub pop_ns: f64,
    pub goal: f64,
    pub floor_testrun_ns: f64,
    pub pop_testrun_ns: f64,
    pub pop_runs: u64,
}

/// Builds pop-ebpf's floor object (nightly, its own target directory) and returns it.
fn floor_object() -> Result<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize()?;
    let target = root.join("target/bpf-floor");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--release", "--locked", "--bin", "pop-floor"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--manifest-path")
        .arg(root.join("pop-ebpf/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f-Clink-arg=--disable-expand-memcpy-in-order");
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "RUSTC_WRAPPER", "RUSTFLAGS", "CARGO_TARGET_DIR", "RUSTUP_TOOLCHAIN", "CARGO"] {
        cmd.env_remove(key);
    }
    if !cmd.status()?.success() {
        bail!("building pop-ebpf's pop-floor failed");
    }
    Ok(std::fs::read(target.join("bpfel-unknown-none/release/pop-floor"))?)
}

/// Loads floor program `name` in `host`'s namespace, attaches it (native mode) to
/// `iface` with its link pinned at `pin` (remove the pin to detach); returns its fd.
fn attach_floor(host: &Host, object: &[u8], name: &'static str, iface: &'static str, pin: &Path) -> Result<OwnedFd> {
    let object = object.to_vec();
    let pin = pin.to_path_buf();
    host.in_netns(move || -> Result<OwnedFd> {
        let mut bpf = aya::Ebpf::load(&object)?;
        let prog: &mut aya::programs::Xdp = bpf.program_mut(name).with_context(|| format!("no program {name}"))?.try_into()?;
        prog.load()?;
        let id = prog.attach(iface, aya::programs::XdpMode::Driver).with_context(|| format!("attaching {name} to {iface}"))?;
        let fd = prog.fd()?.as_fd().try_clone_to_owned()?;
        let link: aya::programs::links::FdLink = prog.take_link(id)?.try_into()?;
        link.pin(&pin).map_err(|e| anyhow::anyhow!("pinning {}: {e}", pin.display()))?;
        Ok(fd)
    })?
}

/// trafgen config for `frame` with real MACs, `vary` bytes randomised and the checksums
/// trafgen must then recompute per packet.
fn trafgen_config(frame: &[u8], dst_mac: [u8; 6], src_mac: [u8; 6], vary: Vary) -> String {
    let mut tok: Vec<Option<String>> = frame.iter().map(|b| Some(format!("{b:#04x}"))).collect();
    for i in 0..6 {
        tok[i] = Some(format!("{:#04x}", dst_mac[i]));
        tok[6 + i] = Some(format!("{:#04x}", src_mac[i]));
    }
    let l4 = 14 + 20;
    let csum = |at: usize, f: String, tok: &mut Vec<Option<String>>| {
        tok[at] = Some(f);
        tok[at + 1] = None;
    };
    match vary {
        Vary::Nothing => {}
        Vary::QnameLabel => {
            // The first label's bytes after its length octet (the template's label is 8 long).
            for i in 0..8 {
                tok[l4 + 8 + 12 + 1 + i] = Some("drnd()".into());
            }
            csum(l4 + 6, format!("csumudp(14, {l4})"), &mut tok);
        }
        Vary::SourcePort => {
            tok[l4] = Some("drnd()".into());
            tok[l4 + 1] = Some("drnd()".into());
            csum(l4 + 16, format!("csumtcp(14, {l4})"), &mut tok);
        }
        Vary::SourceAddr => {
            let src = 14 + 12;
            tok[src] = Some("198".into());
            tok[src + 1] = Some("18".into());
            tok[src + 2] = Some("drnd()".into());
            tok[src + 3] = Some("drnd()".into());
            csum(14 + 10, format!("csumip(14, {})", l4 - 1), &mut tok);
            csum(l4 + 6, format!("csumudp(14, {l4})"), &mut tok);
        }
    }
    let body: Vec<String> = tok.into_iter().flatten().collect();
    format!("{{ {} }}\n", body.join(", "))
}

/// Offers the flood of `conf` from `client`'s c0; returns the (run_time_ns, run_cnt)
/// delta of `prog` over it.
fn flood(client: &Host, conf: &Path, prog: &OwnedFd) -> Result<(u64, u64)> {
    let (t0, n0) = bpf_stats(prog)?;
    client.run(&[
        "trafgen",
        "--dev",
        "c0",
        "--conf",
        conf.to_str().unwrap(),
        "--num",
        &PACKETS.to_string(),
        "-P",
        "1",
        "-q",
        "--rate",
        &format!("{RATE}pps"),
    ])?;
    // The last frames are processed within milliseconds of trafgen's exit.
    let mut last = bpf_stats(prog)?.1;
    let _ = wait_until(Duration::from_secs(2), "the flood to drain", || {
        let now = bpf_stats(prog).ok()?.1;
        let settled = now == last;
        last = now;
        settled.then_some(())
    });
    let (t1, n1) = bpf_stats(prog)?;
    Ok((t1 - t0, n1 - n0))
}

fn dns_query(name: &str) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

const XDP_REDIRECT: u32 = 4;

/// `prog`'s verdict on `frame` and its mean ns over `runs` single test runs, run in
/// `host`'s namespace (the program's route lookups see that namespace's routes).
fn test_run(host: &Host, prog: &OwnedFd, frame: &[u8], runs: u32) -> Result<(u32, f64)> {
    let (fd, frame) = (prog.try_clone()?, frame.to_vec());
    host.in_netns(move || -> Result<(u32, f64)> {
        let verdict = testrun::run(&fd, &frame)?.verdict;
        Ok((verdict, if runs > 1 { testrun::mean_ns(&fd, &frame, runs)? } else { 0.0 }))
    })?
}

/// The first segment after the handshake: a curl-sized GET acknowledging `ack`, with
/// TCP options `opts`.
fn http_request(ack: u32, opts: &[u8]) -> Vec<u8> {
    frames::tcp4_with_options(
        &[],
        opts,
        HTTP_VIP,
        40000,
        1001,
        ack,
        0x18,
        b"GET /some/page HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    )
}

/// A SYN as Linux sends it: MSS 1460, SACK permitted, timestamps, NOP, window scale.
fn http_syn_with_timestamps() -> Vec<u8> {
    let mut opts = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    opts.extend(0x0100_0000u32.to_be_bytes());
    opts.extend([0, 0, 0, 0, 1, 3, 3, 7]);
    frames::tcp4_with_options(&[], &opts, HTTP_VIP, 40000, 1000, 0, 0x02, &[])
}

/// [`http_request`] with timestamps (NOP, NOP, TS) echoing `tsecr`, pop's SYN-ACK TSval:
/// every one is a round trip recorded (the flood lasts seconds, well under RTT_MAX_US).
fn http_request_with_timestamps(ack: u32, tsecr: u32) -> Vec<u8> {
    let mut opts = vec![1, 1, 8, 10];
    opts.extend(0x0100_0010u32.to_be_bytes());
    opts.extend(tsecr.to_be_bytes());
    http_request(ack, &opts)
}

/// The lab (client c0 — pop p0), every path measured on floor and pop; returns rows.
pub fn measure() -> Result<Vec<Measured>> {
    println!("[bench] per-path cost: building pop-floor");
    let object = floor_object()?;
    let _ = Command::new("sysctl").args(["-qw", "kernel.bpf_stats_enabled=1"]).status();
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    for vip in [DNS_VIP, RRL_VIP, HTTP_VIP, LB_VIP] {
        let v = std::net::Ipv4Addr::from(vip);
        lab.addr(&pop, "lo", &format!("{v}/32"))?;
        lab.route(&client, &format!("{v}/32 via 192.0.2.2"))?;
    }
    // The backend lives behind the client's veth: the PoP's FIB lookup finds it on p0
    // (a permanent neighbour: nothing answers ARP for it), so pop's IPIP frames leave
    // by XDP_TX like the encapsulator floor's.
    let c0_mac = mac_of(&client, "c0")?;
    let p0_mac = mac_of(&pop, "p0")?;
    let mac_text: Vec<String> = c0_mac.iter().map(|b| format!("{b:02x}")).collect();
    pop.run(&["ip", "neigh", "replace", BACKEND, "lladdr", &mac_text.join(":"), "dev", "p0", "nud", "permanent"])?;
    // Forwarding on p0 for the flood, on lo for test runs (which arrive there).
    for i in ["p0", "lo"] {
        pop.sysctl(&format!("net.ipv4.conf.{i}.forwarding"), "1")?;
    }
    // The spoofed sources' answers come back to c0 like the others (XDP_TX).
    // The client's kernel must not answer what comes back (RSTs to the SYN-ACKs, ICMP to
    // the DNS answers): those would run through the program under test too.
    let nft = lab.write(
        "client-drop.nft",
        "table inet bench_drop {\n  chain pre { type filter hook prerouting priority -300; ip saddr 203.0.113.0/24 drop; }\n}\n",
    )?;
    client.run(&["nft", "-f", nft.to_str().unwrap()])?;

    let l2 = frames::L2::default();
    let syn = frames::tcp4(HTTP_VIP, 40000, 1000, 0, 0x02, &[]);
    let mut paths = [
        Path_ {
            name: "DNS hit (www.example.com A: CNAME + A)",
            floor: "floor_dns_reflect",
            frame: frames::udp4(l2, CLIENT, DNS_VIP, 40053, 53, &[], &dns_query("www.example.com")),
            vary: Vary::Nothing,
            verdict: testrun::XDP_TX,
            goal: 3.0,
        },
        Path_ {
            name: "DNS NXDOMAIN, random names",
            floor: "floor_dns_reflect",
            frame: frames::udp4(l2, CLIENT, DNS_VIP, 40053, 53, &[], &dns_query("abcdefgh.example.com")),
            vary: Vary::QnameLabel,
            verdict: testrun::XDP_TX,
            goal: 4.0,
        },
        Path_ {
            name: "LB flow hit (TCP ACK, one flow)",
            floor: "floor_ipip_encap",
            frame: frames::tcp4(LB_VIP, 50000, 2, 1, 0x10, &[]),
            vary: Vary::Nothing,
            verdict: testrun::XDP_TX,
            goal: 2.0,
        },
        Path_ {
            name: "LB new flow per packet (SYN flood)",
            floor: "floor_ipip_encap",
            frame: frames::tcp4(LB_VIP, 50000, 1, 0, 0x02, &[]),
            vary: Vary::SourcePort,
            verdict: testrun::XDP_TX,
            goal: 3.0,
        },
        Path_ {
            name: "HTTP SYN -> SYN-ACK with cookie",
            floor: "floor_tcp_reflect",
            frame: syn.clone(),
            vary: Vary::Nothing,
            verdict: testrun::XDP_TX,
            goal: 3.0,
        },
        // The floor ignores the cookie; pop's frame gets the real one below (same length).
        Path_ {
            name: "HTTP request -> response + FIN",
            floor: "floor_tcp_reflect",
            frame: http_request(0, &[]),
            vary: Vary::Nothing,
            verdict: testrun::XDP_TX,
            goal: 5.0,
        },
        Path_ {
            name: "packet not for a VIP (UDP to the PoP's address)",
            floor: "floor_pass",
            frame: frames::udp4(l2, CLIENT, [192, 0, 2, 2], 40000, 9, &[], &[0; 32]),
            vary: Vary::Nothing,
            verdict: testrun::XDP_PASS,
            goal: 1.5,
        },
        // Real clients offer timestamps: the SYN-ACK echoes them, and the request's
        // round trip is recorded (issue 15: at most 5% over the paths above).
        Path_ {
            name: "HTTP SYN with timestamps -> SYN-ACK with cookie and timestamps",
            floor: "floor_tcp_reflect",
            frame: http_syn_with_timestamps(),
            vary: Vary::Nothing,
            verdict: testrun::XDP_TX,
            goal: 3.0,
        },
        Path_ {
            name: "HTTP request with timestamps -> response + FIN, round trip recorded",
            floor: "floor_tcp_reflect",
            frame: http_request_with_timestamps(0, 0),
            vary: Vary::Nothing,
            verdict: testrun::XDP_TX,
            goal: 5.0,
        },
        // A reflection attack's shape: every query from another spoofed source, each
        // charged to its /24's rate-limit bucket.
        Path_ {
            name: "DNS hit, spoofed random sources, RRL on",
            floor: "floor_dns_reflect",
            frame: frames::udp4(l2, [198, 18, 0, 1], RRL_VIP, 40053, 53, &[], &dns_query("www.example.com")),
            vary: Vary::SourceAddr,
            verdict: testrun::XDP_TX,
            goal: 5.0,
        },
    ];

    // Floors first, each alone on p0.
    let mut floor_ns = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        println!("[bench] floor {} for {}", p.floor, p.name);
        let pin = lab.bpffs_dir().join(format!("floor-link-{i}"));
        let fd = attach_floor(&pop, &object, p.floor, "p0", &pin)?;
        let conf = lab.write(&format!("path-{i}.cfg"), &trafgen_config(&p.frame, p0_mac, c0_mac, p.vary))?;
        let (ns, n) = flood(&client, &conf, &fd)?;
        let (_, tr) = test_run(&pop, &fd, &p.frame, TEST_RUNS)?;
        std::fs::remove_file(&pin)?;
        floor_ns.push((ns as f64 / n.max(1) as f64, tr));
    }

    let data = super::data_dir();
    let zones = format!("[\"{}\", \"{}\"]", data.join("example.com.zone").display(), data.join("wild.test.zone").display());
    let v = |a: [u8; 4]| std::net::Ipv4Addr::from(a).to_string();
    let config = lab.pop_config(
        &pop,
        &format!(
            "[[interface]]\nname = \"p0\"\n\n[[dns]]\nvips = [\"{}\"]\nzones = {zones}\nrate_limit = 0\n\n\
             [[dns]]\nvips = [\"{}\"]\nzones = {zones}\nrate_limit = {RRL_RATE}\n\n\
             [[service]]\nname = \"web\"\nvips = [\"{}\"]\nport = 80\nbackends = [{{ address = \"{BACKEND}\" }}]\n\n\
             [[http]]\nname = \"edge\"\nvips = [\"{}\"]\n[http.default]\nstatus = 301\nlocation = \"https://www.example.com\"\nappend_path = true\n",
            v(DNS_VIP),
            v(RRL_VIP),
            v(LB_VIP),
            v(HTTP_VIP)
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    let prog = testrun::pinned_program(&lab.bpffs_dir().join("pop").join("prog"))?;
    wait_until(Duration::from_secs(15), "pop answering www.example.com", || {
        test_run(&pop, &prog, &paths[0].frame, 1).ok().filter(|o| o.0 == testrun::XDP_TX)
    })?;
    // The HTTP request needs the cookie pop sends for the SYN.
    let synack = {
        let (fd, syn) = (prog.try_clone()?, syn.clone());
        pop.in_netns(move || testrun::run(&fd, &syn))??
    };
    let cookie = u32::from_be_bytes(synack.frame[38..42].try_into().unwrap());
    paths[5].frame = http_request(cookie.wrapping_add(1), &[]);
    // The same connection with timestamps: the same cookie; TSecr is the SYN-ACK's
    // TSval when pop sends one (a build without timestamps echoes none: 0).
    let synack_ts = {
        let (fd, syn) = (prog.try_clone()?, paths[7].frame.clone());
        pop.in_netns(move || testrun::run(&fd, &syn))??
    };
    let tsval = frames::tcp_timestamps(&synack_ts.frame[34..]).map_or(0, |(tsval, _)| tsval);
    paths[8].frame = http_request_with_timestamps(cookie.wrapping_add(1), tsval);

    let mut out = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        if i == 2 {
            // The flow-hit path's flow: opened by its SYN.
            test_run(&pop, &prog, &paths[3].frame, 1)?;
        }
        let (got, _) = test_run(&pop, &prog, &p.frame, 1)?;
        // Test runs arrive on the namespace's lo: the backend is "another interface" and
        // the forwarded verdict XDP_REDIRECT there (XDP_TX under the flood).
        let forwarded = p.floor == "floor_ipip_encap" && got == XDP_REDIRECT;
        if got != p.verdict && !forwarded {
            bail!("{}: pop's verdict {got}, expected {}", p.name, p.verdict);
        }
        println!("[bench] pop: {}", p.name);
        let conf = lab.write(&format!("path-{i}.cfg"), &trafgen_config(&p.frame, p0_mac, c0_mac, p.vary))?;
        // POP_BENCH_PERF=DIR: also sample the whole machine with perf during pop's flood
        // (DIR/path-N.data; JIT-ed subprograms and helpers show by name).
        let perf = match std::env::var_os("POP_BENCH_PERF") {
            Some(dir) => Some(
                Command::new("perf")
                    .args(["record", "-q", "-a", "-F", "4999", "-o"])
                    .arg(PathBuf::from(dir).join(format!("path-{i}.data")))
                    .args(["--", "sleep", "2"])
                    .stdout(std::process::Stdio::null())
                    .spawn()?,
            ),
            None => None,
        };
        let (ns, n) = flood(&client, &conf, &prog)?;
        if let Some(mut perf) = perf {
            perf.wait()?;
        }
        let (_, tr) = test_run(&pop, &prog, &p.frame, TEST_RUNS)?;
        out.push(Measured {
            name: p.name,
            floor: p.floor,
            floor_ns: floor_ns[i].0,
            pop_ns: ns as f64 / n.max(1) as f64,
            goal: p.goal,
            floor_testrun_ns: floor_ns[i].1,
            pop_testrun_ns: tr,
            pop_runs: n,
        });
    }
    Ok(out)
}

/// The per-path table, markdown.
pub fn render(rows: &[Measured]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## XDP cost per path under a flood ({PACKETS} packets at {RATE}/s, kernel BPF stats)\n");
    let _ = writeln!(s, "run_time_ns / run_cnt over the flood, the floor program (pop-ebpf/src/floor.rs) measured");
    let _ = writeln!(s, "in the same run on the same veth. PROG_TEST_RUN: mean of {TEST_RUNS} single runs (~150 ns fixed");
    let _ = writeln!(s, "overhead each; secondary).\n");
    let _ = writeln!(s, "| path | floor program | floor ns/pkt | pop ns/pkt | pop / floor | goal | test-run floor | test-run pop | pop runs |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let ratio = r.pop_ns / r.floor_ns.max(1.0);
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {:.1}x | ≤ {}x{} | {:.0} | {:.0} | {} |",
            r.name,
            r.floor,
            r.floor_ns,
            r.pop_ns,
            ratio,
            r.goal,
            if ratio <= r.goal { "" } else { " (not met)" },
            r.floor_testrun_ns,
            r.pop_testrun_ns,
            r.pop_runs
        );
    }
    s
}
