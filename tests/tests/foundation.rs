//! The first packet path, end to end: a client and a PoP namespace joined by a veth,
//! `pop run` attaching XDP to the PoP side, real ping/curl traffic, and the counters
//! read back with `pop stats`.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use pop_lab::{Host, Lab, wait_until};

const POP_V4: &str = "192.0.2.2";
const POP_V6: &str = "2001:db8::2";

/// client (c0) <-> (p0) pop, with v4 and v6 addresses, and a config attaching to p0.
fn lab() -> Result<(Lab, Host, Host, PathBuf)> {
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    let config = lab.pop_config(&pop, "[[interface]]\nname = \"p0\"\n")?;
    Ok((lab, client, pop, config))
}

fn ping(client: &Host, addr: &str, count: u32) -> Result<()> {
    client.run(&["ping", "-q", "-c", &count.to_string(), "-i", "0.01", "-W", "2", addr])?;
    Ok(())
}

/// Starts an HTTP server in `pop` serving a 4 MiB file; returns once it answers.
fn http_server(lab: &mut Lab, client: &Host, pop: &Host) -> Result<String> {
    let www = lab.dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("blob"), vec![0x5au8; 4 << 20])?;
    let www = www.to_str().unwrap().to_string();
    lab.spawn(pop, "http", &["python3", "-m", "http.server", "--bind", POP_V4, "--directory", &www, "8080"])?;
    let url = format!("http://{POP_V4}:8080/blob");
    wait_until(Duration::from_secs(10), "the HTTP server", || {
        client.output(&["curl", "-sf", "-o", "/dev/null", "-r", "0-0", &url]).ok().filter(|o| o.status.success())
    })?;
    Ok(url)
}

#[test]
fn ping_and_tcp_transfer_pass_through_xdp_and_are_counted() -> Result<()> {
    let (mut lab, client, pop, config) = lab()?;
    lab.start_pop(&pop, "pop", &config)?;
    assert!(pop.xdp_prog_id("p0")?.is_some(), "no XDP program on p0");

    let url = http_server(&mut lab, &client, &pop)?;
    let before = lab.pop_counters(&pop, &config)?;
    let echos0 = client.snmp("Icmp", "OutEchos")?;
    let segs0 = client.snmp("Tcp", "OutSegs")?;

    ping(&client, POP_V4, 50)?;
    ping(&client, POP_V6, 10)?;
    let size = client.stdout(&["curl", "-sSf", "-o", "/dev/null", "-w", "%{size_download}", &url])?;
    assert_eq!(size, (4u64 << 20).to_string(), "the TCP transfer through the XDP interface is incomplete");

    let after = lab.pop_counters(&pop, &config)?;
    let delta = |name: &str| after[name] - before[name];
    let echos = client.snmp("Icmp", "OutEchos")? - echos0;
    let segs = client.snmp("Tcp", "OutSegs")? - segs0;
    assert_eq!(echos, 50);
    // Every echo request and every TCP segment the client sent was seen by XDP, and passed.
    assert_eq!(delta("l4.icmp"), echos, "ICMP counted by XDP vs echo requests sent: {after:?}");
    assert_eq!(delta("l4.tcp"), segs, "TCP counted by XDP vs segments the client sent: {after:?}");
    assert!(delta("l4.icmpv6") >= 10, "ICMPv6 echo requests not counted: {after:?}");
    assert_eq!(after["rx.packets"], after["action.pass"], "every frame should be passed: {after:?}");
    assert!(delta("pass.not_vip") >= echos + segs + 10);
    assert_eq!(after["action.drop"] + after["action.aborted"], 0);
    Ok(())
}

#[test]
fn controller_restart_keeps_the_data_path_and_counters_and_detach_removes_it() -> Result<()> {
    let (mut lab, client, pop, config) = lab()?;
    lab.start_pop(&pop, "pop", &config)?;
    let prog1 = pop.xdp_prog_id("p0")?.expect("attached");
    ping(&client, POP_V4, 20)?;
    let c1 = lab.pop_counters(&pop, &config)?;
    assert!(c1["l4.icmp"] >= 20);

    // Controller down: the program stays and keeps counting.
    lab.stop_daemon("pop")?;
    assert_eq!(pop.xdp_prog_id("p0")?, Some(prog1), "stopping the controller detached XDP");
    ping(&client, POP_V4, 10)?;
    let c2 = lab.pop_counters(&pop, &config)?;
    assert_eq!(c2["l4.icmp"], c1["l4.icmp"] + 10, "counting stopped with the controller");

    // Restart under steady traffic: the new program is swapped in atomically, so every
    // echo request the client sends is counted by one program or the other.
    let echos0 = client.snmp("Icmp", "OutEchos")?;
    let mut flood = client.command("ping");
    let mut flood = flood.args(["-q", "-c", "400", "-i", "0.005", POP_V4]).stdout(std::process::Stdio::null()).spawn()?;
    lab.start_pop(&pop, "pop", &config)?;
    assert!(flood.wait()?.success(), "ping lost replies across the restart");
    let prog2 = pop.xdp_prog_id("p0")?.expect("attached after restart");
    assert_ne!(prog1, prog2, "restart should load the new program into the pinned link");
    let c3 = lab.pop_counters(&pop, &config)?;
    let sent = client.snmp("Icmp", "OutEchos")? - echos0;
    assert_eq!(c3["l4.icmp"], c2["l4.icmp"] + sent, "packets went uncounted during the restart");

    // detach is refused while the controller runs, then removes everything.
    let refused = lab.pop(&pop, &config, &["detach"])?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already running"));
    assert!(pop.xdp_prog_id("p0")?.is_some());
    lab.stop_daemon("pop")?;
    let out = lab.pop(&pop, &config, &["detach"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(pop.xdp_prog_id("p0")?, None, "detach left XDP attached");
    assert!(!lab.bpffs_dir().join("pop").exists(), "detach left pins behind");
    ping(&client, POP_V4, 3)?;
    let stats = lab.pop(&pop, &config, &["stats"])?;
    assert!(!stats.status.success());
    assert!(String::from_utf8_lossy(&stats.stderr).contains("no pop data path is pinned"));
    Ok(())
}

#[test]
fn bad_config_is_rejected_with_file_and_line_and_nothing_attached() -> Result<()> {
    let (lab, _client, pop, _config) = lab()?;
    let bad = lab.write("bad.toml", "[pop]\nname = \"x\"\n\n[[interface]]\nname = \"p0\"\nxdp_mode = \"fast\"\n")?;
    for cmd in ["check", "run"] {
        let out = lab.pop(&pop, &bad, &[cmd])?;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{}:6: unknown variant `fast`", bad.display())), "{cmd}: {err}");
    }
    let typo = lab.write("typo.toml", "[[interface]]\nname = \"p0\"\nmode = \"native\"\n")?;
    let err = String::from_utf8_lossy(&lab.pop(&pop, &typo, &["check"])?.stderr).into_owned();
    assert!(err.contains(&format!("{}:3: unknown field `mode`", typo.display())), "{err}");
    assert_eq!(pop.xdp_prog_id("p0")?, None);
    Ok(())
}

#[test]
fn missing_interface_or_refused_native_mode_leaves_nothing_attached() -> Result<()> {
    let (lab, _client, pop, _config) = lab()?;
    // The second interface does not exist: p0 must not be attached either.
    let cfg = lab.pop_config(&pop, "[[interface]]\nname = \"p0\"\n\n[[interface]]\nname = \"eth9\"\n")?;
    for cmd in ["check", "run"] {
        let out = lab.pop(&pop, &cfg, &[cmd])?;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{}:10: interface \"eth9\" does not exist", cfg.display())), "{cmd}: {err}");
    }
    assert_eq!(pop.xdp_prog_id("p0")?, None);

    // `lo` has no native XDP: the error says so and how to ask for generic; p0, attached
    // first, is rolled back.
    let cfg = lab.pop_config(&pop, "[[interface]]\nname = \"p0\"\n\n[[interface]]\nname = \"lo\"\n")?;
    let out = lab.pop(&pop, &cfg, &["run"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":10: attaching XDP to \"lo\" in native mode failed"), "{err}");
    assert!(err.contains("xdp_mode = \"generic\""), "{err}");
    assert_eq!(pop.xdp_prog_id("p0")?, None, "p0 stayed attached after a failed run");
    assert_eq!(pop.xdp_prog_id("lo")?, None);
    Ok(())
}

#[test]
fn generic_mode_when_asked() -> Result<()> {
    let (mut lab, client, pop, _config) = lab()?;
    let cfg = lab.pop_config(&pop, "[[interface]]\nname = \"p0\"\nxdp_mode = \"generic\"\n")?;
    lab.start_pop(&pop, "pop", &cfg)?;
    let link = pop.stdout(&["ip", "-d", "link", "show", "dev", "p0"])?;
    assert!(link.contains("xdpgeneric"), "{link}");
    ping(&client, POP_V4, 5)?;
    assert!(lab.pop_counters(&pop, &cfg)?["l4.icmp"] >= 5);
    Ok(())
}

#[test]
fn missing_bpffs_is_a_clear_error() -> Result<()> {
    let (lab, _client, pop, _config) = lab()?;
    let not_bpf = lab.dir.join("not-bpffs");
    let cfg = lab.write(
        "nobpf.toml",
        &format!("[pop]\nbpffs_dir = \"{}\"\nrun_dir = \"{}\"\n[[interface]]\nname = \"p0\"\n", not_bpf.display(), lab.dir.join("run").display()),
    )?;
    let out = lab.pop(&pop, &cfg, &["run"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not on a BPF filesystem") && err.contains("mount -t bpf"), "{err}");
    assert_eq!(pop.xdp_prog_id("p0")?, None);
    Ok(())
}

#[test]
fn ebpf_log_lines_reach_the_controller_log_only_when_asked() -> Result<()> {
    let (mut lab, client, pop, _config) = lab()?;
    lab.addr(&pop, "lo", "203.0.113.80/32")?;
    lab.route(&client, "203.0.113.80/32 via 192.0.2.2")?;
    // A VIP whose TCP port the kernel serves: each packet to it passes the VIP lookup.
    let zone = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/example.com.zone");
    let body = format!("[[interface]]\nname = \"p0\"\n[[dns]]\nvips = [\"203.0.113.80\"]\nzones = [\"{}\"]\n", zone.display());
    for (level, expect) in [("info", false), ("debug", true)] {
        let cfg = lab.pop_config_with(&pop, &format!("bpf_log = \"{level}\""), &body)?;
        lab.start_pop(&pop, "pop", &cfg)?;
        client.run(&["dig", "+tcp", "+tries=1", "+time=2", "@203.0.113.80", "www.example.com", "A"])?;
        let seen = pop_lab::wait_until(Duration::from_secs(3), "an eBPF log line", || {
            lab.daemon_log("pop").filter(|l| l.contains("vip hit: port 53 proto 6")).map(|_| ())
        })
        .is_ok();
        assert_eq!(seen, expect, "bpf_log = {level}: {}", lab.daemon_log("pop").unwrap_or_default());
        lab.stop_daemon("pop")?;
    }
    Ok(())
}

#[test]
fn prometheus_metrics_are_served_where_configured() -> Result<()> {
    let (mut lab, client, pop, _config) = lab()?;
    let cfg = lab.pop_config_with(&pop, "metrics_listen = \"127.0.0.1:9188\"", "[[interface]]\nname = \"p0\"\n")?;
    lab.start_pop(&pop, "pop", &cfg)?;
    ping(&client, POP_V4, 7)?;
    let text = pop.stdout(&["curl", "-sSf", "http://127.0.0.1:9188/metrics"])?;
    assert!(text.contains("# TYPE pop_l4_packets_total counter"), "{text}");
    let icmp: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("pop_l4_packets_total{proto=\"icmp\"} "))
        .and_then(|v| v.parse().ok())
        .expect("ICMP packets in the exposition");
    assert!(icmp >= 7, "{text}");
    assert!(text.contains("pop_drops_total{reason=\"dns_rrl\"} 0"), "{text}");
    // Prometheus' own linter finds nothing to say about it.
    let lint = pop_lab::promtool_check_metrics(&text)?;
    assert!(lint.is_empty(), "promtool check metrics:\n{lint}");

    // The exposition names what the config now applied has: a site added by a reload
    // shows up in the next scrape, with no restart.
    assert!(!text.contains("route=\"edge (default)\""), "{text}");
    let site = "[[http]]\nname = \"edge\"\nvips = [\"203.0.113.80\"]\nport = 80\n[http.default]\nstatus = 204\n";
    std::fs::write(&cfg, format!("{}\n{site}", std::fs::read_to_string(&cfg)?))?;
    let out = lab.pop(&pop, &cfg, &["reload"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = pop.stdout(&["curl", "-sSf", "http://127.0.0.1:9188/metrics"])?;
    assert!(text.contains("pop_http_route_responses_total{route=\"edge (default)\"} 0"), "{text}");

    let bad = lab.write("badmetrics.toml", "[pop]\nmetrics_listen = \"nowhere\"\n[[interface]]\nname = \"p0\"\n")?;
    let out = lab.pop(&pop, &bad, &["check"])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains(":2: pop.metrics_listen \"nowhere\" is not address:port"));
    Ok(())
}

#[test]
fn the_shipped_alert_rules_pass_promtool() -> Result<()> {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/pop-alerts.yml");
    let out = std::process::Command::new("promtool").arg("check").arg("rules").arg(&rules).output()?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("SUCCESS"), "{said}{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Open fds of process `pid`.
fn fd_count(pid: u32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

#[test]
fn idle_connections_neither_pile_up_fds_nor_lock_out_a_scrape_or_pop_status() -> Result<()> {
    let (mut lab, _client, pop, _config) = lab()?;
    let cfg = lab.pop_config_with(&pop, "metrics_listen = \"127.0.0.1:9188\"", "[[interface]]\nname = \"p0\"\n")?;
    lab.start_pop(&pop, "pop", &cfg)?;
    let pid = lab.daemon_pid("pop").unwrap();
    let baseline = fd_count(pid)?;

    // 200 clients connect to the Prometheus listener and send nothing.
    let idle: Vec<std::net::TcpStream> =
        pop.in_netns(|| (0..200).map(|_| std::net::TcpStream::connect("127.0.0.1:9188")).collect::<std::io::Result<Vec<_>>>())??;
    // And 200 to the control socket.
    let sock = lab.dir.join("pop-run").join("control.sock");
    let idle_ctl: Vec<std::os::unix::net::UnixStream> =
        (0..200).map(|_| std::os::unix::net::UnixStream::connect(&sock)).collect::<std::io::Result<Vec<_>>>()?;
    let held = wait_until(Duration::from_secs(5), "the controller to settle", || {
        let n = fd_count(pid).ok()?;
        // The caps are 32 (metrics) and 16 (control); allow a few fds of other work.
        (n <= baseline + 32 + 16 + 8).then_some(n)
    });
    assert!(held.is_ok(), "400 idle connections hold {} fds (baseline {baseline})", fd_count(pid)?);

    // A scrape and `pop status` still get through, promptly.
    let started = std::time::Instant::now();
    let text = pop.stdout(&["curl", "-sSf", "--max-time", "3", "http://127.0.0.1:9188/metrics"])?;
    assert!(text.contains("# TYPE pop_rx_packets_total counter"), "{text}");
    let status = lab.pop(&pop, &cfg, &["status", "--json"])?;
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());

    // Over-long requests are refused, not buffered.
    use std::io::{BufRead as _, Write as _};
    let mut s = std::os::unix::net::UnixStream::connect(&sock)?;
    s.write_all(&vec![b'x'; 200 * 1024])?;
    let mut line = String::new();
    std::io::BufReader::new(&s).read_line(&mut line)?;
    assert!(line.contains("request over 65536 bytes"), "{line}");
    let head = pop.stdout(&[
        "sh",
        "-c",
        "curl -s -o /dev/null -w '%{http_code}' -H \"X-Big: $(head -c 9000 /dev/zero | tr '\\0' a)\" http://127.0.0.1:9188/metrics",
    ])?;
    assert_eq!(head, "431");
    drop((idle, idle_ctl));

    // A lone client that sends half a request and stalls is closed after the read
    // timeout (5 s), though no cap is near: on both listeners.
    use std::io::Read as _;
    let mut ctl = std::os::unix::net::UnixStream::connect(&sock)?;
    ctl.write_all(b"{\"cmd\":\"sta")?;
    let mut http = pop.in_netns(|| std::net::TcpStream::connect("127.0.0.1:9188"))??;
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")?;
    let started = std::time::Instant::now();
    ctl.set_read_timeout(Some(Duration::from_secs(15)))?;
    http.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut rest = Vec::new();
    let _ = ctl.read_to_end(&mut rest);
    let _ = http.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(10), "stalled clients closed after {took:?}");
    Ok(())
}
