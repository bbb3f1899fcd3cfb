//! The load balancer end to end: client — router — PoP — backends, all namespaces.
//!
//! The router forwards the VIPs to the PoP (static routes here; BGP in the anycast
//! tests). The PoP's XDP program wraps each packet in IPIP / IPv6-in-IPv6 toward a
//! backend chosen by Maglev; the backends strip it with `pop decap` and answer the
//! client directly (direct server return).

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use pop_lab::{Host, Lab, frames, testrun};

const VIP4: &str = "203.0.113.10";
const VIP6: &str = "2001:db8:10::10";

struct LbLab {
    lab: Lab,
    client: Host,
    router: Host,
    pop: Host,
    backends: Vec<Host>,
    config: PathBuf,
}

fn backend_v4(i: usize) -> String {
    format!("198.51.100.{}", 140 + i)
}

fn backend_v6(i: usize) -> String {
    format!("2001:db8:bb::{}", 10 + i)
}

/// The interfaces and a service block over backends `members` (1-based, with weights).
fn service(members: &[(usize, u32)]) -> String {
    service_on(&["p0"], members)
}

fn service_on(ifaces: &[&str], members: &[(usize, u32)]) -> String {
    service_full(ifaces, members, "")
}

/// As [`service_on`], with extra TOML for the web service (e.g. its health check).
fn service_full(ifaces: &[&str], members: &[(usize, u32)], web_extra: &str) -> String {
    let mut s = String::new();
    for i in ifaces {
        s += &format!("[[interface]]\nname = \"{i}\"\n\n");
    }
    s += &format!("[[service]]\nname = \"web\"\nvips = [\"{VIP4}\", \"{VIP6}\"]\nport = 80\n{web_extra}");
    for (i, w) in members {
        s += &format!("[[service.backends]]\naddress = \"{}\"\nweight = {w}\n", backend_v4(*i));
        s += &format!("[[service.backends]]\naddress = \"{}\"\nweight = {w}\n", backend_v6(*i));
    }
    s += &format!("\n[[service]]\nname = \"echo\"\nvips = [\"{VIP4}\"]\nport = 7\nprotocol = \"udp\"\n");
    for (i, _) in members {
        s += &format!("[[service.backends]]\naddress = \"{}\"\n", backend_v4(*i));
    }
    s
}

fn lb_lab(n_backends: usize, members: &[(usize, u32)]) -> Result<LbLab> {
    lb_lab_with(n_backends, members, false)
}

fn lb_lab_with(n_backends: usize, members: &[(usize, u32)], two_nic: bool) -> Result<LbLab> {
    lb_lab_full(n_backends, members, two_nic, "", "")
}

/// client — router — pop on the uplink bridge (198.51.100.0/25), backends b1..bN on
/// the backend bridge (198.51.100.128/25). With `two_nic` the PoP also has a leg on
/// the backend bridge, so it redirects to a second interface instead of XDP_TX.
fn lb_lab_full(n_backends: usize, members: &[(usize, u32)], two_nic: bool, web_extra: &str, pop_extra: &str) -> Result<LbLab> {
    let mut lab = Lab::new()?;
    let client = lab.host("client")?;
    let router = lab.host("router")?;
    let pop = lab.host("pop")?;
    lab.link(&client, "c0", &router, "rc")?;
    lab.addr(&client, "c0", "192.0.2.1/24")?;
    lab.addr(&client, "c0", "2001:db8:c::1/64")?;
    lab.addr(&router, "rc", "192.0.2.254/24")?;
    lab.addr(&router, "rc", "2001:db8:c::fe/64")?;
    lab.route(&client, "default via 192.0.2.254")?;
    lab.route(&client, "default via 2001:db8:c::fe")?;
    lab.tx_checksum_off(&client, "c0")?;
    for br in ["br0", "br1"] {
        router.run(&["ip", "link", "add", br, "type", "bridge"])?;
        router.run(&["ip", "link", "set", br, "up"])?;
    }
    lab.addr(&router, "br0", "198.51.100.126/25")?;
    lab.addr(&router, "br0", "2001:db8:b::fe/64")?;
    lab.addr(&router, "br1", "198.51.100.254/25")?;
    lab.addr(&router, "br1", "2001:db8:bb::fe/64")?;
    for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
        router.sysctl(key, "1")?;
    }
    for key in ["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"] {
        router.sysctl(key, "0")?;
    }
    lab.link(&pop, "p0", &router, "rp")?;
    router.run(&["ip", "link", "set", "rp", "master", "br0"])?;
    // The PoP sends with XDP_TX: the router's end must run XDP to receive it.
    lab.xdp_pass(&router, "rp")?;
    lab.addr(&pop, "p0", "198.51.100.1/25")?;
    lab.addr(&pop, "p0", "2001:db8:b::1/64")?;
    lab.route(&pop, "default via 198.51.100.126")?;
    lab.route(&pop, "default via 2001:db8:b::fe")?;
    let mut ifaces = vec!["p0"];
    if two_nic {
        lab.link(&pop, "p1", &router, "rq")?;
        router.run(&["ip", "link", "set", "rq", "master", "br1"])?;
        lab.xdp_pass(&router, "rq")?;
        lab.addr(&pop, "p1", "198.51.100.129/25")?;
        lab.addr(&pop, "p1", "2001:db8:bb::1/64")?;
        ifaces.push("p1");
    }
    for i in &ifaces {
        pop.sysctl(&format!("net.ipv4.conf.{i}.forwarding"), "1")?;
        pop.sysctl(&format!("net.ipv6.conf.{i}.forwarding"), "1")?;
    }
    lab.route(&router, &format!("{VIP4}/32 via 198.51.100.1"))?;
    // Backends reply from the VIP on their own path; the router must not drop that.
    lab.route(&router, &format!("{VIP6}/128 via 2001:db8:b::1"))?;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/backend.py");
    let mut backends = Vec::new();
    for i in 1..=n_backends {
        let b = lab.host(&format!("b{i}"))?;
        lab.link(&b, "e0", &router, &format!("rb{i}"))?;
        router.run(&["ip", "link", "set", &format!("rb{i}"), "master", "br1"])?;
        lab.addr(&b, "e0", &format!("{}/25", backend_v4(i)))?;
        lab.addr(&b, "e0", &format!("{}/64", backend_v6(i)))?;
        lab.route(&b, "default via 198.51.100.254")?;
        lab.route(&b, "default via 2001:db8:bb::fe")?;
        lab.addr(&b, "lo", &format!("{VIP4}/32"))?;
        lab.addr(&b, "lo", &format!("{VIP6}/128"))?;
        // Decapsulated packets arrive on e0 for a VIP held on lo.
        b.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
        b.sysctl("net.ipv4.conf.e0.rp_filter", "0")?;
        let decap_dir = lab.bpffs_dir().join(format!("decap-b{i}"));
        let bin = pop_lab::pop_bin();
        b.run(&[bin.to_str().unwrap(), "decap", "--iface", "e0", "--bpffs-dir", decap_dir.to_str().unwrap()])?;
        let name = format!("b{i}");
        lab.spawn(&b, &name, &["python3", script.to_str().unwrap(), &name, VIP4, VIP6])?.wait_for_log("ready", Duration::from_secs(10))?;
        backends.push(b);
    }
    let config = lab.pop_config_with(&pop, pop_extra, &service_full(&ifaces, members, web_extra))?;
    lab.start_pop(&pop, "pop", &config)?;
    let lb = LbLab { lab, client, router, pop, backends, config };
    // The first packets wait for the PoP's next hop to each backend to resolve.
    pop_lab::wait_until(Duration::from_secs(10), "HTTP through the VIP", || http_get(&lb.client, VIP4, "/", None).ok())?;
    Ok(lb)
}

impl LbLab {
    /// Rewrites the config with a new backend set and reloads it with `pop reload`.
    fn set_members(&self, members: &[(usize, u32)]) -> Result<()> {
        let text = std::fs::read_to_string(&self.config)?;
        let header = text.split("[[interface]]").next().unwrap_or_default().to_string();
        std::fs::write(&self.config, format!("{header}{}", service(members)))?;
        let out = self.lab.pop(&self.pop, &self.config, &["reload"])?;
        if !out.status.success() {
            bail!("pop reload failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

/// One HTTP/1.0 GET through `vip` from inside `host`, optionally from a fixed source
/// port; returns the body.
fn http_get(host: &Host, vip: &str, path: &str, sport: Option<u16>) -> Result<String> {
    let addr = SocketAddr::new(vip.parse()?, 80);
    let path = path.to_string();
    host.in_netns(move || -> Result<String> {
        let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        if let Some(p) = sport {
            sock.set_reuse_address(true)?;
            let any: IpAddr = if addr.is_ipv6() { "::".parse()? } else { "0.0.0.0".parse()? };
            sock.bind(&SocketAddr::new(any, p).into())?;
        }
        sock.connect_timeout(&addr.into(), Duration::from_secs(3))?;
        let mut s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {vip}\r\n\r\n", vip = addr.ip())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let body = out.split("\r\n\r\n").nth(1).context("no HTTP body")?;
        Ok(body.trim().to_string())
    })?
}

/// UDP echo through the VIP from each source port; returns the backend per port.
fn udp_owners(host: &Host, ports: Vec<u16>) -> Result<BTreeMap<u16, String>> {
    host.in_netns(move || -> Result<BTreeMap<u16, String>> {
        let mut out = BTreeMap::new();
        for p in ports {
            let s = UdpSocket::bind(("0.0.0.0", p))?;
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            let mut buf = [0u8; 64];
            let mut got = None;
            for _ in 0..4 {
                s.send_to(b"who", (VIP4, 7))?;
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    got = Some(String::from_utf8_lossy(&buf[..n]).to_string());
                    break;
                }
            }
            out.insert(p, got.with_context(|| format!("no UDP answer from source port {p}"))?);
        }
        Ok(out)
    })?
}

fn shares(names: &[String]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.clone()).or_insert(0.0) += 1.0 / names.len() as f64;
    }
    m
}

#[test]
fn http_through_the_vip_is_shared_by_weight_v4_and_v6() -> Result<()> {
    let l = lb_lab(3, &[(1, 1), (2, 2), (3, 3)])?;
    // Real clients: curl and wrk.
    let body = l.client.stdout(&["curl", "-sSf", "--max-time", "5", &format!("http://{VIP4}/")])?;
    assert!(["b1", "b2", "b3"].contains(&body.trim()), "{body}");
    let body = l.client.stdout(&["curl", "-sSf", "--max-time", "5", &format!("http://[{VIP6}]/")])?;
    assert!(["b1", "b2", "b3"].contains(&body.trim()), "{body}");
    let wrk = l.client.stdout(&["wrk", "-t1", "-c8", "-d2s", &format!("http://{VIP4}/")])?;
    assert!(!wrk.contains("Socket errors") && !wrk.contains("Non-2xx"), "{wrk}");

    // Weights 1:2:3 over 1200 connections, each from a new source port.
    for vip in [VIP4, VIP6] {
        let mut names = Vec::new();
        for _ in 0..1200 {
            names.push(http_get(&l.client, vip, "/", None)?);
        }
        let s = shares(&names);
        // Tolerance: 1200 draws give a standard deviation of at most 1.5 points per
        // share; 6 points is four of them, and Maglev's own table error is far smaller.
        for (name, want) in [("b1", 1.0 / 6.0), ("b2", 2.0 / 6.0), ("b3", 3.0 / 6.0)] {
            let got = s.get(name).copied().unwrap_or(0.0);
            assert!((got - want).abs() < 0.06, "{vip}: {name} got {got:.3}, weight share {want:.3}: {s:?}");
        }
    }
    let stats = l.lab.pop(&l.pop, &l.config, &["stats", "--json", "--interval", "0"])?;
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout)?;
    let web = &v["services"][0];
    assert_eq!(web["name"], "web");
    assert!(web["new_flows"].as_u64().unwrap() >= 2400, "{web}");
    assert_eq!(web["backends"].as_array().unwrap().len(), 6);
    Ok(())
}

#[test]
fn long_lived_connection_survives_adding_and_removing_other_backends() -> Result<()> {
    let l = lb_lab(4, &[(1, 1), (2, 1), (3, 1)])?;
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = SocketAddr::new(VIP4.parse()?, 80);
    let total = 600_000usize;
    let download = {
        let client = l.client.clone();
        std::thread::spawn(move || -> Result<usize> {
            client.in_netns(move || -> Result<usize> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                write!(s, "GET /slow?bytes={total}&rate=150000 HTTP/1.0\r\n\r\n")?;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut announced = false;
                loop {
                    let n = s.read(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if !announced {
                        let text = String::from_utf8_lossy(&buf);
                        if let Some(i) = text.find("backend=")
                            && let Some(end) = text[i..].find('\n')
                        {
                            tx.send(text[i + 8..i + end].to_string()).unwrap();
                            announced = true;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                let body = text.split("\r\n\r\n").nth(1).context("no body")?;
                Ok(body.len())
            })?
        })
    };
    let serving: usize = rx.recv_timeout(Duration::from_secs(10))?[1..].parse()?;
    // Remove one of the other backends and add b4, then put it back: twice the table
    // changes under the flow.
    let others: Vec<usize> = (1..=3).filter(|&i| i != serving).collect();
    let without = [(serving, 1), (others[1], 1), (4, 1)];
    l.set_members(&without)?;
    // New connections now spread over the new set only.
    for _ in 0..30 {
        let b = http_get(&l.client, VIP4, "/", None)?;
        assert_ne!(b, format!("b{}", others[0]), "a removed backend got a new flow");
    }
    l.set_members(&[(1, 1), (2, 1), (3, 1)])?;
    let got = download.join().unwrap()?;
    assert_eq!(got, "backend=bN\n".len() + total, "the long download was cut short");
    Ok(())
}

#[test]
fn removing_one_of_three_backends_moves_its_flows_and_no_others() -> Result<()> {
    let l = lb_lab(3, &[(1, 1), (2, 1), (3, 1)])?;
    let ports: Vec<u16> = (41000..41300).collect();
    let before = udp_owners(&l.client, ports.clone())?;
    let s = shares(&before.values().cloned().collect::<Vec<_>>());
    assert_eq!(s.len(), 3, "{s:?}");
    l.set_members(&[(1, 1), (2, 1)])?;
    let after = udp_owners(&l.client, ports.clone())?;
    let moved: Vec<_> = ports.iter().filter(|p| before[p] != after[p]).collect();
    let from_b3 = ports.iter().filter(|p| before[p] == "b3").count();
    // Exactly b3's flows move (about a third), to the survivors; nobody else's.
    assert_eq!(moved.len(), from_b3, "flows of surviving backends moved");
    assert!(moved.iter().all(|p| before[p] == "b3" && after[p] != "b3"));
    let frac = moved.len() as f64 / ports.len() as f64;
    assert!((0.2..0.47).contains(&frac), "moved {frac:.3} of flows, expected about 1/3");
    let c = l.lab.pop_counters(&l.pop, &l.config)?;
    assert_eq!(c["lb.rehashed"] as usize, from_b3, "{c:?}");
    eprintln!("removing 1 of 3 backends moved {:.1}% of 300 flows (all of them b3's)", frac * 100.0);
    Ok(())
}

#[test]
fn oversize_packet_gets_icmp_too_big_and_the_transfer_completes() -> Result<()> {
    let l = lb_lab(1, &[(1, 1)])?;
    // Without PMTU discovery the client's full-size segments (1500) cannot be wrapped
    // (1520) on a 1500-byte path: the PoP must answer "fragmentation needed" and the
    // client's TCP then uses smaller segments.
    let before = l.lab.pop_counters(&l.pop, &l.config)?;
    let upload = l.lab.write("upload.bin", &"u".repeat(300_000))?;
    let out = l.client.output(&[
        "curl",
        "-sS",
        "--max-time",
        "20",
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", upload.display()),
        &format!("http://{VIP4}/"),
    ])?;
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    // The backend answers only once it has read the whole body.
    assert_eq!(body.trim(), "b1 received 300000", "curl: {}", String::from_utf8_lossy(&out.stderr));
    let after = l.lab.pop_counters(&l.pop, &l.config)?;
    assert!(after["lb.icmp_too_big"] > before["lb.icmp_too_big"], "{after:?}");
    let _ = &l.backends;
    Ok(())
}

#[test]
fn two_nic_pop_redirects_to_the_backend_side() -> Result<()> {
    let l = lb_lab_with(2, &[(1, 1), (2, 1)], true)?;
    let mut names = Vec::new();
    for vip in [VIP4, VIP6] {
        for _ in 0..40 {
            names.push(http_get(&l.client, vip, "/", None)?);
        }
    }
    let s = shares(&names);
    assert_eq!(s.len(), 2, "{s:?}");
    let c = l.lab.pop_counters(&l.pop, &l.config)?;
    assert!(c["lb.forwarded_redirect"] > 0, "{c:?}");
    assert_eq!(c["lb.forwarded_tx"], 0, "with a leg on the backend side nothing should go back out p0: {c:?}");
    Ok(())
}

fn status(l: &LbLab) -> Result<serde_json::Value> {
    let out = l.lab.pop(&l.pop, &l.config, &["status", "--json"])?;
    anyhow::ensure!(out.status.success(), "pop status: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn backend_state(v: &serde_json::Value, addr: &str) -> (String, bool, Option<String>) {
    let b = v["backends"].as_array().unwrap().iter().find(|b| b["service"] == "web" && b["address"] == addr).unwrap();
    (b["state"].as_str().unwrap().to_string(), b["drained"].as_bool().unwrap(), b["last_error"].as_str().map(String::from))
}

#[test]
fn health_checks_take_a_dead_backend_out_and_back_and_drain_works() -> Result<()> {
    const HEALTH: &str = "[service.health]\ntype = \"http\"\npath = \"/\"\nstatus = 200\ninterval_ms = 200\ntimeout_ms = 150\nrise = 2\nfall = 3\n";
    let mut l = lb_lab_full(3, &[(1, 1), (2, 1), (3, 1)], false, HEALTH, "metrics_listen = \"127.0.0.1:9188\"")?;
    pop_lab::wait_until(Duration::from_secs(10), "all backends up", || status(&l).ok().filter(|v| v["services"][0]["backends_up"] == 6).map(|_| ()))?;
    let v = status(&l)?;
    let web1 = v["backends"].as_array().unwrap().iter().find(|b| b["service"] == "web").unwrap();
    assert!(web1["rtt_p50_ms"].as_f64().is_some() && web1["health_checked"] == true, "{v}");

    // Kill b2's server: it must leave within interval x fall plus a small margin, and no
    // new flow may reach it afterwards.
    let killed = std::time::Instant::now();
    l.lab.stop_daemon("b2")?;
    pop_lab::wait_until(Duration::from_secs(5), "b2 marked down", || {
        status(&l).ok().filter(|v| backend_state(v, &backend_v4(2)).0 == "down").map(|_| ())
    })?;
    let took = killed.elapsed();
    // interval x fall = 600 ms, plus up to one interval of phase and scheduling slack
    // on a loaded two-core CI machine.
    assert!(took < Duration::from_millis(200 * 3 + 1400), "b2 went down after {took:?}");
    let (_, _, err) = backend_state(&status(&l)?, &backend_v4(2));
    assert!(err.is_some(), "no last error recorded for b2");
    for _ in 0..60 {
        assert_ne!(http_get(&l.client, VIP4, "/", None)?, "b2", "a down backend got a new flow");
    }
    let text = l.lab.pop(&l.pop, &l.config, &["status"])?;
    assert!(String::from_utf8_lossy(&text.stdout).contains("down"), "{}", String::from_utf8_lossy(&text.stdout));
    // Prometheus sees the same: b2 down, b1's probe round trips as a histogram in seconds.
    let metrics = l.pop.stdout(&["curl", "-sSf", "http://127.0.0.1:9188/metrics"])?;
    let b = |n: usize| format!("{{service=\"web\",backend=\"{}\"}}", backend_v4(n));
    assert!(metrics.contains(&format!("pop_backend_up{} 0\n", b(2))) && metrics.contains(&format!("pop_backend_up{} 1\n", b(1))), "{metrics}");
    let probes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("pop_backend_probe_rtt_seconds_count{} ", b(1))))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(probes >= 2, "{metrics}");
    let lint = pop_lab::promtool_check_metrics(&metrics)?;
    assert!(lint.is_empty(), "promtool check metrics:\n{lint}");

    // Bring it back: up again after `rise` good probes, and it gets flows again.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/backend.py");
    let b2 = l.backends[1].clone();
    l.lab.spawn(&b2, "b2", &["python3", script.to_str().unwrap(), "b2", VIP4, VIP6])?.wait_for_log("ready", Duration::from_secs(10))?;
    pop_lab::wait_until(Duration::from_secs(5), "b2 up again", || {
        status(&l).ok().filter(|v| backend_state(v, &backend_v4(2)).0 == "up").map(|_| ())
    })?;
    let names: Vec<String> = (0..90).map(|_| http_get(&l.client, VIP4, "/", None)).collect::<Result<_>>()?;
    assert!(names.iter().any(|n| n == "b2"), "b2 got no flows after coming back");

    // Drain b1: no new flows; undrain: it takes them again.
    let out = l.lab.pop(&l.pop, &l.config, &["drain", "web", &backend_v4(1)])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(backend_state(&status(&l)?, &backend_v4(1)).1);
    for _ in 0..60 {
        assert_ne!(http_get(&l.client, VIP4, "/", None)?, "b1", "a drained backend got a new flow");
    }
    let out = l.lab.pop(&l.pop, &l.config, &["undrain", "web", &backend_v4(1)])?;
    assert!(out.status.success());
    let names: Vec<String> = (0..90).map(|_| http_get(&l.client, VIP4, "/", None)).collect::<Result<_>>()?;
    assert!(names.iter().any(|n| n == "b1"), "b1 got no flows after undrain");
    let bad = l.lab.pop(&l.pop, &l.config, &["drain", "web", "192.0.2.99"])?;
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("no backend 192.0.2.99"));
    Ok(())
}

/// A full connection table keeps working: the least recently used flows are evicted
/// and new flows still get a backend.
#[test]
fn a_full_connection_table_evicts_and_keeps_forwarding() -> Result<()> {
    // No rate limit on entering flows: this test fills the table as fast as it can.
    let mut l = lb_lab_full(1, &[(1, 1)], false, "", "flow_table_size = 4096\nflow_table_rate = 100000000")?;
    let prog_path = l.lab.bpffs_dir().join("pop").join("prog");
    // Test runs arrive on the namespace's lo; the route lookup needs forwarding there.
    l.pop.sysctl("net.ipv4.conf.lo.forwarding", "1")?;
    let flows = 4096 + 2000;
    let (forwarded, first_again) = l.pop.in_netns(move || -> Result<(u32, u32)> {
        let prog = testrun::pinned_program(&prog_path)?;
        let mut forwarded = 0;
        let syn = |i: u32| {
            let mut f = frames::tcp4([203, 0, 113, 10], 1024 + (i % 60000) as u16, 1, 0, 0x02, &[]);
            // Distinct flows: source port and a client address in 192.0.2.0/24 (these
            // frames only ever go through BPF_PROG_TEST_RUN).
            f[26..30].copy_from_slice(&[192, 0, 2, 10 + (i / 60000) as u8]);
            f
        };
        for i in 0..flows {
            let v = testrun::run(&prog, &syn(i))?.verdict;
            if v == testrun::XDP_TX || v == 4 {
                forwarded += 1;
            }
        }
        Ok((forwarded, testrun::run(&prog, &syn(0))?.verdict))
    })??;
    assert_eq!(forwarded, flows, "flows stopped being forwarded once the table filled");
    assert!(first_again == testrun::XDP_TX || first_again == 4);
    let c = l.lab.pop_counters(&l.pop, &l.config)?;
    assert!(c["lb.new_flow"] >= flows as u64, "{c:?}");

    // The table is pinned: a different size is refused with what to do, not half-applied.
    l.lab.stop_daemon("pop")?;
    let text = std::fs::read_to_string(&l.config)?.replace("flow_table_size = 4096", "flow_table_size = 8192");
    std::fs::write(&l.config, text)?;
    let out = l.lab.pop(&l.pop, &l.config, &["run"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("holds 4096") && err.contains("pop detach"), "{err}");
    let _ = &mut l;
    Ok(())
}

/// Past `pop.flow_table_rate` new flows a second (a SYN flood), flows are placed by
/// the Maglev table alone and counted as untracked: every SYN is still forwarded, and a
/// SYN on a 5-tuple whose old entry names another backend moves that entry, so the
/// connection's next packets follow the SYN, not the old entry.
#[test]
fn a_syn_flood_past_the_flow_table_rate_is_placed_by_maglev_and_moves_reused_tuples() -> Result<()> {
    let mut l = lb_lab_full(2, &[(1, 1)], false, "", "")?;
    let prog_path = l.lab.bpffs_dir().join("pop").join("prog");
    l.pop.sysctl("net.ipv4.conf.lo.forwarding", "1")?;
    let vip: [u8; 4] = VIP4.parse::<std::net::Ipv4Addr>()?.octets();
    let frame = move |sport: u16, flags: u8| frames::tcp4(vip, sport, 1, if flags == 0x02 { 0 } else { 1 }, flags, &[]);
    // The backend a forwarded frame was sent to: the outer IPv4 header's destination.
    let backend_of = |f: &[u8]| std::net::Ipv4Addr::new(f[30], f[31], f[32], f[33]).to_string();
    let reused: Vec<u16> = (20000..20040).collect();
    // Phase 1, under the default rate: each of these tuples gets an entry (backend b1).
    let ports = reused.clone();
    let first = l.pop.in_netns(move || -> Result<Vec<String>> {
        let prog = testrun::pinned_program(&prog_path)?;
        ports.iter().map(|&p| Ok(backend_of(&testrun::run(&prog, &frame(p, 0x10))?.frame))).collect()
    })??;
    assert!(first.iter().all(|b| *b == backend_v4(1)), "{first:?}");

    // Phase 2: b2 joins (about half of the tuples now map to it) and the rate is 1 a
    // second, so a burst of SYNs is untracked and so are the reused tuples' new SYNs.
    l.lab.stop_daemon("pop")?;
    let text = std::fs::read_to_string(&l.config)?.replacen("[pop]\n", "[pop]\nflow_table_rate = 1\n", 1);
    let header = text.split("[[interface]]").next().unwrap_or_default().to_string();
    std::fs::write(&l.config, format!("{header}{}", service(&[(1, 1), (2, 1)])))?;
    l.lab.start_pop(&l.pop, "pop", &l.config)?;
    pop_lab::wait_until(Duration::from_secs(10), "b2 up", || status(&l).ok().filter(|v| backend_state(v, &backend_v4(2)).0 == "up").map(|_| ()))?;
    let before = l.lab.pop_counters(&l.pop, &l.config)?;
    let prog_path = l.lab.bpffs_dir().join("pop").join("prog");
    let ports = reused.clone();
    let (flood_forwarded, pairs) = l.pop.in_netns(move || -> Result<(usize, Vec<(String, String)>)> {
        let prog = testrun::pinned_program(&prog_path)?;
        let mut forwarded = 0;
        for p in 30000..32000u16 {
            let v = testrun::run(&prog, &frame(p, 0x02))?.verdict;
            if v == testrun::XDP_TX || v == 4 {
                forwarded += 1;
            }
        }
        let mut pairs = Vec::new();
        for &p in &ports {
            let syn = backend_of(&testrun::run(&prog, &frame(p, 0x02))?.frame);
            let ack = backend_of(&testrun::run(&prog, &frame(p, 0x10))?.frame);
            pairs.push((syn, ack));
        }
        Ok((forwarded, pairs))
    })??;
    let after = l.lab.pop_counters(&l.pop, &l.config)?;
    assert_eq!(flood_forwarded, 2000, "every SYN of the flood is forwarded");
    let delta = |k: &str| after[k] - before.get(k).copied().unwrap_or(0);
    // One entry a second per CPU at most; allow for the run crossing seconds and CPUs.
    assert!(delta("lb.untracked") >= 2000, "{after:?}");
    assert!(delta("lb.new_flow") <= 16, "{after:?}");
    let moved = pairs.iter().filter(|(syn, _)| *syn == backend_v4(2)).count();
    assert!(moved > 0, "no reused tuple maps to b2 now: {pairs:?}");
    for (i, (syn, ack)) in pairs.iter().enumerate() {
        assert_eq!(syn, ack, "port {}: the ACK after the SYN went to another backend", reused[i]);
    }
    let _ = &mut l;
    Ok(())
}

/// Whether a TCP connection to `addr` from inside `host` is accepted within a second.
fn tcp_connects(host: &Host, addr: SocketAddr) -> Result<bool> {
    host.in_netns(move || TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// Whether one ping of `size` payload bytes to `addr` from `host` is answered.
fn pings(host: &Host, addr: &str, size: usize) -> Result<bool> {
    Ok(host.output(&["ping", "-c1", "-W2", "-s", &size.to_string(), addr])?.status.success())
}

fn rewrite_pop_section(l: &LbLab, extra: &str) -> Result<()> {
    let text = std::fs::read_to_string(&l.config)?.replacen("[pop]\n", &format!("[pop]\n{extra}\n"), 1);
    std::fs::write(&l.config, text)?;
    let out = l.lab.pop(&l.pop, &l.config, &["reload"])?;
    anyhow::ensure!(out.status.success(), "pop reload failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Verdicts of the PoP's program on two ICMP "fragmentation needed" messages toward
/// VIP4, quoting a reply from VIP4:80 (the web service) and one from VIP4:2222.
fn icmp_error_verdicts(l: &LbLab) -> Result<[u32; 2]> {
    let prog_path = l.lab.bpffs_dir().join("pop").join("prog");
    let vip: [u8; 4] = VIP4.parse::<std::net::Ipv4Addr>()?.octets();
    l.pop.in_netns(move || -> Result<[u32; 2]> {
        let prog = testrun::pinned_program(&prog_path)?;
        let mut out = [0; 2];
        for (i, vip_port) in [80u16, 2222].into_iter().enumerate() {
            let mut quoted = vec![0x45, 0, 0x05, 0xdc, 0, 0, 0x40, 0, 64, 6, 0, 0];
            quoted.extend_from_slice(&vip);
            quoted.extend_from_slice(&[192, 0, 2, 1]);
            let c = testrun::checksum(&quoted);
            quoted[10..12].copy_from_slice(&c.to_be_bytes());
            quoted.extend_from_slice(&vip_port.to_be_bytes());
            quoted.extend_from_slice(&5555u16.to_be_bytes());
            quoted.extend_from_slice(&[0, 0, 0, 1]);
            let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78]; // fragmentation needed, MTU 1400
            icmp.extend_from_slice(&quoted);
            let c = testrun::checksum(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0, 198, 51, 100, 126]);
            ip.extend_from_slice(&vip);
            let c = testrun::checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut frame = [frames::POP_MAC, frames::CLIENT_MAC].concat();
            frame.extend_from_slice(&[0x08, 0x00]);
            frame.extend_from_slice(&ip);
            frame.extend_from_slice(&icmp);
            let v = testrun::run(&prog, &frame)?.verdict;
            out[i] = if v == 4 { testrun::XDP_TX } else { v };
        }
        Ok(out)
    })?
}

/// Traffic to a VIP on a port or protocol no handler takes (and IP fragments to it)
/// must not reach the PoP host's own services bound to the wildcard address; ping
/// still works, the host's own address is untouched, and a VIP can opt out.
#[test]
fn vip_traffic_no_handler_takes_is_dropped_unless_the_vip_opts_out() -> Result<()> {
    let l = lb_lab(1, &[(1, 1)])?;
    // The PoP holds the VIPs itself, as an anycast PoP does on lo, and runs a service on
    // the wildcard address, as sshd or a metrics exporter would.
    l.lab.addr(&l.pop, "lo", &format!("{VIP4}/32"))?;
    l.lab.addr(&l.pop, "lo", &format!("{VIP6}/128"))?;
    let _listener = l.pop.in_netns(|| std::net::TcpListener::bind("[::]:2222"))??;
    let vip4: SocketAddr = format!("{VIP4}:2222").parse()?;
    let vip6: SocketAddr = format!("[{VIP6}]:2222").parse()?;

    assert!(tcp_connects(&l.client, "198.51.100.1:2222".parse()?)?, "the PoP's own address must stay reachable");
    assert!(!tcp_connects(&l.client, vip4)?, "a wildcard-bound service answered on the IPv4 VIP");
    assert!(!tcp_connects(&l.client, vip6)?, "a wildcard-bound service answered on the IPv6 VIP");
    assert_eq!(http_get(&l.client, VIP4, "/", None)?, "b1", "the VIP's service itself must keep working");
    assert!(pings(&l.client, VIP4, 56)? && pings(&l.client, VIP6, 56)?, "echo requests to a VIP are the kernel's to answer");
    // 3000 bytes leave the client in fragments: no handler takes them.
    assert!(!pings(&l.client, VIP4, 3000)?, "fragments to the VIP were reassembled and answered by the host");
    // ICMP errors to the VIP: one about a flow of the service goes to a backend (Maglev
    // places it: no connection-table entry exists), one about another port is dropped.
    l.pop.sysctl("net.ipv4.conf.lo.forwarding", "1")?;
    assert_eq!(icmp_error_verdicts(&l)?, [testrun::XDP_TX, testrun::XDP_DROP]);
    let c = l.lab.pop_counters(&l.pop, &l.config)?;
    assert!(c["drop.vip_unhandled"] >= 2, "{c:?}");
    assert!(c["drop.vip_fragment"] >= 2, "{c:?}");
    assert!(c["pass.vip_icmp"] >= 2, "{c:?}");
    assert!(c["drop.vip_icmp_error"] >= 1 && c["lb.icmp_error_forwarded"] >= 1, "{c:?}");

    // The opt-out lets the IPv4 VIP's other traffic through to the kernel, and only its.
    rewrite_pop_section(&l, &format!("pass_unhandled_vips = [\"{VIP4}\"]"))?;
    pop_lab::wait_until(Duration::from_secs(5), "the opt-out applied", || tcp_connects(&l.client, vip4).ok().filter(|&ok| ok))?;
    assert!(pings(&l.client, VIP4, 3000)?, "fragments to an opted-out VIP must reach the kernel");
    assert!(!tcp_connects(&l.client, vip6)?, "the opt-out of one VIP opened another");
    assert_eq!(icmp_error_verdicts(&l)?, [testrun::XDP_TX, testrun::XDP_PASS], "an opted-out VIP's other ICMP errors are the kernel's");
    let c = l.lab.pop_counters(&l.pop, &l.config)?;
    assert!(c["pass.vip_unhandled_allowed"] >= 2, "{c:?}");
    Ok(())
}

/// Path MTU discovery through direct server return: the router cannot forward a
/// backend's full-size reply toward the client and sends "fragmentation needed" /
/// "packet too big" to the reply's source, the VIP, which routes to the PoP. The PoP
/// must tunnel it to the backend owning the flow, or the download stalls.
#[test]
fn icmp_too_big_about_a_backend_reply_reaches_that_backend() -> Result<()> {
    let l = lb_lab(2, &[(1, 1), (2, 1)])?;
    // The client advertises an MSS for 1500 bytes; the router's link to it carries 1400.
    l.router.run(&["ip", "link", "set", "rc", "mtu", "1400"])?;
    let bytes = 300_000;
    for url in [format!("http://{VIP4}/slow?bytes={bytes}&rate=50000000"), format!("http://[{VIP6}]/slow?bytes={bytes}&rate=50000000")] {
        let out = l.client.output(&["curl", "-sS", "--max-time", "15", "-o", "/dev/null", "-w", "%{size_download}", &url])?;
        let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(got, (bytes + "backend=bN\n".len()).to_string(), "{url}: curl: {}", String::from_utf8_lossy(&out.stderr));
    }
    let c = l.lab.pop_counters(&l.pop, &l.config)?;
    assert!(c["lb.icmp_error_forwarded"] >= 2, "{c:?}");
    Ok(())
}

/// Backend ids are reused once a backend is gone: a remembered flow whose id now
/// belongs to another service (or is a backend of the other address family) must be
/// placed afresh in its own service, not sent there or dropped.
#[test]
fn a_remembered_flow_on_a_backend_id_of_another_service_is_placed_afresh() -> Result<()> {
    let l = lb_lab(2, &[(1, 1), (2, 1)])?;
    let maps = l.lab.pop_maps_dir("pop");
    let prog_path = l.lab.bpffs_dir().join("pop").join("prog");
    // Test runs arrive on the namespace's lo; the route lookup needs forwarding there.
    l.pop.sysctl("net.ipv4.conf.lo.forwarding", "1")?;
    let before = l.lab.pop_counters(&l.pop, &l.config)?;
    l.pop.in_netns(move || -> Result<()> {
        let prog = testrun::pinned_program(&prog_path)?;
        let flows = testrun::pinned_map(&maps.join(pop_common::MAP_LB_FLOWS))?;
        let backends = testrun::pinned_map(&maps.join(pop_common::MAP_LB_BACKENDS))?;
        // LbBackend: address (16, IPv4 v4-mapped), state, service.
        let backend = |id: u32| -> Result<([u8; 16], u32, u32)> {
            let v = testrun::map_lookup(&backends, &id.to_ne_bytes(), 24)?.context("no backend entry")?;
            let word = |at: usize| u32::from_ne_bytes(v[at..at + 4].try_into().unwrap());
            Ok((v[..16].try_into().unwrap(), word(16), word(20)))
        };
        let is_v4 = |a: &[u8; 16]| a[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        let (mut other_service, mut other_family) = (None, None);
        for id in 0..16 {
            let (addr, state, service) = backend(id)?;
            if state == pop_common::BACKEND_LIVE && service == 1 {
                other_service.get_or_insert(id);
            }
            if state == pop_common::BACKEND_LIVE && service == 0 && !is_v4(&addr) {
                other_family.get_or_insert(id);
            }
        }
        let vip: [u8; 4] = VIP4.parse::<std::net::Ipv4Addr>()?.octets();
        for (stale, sport) in [(other_service.context("no echo backend")?, 50001u16), (other_family.context("no IPv6 web backend")?, 50002)] {
            let mut key = pop_common::v4_mapped([192, 0, 2, 1]).to_vec();
            key.extend_from_slice(&pop_common::v4_mapped(vip));
            key.extend_from_slice(&sport.to_be_bytes());
            key.extend_from_slice(&80u16.to_be_bytes());
            key.extend_from_slice(&[6, 0, 0, 0]);
            let mut value = stale.to_ne_bytes().to_vec();
            value.extend_from_slice(&[0; 4]);
            testrun::map_update(&flows, &key, &value)?;
            // A mid-connection segment (ACK): the flow table decides, not Maglev.
            let out = testrun::run(&prog, &frames::tcp4(vip, sport, 1, 1, 0x10, b"data"))?;
            assert!(out.verdict == testrun::XDP_TX || out.verdict == 4, "stale id {stale}: verdict {}", out.verdict);
            let now = u32::from_ne_bytes(testrun::map_lookup(&flows, &key, 8)?.context("flow forgotten")?[..4].try_into().unwrap());
            let (addr, _, service) = backend(now)?;
            assert!(service == 0 && is_v4(&addr), "flow left on backend id {now} (service {service}), not a web IPv4 backend");
            assert_eq!(out.frame[14 + 16..14 + 20], addr[12..16], "tunnelled elsewhere than the flow's backend");
        }
        Ok(())
    })??;
    let after = l.lab.pop_counters(&l.pop, &l.config)?;
    assert_eq!(after["lb.rehashed"] - before["lb.rehashed"], 2, "{after:?}");
    Ok(())
}

/// Sends `inner` (an IPv4 packet) from `host` to `to` inside an IPIP header, as a
/// stranger on the Internet could, and returns what comes back to the inner packet's
/// UDP source port 40777 within a second.
fn tunnel_udp(host: &Host, to: &str, inner_dst: [u8; 4]) -> Result<Option<String>> {
    let to: std::net::Ipv4Addr = to.parse()?;
    host.in_netns(move || -> Result<Option<String>> {
        let reply = UdpSocket::bind(("0.0.0.0", 40777))?;
        reply.set_read_timeout(Some(Duration::from_secs(1)))?;
        let frame = pop_lab::frames::udp4(Default::default(), [192, 0, 2, 1], inner_dst, 40777, 7, &[], b"who");
        let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(socket2::Protocol::from(4)))?;
        raw.send_to(&frame[14..], &SocketAddr::new(to.into(), 0).into())?;
        let mut buf = [0u8; 64];
        Ok(reply.recv_from(&mut buf).ok().map(|(n, _)| String::from_utf8_lossy(&buf[..n]).to_string()))
    })?
}

fn decap_stats(host: &Host, dir: &std::path::Path) -> Result<BTreeMap<String, u64>> {
    let bin = pop_lab::pop_bin();
    let out = host.stdout(&[bin.to_str().unwrap(), "decap", "--iface", "e0", "--bpffs-dir", dir.to_str().unwrap(), "--stats"])?;
    Ok(out.lines().filter_map(|l| l.split_once(char::is_whitespace)).map(|(k, v)| (k.to_string(), v.trim().parse().unwrap_or(0))).collect())
}

/// A backend decapsulates only packets for its own addresses, and with `--allow-source`
/// only those from the PoPs: a stranger cannot tunnel traffic past its filters.
#[test]
fn decap_takes_only_packets_for_this_backend_from_the_allowed_pops() -> Result<()> {
    let l = lb_lab(1, &[(1, 1)])?;
    let b1 = &l.backends[0];
    let dir = l.lab.bpffs_dir().join("decap-b1");
    let b1_addr = backend_v4(1);
    let vip: [u8; 4] = VIP4.parse::<std::net::Ipv4Addr>()?.octets();

    // Not an address of the backend: never decapsulated, whoever sends it.
    assert_eq!(tunnel_udp(&l.client, &b1_addr, [192, 0, 2, 77])?, None);
    assert!(decap_stats(b1, &dir)?["dropped_inner_not_local"] >= 1);
    // No allow list yet: any source may tunnel to the VIP (the old behaviour).
    assert_eq!(tunnel_udp(&l.client, &b1_addr, vip)?.as_deref(), Some("b1"));

    // Only the PoP from now on: re-running the command refreshes the attached program.
    let bin = pop_lab::pop_bin();
    let out =
        b1.stdout(&[bin.to_str().unwrap(), "decap", "--iface", "e0", "--bpffs-dir", dir.to_str().unwrap(), "--allow-source", "198.51.100.1"])?;
    assert!(out.contains("already attached") && out.contains("198.51.100.1"), "{out}");
    assert_eq!(tunnel_udp(&l.client, &b1_addr, vip)?, None, "a stranger's tunnelled packet was decapsulated");
    assert!(decap_stats(b1, &dir)?["dropped_source_not_allowed"] >= 1);
    // The PoP's own tunnelled traffic still gets through.
    assert_eq!(http_get(&l.client, VIP4, "/", None)?, "b1");
    assert_eq!(udp_owners(&l.client, vec![41999])?[&41999], "b1");
    assert!(decap_stats(b1, &dir)?["decapsulated_ipv4"] >= 1);
    Ok(())
}

/// `pop decap` on an interface whose pinned link is dead (the namespace it was in
/// deleted, or the device re-created) attaches afresh instead of saying "already
/// attached".
#[test]
fn decap_replaces_a_pin_whose_interface_is_gone() -> Result<()> {
    let mut lab = Lab::new()?;
    let peer = lab.host("peer")?;
    let gone = lab.host("gone")?;
    let backend = lab.host("backend")?;
    let dir = lab.bpffs_dir().join("decap");
    let bin = pop_lab::pop_bin();
    let decap = |h: &Host| -> Result<String> {
        let out = h.output(&[bin.to_str().unwrap(), "decap", "--iface", "e0", "--bpffs-dir", dir.to_str().unwrap()])?;
        anyhow::ensure!(out.status.success(), "pop decap: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    };

    // Its namespace deleted: the pin stays on bpffs, the link has no device any more.
    lab.link(&gone, "e0", &peer, "x0")?;
    decap(&gone)?;
    pop_lab::run(std::process::Command::new("ip").args(["netns", "del", &gone.netns]))?;
    // An empty namespace of the same name, for the lab to remove like the others.
    pop_lab::run(std::process::Command::new("ip").args(["netns", "add", &gone.netns]))?;
    lab.link(&backend, "e0", &peer, "x1")?;
    let out = decap(&backend)?;
    assert!(out.contains("replacing the stale"), "{out}");
    let first = backend.xdp_prog_id("e0")?.context("decap not attached after a deleted namespace")?;

    // The device re-created under the same name.
    backend.run(&["ip", "link", "del", "e0"])?;
    lab.link(&backend, "e0", &peer, "x2")?;
    assert_eq!(backend.xdp_prog_id("e0")?, None);
    let out = decap(&backend)?;
    assert!(out.contains("replacing the stale"), "{out}");
    let second = backend.xdp_prog_id("e0")?.context("decap not attached on the re-created device")?;
    assert_ne!(first, second);

    // A live link is kept: a second run only refreshes its lists.
    let out = decap(&backend)?;
    assert!(out.contains("already attached"), "{out}");
    assert_eq!(backend.xdp_prog_id("e0")?, Some(second));
    Ok(())
}

/// Load-balanced TCP connections' round trips, measured in the path: the SYN's
/// connection-table entry remembers when it passed and the handshake's ACK closes it,
/// once per connection, into the VIP's Prometheus histogram (path "lb").
#[test]
fn load_balanced_connections_have_their_round_trips_measured() -> Result<()> {
    let l = lb_lab_full(2, &[(1, 1), (2, 1)], false, "", "metrics_listen = \"127.0.0.1:9188\"\nclient_rtt_sample = 1")?;
    let series = format!("{{vip=\"{VIP4}\",port=\"80\",path=\"lb\"}}");
    let scrape = || -> Result<String> { l.pop.stdout(&["curl", "-sSf", "http://127.0.0.1:9188/metrics"]) };
    let value = |metrics: &str, name: &str| -> f64 {
        metrics.lines().find_map(|line| line.strip_prefix(&format!("{name}{series} "))).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    let (count0, sum0) = {
        let m = scrape()?;
        (value(&m, "pop_client_rtt_seconds_count"), value(&m, "pop_client_rtt_seconds_sum"))
    };
    let before = l.lab.pop_counters(&l.pop, &l.config)?;
    let n = 30;
    for _ in 0..n {
        let name = http_get(&l.client, VIP4, "/", None)?;
        assert!(name == "b1" || name == "b2", "{name}");
    }
    let after = l.lab.pop_counters(&l.pop, &l.config)?;
    assert_eq!(after["rtt.measured"] - before["rtt.measured"], n, "one round trip per connection: {after:?}");
    let metrics = scrape()?;
    assert_eq!(value(&metrics, "pop_client_rtt_seconds_count") - count0, n as f64, "{metrics}");
    let mean = (value(&metrics, "pop_client_rtt_seconds_sum") - sum0) / n as f64;
    assert!(mean > 0.0 && mean < 0.1, "mean SYN-to-ACK {mean} s\n{metrics}");
    eprintln!("load-balanced: {n} connections, mean SYN to ACK {:.0} us", mean * 1e6);
    Ok(())
}
