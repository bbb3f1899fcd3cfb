//! Config and zone validation as a user meets it: `pop check`, `pop run` and `pop reload`
//! refuse the same configs with the same `file:line: message`, and leave nothing
//! attached; a zone full of mistakes is reported at once.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Result;
use pop_lab::{Host, Lab};

const DNS_VIP: &str = "203.0.113.53";
const WEB_VIP: &str = "203.0.113.10";

const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `pop check` and `pop run` both fail on `config`, print the same errors (`run` as
/// `pop: error: ...`), which contain `want`; nothing is attached to p0.
fn both_refuse(lab: &Lab, pop: &Host, config: &Path, want: &str) -> Result<String> {
    let check = lab.pop(pop, config, &["check"])?;
    let run = lab.pop(pop, config, &["run"])?;
    let (check_err, run_err) = (stderr(&check), stderr(&run));
    assert!(!check.status.success(), "check accepted {}: {}", config.display(), String::from_utf8_lossy(&check.stdout));
    assert!(!run.status.success(), "run accepted {}", config.display());
    assert!(check_err.contains(want), "check: {check_err}\nwanted: {want}");
    assert_eq!(run_err.trim_end().strip_prefix("pop: error: "), Some(check_err.trim_end()), "run and check differ");
    assert_eq!(pop.xdp_prog_id("p0")?, None, "a refused run left XDP attached");
    Ok(check_err)
}

fn lab() -> Result<(Lab, Host)> {
    let mut lab = Lab::new()?;
    let (_client, pop) = lab.client_and_pop()?;
    Ok((lab, pop))
}

fn service(table_size: u32) -> String {
    format!(
        "[[service]]\nname = \"web\"\nvips = [\"{WEB_VIP}\"]\nport = 80\ntable_size = {table_size}\n\
         backends = [{{ address = \"198.51.100.11\", weight = 1000 }}, {{ address = \"198.51.100.12\", weight = 1 }}]\n"
    )
}

fn forwarding_on(pop: &Host) -> Result<()> {
    pop.sysctl("net.ipv4.conf.p0.forwarding", "1")
}

#[test]
fn check_and_run_refuse_the_same_configs_with_the_same_message() -> Result<()> {
    let (lab, pop) = lab()?;
    let iface = "[[interface]]\nname = \"p0\"\n";
    let zone = lab.write("example.com.zone", ZONE)?;
    let dns = format!("[[dns]]\nvips = [\"{DNS_VIP}\"]\nzones = [\"{}\"]\n", zone.display());

    // Services need IP forwarding on the interface: once only `run` found that out.
    let cfg = lab.pop_config(&pop, &format!("{iface}{}", service(65537)))?;
    both_refuse(&lab, &pop, &cfg, ":7: load-balanced services need IP forwarding on \"p0\"")?;
    forwarding_on(&pop)?;

    // A Maglev table too small for the weights: once a failed start, not a check error.
    let cfg = lab.pop_config(&pop, &format!("{iface}{}", service(251)))?;
    let err = both_refuse(&lab, &pop, &cfg, ": service \"web\": the IPv4 Maglev table of 251 slots cannot hold these weights")?;
    assert!(err.starts_with(&format!("{}:", cfg.display())), "{err}");

    // The anycast interface must exist: once the run failed only after attaching.
    let cfg = lab.pop_config(&pop, &format!("{iface}[anycast]\ninterface = \"nosuch0\"\n"))?;
    both_refuse(&lab, &pop, &cfg, &format!("{}:8: anycast.interface \"nosuch0\" does not exist on this host", cfg.display()))?;

    // A DNS table that cannot fit pop.dns_table_size even on its own.
    let names: String = (0..600).map(|i| format!("h{i} IN A 192.0.2.{}\n", i % 250 + 1)).collect();
    let big = lab.write("big.zone", &format!("{ZONE}{names}"))?;
    let cfg =
        lab.pop_config_with(&pop, "dns_table_size = 1024", &format!("{iface}[[dns]]\nvips = [\"{DNS_VIP}\"]\nzones = [\"{}\"]\n", big.display()))?;
    both_refuse(&lab, &pop, &cfg, "the DNS fast-path table of all [[dns]] blocks needs")?;

    // Two handlers on one VIP, port and protocol name both lines; ::ffff:a.b.c.d is a.b.c.d.
    let cfg = lab.pop_config(
        &pop,
        &format!(
            "{iface}{dns}[[service]]\nname = \"dnstcp\"\nvips = [\"::ffff:{DNS_VIP}\"]\nport = 53\n\
             backends = [{{ address = \"198.51.100.11\" }}]\n"
        ),
    )?;
    both_refuse(
        &lab,
        &pop,
        &cfg,
        &format!("{c}:13: {DNS_VIP} port 53/tcp for service \"dnstcp\" is already served by [[dns]] at {c}:9", c = cfg.display()),
    )?;
    let cfg = lab.pop_config(&pop, &format!("{iface}[[http]]\nname = \"edge\"\nvips = [\"{WEB_VIP}\"]\nport = 0\n"))?;
    both_refuse(&lab, &pop, &cfg, &format!("{}:11: http site \"edge\": port 0 is not 1-65535", cfg.display()))?;

    // $INCLUDE outside the zone's directory, and a zone over its size limit.
    let dir = lab.write("zones-dir-marker", "")?.with_file_name("zones");
    std::fs::create_dir_all(&dir)?;
    let outside = lab.write("outside.inc", "www IN A 192.0.2.80\n")?;
    let inc_zone = dir.join("inc.zone");
    std::fs::write(&inc_zone, format!("{ZONE}$INCLUDE {}\n", outside.display()))?;
    let block = |extra: &str| format!("{iface}[[dns]]\nvips = [\"{DNS_VIP}\"]\nzones = [\"{}\"]\n{extra}", inc_zone.display());
    let cfg = lab.pop_config(&pop, &block(""))?;
    both_refuse(&lab, &pop, &cfg, &format!("{}:6: $INCLUDE {}: ", inc_zone.display(), outside.display()))?;
    let allowed = block(&format!("include_dirs = [\"{}\"]\n", outside.parent().unwrap().display()));
    let cfg = lab.pop_config(&pop, &allowed)?;
    let out = lab.pop(&pop, &cfg, &["check"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let cfg = lab.pop_config(&pop, &format!("{allowed}zone_max_bytes = 1024\n"))?;
    std::fs::write(&outside, "www IN A 192.0.2.80\n".repeat(100))?;
    both_refuse(&lab, &pop, &cfg, "2000 bytes is over the zone size limit of 1024 bytes")?;
    Ok(())
}

#[test]
fn ten_thousand_bad_zone_lines_are_reported_within_seconds() -> Result<()> {
    let (lab, pop) = lab()?;
    let bad: String = (0..10_000).map(|i| format!("h{i}.example.net. IN A 192.0.2.1\n")).collect();
    let zone = lab.write("bad.zone", &format!("{ZONE}{bad}"))?;
    let cfg = lab.pop_config(&pop, &format!("[[interface]]\nname = \"p0\"\n[[dns]]\nvips = [\"{DNS_VIP}\"]\nzones = [\"{}\"]\n", zone.display()))?;
    let started = Instant::now();
    let out = lab.pop(&pop, &cfg, &["check"])?;
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(5), "check took {took:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 21, "{err}");
    assert_eq!(lines[0], format!("{}:6: h0.example.net. A is outside the zone example.com.", zone.display()));
    assert_eq!(lines[19], format!("{}:25: h19.example.net. A is outside the zone example.com.", zone.display()));
    assert_eq!(lines[20], format!("{}: 9980 more problems not listed (10000 in all)", zone.display()));
    Ok(())
}

#[test]
fn reload_refuses_what_check_refuses_and_keeps_serving() -> Result<()> {
    let (mut lab, pop) = lab()?;
    forwarding_on(&pop)?;
    let cfg: PathBuf = lab.pop_config(&pop, &format!("[[interface]]\nname = \"p0\"\n{}", service(65537)))?;
    lab.start_pop(&pop, "pop", &cfg)?;
    let good = std::fs::read_to_string(&cfg)?;
    std::fs::write(&cfg, good.replace("table_size = 65537", "table_size = 251"))?;
    let check = lab.pop(&pop, &cfg, &["check"])?;
    assert!(!check.status.success());
    let reload = lab.pop(&pop, &cfg, &["reload"])?;
    assert!(!reload.status.success());
    assert!(stderr(&reload).contains(stderr(&check).trim_end()), "reload: {}\ncheck: {}", stderr(&reload), stderr(&check));
    assert!(pop.xdp_prog_id("p0")?.is_some(), "the running data path went away");
    // The controller never saw the bad config; the good one reloads.
    std::fs::write(&cfg, good)?;
    let reload = lab.pop(&pop, &cfg, &["reload"])?;
    assert!(reload.status.success(), "{}", stderr(&reload));
    Ok(())
}
