//! `[[monitor]]` peer checks against real servers: a sibling PoP (here the client
//! host) runs Knot DNS and an HTTP server; pop probes them, shows each target's state
//! and availability in `pop status` and Prometheus, and notices when one stops.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use pop_lab::{Lab, wait_until};

/// The sibling's unicast address (the lab client's).
const SIBLING: &str = "192.0.2.1";

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join(name).display().to_string()
}

fn monitor<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["monitors"].as_array().and_then(|m| m.iter().find(|m| m["name"] == name)).unwrap_or(&serde_json::Value::Null)
}

#[test]
fn monitors_see_a_sibling_answer_as_expected_and_notice_when_it_stops() -> Result<()> {
    let mut lab = Lab::new()?;
    let (sibling, pop) = lab.client_and_pop()?;

    // The sibling: Knot DNS serving example.com, and an HTTP server.
    let run = lab.dir.join("knot");
    std::fs::create_dir_all(run.join("db"))?;
    let conf = format!(
        "server:\n    rundir: \"{r}\"\n    listen: {SIBLING}@53\n    udp-workers: 1\n    tcp-workers: 1\n\
         database:\n    storage: \"{r}/db\"\nlog:\n  - target: stderr\n    any: warning\nzone:\n\
         \x20 - domain: example.com\n    file: \"{zone}\"\n    journal-content: none\n    zonefile-sync: -1\n",
        r = run.display(),
        zone = data("example.com.zone")
    );
    let conf = lab.write("knot.conf", &conf)?;
    lab.spawn(&sibling, "knot", &["knotd", "-c", conf.to_str().unwrap()])?;
    let www = lab.dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("healthz"), "ok\n")?;
    lab.spawn(&sibling, "http", &["python3", "-m", "http.server", "--bind", SIBLING, "--directory", www.to_str().unwrap(), "8080"])?;

    let monitors = format!(
        "[[monitor]]\nname = \"sibling-dns\"\ntarget = \"{SIBLING}:53\"\ntype = \"dns\"\nquery = \"ns1.example.com\"\nqtype = \"A\"\n\
         answer = \"192.0.2.53\"\ninterval_ms = 200\ntimeout_ms = 150\n\n\
         [[monitor]]\nname = \"sibling-dns-wrong\"\ntarget = \"{SIBLING}:53\"\ntype = \"dns\"\nquery = \"ns1.example.com\"\nqtype = \"A\"\n\
         answer = \"192.0.2.54\"\ninterval_ms = 200\ntimeout_ms = 150\n\n\
         [[monitor]]\nname = \"sibling-http\"\ntarget = \"{SIBLING}:8080\"\ntype = \"http\"\npath = \"/healthz\"\ninterval_ms = 200\ntimeout_ms = 150\n\n\
         [[monitor]]\nname = \"sibling-http-missing\"\ntarget = \"{SIBLING}:8080\"\ntype = \"http\"\npath = \"/nothing-here\"\n\
         interval_ms = 200\ntimeout_ms = 150\n"
    );
    let config = lab.pop_config_with(&pop, "metrics_listen = \"127.0.0.1:9188\"", &format!("[[interface]]\nname = \"p0\"\n\n{monitors}"))?;
    lab.start_pop(&pop, "pop", &config)?;
    let status = |lab: &Lab| -> Result<serde_json::Value> {
        let out = lab.pop(&pop, &config, &["status", "--json"])?;
        anyhow::ensure!(out.status.success(), "pop status: {}", String::from_utf8_lossy(&out.stderr));
        Ok(serde_json::from_slice(&out.stdout)?)
    };

    // Each target gets its verdict: the expected answer and status are up, the wrong
    // answer and the 404 are down, with the reason.
    let v = wait_until(Duration::from_secs(10), "every monitor probed", || {
        let v = status(&lab).ok()?;
        ["sibling-dns", "sibling-dns-wrong", "sibling-http", "sibling-http-missing"].iter().all(|m| monitor(&v, m)["up"].is_boolean()).then_some(v)
    })
    .map_err(|e| anyhow::anyhow!("{e}: knot: {}", lab.daemon_log("knot").unwrap_or_default()))?;
    let v = if monitor(&v, "sibling-dns")["up"] == true && monitor(&v, "sibling-http")["up"] == true {
        v
    } else {
        // Knot may take a moment after its socket opens to load the zone.
        wait_until(Duration::from_secs(10), "the sibling's DNS and HTTP monitors up", || {
            let v = status(&lab).ok()?;
            (monitor(&v, "sibling-dns")["up"] == true && monitor(&v, "sibling-http")["up"] == true).then_some(v)
        })?
    };
    assert_eq!(monitor(&v, "sibling-dns-wrong")["up"], false, "{v}");
    assert!(monitor(&v, "sibling-dns-wrong")["last_error"].as_str().unwrap_or("").contains("expected \"192.0.2.54\""), "{v}");
    assert_eq!(monitor(&v, "sibling-http-missing")["up"], false, "{v}");
    assert!(monitor(&v, "sibling-http-missing")["last_error"].as_str().unwrap_or("").contains("http status 404"), "{v}");
    let text = String::from_utf8_lossy(&lab.pop(&pop, &config, &["status"])?.stdout).to_string();
    assert!(text.lines().any(|l| l.starts_with("sibling-dns ") && l.contains(&format!("{SIBLING}:53")) && l.contains(" up ")), "{text}");

    // Prometheus: state, availability counters and round trips, promtool-clean.
    let metrics = pop.stdout(&["curl", "-sSf", "http://127.0.0.1:9188/metrics"])?;
    let id = |m: &str, port: u16| format!("monitor=\"{m}\",target=\"{SIBLING}:{port}\"");
    assert!(metrics.contains(&format!("pop_monitor_up{{{}}} 1\n", id("sibling-dns", 53))), "{metrics}");
    assert!(metrics.contains(&format!("pop_monitor_up{{{}}} 0\n", id("sibling-http-missing", 8080))), "{metrics}");
    assert!(metrics.contains(&format!("pop_monitor_rtt_seconds_count{{{}}}", id("sibling-http", 8080))), "{metrics}");
    let lint = pop_lab::promtool_check_metrics(&metrics)?;
    assert!(lint.is_empty(), "promtool check metrics:\n{lint}");

    // The sibling's DNS server dies: its monitor goes down, with the reason, and its
    // failed probes count against its availability.
    lab.stop_daemon("knot")?;
    let v = wait_until(Duration::from_secs(5), "sibling-dns down", || {
        let v = status(&lab).ok()?;
        (monitor(&v, "sibling-dns")["up"] == false).then_some(v)
    })?;
    let dns = monitor(&v, "sibling-dns");
    assert!(dns["probes_ok"].as_u64().unwrap() >= 1 && dns["probes_failed"].as_u64().unwrap() >= 1, "{v}");
    assert!(dns["last_error"].as_str().is_some(), "{v}");
    assert_eq!(monitor(&v, "sibling-http")["up"], true, "the HTTP monitor is independent: {v}");
    Ok(())
}
