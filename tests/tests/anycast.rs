//! Anycast failover through a real BGP peer (BIRD 2): PoP A announces the VIP while
//! healthy; when its backend dies the route moves to PoP B, comes back after `rise`,
//! and a clean shutdown of A's controller withdraws its route.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Result;
use pop_lab::anycast_lab::{AnycastLab, VIP};

#[test]
fn failover_to_the_other_pop_and_back_through_bgp() -> Result<()> {
    let mut w = AnycastLab::new(1)?;
    // BGP sessions come up in a few seconds; then the router prefers A.
    w.wait_route(Some("a"), Duration::from_secs(40))?;
    assert_eq!(w.who_answers()?, "pop-a");
    assert_eq!(w.who_serves()?, "backend-a1");
    let status = w.lab.pop(&w.pops[0], &w.configs[0], &["status", "--json"])?;
    let v: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    assert_eq!(v["vips"][0]["announced"], true, "{v}");
    assert_eq!(w.announced_metric(0)?, Some(1));

    // DNS queries all along: failover may lose only what is in flight.
    let (stop, lost, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (client, stop, lost, sent) = (w.client.clone(), stop.clone(), lost.clone(), sent.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let ok = client
                    .output(&["dig", "+short", "+tries=1", "+time=1", &format!("@{VIP}"), "www.example.com", "A"])
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("192.0.2.80"))
                    .unwrap_or(false);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    lost.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // A's backend dies: A withdraws within health interval x fall (0.4 s) plus anycast
    // check x fall (0.4 s), and BGP moves the route to B.
    w.lab.stop_daemon("backend-a1")?;
    let took = w.wait_route(Some("b"), Duration::from_secs(10))?;
    assert!(took < Duration::from_millis(400 + 400 + 1500), "withdrawal took {took:?}");
    assert_eq!(w.who_answers()?, "pop-b");
    assert_eq!(w.who_serves()?, "backend-b1");
    let status = w.lab.pop(&w.pops[0], &w.configs[0], &["status"])?;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("withdrawn") && text.contains("0 of min 1 backends up"), "{text}");
    assert_eq!(w.announced_metric(0)?, Some(0));

    // It comes back: A re-announces after `rise` healthy checks (and its hold time).
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/backend.py");
    let ba = w.backends[0].clone();
    w.lab.spawn(&ba, "backend-a1", &["python3", script.to_str().unwrap(), "backend-a1"])?.wait_for_log("ready", Duration::from_secs(10))?;
    w.wait_route(Some("a"), Duration::from_secs(10))?;
    assert_eq!(w.who_answers()?, "pop-a");

    // Maintenance: `pop withdraw` moves traffic away, `pop announce` brings it back.
    let out = w.lab.pop(&w.pops[0], &w.configs[0], &["withdraw"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    w.wait_route(Some("b"), Duration::from_secs(5))?;
    // Maintenance persists across a controller restart.
    w.lab.stop_daemon("pop-a")?;
    let (pa, ca) = (w.pops[0].clone(), w.configs[0].clone());
    w.lab.start_pop(&pa, "pop-a", &ca)?;
    pop_lab::wait_until(Duration::from_secs(5), "the restarted controller to report maintenance", || {
        let out = w.lab.pop(&w.pops[0], &w.configs[0], &["status", "--json"]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["vips"][0]["why"].as_str()?.contains("maintenance") && v["vips"][0]["announced"] == false).then_some(())
    })?;
    assert_eq!(w.route_to_vip(), Some("b"));
    let out = w.lab.pop(&w.pops[0], &w.configs[0], &["announce"])?;
    assert!(out.status.success());
    w.wait_route(Some("a"), Duration::from_secs(10))?;

    // A clean shutdown of A's controller withdraws its route at once.
    w.lab.stop_daemon("pop-a")?;
    w.wait_route(Some("b"), Duration::from_secs(5))?;
    assert_eq!(w.who_answers()?, "pop-b");

    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (lost, sent) = (lost.load(Ordering::Relaxed), sent.load(Ordering::Relaxed));
    assert!(lost <= 4, "{lost} of {sent} DNS queries lost over four route changes");
    let _ = &mut w;
    Ok(())
}
