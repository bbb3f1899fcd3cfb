//! `cargo xtask bench`: performance figures in one run, written to
//! bench/results/latest.md and printed. Absolute numbers vary between runs and
//! machines (the client shares the two cores with the servers); the ratios are the point.
//!
//! 1. ns per packet through BPF_PROG_TEST_RUN for each DNS path, beside a bare
//!    XDP_PASS program.
//! 2. dnsperf QPS and CPU per answered query against pop (XDP fast path), pop's own
//!    server (fast path off), Knot DNS in socket mode and Knot DNS in XDP mode, all
//!    serving the same zones in the same namespace lab.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use pop_lab::{Host, Lab, frames, testrun, wait_until};

mod paths;

/// `cargo xtask bench --paths`: only the per-path table (floor vs pop under a flood),
/// written to bench/results/paths-<label>.md.
pub fn run_paths(label: &str) -> Result<()> {
    let rows = paths::measure()?;
    let mut report = format!(
        "# pop per-path cost: {label}\n\nTaken {}, Linux {}.\n\n",
        chrono_now(),
        fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim()
    );
    report += &paths::render(&rows);
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    fs::create_dir_all(&out)?;
    let file = out.join(format!("paths-{label}.md"));
    fs::write(&file, &report)?;
    println!("\n{report}\n[bench] written to {}", file.display());
    Ok(())
}

const POP_VIP: &str = "203.0.113.53";
const POP_SERVER_VIP: &str = "203.0.113.54";
const KNOT_ADDR: &str = "198.51.100.2";
const DNSPERF_SECONDS: u32 = 8;
/// Queries per trafgen flood, and the rate offered to every server alike (what one
/// trafgen core sustains here next to the receiving side).
const FLOOD: u64 = 600_000;
const FLOOD_RATE: u64 = 150_000;

struct Row {
    what: String,
    value: f64,
    unit: &'static str,
    note: String,
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data").canonicalize().expect("tests/data")
}

/// CPU seconds (user + system) used so far by process `pid`.
fn process_cpu(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

/// (run_time_ns, run_cnt) of a program fd, from the kernel's BPF stats.
fn bpf_stats(fd: &std::os::fd::OwnedFd) -> Result<(u64, u64)> {
    use std::os::fd::AsRawFd as _;
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    let get = |k: &str| info.lines().find_map(|l| l.strip_prefix(k).map(|v| v.trim().parse::<u64>().unwrap_or(0))).unwrap_or(0);
    Ok((get("run_time_ns:"), get("run_cnt:")))
}

/// The MAC address of `iface` in `host`.
fn mac_of(host: &Host, iface: &str) -> Result<[u8; 6]> {
    let v: serde_json::Value = serde_json::from_str(&host.stdout(&["ip", "-j", "link", "show", "dev", iface])?)?;
    let text = v[0]["address"].as_str().context("no MAC")?;
    let mut mac = [0u8; 6];
    for (i, part) in text.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16)?;
    }
    Ok(mac)
}

/// Packets received on `iface` (from netlink: /sys here would be the host's, since lab
/// commands keep the mount namespace).
fn rx_packets(host: &Host, iface: &str) -> Result<u64> {
    let v: serde_json::Value = serde_json::from_str(&host.stdout(&["ip", "-s", "-j", "link", "show", "dev", iface])?)?;
    v[0]["stats64"]["rx"]["packets"].as_u64().context("no rx packet count")
}

/// trafgen floods `count` DNS queries (www.example.com A) from `client`'s `iface` to
/// `dst`; returns (offered packets/s, answers/s received back on `iface`).
fn flood(lab: &Lab, client: &Host, iface: &str, dst_mac: [u8; 6], dst: [u8; 4], count: u64) -> Result<(f64, f64)> {
    let src_mac = mac_of(client, iface)?;
    let src: [u8; 4] = if iface == "c0" { [192, 0, 2, 1] } else { [198, 51, 100, 1] };
    let mut dns = vec![0x12u8, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in ["www", "example", "com"] {
        dns.push(l.len() as u8);
        dns.extend_from_slice(l.as_bytes());
    }
    dns.extend_from_slice(&[0, 0, 1, 0, 1]);
    let frame = frames::udp4(frames::L2::default(), src, dst, 40053, 53, &[], &dns);
    let mut body: Vec<String> = frame.iter().map(|b| format!("{b:#04x}")).collect();
    // Destination and source MACs: the real ones.
    for i in 0..6 {
        body[i] = format!("{:#04x}", dst_mac[i]);
        body[6 + i] = format!("{:#04x}", src_mac[i]);
    }
    let conf = lab.write(&format!("flood-{iface}.cfg"), &format!("{{ {} }}\n", body.join(", ")))?;
    let rx0 = rx_packets(client, iface)?;
    let started = std::time::Instant::now();
    client.run(&[
        "trafgen",
        "--dev",
        iface,
        "--conf",
        conf.to_str().unwrap(),
        "--num",
        &count.to_string(),
        "-P",
        "1",
        "-q",
        "--rate",
        &format!("{FLOOD_RATE}pps"),
    ])?;
    let secs = started.elapsed().as_secs_f64();
    // Answers still in flight arrive within milliseconds.
    let mut rx = rx_packets(client, iface)?;
    let _ = wait_until(Duration::from_secs(2), "answers to settle", || {
        let now = rx_packets(client, iface).ok()?;
        let settled = now == rx;
        rx = now;
        settled.then_some(())
    });
    Ok((count as f64 / secs, (rx - rx0) as f64 / secs))
}

/// bench/results/latest.png: every throughput figure relative to its reference.
fn chart(out: &Path, qps: &[(&str, f64, f64, String)], lb: &[(String, f64)], http: &[(String, f64, f64)]) -> Result<()> {
    let mut dat = String::new();
    let knot = qps.iter().find(|r| r.0.contains("socket")).map(|r| r.1).unwrap_or(1.0);
    for (name, q, _, _) in qps {
        dat += &format!("\"DNS: {name}\" {:.3}\n", q / knot);
    }
    let direct = lb.last().map(|r| r.1).unwrap_or(1.0);
    for (name, r) in lb {
        dat += &format!("\"LB: {}\" {:.3}\n", name.replace('"', ""), r / direct);
    }
    let nginx = http.last().map(|r| r.1).unwrap_or(1.0);
    for (name, r, _) in http {
        dat += &format!("\"HTTP: {name}\" {:.3}\n", r / nginx);
    }
    fs::write(out.join("latest.dat"), &dat)?;
    let script = format!(
        "set terminal png size 1300,650\nset output '{png}'\nset title 'pop vs peers: throughput relative to each reference (1.0 = Knot socket / direct backend / nginx)'\n\
         set style fill solid 0.6\nset boxwidth 0.7\nset xtics rotate by -35 font ',8'\nset yrange [0:*]\nset grid ytics\nset bmargin 12\n\
         plot '{dat}' using 0:2:xtic(1) with boxes notitle, '' using 0:2:(sprintf('%.2f', $2)) with labels offset 0,1 notitle\n",
        png = out.join("latest.png").display(),
        dat = out.join("latest.dat").display()
    );
    let gp = out.join("latest.gp");
    fs::write(&gp, &script)?;
    let status = std::process::Command::new("gnuplot").arg(&gp).status()?;
    if !status.success() {
        bail!("gnuplot failed ({status})");
    }
    println!("[bench] chart: bench/results/latest.png");
    Ok(())
}

fn queries_file(lab: &Lab) -> Result<PathBuf> {
    let mut q = String::new();
    for _ in 0..50 {
        for l in [
            "www.example.com A",
            "mail.example.com A",
            "example.com MX",
            "ns1.example.com A",
            "www.example.com AAAA",
            "nope.example.com A",
            "example.com TXT",
            "alias.example.com A",
        ] {
            q.push_str(l);
            q.push('\n');
        }
    }
    lab.write("queries.txt", &q)
}

/// Runs dnsperf from `client` against `server`; returns (QPS, queries completed).
fn dnsperf(client: &Host, server: &str, queries: &Path) -> Result<(f64, f64)> {
    let out = client.stdout(&[
        "dnsperf",
        "-s",
        server,
        "-d",
        queries.to_str().unwrap(),
        "-l",
        &DNSPERF_SECONDS.to_string(),
        "-c",
        "16",
        "-T",
        "1",
        "-q",
        "500",
        "-t",
        "1",
    ])?;
    let field = |name: &str| -> Result<f64> {
        let line = out.lines().find(|l| l.trim_start().starts_with(name)).with_context(|| format!("dnsperf printed no {name:?}:\n{out}"))?;
        Ok(line.split(':').nth(1).unwrap().split_whitespace().next().unwrap().parse()?)
    };
    Ok((field("Queries per second")?, field("Queries completed")?))
}

/// The zones the DNS lab serves: (domain, file).
fn bench_zones() -> Vec<(String, PathBuf)> {
    let data = data_dir();
    vec![("example.com".into(), data.join("example.com.zone")), ("wild.test".into(), data.join("wild.test.zone"))]
}

/// A knotd config named `name` (its run directory too) serving `zones` on KNOT_ADDR,
/// in socket mode or XDP mode on k0.
fn knot_config(lab: &Lab, name: &str, xdp: bool, zones: &[(String, PathBuf)]) -> Result<PathBuf> {
    let run = lab.dir.join(name);
    fs::create_dir_all(run.join("db"))?;
    let listen = if xdp { format!("xdp:\n    listen: k0@53\n    udp: on\n    route-check: off\n") } else { String::new() };
    let mut text = String::new();
    text += "server:\n";
    text += &format!("    rundir: \"{}\"\n", run.display());
    text += &format!("    listen: {KNOT_ADDR}@53\n");
    text += "    udp-workers: 1\n    tcp-workers: 1\n";
    text += &listen;
    text += &format!("database:\n    storage: \"{}/db\"\n", run.display());
    text += "log:\n  - target: stderr\n    any: warning\n";
    text += "zone:\n";
    for (domain, file) in zones {
        text += &format!("  - domain: {domain}\n    file: \"{}\"\n", file.display());
        text += "    journal-content: none\n    zonefile-sync: -1\n";
    }
    lab.write(&format!("{name}.conf"), &text)
}

/// An NSD config named `name` serving `zones` on KNOT_ADDR, rate limiting off.
fn nsd_config(lab: &Lab, name: &str, zones: &[(String, PathBuf)]) -> Result<PathBuf> {
    let run = lab.dir.join(name);
    fs::create_dir_all(&run)?;
    let mut text = format!(
        "server:\n    ip-address: {KNOT_ADDR}\n    port: 53\n    server-count: 1\n    username: \"\"\n    chroot: \"\"\n\
         \x20   zonesdir: \"\"\n    database: \"\"\n    pidfile: \"{r}/nsd.pid\"\n    xfrdfile: \"{r}/xfrd.state\"\n\
         \x20   xfrdir: \"{r}\"\n    zonelistfile: \"{r}/zone.list\"\n    verbosity: 0\n    rrl-ratelimit: 0\n\
         remote-control:\n    control-enable: no\n",
        r = run.display()
    );
    for (zone, file) in zones {
        text += &format!("zone:\n    name: {zone}\n    zonefile: \"{}\"\n", file.display());
    }
    lab.write(&format!("{name}.conf"), &text)
}

/// Seconds each wrk run lasts.
const WRK_SECONDS: u32 = 8;

/// Runs wrk (2 threads, 32 connections, WRK_SECONDS) from `client` with `extra`
/// arguments against `url`; returns its requests per second.
fn wrk(client: &Host, extra: &[&str], url: &str) -> Result<f64> {
    let duration = format!("-d{WRK_SECONDS}s");
    let mut argv = vec!["wrk", "-t2", "-c32", duration.as_str()];
    argv.extend_from_slice(extra);
    argv.push(url);
    let text = client.stdout(&argv)?;
    Ok(text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).with_context(|| format!("wrk printed no Requests/sec:\n{text}"))?.trim().parse()?)
}

fn wait_answering(client: &Host, server: &str) -> Result<()> {
    wait_until(Duration::from_secs(20), &format!("a DNS server on {server}"), || {
        client
            .output(&["dig", "+tries=1", "+time=1", "+short", &format!("@{server}"), "www.example.com", "A"])
            .ok()
            .filter(|o| String::from_utf8_lossy(&o.stdout).contains("192.0.2.80"))
    })
    .map(|_| ())
}

pub fn run() -> Result<()> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/pop").canonicalize()?;
    unsafe { std::env::set_var("POP_BIN", &bin) };
    let _ = std::process::Command::new("sysctl").args(["-qw", "kernel.bpf_stats_enabled=1"]).status();

    let path_rows = paths::measure()?;
    println!("[bench] building the lab: client, pop, knot");
    let mut lab = Lab::new()?;
    let client = lab.host("client")?;
    let pop = lab.host("pop")?;
    let knot = lab.host("knot")?;
    lab.link(&client, "c0", &pop, "p0")?;
    lab.link(&client, "c1", &knot, "k0")?;
    lab.addr(&client, "c0", "192.0.2.1/24")?;
    lab.addr(&pop, "p0", "192.0.2.2/24")?;
    lab.addr(&client, "c1", "198.51.100.1/24")?;
    lab.addr(&knot, "k0", &format!("{KNOT_ADDR}/24"))?;
    for vip in [POP_VIP, POP_SERVER_VIP] {
        lab.addr(&pop, "lo", &format!("{vip}/32"))?;
    }
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    for i in ["c0", "c1"] {
        lab.tx_checksum_off(&client, i)?;
        lab.xdp_pass(&client, i)?;
    }
    let data = data_dir();
    let zones = format!("[\"{}\", \"{}\"]", data.join("example.com.zone").display(), data.join("wild.test.zone").display());
    let config = lab.pop_config(
        &pop,
        &format!(
            "[[interface]]\nname = \"p0\"\n\n[[dns]]\nvips = [\"{POP_VIP}\", \"2001:db8:53::53\"]\nzones = {zones}\nrate_limit = 0\n\n\
             [[dns]]\nvips = [\"{POP_SERVER_VIP}\"]\nzones = {zones}\nrate_limit = 0\nfast_path = false\n"
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    let pop_pid = lab.daemon_pid("pop").unwrap();
    let prog = testrun::pinned_program(&lab.bpffs_dir().join("pop").join("prog"))?;

    let mut rows = Vec::new();

    // 1. ns per packet, BPF_PROG_TEST_RUN.
    println!("[bench] BPF_PROG_TEST_RUN ns/packet");
    let runs = 20_000;
    let q = |name: &str| {
        let mut m = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    };
    let l2 = frames::L2::default();
    let (c4, v4) = ([192, 0, 2, 1], [203, 0, 113, 53]);
    let c6: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>()?.octets();
    let v6: [u8; 16] = "2001:db8:53::53".parse::<std::net::Ipv6Addr>()?.octets();
    let baseline = testrun::mean_ns(&testrun::pass_program()?, &frames::udp4(l2, c4, v4, 1000, 53, &[], &q("www.example.com")), runs)?;
    rows.push(Row { what: "bare XDP_PASS program (baseline)".into(), value: baseline, unit: "ns/pkt", note: "1.00x".into() });
    let cases: [(&str, Vec<u8>, u32); 5] = [
        ("pop: non-VIP packet passed", frames::udp4(l2, c4, [192, 0, 2, 2], 1000, 9, &[], &[0; 32]), testrun::XDP_PASS),
        ("pop: DNS hit, IPv4 (answered in XDP)", frames::udp4(l2, c4, v4, 1000, 53, &[], &q("www.example.com")), testrun::XDP_TX),
        ("pop: DNS hit, IPv6 (answered in XDP)", frames::udp6(l2, c6, v6, 1000, 53, &q("www.example.com")), testrun::XDP_TX),
        ("pop: DNS NXDOMAIN (answered in XDP)", frames::udp4(l2, c4, v4, 1000, 53, &[], &q("nope.example.com")), testrun::XDP_TX),
        ("pop: DNS passed to the server (wildcard zone)", frames::udp4(l2, c4, v4, 1000, 53, &[], &q("any.wild.test")), testrun::XDP_PASS),
    ];
    for (what, frame, want) in cases {
        let got = testrun::run(&prog, &frame)?.verdict;
        if got != want {
            bail!("{what}: verdict {got}, expected {want}");
        }
        let ns = testrun::mean_ns(&prog, &frame, runs)?;
        rows.push(Row { what: what.into(), value: ns, unit: "ns/pkt", note: format!("{:.2}x baseline", ns / baseline) });
    }

    // Memory: what the kernel charges for each pinned map of this PoP.
    let memory = pop_lab::pinned_map_memory(&lab.pop_maps_dir("pop"))?;

    // 2. dnsperf end to end.
    let queries = queries_file(&lab)?;
    let mut qps_rows = Vec::new();
    println!("[bench] dnsperf against pop, XDP fast path ({DNSPERF_SECONDS} s)");
    wait_answering(&client, POP_VIP)?;
    let (t0, n0) = bpf_stats(&prog)?;
    let cpu0 = process_cpu(pop_pid)?;
    let (qps, done) = dnsperf(&client, POP_VIP, &queries)?;
    let (t1, n1) = bpf_stats(&prog)?;
    let cpu = process_cpu(pop_pid)? - cpu0;
    let xdp_ns = (t1 - t0) as f64 / (n1 - n0).max(1) as f64;
    qps_rows.push(("pop, answered in XDP", qps, xdp_ns + cpu * 1e9 / done, format!("XDP {xdp_ns:.0} ns/pkt (kernel BPF stats) + controller CPU")));

    println!("[bench] trafgen flood against pop's XDP answers");
    let p0_mac = mac_of(&pop, "p0")?;
    let mut flood_rows = vec![("pop, answered in XDP", flood(&lab, &client, "c0", p0_mac, [203, 0, 113, 53], FLOOD)?)];
    println!("[bench] dnsperf against pop's own server (fast path off)");
    wait_answering(&client, POP_SERVER_VIP)?;
    let cpu0 = process_cpu(pop_pid)?;
    let (qps, done) = dnsperf(&client, POP_SERVER_VIP, &queries)?;
    let cpu = process_cpu(pop_pid)? - cpu0;
    qps_rows.push(("pop's server, fast path off", qps, cpu * 1e9 / done, "controller process CPU".into()));

    for xdp in [false, true] {
        let name = if xdp { "Knot DNS 3.2, XDP mode" } else { "Knot DNS 3.2, socket mode" };
        println!("[bench] dnsperf against {name}");
        let conf = knot_config(&lab, if xdp { "knot-xdp" } else { "knot-sock" }, xdp, &bench_zones())?;
        let daemon = lab.spawn(&knot, "knot", &["knotd", "-c", conf.to_str().unwrap()])?;
        let pid = daemon.child.id();
        wait_answering(&client, KNOT_ADDR).with_context(|| lab.daemon_log("knot").unwrap_or_default())?;
        let cpu0 = process_cpu(pid)?;
        let (qps, done) = dnsperf(&client, KNOT_ADDR, &queries)?;
        let cpu = process_cpu(pid)? - cpu0;
        qps_rows.push((name, qps, cpu * 1e9 / done, "knotd process CPU".into()));
        println!("[bench] trafgen flood against {name}");
        flood_rows.push((name, flood(&lab, &client, "c1", mac_of(&knot, "k0")?, [198, 51, 100, 2], FLOOD)?));
        lab.stop_daemon("knot")?;
        // Knot leaves its XDP program attached after exit.
        let _ = knot.run(&["ip", "link", "set", "dev", "k0", "xdp", "off"]);
    }
    {
        let name = "NSD 4.6";
        println!("[bench] dnsperf against {name}");
        let conf = nsd_config(&lab, "nsd", &bench_zones())?;
        let pid = lab.spawn(&knot, "nsd", &["nsd", "-d", "-c", conf.to_str().unwrap()])?.child.id();
        wait_answering(&client, KNOT_ADDR).with_context(|| lab.daemon_log("nsd").unwrap_or_default())?;
        // NSD runs as three processes (xfrd, then main, then the server under it): count
        // the CPU of the spawned process and all its descendants.
        let group_cpu = || -> Result<f64> { Ok(process_tree(pid)?.into_iter().map(|p| process_cpu(p).unwrap_or(0.0)).sum()) };
        let cpu0 = group_cpu()?;
        let (qps, done) = dnsperf(&client, KNOT_ADDR, &queries)?;
        let cpu = group_cpu()? - cpu0;
        qps_rows.push((name, qps, cpu * 1e9 / done, "nsd processes' CPU".into()));
        println!("[bench] trafgen flood against {name}");
        flood_rows.push((name, flood(&lab, &client, "c1", mac_of(&knot, "k0")?, [198, 51, 100, 2], FLOOD)?));
        lab.stop_daemon("nsd")?;
    }

    drop(lab);
    let lb_rows = bench_lb(&mut rows)?;
    let http_rows = bench_http(&mut rows)?;
    let scale_rows = bench_memory_at_scale()?;

    let mut report = render(&rows, &qps_rows, &lb_rows, &http_rows)?;
    report += "\n";
    report += &paths::render(&path_rows);
    report += &format!("\n## DNS under a flood (trafgen: {FLOOD} queries offered at {FLOOD_RATE}/s to each server)\n\n");
    report += "| server | offered/s | answered/s | answered share |\n|---|---:|---:|---:|\n";
    for (name, (offered, answered)) in &flood_rows {
        report += &format!("| {name} | {offered:.0} | {answered:.0} | {:.0}% |\n", 100.0 * answered / offered);
    }
    report += "\n## Memory (bytes the kernel charges per pinned map; DNS bench config: two small zones)\n\n| map | bytes |\n|---|---:|\n";
    let mut total = 0;
    for (name, bytes) in &memory {
        report += &format!("| {name} | {bytes} |\n");
        total += bytes;
    }
    report += &format!("| total | {total} |\n");
    report += &render_scale(&scale_rows);
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/results");
    fs::create_dir_all(&out)?;
    fs::write(out.join("latest.md"), &report)?;
    if let Err(e) = chart(&out, &qps_rows, &lb_rows, &http_rows) {
        println!("[bench] no chart: {e:#}");
    }
    println!("\n{report}");
    println!("[bench] written to bench/results/latest.md");
    Ok(())
}

/// One measured configuration of the memory-at-scale table.
struct ScaleRow {
    what: String,
    load_s: f64,
    /// Kernel-charged bytes of the DNS maps and of every map (pop only).
    dns_maps: Option<u64>,
    all_maps: Option<u64>,
    peak_kib: u64,
    now_kib: u64,
}

/// `pid` and all its descendants.
fn process_tree(pid: u32) -> Result<Vec<u32>> {
    let mut parent = std::collections::HashMap::new();
    for e in fs::read_dir("/proc")?.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let f: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 2..].split_whitespace().collect();
        if let Some(pp) = f.get(1).and_then(|g| g.parse::<u32>().ok()) {
            parent.insert(p, pp);
        }
    }
    let descends = |mut p: u32| loop {
        if p == pid {
            return true;
        }
        match parent.get(&p) {
            Some(&pp) if pp > 1 => p = pp,
            _ => return false,
        }
    };
    Ok(parent.keys().copied().filter(|&p| descends(p)).collect())
}

/// Resident memory (peak of the largest process, sum of PSS now) of `pid` and its
/// descendants: NSD runs as several processes sharing pages.
fn group_memory_kib(pid: u32) -> Result<(u64, u64)> {
    let members = process_tree(pid)?;
    let (mut peak, mut pss) = (0, 0);
    for p in members {
        let Ok((hwm, _)) = pop_lab::process_memory_kib(p) else { continue };
        peak = peak.max(hwm);
        let rollup = fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        pss +=
            rollup.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap_or(0);
    }
    Ok((peak, pss))
}

/// Waits until `server` answers the last name of a big zone of `names` names.
fn wait_big_zone(client: &Host, server: &str, names: usize) -> Result<()> {
    let want = pop_lab::big_zone_address(names - 1);
    wait_until(Duration::from_secs(600), &format!("{server} to serve n{}.big.example", names - 1), || {
        client
            .stdout(&["dig", "+tries=1", "+time=1", "+short", &format!("@{server}"), &format!("n{}.big.example", names - 1), "AAAA"])
            .ok()
            .filter(|o| o.trim().parse::<std::net::Ipv6Addr>().ok() == Some(want))
    })
    .map(|_| ())
}

/// Memory for zones of 1k and 1M names (pop with a 64-backend service beside them), and
/// Knot DNS and NSD loading the same zones.
fn bench_memory_at_scale() -> Result<Vec<ScaleRow>> {
    let mut out = Vec::new();
    for (label, names, table) in [("1k names", 1_000usize, pop_common::DNS_TABLE_MAX), ("1M names", 1_000_000, 4 << 20)] {
        println!("[bench] memory with a zone of {label}");
        let mut lab = Lab::new()?;
        let (client, pop) = lab.client_and_pop()?;
        let knot = lab.host("knot")?;
        lab.link(&client, "c1", &knot, "k0")?;
        lab.addr(&client, "c1", "198.51.100.1/24")?;
        lab.addr(&knot, "k0", &format!("{KNOT_ADDR}/24"))?;
        lab.addr(&pop, "lo", &format!("{POP_VIP}/32"))?;
        lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
        pop.sysctl("net.ipv4.conf.p0.forwarding", "1")?;
        let zone = lab.write("big.example.zone", &pop_lab::big_zone_text(names))?;
        let mut body = format!(
            "[[interface]]\nname = \"p0\"\n\n[[dns]]\nvips = [\"{POP_VIP}\"]\nzones = [\"{}\"]\nrate_limit = 0\n\n\
             [[service]]\nname = \"web\"\nvips = [\"203.0.113.10\"]\nport = 80\n",
            zone.display()
        );
        for b in 0..64 {
            body += &format!("[[service.backends]]\naddress = \"198.51.100.{}\"\n", 100 + b);
        }
        let config = lab.pop_config_with(&pop, &format!("dns_table_size = {table}"), &body)?;
        let start = std::time::Instant::now();
        lab.start_pop_within(&pop, "pop", &config, Duration::from_secs(600))?;
        wait_big_zone(&client, POP_VIP, names)?;
        let load_s = start.elapsed().as_secs_f64();
        let pid = lab.daemon_pid("pop").context("pop not running")?;
        let (peak_kib, now_kib) = group_memory_kib(pid)?;
        let maps = pop_lab::pinned_map_memory(&lab.pop_maps_dir("pop"))?;
        let dns_maps = maps.iter().filter(|(k, _)| k.starts_with("DNS_")).map(|(_, v)| v).sum();
        let all_maps = maps.iter().map(|(_, v)| v).sum();
        out.push(ScaleRow {
            what: format!("pop, {label} (dns_table_size {table}, 64 backends)"),
            load_s,
            dns_maps: Some(dns_maps),
            all_maps: Some(all_maps),
            peak_kib,
            now_kib,
        });
        lab.stop_daemon("pop")?;

        // The peers load the same zone file.
        let zones = [("big.example".to_string(), zone.clone())];
        let knot_conf = knot_config(&lab, "knot-big", false, &zones)?;
        let nsd_conf = nsd_config(&lab, "nsd-big", &zones)?;
        for (peer, argv) in
            [("Knot DNS 3.2", vec!["knotd", "-c", knot_conf.to_str().unwrap()]), ("NSD 4.6", vec!["nsd", "-d", "-c", nsd_conf.to_str().unwrap()])]
        {
            println!("[bench] memory of {peer} with a zone of {label}");
            let start = std::time::Instant::now();
            let pid = lab.spawn(&knot, "peer", &argv)?.child.id();
            wait_big_zone(&client, KNOT_ADDR, names).with_context(|| lab.daemon_log("peer").unwrap_or_default())?;
            let load_s = start.elapsed().as_secs_f64();
            let (peak_kib, now_kib) = group_memory_kib(pid)?;
            out.push(ScaleRow { what: format!("{peer}, {label}"), load_s, dns_maps: None, all_maps: None, peak_kib, now_kib });
            lab.stop_daemon("peer")?;
        }
    }
    Ok(out)
}

fn render_scale(rows: &[ScaleRow]) -> String {
    let mib = |b: u64| format!("{:.0}", b as f64 / (1u64 << 20) as f64);
    let mut s = String::from(
        "\n## Memory at scale (zone big.example: N names, one AAAA each; pop also holds a service of 64 backends)\n\n\
         | server and config | load s | DNS maps MiB | all maps MiB | process peak MiB | process now MiB |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {:.1} | {} | {} | {} | {} |\n",
            r.what,
            r.load_s,
            r.dns_maps.map(mib).unwrap_or_else(|| "-".into()),
            r.all_maps.map(mib).unwrap_or_else(|| "-".into()),
            r.peak_kib / 1024,
            r.now_kib / 1024
        );
    }
    s += "\nMaps: bytes the kernel charges (fdinfo memlock); hash buckets for the configured\n\
          capacity are charged up front (dns_table_size 1M: 24 MiB of DNS buckets), entries as\n\
          written. LB_FLOWS (117 MiB) and LB_MAGLEV (34 MiB) are sized for 1M flows and\n\
          64 services and do not depend on the zone. Process: peak = VmHWM of the largest\n\
          process, now = PSS summed over the server's processes, after the zone answers.\n\
          Load: from start until the last name of the zone is answered.\n";
    s
}

/// client — router — pop (one NIC) — backend running nginx; returns wrk rows.
fn bench_lb(rows: &mut Vec<Row>) -> Result<Vec<(String, f64)>> {
    const VIP: &str = "203.0.113.10";
    /// Served by nftables DNAT + masquerade on the PoP (not a pop VIP: XDP passes it).
    const NAT_VIP: &str = "203.0.113.11";
    const BACKEND: &str = "198.51.100.141";
    println!("[bench] load balancer lab: client, router, pop, backend (nginx)");
    let mut lab = Lab::new()?;
    let client = lab.host("client")?;
    let router = lab.host("router")?;
    let pop = lab.host("pop")?;
    let backend = lab.host("backend")?;
    lab.link(&client, "c0", &router, "rc")?;
    lab.link(&pop, "p0", &router, "rp")?;
    lab.link(&backend, "e0", &router, "rb")?;
    lab.addr(&client, "c0", "192.0.2.1/24")?;
    lab.addr(&router, "rc", "192.0.2.254/24")?;
    lab.addr(&router, "rp", "198.51.100.126/25")?;
    lab.addr(&pop, "p0", "198.51.100.1/25")?;
    lab.addr(&router, "rb", "198.51.100.254/25")?;
    lab.addr(&backend, "e0", &format!("{BACKEND}/25"))?;
    lab.addr(&backend, "lo", &format!("{VIP}/32"))?;
    lab.route(&client, "default via 192.0.2.254")?;
    lab.route(&pop, "default via 198.51.100.126")?;
    lab.route(&backend, "default via 198.51.100.254")?;
    lab.route(&router, &format!("{VIP}/32 via 198.51.100.1"))?;
    lab.route(&router, &format!("{NAT_VIP}/32 via 198.51.100.1"))?;
    let nft = lab.write(
        "dnat.nft",
        &format!(
            "table ip bench_nat {{\n  chain pre {{ type nat hook prerouting priority -100; ip daddr {NAT_VIP} tcp dport 80 dnat to {BACKEND}; }}\n  \
             chain post {{ type nat hook postrouting priority 100; ip daddr {BACKEND} tcp dport 80 masquerade; }}\n}}\n"
        ),
    )?;
    pop.run(&["nft", "-f", nft.to_str().unwrap()])?;
    router.sysctl("net.ipv4.ip_forward", "1")?;
    for h in [&router, &backend] {
        h.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
    }
    backend.sysctl("net.ipv4.conf.e0.rp_filter", "0")?;
    for i in ["p0", "lo"] {
        pop.sysctl(&format!("net.ipv4.conf.{i}.forwarding"), "1")?;
    }
    lab.tx_checksum_off(&client, "c0")?;
    lab.xdp_pass(&router, "rp")?;
    let bin = pop_lab::pop_bin();
    let decap_dir = lab.bpffs_dir().join("decap");
    backend.run(&[bin.to_str().unwrap(), "decap", "--iface", "e0", "--bpffs-dir", decap_dir.to_str().unwrap()])?;
    let nginx_conf = lab.write(
        "nginx.conf",
        &format!(
            "worker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log stderr;\nevents {{ worker_connections 1024; }}\n\
             http {{ access_log off; client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir};\n\
             server {{ listen 80; location / {{ return 200 \"backend\\n\"; }} }} }}\n",
            dir = lab.dir.display()
        ),
    )?;
    lab.spawn(&backend, "nginx", &["nginx", "-c", nginx_conf.to_str().unwrap()])?;
    let config = lab.pop_config(
        &pop,
        &format!(
            "[[interface]]\nname = \"p0\"\n\n[[service]]\nname = \"web\"\nvips = [\"{VIP}\"]\nport = 80\nbackends = [{{ address = \"{BACKEND}\" }}]\n"
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    wait_until(Duration::from_secs(15), "HTTP through the VIP", || {
        client.output(&["curl", "-sf", "--max-time", "1", &format!("http://{VIP}/")]).ok().filter(|o| o.status.success())
    })?;

    // ns per packet for a connection-table hit and for a new flow, run inside the PoP's
    // namespace so the program's route lookup sees the PoP's routes.
    println!("[bench] BPF_PROG_TEST_RUN: load balancer paths");
    let prog_path = lab.bpffs_dir().join("pop").join("prog");
    let (hit, new) = pop.in_netns(move || -> Result<(f64, f64)> {
        let prog = testrun::pinned_program(&prog_path)?;
        // A SYN makes a new flow (Maglev + table insert); an ACK of that flow is a hit.
        let vip = [203, 0, 113, 10];
        let first = testrun::run(&prog, &frames::tcp4(vip, 50000, 1, 0, 0x02, &[]))?;
        // Test runs arrive on the namespace's lo, so the backend is "another interface":
        // XDP_REDIRECT (4) is the forwarded verdict here.
        if first.verdict != testrun::XDP_TX && first.verdict != 4 {
            bail!("LB test-run verdict {} (expected a forwarded packet)", first.verdict);
        }
        let hit = testrun::mean_ns(&prog, &frames::tcp4(vip, 50000, 2, 1, 0x10, &[]), 20_000)?;
        let mut total = 0u128;
        for i in 0..20_000u32 {
            let mut f = frames::tcp4(vip, 1024 + (i % 60000) as u16, 1, 0, 0x02, &[]);
            // A distinct flow each run: source port and an address in 192.0.2.0/24.
            f[26..30].copy_from_slice(&[192, 0, 2, 10 + (i / 60000) as u8]);
            total += testrun::run(&prog, &f)?.duration.as_nanos();
        }
        Ok((hit, total as f64 / 20_000.0))
    })??;
    let base = rows.first().map(|r| r.value).unwrap_or(1.0);
    rows.push(Row {
        what: "pop: LB, connection-table hit (IPIP, forwarded)".into(),
        value: hit,
        unit: "ns/pkt",
        note: format!("{:.2}x baseline", hit / base),
    });
    rows.push(Row {
        what: "pop: LB, new flow (Maglev + table insert)".into(),
        value: new,
        unit: "ns/pkt",
        note: format!("{:.2}x baseline", new / base),
    });

    let mut out = Vec::new();
    for (what, url) in [
        ("wrk through pop's VIP (XDP IPIP, DSR)", format!("http://{VIP}/")),
        ("wrk through nftables DNAT + masquerade on the same PoP", format!("http://{NAT_VIP}/")),
        ("wrk straight to the backend", format!("http://{BACKEND}/")),
    ] {
        println!("[bench] {what}");
        let rps = wrk(&client, &[], &url)?;
        out.push((what.to_string(), rps));
    }
    Ok(out)
}

/// pop's HTTP answers vs nginx returning the same redirect, same lab; returns
/// (what, requests/s, CPU ns per request).
fn bench_http(rows: &mut Vec<Row>) -> Result<Vec<(String, f64, f64)>> {
    const VIP: &str = "203.0.113.80";
    const NGINX: &str = "203.0.113.81";
    println!("[bench] HTTP lab: client, pop (XDP answers on {VIP}, nginx on {NGINX})");
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    for vip in [VIP, NGINX] {
        lab.addr(&pop, "lo", &format!("{vip}/32"))?;
        lab.route(&client, &format!("{vip}/32 via 192.0.2.2"))?;
    }
    let nginx_conf = lab.write(
        "nginx-http.conf",
        &format!(
            "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {dir}/nginx-http.pid;\nerror_log stderr;\n\
             events {{ worker_connections 1024; }}\nhttp {{ access_log off; client_body_temp_path {dir}; proxy_temp_path {dir}; \
             fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir}; keepalive_timeout 0;\n\
             server {{ listen {NGINX}:80; location / {{ return 301 https://www.example.com$request_uri; }} }} }}\n",
            dir = lab.dir.display()
        ),
    )?;
    let nginx_pid = lab.spawn(&pop, "nginx", &["nginx", "-c", nginx_conf.to_str().unwrap()])?.child.id();
    let config = lab.pop_config(
        &pop,
        &format!(
            "[[interface]]\nname = \"p0\"\n\n[[http]]\nname = \"edge\"\nvips = [\"{VIP}\"]\n\
             [http.default]\nstatus = 301\nlocation = \"https://www.example.com\"\nappend_path = true\n"
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    for ip in [VIP, NGINX] {
        wait_until(Duration::from_secs(10), "an HTTP answer", || {
            client.output(&["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{ip}/x")]).ok().filter(|o| o.stdout == b"301")
        })?;
    }

    println!("[bench] BPF_PROG_TEST_RUN: HTTP SYN and request");
    let prog = testrun::pinned_program(&lab.bpffs_dir().join("pop").join("prog"))?;
    let syn = frames::tcp4([203, 0, 113, 80], 40000, 1000, 0, 0x02, &[]);
    let synack = testrun::run(&prog, &syn)?;
    if synack.verdict != testrun::XDP_TX {
        bail!("SYN not answered in test run ({})", synack.verdict);
    }
    let cookie = u32::from_be_bytes(synack.frame[38..42].try_into().unwrap());
    let req = frames::tcp4(
        [203, 0, 113, 80],
        40000,
        1001,
        cookie.wrapping_add(1),
        0x18,
        b"GET /some/page HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
    );
    if testrun::run(&prog, &req)?.verdict != testrun::XDP_TX {
        bail!("request not answered in test run");
    }
    let base = rows.first().map(|r| r.value).unwrap_or(1.0);
    for (what, frame) in [("pop: HTTP SYN -> SYN-ACK with cookie", &syn), ("pop: HTTP request -> response + FIN", &req)] {
        let ns = testrun::mean_ns(&prog, frame, 20_000)?;
        rows.push(Row { what: what.into(), value: ns, unit: "ns/pkt", note: format!("{:.2}x baseline", ns / base) });
    }

    let mut out = Vec::new();
    for (what, ip) in [("pop, answered in XDP", VIP), ("nginx 1.22, same redirect", NGINX)] {
        println!("[bench] wrk against {what}");
        let (t0, _) = bpf_stats(&prog)?;
        let cpu0 = process_cpu(nginx_pid)?;
        let rps = wrk(&client, &["-H", "Connection: close"], &format!("http://{ip}/some/page"))?;
        let (t1, _) = bpf_stats(&prog)?;
        let cpu = process_cpu(nginx_pid)? - cpu0;
        let total = rps * WRK_SECONDS as f64;
        let per_req = if ip == VIP { (t1 - t0) as f64 / total } else { cpu * 1e9 / total };
        out.push((what.to_string(), rps, per_req));
    }
    Ok(out)
}

fn render(rows: &[Row], qps: &[(&str, f64, f64, String)], lb: &[(String, f64)], http: &[(String, f64, f64)]) -> Result<String> {
    let mut s = String::new();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    writeln!(s, "# pop benchmark\n")?;
    writeln!(s, "Machine: {cores} cores, Linux {}. Taken {}.", kernel.trim(), chrono_now())?;
    writeln!(s, "Absolute figures vary from run to run and machine to machine, and the load")?;
    writeln!(s, "generator shares the cores with the servers; compare the ratios.\n")?;
    writeln!(s, "## XDP program cost (BPF_PROG_TEST_RUN, mean of 20000 single runs)\n")?;
    writeln!(s, "| path | ns/packet | vs bare XDP_PASS |\n|---|---:|---:|")?;
    for r in rows {
        writeln!(s, "| {} | {:.1} {} | {} |", r.what, r.value, r.unit.trim_start_matches("ns/pkt"), r.note)?;
    }
    writeln!(s, "\n## DNS end to end (dnsperf, {DNSPERF_SECONDS} s, 16 clients, same zones, same lab)\n")?;
    writeln!(s, "| server | queries/s | vs Knot socket | CPU ns/query | how CPU was measured |\n|---|---:|---:|---:|---|")?;
    let knot_sock = qps.iter().find(|r| r.0.contains("socket")).map(|r| r.1).unwrap_or(1.0);
    for (name, q, cpu, how) in qps {
        writeln!(s, "| {name} | {q:.0} | {:.2}x | {cpu:.0} | {how} |", q / knot_sock)?;
    }
    writeln!(s, "\n## HTTP through the load balancer (wrk, 2 threads, 32 connections, {WRK_SECONDS} s, nginx backend)\n")?;
    writeln!(s, "| path | requests/s | vs straight to the backend |\n|---|---:|---:|")?;
    let direct = lb.last().map(|r| r.1).unwrap_or(1.0);
    for (what, rps) in lb {
        writeln!(s, "| {what} | {rps:.0} | {:.2}x |", rps / direct)?;
    }
    writeln!(s, "\n## HTTP answered at the edge (wrk, 2 threads, 32 connections, {WRK_SECONDS} s, new connection per request)\n")?;
    writeln!(s, "| server | requests/s | vs nginx | CPU ns/request |\n|---|---:|---:|---:|")?;
    let nginx = http.last().map(|r| r.1).unwrap_or(1.0);
    for (what, rps, cpu) in http {
        writeln!(s, "| {what} | {rps:.0} | {:.2}x | {cpu:.0} |", rps / nginx)?;
    }
    writeln!(s, "\nCPU per request: pop = XDP program run time from the kernel's BPF stats (every")?;
    writeln!(s, "segment of the connection); nginx = its process CPU time (its kernel TCP work in")?;
    writeln!(s, "softirq is not included, which favours nginx).")?;
    writeln!(s, "\nThe LB HTTP figures are bounded by nginx and wrk sharing two cores; the per-packet")?;
    writeln!(s, "cost of each forwarding path is in the first table (pop) and in the PoP's softirq")?;
    writeln!(s, "time for nftables.")?;
    Ok(s)
}

fn chrono_now() -> String {
    let out = std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}
