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
    w.wait_both_learned(Duration::from_secs(40))?;
    w.wait_route(Some("a"), Duration::from_secs(5))?;
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

mod restart {
    //! A controller killed with SIGKILL leaves its VIPs on `lo`, where BIRD keeps
    //! exporting them. The next controller takes the interface over: it keeps a VIP it
    //! is going to announce anyway (no withdraw-and-announce flap), and removes every
    //! other pop VIP: one no longer configured, one now unhealthy, all of them in
    //! maintenance. A failing netlink call is retried and shown in `pop status`.

    use std::{path::Path, time::Duration};

    use anyhow::Result;
    use pop_lab::{Host, Lab, wait_until};

    const A: &str = "203.0.113.53";
    const B: &str = "203.0.113.54";
    const C: &str = "203.0.113.10";

    const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n";

    /// `dns_vips` served, and service `web` on C, health-checked (towards a backend that
    /// does not exist: unhealthy) when `checked`. Leases long enough that what a killed
    /// controller left is still there for the next one to sort out (see `lease` below for
    /// addresses that lapse).
    fn config(zone: &Path, dns_vips: &[&str], checked: bool) -> String {
        let vips: Vec<String> = dns_vips.iter().map(|v| format!("\"{v}\"")).collect();
        let health = if checked { "[service.health]\ntype = \"tcp\"\ninterval_ms = 100\ntimeout_ms = 100\n" } else { "" };
        format!(
            "[[interface]]\nname = \"p0\"\n\
             [anycast]\ninterface = \"lo\"\nrise = 1\nfall = 1\nhold_ms = 0\ncheck_ms = 100\nlease_s = 60\n\
             [[dns]]\nvips = [{}]\nzones = [\"{}\"]\n\
             [[service]]\nname = \"web\"\nvips = [\"{C}\"]\nport = 80\nbackends = [{{ address = \"198.51.100.11\" }}]\n{health}",
            vips.join(", "),
            zone.display()
        )
    }

    fn on_lo(pop: &Host) -> Result<Vec<String>> {
        let out = pop.stdout(&["ip", "-o", "-4", "addr", "show", "dev", "lo"])?;
        Ok(out.lines().filter_map(|l| l.split_whitespace().nth(3)).map(|a| a.trim_end_matches("/32").to_string()).collect())
    }

    fn lab() -> Result<(Lab, Host, std::path::PathBuf)> {
        let mut lab = Lab::new()?;
        let (_client, pop) = lab.client_and_pop()?;
        pop.sysctl("net.ipv4.conf.p0.forwarding", "1")?;
        let zone = lab.write("example.com.zone", ZONE)?;
        Ok((lab, pop, zone))
    }

    #[test]
    fn a_restarted_controller_removes_the_stale_vips_a_killed_one_left_on_lo() -> Result<()> {
        let (mut lab, pop, zone) = lab()?;
        let cfg = lab.pop_config(&pop, &config(&zone, &[A, B], false))?;
        lab.start_pop(&pop, "pop1", &cfg)?;
        wait_until(Duration::from_secs(10), "A, B and C announced", || {
            let lo = on_lo(&pop).ok()?;
            [A, B, C].iter().all(|v| lo.iter().any(|a| a == v)).then_some(())
        })?;
        lab.daemon("pop1").unwrap().stop_with(libc::SIGKILL, Duration::from_secs(5))?;
        let lo = on_lo(&pop)?;
        assert!([A, B, C].iter().all(|v| lo.iter().any(|a| a == v)), "SIGKILL should leave the addresses: {lo:?}");

        // B leaves the config, C's backend fails its health check: only A stays, and is
        // never withdrawn on the way.
        lab.pop_config(&pop, &config(&zone, &[A], true))?;
        lab.start_pop(&pop, "pop2", &cfg)?;
        let lo = on_lo(&pop)?;
        assert!(lo.iter().any(|a| a == A), "A is healthy and should stay: {lo:?}");
        assert!(!lo.iter().any(|a| a == B), "B is no longer configured: {lo:?}");
        assert!(!lo.iter().any(|a| a == C), "C is unhealthy: {lo:?}");
        let log = lab.daemon_log("pop2").unwrap();
        assert!(log.contains(&format!("{A} found on lo and healthy: stays announced")), "{log}");
        assert!(log.contains(&format!("{B} found on lo from an earlier controller: removing it (no longer configured)")), "{log}");
        assert!(log.contains(&format!("{C} found on lo from an earlier controller: removing it (unhealthy")), "{log}");
        assert!(!log.contains(&format!("withdrawing {A}")), "{log}");

        // In maintenance, nothing stays.
        lab.daemon("pop2").unwrap().stop_with(libc::SIGKILL, Duration::from_secs(5))?;
        std::fs::write(lab.dir.join("pop-run").join("maintenance"), "test\n")?;
        lab.start_pop(&pop, "pop3", &cfg)?;
        let lo = on_lo(&pop)?;
        assert!(!lo.iter().any(|a| a == A), "in maintenance: {lo:?}");
        Ok(())
    }

    #[test]
    fn failed_netlink_changes_are_retried_and_shown_in_status() -> Result<()> {
        let (mut lab, pop, zone) = lab()?;
        let body = config(&zone, &[A], false);
        let cfg = lab.pop_config_with(&pop, "fault_inject = \"netlink\"", &body)?;
        lab.start_pop(&pop, "pop", &cfg)?;
        let status = |lab: &Lab| -> Option<serde_json::Value> {
            let out = lab.pop(&pop, &cfg, &["status", "--json"]).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            v["vips"].as_array()?.iter().find(|x| x["vip"] == A).cloned()
        };
        let a = wait_until(Duration::from_secs(10), "three failed attempts to add A", || {
            status(&lab).filter(|a| a["netlink_attempts"].as_u64() >= Some(3))
        })?;
        assert_eq!(a["announced"], true, "{a}");
        assert_eq!(a["on_interface"], false, "{a}");
        assert!(a["netlink_error"].as_str().unwrap_or_default().contains("injected netlink failure"), "{a}");
        assert!(!on_lo(&pop)?.iter().any(|x| x == A));
        let text = String::from_utf8_lossy(&lab.pop(&pop, &cfg, &["status"])?.stdout).into_owned();
        assert!(text.contains("adding it to the interface failed"), "{text}");

        // Netlink works again: the next retry puts A on lo and clears the error.
        lab.pop_config(&pop, &body)?;
        let out = lab.pop(&pop, &cfg, &["reload"])?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        wait_until(Duration::from_secs(10), "A on lo", || on_lo(&pop).ok()?.iter().any(|x| x == A).then_some(()))?;
        let a = wait_until(Duration::from_secs(5), "the error cleared", || status(&lab).filter(|a| a["netlink_error"].is_null()))?;
        assert_eq!((a["on_interface"].clone(), a["netlink_attempts"].clone()), (serde_json::json!(true), serde_json::json!(0)));
        Ok(())
    }

    #[test]
    fn a_vip_is_withdrawn_when_the_xdp_program_is_no_longer_attached() -> Result<()> {
        let (mut lab, pop, zone) = lab()?;
        let cfg = lab.pop_config(&pop, &config(&zone, &[A], false))?;
        lab.start_pop(&pop, "pop", &cfg)?;
        wait_until(Duration::from_secs(10), "A announced", || on_lo(&pop).ok()?.iter().any(|a| a == A).then_some(()))?;
        let why_a = |lab: &Lab| -> Result<String> {
            let out = lab.pop(&pop, &cfg, &["status", "--json"])?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let a = v["vips"].as_array().into_iter().flatten().find(|x| x["vip"] == A).cloned().unwrap_or_default();
            Ok(a["why"].as_str().unwrap_or_default().to_string())
        };
        // Someone detaches the program (bpftool link detach): the interface stays, pop's
        // program no longer runs on it.
        let links = lab.bpffs_dir().join(&pop.name).join("links");
        let link =
            std::fs::read_dir(&links)?.filter_map(|e| e.ok()).find(|e| e.file_name().to_string_lossy().starts_with("p0@")).expect("p0's link pin");
        pop.in_netns(move || pop_lab::testrun::detach_pinned_link(&link.path()))??;
        wait_until(Duration::from_secs(10), "A withdrawn once detached", || (!on_lo(&pop).ok()?.iter().any(|a| a == A)).then_some(()))?;
        let why = why_a(&lab)?;
        assert!(why.contains("p0: the XDP program is not attached"), "{why}");
        Ok(())
    }

    #[test]
    fn a_vip_is_withdrawn_when_its_interface_goes_away() -> Result<()> {
        let (mut lab, pop, zone) = lab()?;
        let cfg = lab.pop_config(&pop, &config(&zone, &[A], false))?;
        lab.start_pop(&pop, "pop", &cfg)?;
        wait_until(Duration::from_secs(10), "A announced", || on_lo(&pop).ok()?.iter().any(|a| a == A).then_some(()))?;
        // The interface goes away (and with it the program): nothing answers there now.
        pop.run(&["ip", "link", "del", "p0"])?;
        wait_until(Duration::from_secs(10), "A withdrawn", || (!on_lo(&pop).ok()?.iter().any(|a| a == A)).then_some(()))?;
        let out = lab.pop(&pop, &cfg, &["status", "--json"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let a = v["vips"].as_array().into_iter().flatten().find(|x| x["vip"] == A).cloned().unwrap_or_default();
        assert!(a["why"].as_str().unwrap_or_default().contains("p0: network interface \"p0\" not found"), "{a}");
        Ok(())
    }
}

mod lease {
    //! Announcements are leases: pop puts each VIP on `lo` with a finite lifetime
    //! (`anycast.lease_s`, 2 s by default) and renews it three times per lease. A
    //! controller killed with SIGKILL renews nothing, the kernel removes the address and
    //! BIRD withdraws the route: the BGP peer loses it within 3 s with no process alive
    //! to help. A controller restarted at once takes the addresses over before they
    //! lapse, starting from the state the killed one saved (backends' health, drain).
    //! Each with BIRD and with FRR exporting the PoPs' VIPs (the router runs BIRD).

    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, AtomicU64, Ordering},
        },
        time::{Duration, Instant},
    };

    use anyhow::Result;
    use pop_lab::{
        Host,
        anycast_lab::{AnycastLab, Speaker, VIP, peer_learned},
        wait_until,
    };

    /// The VIP's valid lifetime left on `pop`'s lo, in seconds (None: not there;
    /// u64::MAX: forever).
    fn vip_lifetime(pop: &Host) -> Result<Option<u64>> {
        let out = pop.stdout(&["ip", "-o", "-4", "addr", "show", "dev", "lo"])?;
        let Some(line) = out.lines().find(|l| l.contains(&format!(" {VIP}/32 "))) else { return Ok(None) };
        let lft = line.split_whitespace().skip_while(|w| *w != "valid_lft").nth(1).unwrap_or_default();
        Ok(Some(if lft == "forever" { u64::MAX } else { lft.trim_end_matches("sec").parse()? }))
    }

    fn pop_json(w: &AnycastLab, args: &[&str]) -> Result<serde_json::Value> {
        let out = w.lab.pop(&w.pops[0], &w.configs[0], args)?;
        anyhow::ensure!(out.status.success(), "pop {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    #[test]
    fn a_killed_controllers_route_is_gone_at_the_bgp_peer_within_3_s() -> Result<()> {
        killed_controllers_route_lapses(Speaker::Bird)
    }

    #[test]
    fn a_killed_controllers_route_is_gone_at_the_bgp_peer_within_3_s_with_frr() -> Result<()> {
        killed_controllers_route_lapses(Speaker::Frr)
    }

    /// `pop reload` applies new `[anycast]` timing on the same interface without a
    /// restart or a flap: the announced VIP is renewed at once on the new lease.
    #[test]
    fn a_reload_applies_new_anycast_timing_without_a_flap() -> Result<()> {
        let w = AnycastLab::with_speaker(1, Speaker::Bird)?;
        wait_until(Duration::from_secs(40), "the router's BIRD to learn A's route", || w.peer_learned("a").ok()?.then_some(()))?;
        assert!(vip_lifetime(&w.pops[0])?.is_some_and(|s| s <= 2), "the default 2 s lease");
        let text = std::fs::read_to_string(&w.configs[0])?;
        anyhow::ensure!(text.contains("[anycast]\n") && text.contains("\nrise = 2\n"), "{text}");
        std::fs::write(&w.configs[0], text.replacen("[anycast]\n", "[anycast]\nlease_s = 9\n", 1).replacen("\nrise = 2\n", "\nrise = 3\n", 1))?;
        let out = w.lab.pop(&w.pops[0], &w.configs[0], &["reload"])?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Renewed within the reload: more than the old lease is left at once.
        let left = vip_lifetime(&w.pops[0])?.expect("still announced");
        assert!(left > 2 && left <= 9, "valid_lft {left} s after the reload");
        assert_eq!(pop_json(&w, &["status", "--json"])?["vips"][0]["lease_s"], 9);
        let log = w.lab.daemon_log("pop-a").unwrap();
        assert!(log.contains("[anycast] now rise 3 fall 2 hold 1000 ms, checked every 200 ms, leases of 9 s"), "{log}");
        assert!(!log.contains("when the controller restarts") && !log.contains("withdrawing"), "{log}");
        assert!(w.peer_learned("a")?, "the route stayed at the peer");
        Ok(())
    }

    /// The restarted controller waits 7 s (`fault_inject = "slow-start"`) before loading
    /// the XDP object, as a busy host's verifier and zones can: over three 2 s leases, so
    /// only renewals through the whole start keep the route, and the backends' health
    /// must be judged by the saved state's age when the start began (CI once saw a 6 s
    /// start restore drain only, start with every backend down and withdraw the VIP).
    #[test]
    fn a_restart_slower_than_a_lease_keeps_the_route_at_the_peer_and_the_drain() -> Result<()> {
        restart_keeps_the_route(Speaker::Bird, true)
    }

    #[test]
    fn a_quick_restart_keeps_the_route_at_the_peer_with_frr() -> Result<()> {
        restart_keeps_the_route(Speaker::Frr, false)
    }

    fn killed_controllers_route_lapses(speaker: Speaker) -> Result<()> {
        let mut w = AnycastLab::with_speaker(1, speaker)?;
        w.wait_both_learned(Duration::from_secs(40))?;
        let left = vip_lifetime(&w.pops[0])?.expect("A announces: the VIP is on lo");
        assert!(left <= 2, "the VIP is a 2 s lease, renewed: {left} s left");
        assert_eq!(pop_json(&w, &["status", "--json"])?["vips"][0]["lease_s"], 2);

        w.lab.daemon("pop-a").unwrap().stop_with(libc::SIGKILL, Duration::from_secs(5))?;
        let killed = Instant::now();
        // Nothing of pop runs on A now (its XDP program stays attached): only the
        // kernel's address lifetime can take the route away.
        let (mut off_lo, mut off_peer) = (None, None);
        wait_until(Duration::from_secs(3), "the VIP to leave A's lo and A's route the router's BIRD", || {
            if off_lo.is_none() && vip_lifetime(&w.pops[0]).ok()?.is_none() {
                off_lo = Some(killed.elapsed());
            }
            if off_peer.is_none() && !w.peer_learned("a").ok()? {
                off_peer = Some(killed.elapsed());
            }
            off_lo.zip(off_peer)
        })
        .map_err(|e| {
            let logs: String = ["zebra-a", "bgpd-a", "bird-a"].iter().filter_map(|d| w.lab.daemon_log(d).map(|l| format!("== {d}\n{l}\n"))).collect();
            e.context(format!("{speaker:?} on A: off lo after {off_lo:?}, off the peer after {off_peer:?}\n{logs}"))
        })?;
        eprintln!("{speaker:?} on A: after SIGKILL the VIP left lo in {off_lo:?}, A's route left the peer in {off_peer:?}");
        // B still announces: the router sends the VIP there, and B answers.
        w.wait_route(Some("b"), Duration::from_secs(2))?;
        assert_eq!(w.who_answers()?, "pop-b");
        Ok(())
    }

    fn restart_keeps_the_route(speaker: Speaker, slow: bool) -> Result<()> {
        let mut w = AnycastLab::with_speaker(2, speaker)?;
        wait_until(Duration::from_secs(40), "the router's BIRD to learn A's route", || w.peer_learned("a").ok()?.then_some(()))?;
        // Drain A's first backend: the other keeps the service (and so the VIP) healthy.
        let drained = "198.51.100.18";
        let out = w.lab.pop(&w.pops[0], &w.configs[0], &["drain", "web", drained])?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        // Watch the peer from before the kill until well after the restart: A's route
        // must never leave it (a birdc failure counts as a loss too).
        let (stop, lost, polls) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let watcher = {
            let (router, ctl, stop, lost, polls) = (w.router.clone(), w.router_bird.clone(), stop.clone(), lost.clone(), polls.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if !peer_learned(&router, &ctl, "a").unwrap_or(false) {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                    polls.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        wait_until(Duration::from_secs(2), "the watcher's first polls", || (polls.load(Ordering::Relaxed) >= 3).then_some(()))?;

        w.lab.daemon("pop-a").unwrap().stop_with(libc::SIGKILL, Duration::from_secs(5))?;
        let killed = Instant::now();
        let (pa, mut ca) = (w.pops[0].clone(), w.configs[0].clone());
        if slow {
            let text = std::fs::read_to_string(&ca)?.replacen("[pop]\n", "[pop]\nfault_inject = \"slow-start\"\n", 1);
            ca = w.lab.write("pop-a-slow.toml", &text)?;
        }
        w.lab.start_pop(&pa, "pop-a2", &ca)?;
        let restart = killed.elapsed();
        if slow {
            assert!(restart > Duration::from_secs(7), "the slow start took {restart:?}");
        }
        // Three leases after the restart: the new controller must be renewing by now.
        let watched_from = polls.load(Ordering::Relaxed);
        wait_until(Duration::from_secs(10), "three leases of watching after the restart", || {
            (killed.elapsed() >= restart + Duration::from_secs(6) && polls.load(Ordering::Relaxed) > watched_from + 10).then_some(())
        })?;
        stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
        let (lost, polls) = (lost.load(Ordering::Relaxed), polls.load(Ordering::Relaxed));
        eprintln!("{speaker:?} on A: restart took {restart:?}; the peer was polled {polls} times, lost A's route {lost} times");
        let log = w.lab.daemon_log("pop-a2").unwrap();
        assert_eq!(lost, 0, "the peer lost A's route during a {restart:?} restart; log:\n{log}");
        assert!(log.contains(&format!("renewed the lease of {VIP} while starting")), "{log}");
        assert!(log.contains("restored 2 backend(s)' health and drain"), "{log}");
        assert!(log.contains(&format!("{VIP} found on lo and healthy: stays announced")), "{log}");
        assert!(!log.contains(&format!("withdrawing {VIP}")), "{log}");
        assert!(vip_lifetime(&w.pops[0])?.is_some_and(|s| s <= 2), "the new controller renews the 2 s lease");

        // The drain survived the restart.
        let v = pop_json(&w, &["status", "--json"])?;
        let backend = v["backends"].as_array().into_iter().flatten().find(|b| b["address"] == drained).cloned().unwrap_or_default();
        assert_eq!(backend["drained"], true, "{v}");
        let text = String::from_utf8_lossy(&w.lab.pop(&w.pops[0], &w.configs[0], &["status"])?.stdout).into_owned();
        let line = text.lines().find(|l| l.contains(drained)).unwrap_or_default();
        assert!(line.contains(" yes "), "drained shown in `pop status`: {text}");
        Ok(())
    }
}

/// Losing the whole PoP host: BFD toward the router, as in examples/full-pop, takes A's
/// route away at the router within a second even though nothing on A noticed (its
/// controller still renews the lease, its BGP daemon still thinks the session is up).
mod host_loss {
    use std::time::{Duration, Instant};

    use anyhow::Result;
    use pop_lab::{
        anycast_lab::{AnycastLab, Speaker},
        wait_until,
    };

    #[test]
    fn a_lost_pop_host_loses_its_route_at_the_router_within_a_second_through_bfd() -> Result<()> {
        lose_host(Speaker::Bird)
    }

    #[test]
    fn a_lost_pop_host_loses_its_route_at_the_router_within_a_second_through_bfd_with_frr() -> Result<()> {
        lose_host(Speaker::Frr)
    }

    /// The routing examples parse as the daemons read them (FRR daemons skip a line they
    /// do not understand and run on, so the lab alone would not catch one).
    #[test]
    fn the_shipped_bird_and_frr_examples_parse() -> Result<()> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/full-pop");
        for (tool, args) in [("bird", ["-p", "-c"]), ("vtysh", ["-C", "-f"])] {
            let file = dir.join(if tool == "bird" { "bird.conf" } else { "frr.conf" });
            let out = std::process::Command::new(tool).args(args).arg(&file).output()?;
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && !said.contains("Unknown command"), "{tool} on {}: {said}", file.display());
        }
        Ok(())
    }

    fn lose_host(speaker: Speaker) -> Result<()> {
        let w = AnycastLab::with_bfd(1, speaker)?;
        wait_until(Duration::from_secs(40), "the router to learn A's and B's routes, with BFD up toward both", || {
            (w.peer_learned("a").ok()? && w.peer_learned("b").ok()? && w.router_bfd_up("a").ok()? && w.router_bfd_up("b").ok()?).then_some(())
        })
        .map_err(|e| {
            let bfd = w.router.output(&["birdc", "-s", w.router_bird.to_str().unwrap(), "show", "bfd", "sessions"]);
            let bgp = w.router.output(&["birdc", "-s", w.router_bird.to_str().unwrap(), "show", "protocols"]);
            let text = |o: Result<std::process::Output>| o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            let logs: String = ["bfdd-a", "bgpd-a", "bfdd-b", "bgpd-b", "bird-a", "bird-b"]
                .iter()
                .filter_map(|d| w.lab.daemon_log(d).map(|l| format!("== {d}\n{l}\n")))
                .collect();
            e.context(format!("router BFD:\n{}\nrouter protocols:\n{}\n{logs}", text(bfd), text(bgp)))
        })?;
        w.wait_route(Some("a"), Duration::from_secs(5))?;
        assert_eq!(w.who_answers()?, "pop-a");

        // A dies as a host behind a switch does: its link goes silent both ways while
        // the router's port stays up (no carrier loss to react to). The BGP hold time
        // is 6 s: only BFD can take the route away within a second.
        w.router.run(&[
            "nft",
            "add table inet lost; \
             add chain inet lost inbound { type filter hook input priority 0; iifname \"ra\" drop; }; \
             add chain inet lost outbound { type filter hook output priority 0; oifname \"ra\" drop; }; \
             add chain inet lost forwarded { type filter hook forward priority 0; iifname \"ra\" drop; oifname \"ra\" drop; }",
        ])?;
        let lost = Instant::now();
        wait_until(Duration::from_secs(1), "A's route to leave the router's BIRD", || (!w.peer_learned("a").ok()?).then_some(()))
            .map_err(|e| e.context(format!("{speaker:?} on the PoPs; router BFD up toward A: {:?}", w.router_bfd_up("a"))))?;
        let gone = lost.elapsed();
        assert!(!w.router_bfd_up("a")?, "the router's BFD session toward A is down");
        w.wait_route(Some("b"), Duration::from_secs(2))?;
        assert_eq!(w.who_answers()?, "pop-b", "B answers the VIP");
        assert!(w.peer_learned("b")?, "B's route stays");
        eprintln!("{speaker:?} on the PoPs: A's host lost; its route left the router in {gone:?}");
        Ok(())
    }
}

mod dns_server_health {
    //! A VIP's DNS server must really be reading its sockets: the in-process responder
    //! answering its probe is not enough. A server that stops reading (debug builds'
    //! `fault_inject = "dns-stall"`) gets the VIP withdrawn, saying why.

    use std::{
        path::{Path, PathBuf},
        time::Duration,
    };

    use anyhow::Result;
    use pop_lab::{Host, Lab, wait_until};

    const VIP: &str = "203.0.113.53";
    const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n";

    /// A client and a PoP serving one zone on VIP with `fault_inject = "dns-stall"`,
    /// checking health every 200 ms; returns once the VIP is announced.
    fn stall_lab() -> Result<(Lab, Host, Host, PathBuf)> {
        let mut lab = Lab::new()?;
        let (client, pop) = lab.client_and_pop()?;
        lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
        let zone = lab.write("example.com.zone", ZONE)?;
        let cfg = lab.pop_config_with(
            &pop,
            "fault_inject = \"dns-stall\"",
            &format!(
                "[[interface]]\nname = \"p0\"\n[anycast]\ninterface = \"lo\"\nrise = 1\nfall = 2\nhold_ms = 0\ncheck_ms = 200\n\
                 [[dns]]\nvips = [\"{VIP}\"]\nzones = [\"{}\"]\nrate_limit = 0\n",
                zone.display()
            ),
        )?;
        lab.start_pop(&pop, "pop", &cfg)?;
        wait_until(Duration::from_secs(10), "the VIP announced", || vip_status(&lab, &pop, &cfg).filter(|(a, _)| *a))?;
        Ok((lab, client, pop, cfg))
    }

    /// The VIP's (announced, why) in `pop status`.
    fn vip_status(lab: &Lab, pop: &Host, cfg: &Path) -> Option<(bool, String)> {
        let out = lab.pop(pop, cfg, &["status", "--json"]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some((v["vips"][0]["announced"].as_bool()?, v["vips"][0]["why"].as_str()?.to_string()))
    }

    #[test]
    fn a_dns_server_that_stops_reading_its_socket_gets_its_vip_withdrawn() -> Result<()> {
        let (lab, client, pop, cfg) = stall_lab()?;
        let status = |lab: &Lab| vip_status(lab, &pop, &cfg);
        let dig = |name: &str| client.output(&["dig", "+tries=1", "+time=1", "+norec", &format!("@{VIP}"), name, "A"]);
        // A name in no zone goes past XDP to the server, which answers REFUSED.
        assert!(String::from_utf8_lossy(&dig("x.invalid")?.stdout).contains("status: REFUSED"));
        // Polled for a few seconds without a stall: the idle and the busy server stay healthy.
        for _ in 0..10 {
            dig("y.invalid")?;
        }
        assert!(status(&lab).is_some_and(|(a, _)| a), "withdrawn without a stall: {}", lab.daemon_log("pop").unwrap_or_default());

        // The server stops reading; queries keep arriving (and wait on its socket).
        dig("stall.invalid")?;
        let (_, why) = wait_until(Duration::from_secs(10), "the VIP withdrawn", || {
            let _ = dig("z.invalid");
            status(&lab).filter(|(a, _)| !*a)
        })
        .map_err(|e| anyhow::anyhow!("{e}: {}", lab.daemon_log("pop").unwrap_or_default()))?;
        assert!(why.contains(&format!("the DNS server is not reading its UDP socket on {VIP}:53")), "{why}");
        let lo = pop.stdout(&["ip", "-o", "-4", "addr", "show", "dev", "lo"])?;
        assert!(!lo.contains(VIP), "the address is still on lo:\n{lo}");
        Ok(())
    }

    #[test]
    fn a_dns_server_that_stops_accepting_tcp_gets_its_vip_withdrawn() -> Result<()> {
        let (lab, client, pop, cfg) = stall_lab()?;
        let status = |lab: &Lab| vip_status(lab, &pop, &cfg);
        let tcp = |name: &str| client.output(&["kdig", "+tcp", "+retry=0", "+timeout=1", &format!("@{VIP}"), name, "SOA"]);
        // Queries over TCP for a few checks: answered, and the VIP stays announced.
        for _ in 0..5 {
            let out = tcp("example.com")?;
            assert!(String::from_utf8_lossy(&out.stdout).contains("NOERROR"), "{}", String::from_utf8_lossy(&out.stdout));
        }
        assert!(status(&lab).is_some_and(|(a, _)| a), "withdrawn without a stall: {}", lab.daemon_log("pop").unwrap_or_default());

        // Over UDP, ask the listeners to stop accepting; connections then wait in the
        // accept queue (the UDP side keeps answering).
        client.output(&["dig", "+tries=1", "+time=1", &format!("@{VIP}"), "tcpstall.invalid", "A"])?;
        let (_, why) = wait_until(Duration::from_secs(15), "the VIP withdrawn", || {
            let _ = tcp("example.com");
            status(&lab).filter(|(a, _)| !*a)
        })
        .map_err(|e| anyhow::anyhow!("{e}: {}", lab.daemon_log("pop").unwrap_or_default()))?;
        assert!(why.contains(&format!("the DNS server is not accepting TCP connections on {VIP}:53")), "{why}");
        let lo = pop.stdout(&["ip", "-o", "-4", "addr", "show", "dev", "lo"])?;
        assert!(!lo.contains(VIP), "the address is still on lo:\n{lo}");
        Ok(())
    }
}
