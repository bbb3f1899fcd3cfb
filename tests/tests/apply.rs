//! The transactional apply as an operator meets it: a reload that fails at any step —
//! a DNS socket that cannot be bound (a real squatter on the port), or an injected
//! failure (debug builds' `pop.fault_inject`) while the DNS tables, the Maglev
//! services, the HTTP routes or the VIP table are being flipped — is refused naming the
//! step, and afterwards the answers clients get, every pinned map the data path reads
//! and `pop status` are exactly what they were. The same config then reloads cleanly
//! and every one of those observations changes (so the checks can fail).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Result, bail};
use pop_lab::{Host, Lab, wait_until};

const DNS_VIP: &str = "203.0.113.53";
/// Added to the DNS block by the new config: a new socket to bind.
const DNS_VIP_NEW: &str = "203.0.113.54";
const HTTP_VIP: &str = "203.0.113.80";
const WEB_VIP: &str = "203.0.113.10";
const API_VIP: &str = "203.0.113.11";

fn zone(www: &str) -> String {
    format!(
        "$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\n@ IN NS ns1\n\
         ns1 IN A 192.0.2.53\nwww IN A {www}\n"
    )
}

/// The config before (`new = false`) or after the change; the change touches every
/// part an apply writes.
fn body(zone: &std::path::Path, new: bool) -> String {
    let dns_vips = if new { format!("\"{DNS_VIP}\", \"{DNS_VIP_NEW}\"") } else { format!("\"{DNS_VIP}\"") };
    let (body, extra_route) =
        if new { ("new\\n", "[[http.routes]]\npath = \"/added\"\nstatus = 200\nbody = \"added\\n\"\n") } else { ("old\\n", "") };
    let extra_backend = if new { ", { address = \"198.51.100.13\" }" } else { "" };
    let api = if new {
        format!("[[service]]\nname = \"api\"\nvips = [\"{API_VIP}\"]\nport = 443\nbackends = [{{ address = \"198.51.100.21\" }}]\n")
    } else {
        String::new()
    };
    format!(
        "[[interface]]\nname = \"p0\"\n\
         [anycast]\ninterface = \"lo\"\nrise = 1\nfall = 1\nhold_ms = 0\ncheck_ms = 100\n\
         [[dns]]\nvips = [{dns_vips}]\nzones = [\"{}\"]\nrate_limit = 0\n\
         [[http]]\nname = \"edge\"\nvips = [\"{HTTP_VIP}\"]\nport = 80\n\
         [[http.routes]]\npath = \"/\"\nstatus = 200\nbody = \"{body}\"\n{extra_route}\
         [[service]]\nname = \"web\"\nvips = [\"{WEB_VIP}\"]\nport = 80\n\
         backends = [{{ address = \"198.51.100.11\" }}, {{ address = \"198.51.100.12\" }}{extra_backend}]\n{api}",
        zone.display()
    )
}

struct ApplyLab {
    lab: Lab,
    client: Host,
    pop: Host,
    config: PathBuf,
    zone: PathBuf,
}

fn apply_lab() -> Result<ApplyLab> {
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    pop.sysctl("net.ipv4.conf.p0.forwarding", "1")?;
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    let zone = lab.write("example.com.zone", &zone("192.0.2.80"))?;
    let config = lab.pop_config(&pop, &body(&zone, false))?;
    lab.start_pop(&pop, "pop", &config)?;
    let a = ApplyLab { lab, client, pop, config, zone };
    // Every VIP announced (on lo), so the DNS server's TCP socket and the status settle.
    wait_until(Duration::from_secs(10), "every VIP announced", || {
        let s = a.status().ok()?;
        let vips = s["vips"].as_array()?;
        (vips.len() == 3 && vips.iter().all(|v| v["announced"] == true)).then_some(())
    })?;
    Ok(a)
}

/// What a client and an operator see: answers, maps, status.
#[derive(Debug)]
struct Observed {
    /// dig over UDP (answered in XDP) and TCP (answered by the server).
    dns_udp: String,
    dns_tcp: String,
    /// The DNS server on the VIP the new config adds (empty while not served).
    dns_new_vip: String,
    http: String,
    maps: BTreeMap<&'static str, Vec<String>>,
    status: serde_json::Value,
}

/// Every map an apply writes and the data path reads, except the idle Maglev halves
/// and the seeds of unflipped generations, which a stage may write by design.
const MAPS: [&str; 11] = [
    pop_common::MAP_VIPS,
    pop_common::MAP_VIP_ADDRS,
    pop_common::MAP_VIP_FILTER,
    pop_common::MAP_HTTP_ROUTES,
    pop_common::MAP_LB_SERVICES,
    pop_common::MAP_LB_BACKENDS,
    pop_common::MAP_DNS_BLOCKS,
    pop_common::MAP_DNS_TABLE,
    pop_common::MAP_DNS_TAILS[0],
    pop_common::MAP_DNS_TAILS[1],
    pop_common::MAP_DNS_TAILS[2],
];

impl ApplyLab {
    fn status(&self) -> Result<serde_json::Value> {
        let out = self.lab.pop(&self.pop, &self.config, &["status", "--json"])?;
        if !out.status.success() {
            bail!("pop status: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn dig(&self, server: &str, tcp: bool) -> Result<String> {
        let at = format!("@{server}");
        let mut argv = vec!["dig", "+short", "+tries=1", "+time=1", &at, "www.example.com", "A"];
        if tcp {
            argv.push("+tcp");
        }
        // Only the answer: dig's error text varies (timed out, unreachable) run to run.
        let out = String::from_utf8_lossy(&self.client.output(&argv)?.stdout).into_owned();
        let answers: Vec<&str> = out.lines().filter(|l| l.parse::<std::net::IpAddr>().is_ok()).collect();
        Ok(if answers.is_empty() { "no answer".into() } else { answers.join(" ") })
    }

    /// Entries of every map in [`MAPS`], each as text, sorted (hash order is not state).
    fn maps(&self) -> Result<BTreeMap<&'static str, Vec<String>>> {
        let dir = self.lab.pop_maps_dir("pop");
        let mut out = BTreeMap::new();
        for name in MAPS {
            let map = pop_lab::testrun::pinned_map(&dir.join(name))?;
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            let mut entries: Vec<String> = pop_lab::testrun::map_dump(&map)?.iter().map(|(k, v)| format!("{} {}", hex(k), hex(v))).collect();
            entries.sort();
            out.insert(name, entries);
        }
        Ok(out)
    }

    fn observe(&self) -> Result<Observed> {
        let http = self.client.output(&["curl", "-s", "--max-time", "2", &format!("http://{HTTP_VIP}/")])?;
        Ok(Observed {
            dns_udp: self.dig(DNS_VIP, false)?,
            dns_tcp: self.dig(DNS_VIP, true)?,
            dns_new_vip: self.dig(DNS_VIP_NEW, true)?,
            http: String::from_utf8_lossy(&http.stdout).into_owned(),
            maps: self.maps()?,
            status: self.status()?,
        })
    }

    /// Writes the new config (with `fault_inject` when given) and the new zone, reloads.
    fn reload_new(&self, fault: Option<&str>) -> Result<std::process::Output> {
        std::fs::write(&self.zone, zone("192.0.2.81"))?;
        let extra = fault.map(|f| format!("fault_inject = \"{f}\"")).unwrap_or_default();
        let config = self.lab.pop_config_with(&self.pop, &extra, &body(&self.zone, true))?;
        assert_eq!(config, self.config);
        self.lab.pop(&self.pop, &self.config, &["reload"])
    }
}

/// What differs between two observations, readably (maps entry by entry).
fn differences(a: &Observed, b: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    for (what, x, y) in [
        ("dns udp", &a.dns_udp, &b.dns_udp),
        ("dns tcp", &a.dns_tcp, &b.dns_tcp),
        ("dns new vip", &a.dns_new_vip, &b.dns_new_vip),
        ("http", &a.http, &b.http),
    ] {
        if x != y {
            out.push(format!("{what}: {x:?} -> {y:?}"));
        }
    }
    for (name, x) in &a.maps {
        let y = &b.maps[name];
        for e in x.iter().filter(|e| !y.contains(e)) {
            out.push(format!("{name}: lost {e}"));
        }
        for e in y.iter().filter(|e| !x.contains(e)) {
            out.push(format!("{name}: gained {e}"));
        }
    }
    if a.status != b.status {
        out.push(format!("status: {} -> {}", a.status, b.status));
    }
    out
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_reload_failing_at_any_step_leaves_answers_maps_and_status_as_they_were() -> Result<()> {
    let mut a = apply_lab()?;
    let before = a.observe()?;
    assert_eq!((before.dns_udp.as_str(), before.dns_tcp.as_str()), ("192.0.2.80", "192.0.2.80"), "{before:?}");
    assert_eq!(before.http, "old\n");
    assert_eq!(before.dns_new_vip, "no answer");

    // A real failure first: something else holds TCP port 53 on the VIP the new config
    // adds. The bind fails before anything changed; the old server keeps answering.
    let squat = format!(
        "import socket, time\ns = socket.socket()\ns.setsockopt(socket.SOL_IP, 15, 1)\n\
         s.bind(('{DNS_VIP_NEW}', 53))\ns.listen()\nprint('listening', flush=True)\ntime.sleep(600)\n"
    );
    a.lab.spawn(&a.pop.clone(), "squatter", &["python3", "-c", &squat])?.wait_for_log("listening", Duration::from_secs(10))?;
    let out = a.reload_new(None)?;
    assert!(!out.status.success(), "a reload whose bind fails was accepted");
    let err = stderr(&out);
    assert!(err.contains("apply failed at step dns-bind"), "{err}");
    assert!(err.contains(&format!("binding DNS TCP socket on {DNS_VIP_NEW}:53")), "{err}");
    assert!(err.contains("rolled back"), "{err}");
    let diff = differences(&before, &a.observe()?);
    assert!(diff.is_empty(), "after the failed bind:\n{}", diff.join("\n"));
    a.lab.stop_daemon("squatter")?;

    // Then a failure injected in the middle of each step, after its first write: the
    // idle Maglev halves being staged, then each commit step.
    for (fault, step) in
        [("maglev-stage", "maglev"), ("dns-table", "dns-table"), ("maglev", "maglev"), ("http-routes", "http-routes"), ("vip-sync", "vip-sync")]
    {
        let out = a.reload_new(Some(fault))?;
        assert!(!out.status.success(), "{step}: the reload was accepted");
        let err = stderr(&out);
        assert!(err.contains(&format!("apply failed at step {step}: injected fault")), "{step}: {err}");
        assert!(err.contains("rolled back: the data path and servers are as they were before"), "{step}: {err}");
        let diff = differences(&before, &a.observe()?);
        assert!(diff.is_empty(), "{step}: something changed:\n{}", diff.join("\n"));
    }

    // The same change without a fault goes through, and every observation moves.
    let out = a.reload_new(None)?;
    assert!(out.status.success(), "{}", stderr(&out));
    let after = wait_until(Duration::from_secs(10), "the new VIPs announced", || {
        let o = a.observe().ok()?;
        (o.status["vips"].as_array()?.len() == 5 && o.dns_new_vip == "192.0.2.81").then_some(o)
    })?;
    assert_eq!((after.dns_udp.as_str(), after.dns_tcp.as_str()), ("192.0.2.81", "192.0.2.81"));
    assert_eq!(after.http, "new\n");
    for name in MAPS {
        if name != pop_common::MAP_DNS_TAILS[1] && name != pop_common::MAP_DNS_TAILS[2] {
            assert_ne!(after.maps[name], before.maps[name], "{name} did not change with the config");
        }
    }
    assert_ne!(after.status, before.status);
    Ok(())
}

/// DNS over UDP and HTTP as XDP answers them, and the maps.
type XdpSeen = (String, String, BTreeMap<&'static str, Vec<String>>);

/// Start-up uses the same apply: a controller started (with the new config) over the
/// data path a SIGKILLed one left, failing at any step, leaves that data path's answers
/// and maps as they were, and exits naming the step.
#[test]
fn a_start_failing_at_any_step_leaves_the_pinned_data_path_as_it_was() -> Result<()> {
    let mut a = apply_lab()?;
    let pid = a.lab.daemon_pid("pop").unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    a.lab.stop_daemon("pop")?;
    // What XDP answers on its own, with no controller: DNS over UDP, HTTP, the maps.
    let seen = |a: &ApplyLab| -> Result<XdpSeen> {
        let http = a.client.output(&["curl", "-s", "--max-time", "2", &format!("http://{HTTP_VIP}/")])?;
        Ok((a.dig(DNS_VIP, false)?, String::from_utf8_lossy(&http.stdout).into_owned(), a.maps()?))
    };
    let before = seen(&a)?;
    assert_eq!((before.0.as_str(), before.1.as_str()), ("192.0.2.80", "old\n"), "XDP answers without a controller");
    std::fs::write(&a.zone, zone("192.0.2.81"))?;
    for (fault, step) in
        [("dns-table", "dns-table"), ("maglev-stage", "maglev"), ("maglev", "maglev"), ("http-routes", "http-routes"), ("vip-sync", "vip-sync")]
    {
        let config = a.lab.pop_config_with(&a.pop, &format!("fault_inject = \"{fault}\""), &body(&a.zone, true))?;
        let bin = pop_lab::pop_bin();
        let out = a.pop.output(&["timeout", "60", bin.to_str().unwrap(), "-c", config.to_str().unwrap(), "run"])?;
        assert!(!out.status.success(), "{fault}: the start was accepted");
        let err = stderr(&out);
        assert!(err.contains(&format!("apply failed at step {step}: injected fault")), "{fault}: {err}");
        let after = seen(&a)?;
        assert_eq!((&after.0, &after.1), (&before.0, &before.1), "{fault}: answers changed");
        for name in MAPS {
            assert_eq!(after.2[name], before.2[name], "{fault}: {name} changed");
        }
    }
    Ok(())
}
