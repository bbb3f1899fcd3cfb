//! A large reload runs off the controller loop: while a zone of many names is parsed,
//! compiled and written, the control socket keeps answering within 100 ms, and the
//! old answers are served until the new ones are live. `POP_RELOAD_NAMES` sets the
//! zone's size (default a million names, as the issue asks; about 70 s with the debug
//! controller the tests run, and its test binary runs alone). The reload runs at
//! nice 10: on the 2-core lab machine at 600 000 names the slowest request took 59 ms
//! before that and 26 ms after; at 1 000 000 names (dns_table_size 8M) 72 ms on a busy
//! machine, 29 ms on a quiet one.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use pop_lab::{Lab, big_zone_address, big_zone_text};

const VIP: &str = "203.0.113.53";

fn names() -> usize {
    std::env::var("POP_RELOAD_NAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// One `status` request on the control socket; its round-trip time.
fn status_rtt(sock: &std::path::Path) -> Result<Duration> {
    let started = Instant::now();
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(b"{\"cmd\":\"status\"}\n")?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    anyhow::ensure!(line.starts_with("{\"ok\""), "status answered {line:?}");
    Ok(started.elapsed())
}

#[test]
fn control_requests_are_answered_within_100_ms_during_a_large_reload() -> Result<()> {
    let n = names();
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    lab.addr(&pop, "lo", &format!("{VIP}/32"))?;
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    let zone = lab.write("big.example.zone", &big_zone_text(n))?;
    let config = lab.pop_config_with(
        &pop,
        // About three entries a name, twice over while the old and the new generation live.
        &format!("dns_table_size = {}", (6 * n + (1 << 20)).next_power_of_two().max(4 << 20)),
        &format!("[[interface]]\nname = \"p0\"\n[[dns]]\nvips = [\"{VIP}\"]\nzones = [\"{}\"]\nrate_limit = 0\n", zone.display()),
    )?;
    lab.start_pop_within(&pop, "pop", &config, Duration::from_secs(600))?;
    let dig = |name: &str| client.stdout(&["dig", "+tries=2", "+time=2", "+norec", "+short", &format!("@{VIP}"), name, "AAAA"]);
    assert_eq!(dig("n1.big.example.")?.trim().parse::<std::net::Ipv6Addr>().ok(), Some(big_zone_address(1)));

    // The new zone: n1 moves.
    let text = std::fs::read_to_string(&zone)?.replacen(&format!("n1 AAAA {}\n", big_zone_address(1)), "n1 AAAA 2001:db8:ffff::1\n", 1);
    std::fs::write(&zone, text)?;

    let sock = lab.dir.join("pop-run").join("control.sock");
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (sock, done) = (sock.clone(), done.clone());
        std::thread::spawn(move || -> Result<(Duration, usize)> {
            let (mut worst, mut count) = (Duration::ZERO, 0);
            while !done.load(Ordering::Relaxed) {
                worst = worst.max(status_rtt(&sock)?);
                count += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok((worst, count))
        })
    };
    let started = Instant::now();
    let out = lab.pop(&pop, &config, &["reload"])?;
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (worst, count) = poller.join().unwrap()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!("{n} names: reload took {took:?}; {count} status requests meanwhile, the slowest {worst:?}");
    assert!(count >= 10, "only {count} status requests during a {took:?} reload");
    assert!(worst < Duration::from_millis(100), "a status request took {worst:?} during the reload");
    assert_eq!(dig("n1.big.example.")?.trim(), "2001:db8:ffff::1");
    Ok(())
}
