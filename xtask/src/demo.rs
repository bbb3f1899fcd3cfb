//! `cargo xtask demo`: a small anycast edge in network namespaces, shown to a newcomer
//! in plain words and live counters, then torn down.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Result;
use pop_lab::anycast_lab::{AnycastLab, VIP};

fn say(text: &str) {
    println!("\n==> {text}");
}

fn indent(text: &str) {
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        println!("    {l}");
    }
}

fn counters(w: &AnycastLab, pop: usize, names: &[&str]) -> Result<String> {
    let c = w.lab.pop_counters(&w.pops[pop], &w.configs[pop])?;
    Ok(names.iter().map(|n| format!("{n} = {}", c.get(*n).copied().unwrap_or(0))).collect::<Vec<_>>().join(", "))
}

pub fn run() -> Result<()> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/pop").canonicalize()?;
    // SAFETY: single-threaded at this point; the lab reads POP_BIN when starting pop.
    unsafe { std::env::set_var("POP_BIN", &bin) };

    say("Building the world in network namespaces (nothing leaves this machine):");
    println!("    client 192.0.2.1 -- router (BIRD, BGP) --+-- PoP A (pop + BIRD) -- backend-a1, backend-a2");
    println!("                                             +-- PoP B (pop + BIRD) -- backend-b1, backend-b2");
    println!("    Both PoPs serve the anycast VIP {VIP}: DNS on port 53 (answered in XDP) and");
    println!("    HTTP on port 80 (balanced to their backends). The router prefers PoP A.");
    let mut w = AnycastLab::new(2)?;

    say("Waiting for BGP: each PoP puts the VIP on its lo only while healthy, BIRD exports it.");
    let took = w.wait_route(Some("a"), Duration::from_secs(60))?;
    println!("    after {:.1} s the router sends the VIP to PoP A:", took.as_secs_f64());
    indent(&w.router.stdout(&["ip", "route", "show", &format!("{VIP}/32")])?);

    say("DNS, answered on PoP A's NIC path by XDP (the kernel never sees these queries):");
    for args in [vec!["+norec", "+noall", "+answer", "www.example.com", "A"], vec!["+short", "id.server", "TXT", "CH"]] {
        let mut argv = vec!["dig".to_string(), format!("@{VIP}")];
        argv.extend(args.iter().map(|s| s.to_string()));
        println!("    $ {}", argv.join(" "));
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        indent(&w.client.stdout(&refs)?);
    }
    println!("    PoP A counters: {}", counters(&w, 0, &["dns.queries", "dns.xdp.noerror", "action.tx"])?);

    say("HTTP to the VIP, 40 new connections: PoP A spreads them over its two backends (Maglev):");
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..40 {
        *seen.entry(w.who_serves()?).or_default() += 1;
    }
    println!("    {}", seen.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
    let stats = w.lab.pop(&w.pops[0], &w.configs[0], &["stats", "--interval", "0"])?;
    let text = String::from_utf8_lossy(&stats.stdout);
    indent(&text[text.find("service /").unwrap_or(0)..]);
    say("Each connection's round trip, measured in PoP A's data path (its SYN to its handshake's ACK),");
    println!("    no probe of its own: Prometheus (pop_client_rtt_seconds) has it per VIP, `pop top` per client prefix:");
    let metrics = w.pops[0].stdout(&["curl", "-sSf", "http://127.0.0.1:9188/metrics"])?;
    let rtt = |suffix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("pop_client_rtt_seconds_{suffix}{{")) && l.contains("path=\"lb\""))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let (count, sum) = (rtt("count"), rtt("sum"));
    println!(
        "    {count:.0} connections to {VIP}:80 measured (one in 8 is: pop.client_rtt_sample), mean round trip {:.0} us",
        if count > 0.0 { sum / count * 1e6 } else { 0.0 }
    );
    // `pop top` lists the prefixes with traffic in its window: keep a client busy.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, stop) = (w.client.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.output(&["curl", "-sS", "-o", "/dev/null", "--max-time", "1", &format!("http://{VIP}/")]);
            }
        })
    };
    let top = w.lab.pop(&w.pops[0], &w.configs[0], &["top", "--count", "1", "--interval", "1"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.join();
    let top = top?;
    let text = String::from_utf8_lossy(&top.stdout);
    indent(&text[text.find("client prefix").unwrap_or(0)..]);

    say("PoP A fails: both of its backends stop. Health checks notice, A withdraws the VIP,");
    println!("    BGP moves the route to PoP B.");
    let started = Instant::now();
    w.lab.stop_daemon("backend-a1")?;
    w.lab.stop_daemon("backend-a2")?;
    w.wait_route(Some("b"), Duration::from_secs(20))?;
    println!("    {:.1} s after the failure the router sends the VIP to PoP B:", started.elapsed().as_secs_f64());
    indent(&w.router.stdout(&["ip", "route", "show", &format!("{VIP}/32")])?);
    println!("    dig id.server now says {:?}; HTTP is served by {}", w.who_answers()?, w.who_serves()?);
    let status = w.lab.pop(&w.pops[0], &w.configs[0], &["status"])?;
    println!("    `pop status` on PoP A:");
    indent(&String::from_utf8_lossy(&status.stdout));

    say("Recovery: PoP A's backends come back; after its health checks pass it announces again.");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/backend.py");
    for (i, name) in ["backend-a1", "backend-a2"].iter().enumerate() {
        let host = w.backends[i].clone();
        w.lab.spawn(&host, name, &["python3", script.to_str().unwrap(), name])?.wait_for_log("ready", Duration::from_secs(10))?;
    }
    let took = w.wait_route(Some("a"), Duration::from_secs(20))?;
    println!("    {:.1} s later the route is back on PoP A; id.server says {:?}", took.as_secs_f64(), w.who_answers()?);

    say("PoP A's controller crashes (SIGKILL). Nothing of pop runs there now, yet the route");
    println!("    must not stay: each VIP is an address lease (valid_lft) the controller renews, so");
    println!("    the kernel removes it on its own and BIRD withdraws it.");
    w.lab.daemon("pop-a").expect("PoP A's controller").stop_with(libc::SIGKILL, Duration::from_secs(5))?;
    let killed = Instant::now();
    w.wait_route(Some("b"), Duration::from_secs(10))?;
    println!("    {:.1} s after the kill the router sends the VIP to PoP B; id.server says {:?}", killed.elapsed().as_secs_f64(), w.who_answers()?);

    say("PoP A's controller is started again: it finds the XDP program still attached, takes");
    println!("    the interface over, and announces once its checks pass.");
    let (pop_a, config_a) = (w.pops[0].clone(), w.configs[0].clone());
    w.lab.start_pop(&pop_a, "pop-a-restarted", &config_a)?;
    let took = w.wait_route(Some("a"), Duration::from_secs(20))?;
    println!("    {:.1} s later the route is back on PoP A; id.server says {:?}", took.as_secs_f64(), w.who_answers()?);

    say("Tearing everything down (BIRD, pop, servers, namespaces, pins).");
    drop(w);
    println!("    Done. `cargo xtask test` runs every check behind what you just saw.");
    Ok(())
}
