//! pop as a secondary of a hidden primary (Knot DNS in the lab): AXFR at start, a
//! change on the primary reaches pop's answers through NOTIFY, the transferred copy
//! survives a restart with the primary down, and the zone expires as the SOA says.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Result;
use pop_lab::{Host, Lab, wait_until};

const VIP: &str = "203.0.113.53";
const PRIMARY: &str = "192.0.2.1";

/// refresh 60 s (so a change seen sooner came by NOTIFY), retry 1 s, expire 8 s.
fn zone_text(serial: u32, www: &str) -> String {
    format!(
        "$ORIGIN example.net.\n$TTL 300\n@ IN SOA ns1.example.net. hostmaster.example.net. {serial} 60 1 8 300\n\
         @ IN NS ns1\nns1 IN A 192.0.2.53\nwww IN A {www}\ntxt IN TXT \"v=spf1 -all\" \"two words\"\n"
    )
}

fn dig(client: &Host, name: &str, qtype: &str) -> Result<String> {
    client.stdout(&["dig", "+tries=1", "+time=1", "+norec", "+short", &format!("@{VIP}"), name, qtype])
}

/// The header line of dig's reply (with its rcode), or "" when no reply came.
fn status_line(client: &Host, name: &str) -> Result<String> {
    let out = client.output(&["dig", "+tries=1", "+time=1", "+norec", &format!("@{VIP}"), name, "A"])?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().find(|l| l.contains("status:")).unwrap_or("").to_string())
}

/// Knot as the primary; with `key`, transfers need TSIG with that (base64) secret, and
/// its NOTIFYs are signed with it. With
/// `updates`, it takes dynamic updates from its own host and keeps their differences in
/// its journal (so it can answer IXFR); without, it keeps none (IXFR gets the whole zone).
fn knot_conf(lab: &Lab, run: &Path, zone: &Path, key: Option<&str>, updates: bool) -> Result<std::path::PathBuf> {
    let (keys, acl_key) = match key {
        Some(secret) => (format!("key:\n  - id: xfr.example.\n    algorithm: hmac-sha256\n    secret: {secret}\n"), "    key: xfr.example.\n"),
        None => (String::new(), ""),
    };
    lab.write(
        "knot-primary.conf",
        &format!(
            "server:\n    rundir: \"{r}\"\n    listen: {PRIMARY}@53\n    udp-workers: 1\n    tcp-workers: 1\n\
             control:\n    listen: \"{r}/knot.sock\"\n\
             database:\n    storage: \"{r}/db\"\nlog:\n  - target: stderr\n    any: info\n{keys}\
             remote:\n  - id: pop\n    address: {VIP}@53\n{remote_key}\
             acl:\n  - id: pop-xfr\n    address: 192.0.2.2\n{acl_key}    action: transfer\n\
             \x20 - id: local-update\n    address: {PRIMARY}\n    action: update\n\
             zone:\n  - domain: example.net\n    file: \"{z}\"\n    notify: pop\n    acl: [pop-xfr{update_acl}]\n\
             \x20   journal-content: {journal}\n    zonefile-sync: -1\n",
            r = run.display(),
            z = zone.display(),
            remote_key = if key.is_some() { "    key: xfr.example.\n" } else { "" },
            update_acl = if updates { ", local-update" } else { "" },
            journal = if updates { "changes" } else { "none" },
        ),
    )
}

/// Starts Knot as the primary of example.net (serial 1) on the client host, and waits
/// until it answers; its run directory and zone file.
fn start_primary(lab: &mut Lab, client: &Host, key: Option<&str>, updates: bool) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let run = lab.dir.join("knot-primary");
    std::fs::create_dir_all(run.join("db"))?;
    let zone = lab.write("example.net.zone", &zone_text(1, "192.0.2.80"))?;
    let conf = knot_conf(lab, &run, &zone, key, updates)?;
    lab.spawn(client, "knot", &["knotd", "-c", conf.to_str().unwrap()])?;
    wait_until(Duration::from_secs(20), "knotd serving example.net", || {
        client
            .stdout(&["dig", "+tries=1", "+time=1", "+short", &format!("@{PRIMARY}"), "www.example.net", "A"])
            .ok()
            .filter(|o| o.contains("192.0.2.80"))
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", lab.daemon_log("knot").unwrap_or_default()))?;
    Ok((run, zone))
}

#[test]
fn a_secondary_follows_its_primary_keeps_its_copy_and_expires() -> Result<()> {
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    // The VIP is on lo only while announced: [anycast] manages it.
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;

    // The hidden primary (Knot) on the client host.
    let (run, zone) = start_primary(&mut lab, &client, None, false)?;

    let state = lab.dir.join("state");
    let config = lab.pop_config_with(
        &pop,
        &format!("state_dir = \"{}\"\nmetrics_listen = \"127.0.0.1:9188\"", state.display()),
        &format!(
            "[[interface]]\nname = \"p0\"\n[[dns]]\nvips = [\"{VIP}\"]\nrate_limit = 0\n[[dns.secondary]]\nzone = \"example.net\"\nprimaries = [\"{PRIMARY}\"]\n\
             [anycast]\ninterface = \"lo\"\nrise = 1\nfall = 1\nhold_ms = 0\ncheck_ms = 200\n"
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    let announced = |lab: &Lab| -> Option<(bool, String)> {
        let out = lab.pop(&pop, &config, &["status", "--json"]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some((v["vips"][0]["announced"].as_bool()?, v["vips"][0]["why"].as_str()?.to_string()))
    };
    wait_until(Duration::from_secs(10), "the VIP announced", || announced(&lab).filter(|(a, _)| *a))?;

    // Transferred before the first apply: answered at once, every record as the primary has it.
    assert_eq!(dig(&client, "www.example.net", "A")?.trim(), "192.0.2.80");
    assert_eq!(dig(&client, "txt.example.net", "TXT")?.trim(), "\"v=spf1 -all\" \"two words\"");
    let stored = state.join("secondary").join("example.net.axfr");
    assert!(stored.is_file(), "no stored copy at {}", stored.display());
    let metric = |name: &str| -> Option<f64> {
        let text = pop.stdout(&["curl", "-sSf", "http://127.0.0.1:9188/metrics"]).ok()?;
        text.lines().find_map(|l| l.strip_prefix(&format!("{name}{{zone=\"example.net.\"}} "))).and_then(|v| v.parse().ok())
    };
    let metrics = pop.stdout(&["curl", "-sSf", "http://127.0.0.1:9188/metrics"])?;
    assert_eq!((metric("pop_dns_secondary_served"), metric("pop_dns_secondary_serial")), (Some(1.0), Some(1.0)), "{metrics}");
    assert!(metric("pop_dns_secondary_expiry_seconds").is_some_and(|s| s > 0.0 && s <= 8.0), "{metrics}");
    let lint = pop_lab::promtool_check_metrics(&metrics)?;
    assert!(lint.is_empty(), "promtool check metrics:\n{lint}");

    // A change at the primary: its NOTIFY brings it to pop's answers.
    std::fs::write(&zone, zone_text(2, "192.0.2.81"))?;
    let changed = Instant::now();
    let reload = client.stdout(&["knotc", "-s", run.join("knot.sock").to_str().unwrap(), "zone-reload", "example.net"])?;
    assert!(reload.contains("OK"), "knotc: {reload}");
    wait_until(Duration::from_secs(5), "the new address answered", || dig(&client, "www.example.net", "A").ok().filter(|o| o.trim() == "192.0.2.81"))
        .map_err(|e| anyhow::anyhow!("{e}: {}\nknot:\n{}", lab.daemon_log("pop").unwrap_or_default(), lab.daemon_log("knot").unwrap_or_default()))?;
    let took = changed.elapsed();
    println!("primary change answered by pop after {took:?}");
    let log = lab.daemon_log("pop").unwrap_or_default();
    assert!(
        log.contains("NOTIFY for example.net. from 192.0.2.1"),
        "the change did not come by NOTIFY:\n{log}\nknot:\n{}",
        lab.daemon_log("knot").unwrap_or_default()
    );
    // This primary keeps no journal, so it answers the IXFR request with the whole zone.
    assert!(log.contains("transferred serial 2 from 192.0.2.1:53 by IXFR (answered with the whole zone)"), "{log}");

    // The primary goes away and pop restarts: the stored copy is served.
    lab.stop_daemon("knot")?;
    lab.stop_daemon("pop")?;
    lab.start_pop(&pop, "pop", &config)?;
    assert_eq!(dig(&client, "www.example.net", "A")?.trim(), "192.0.2.81", "the stored transfer is not served after a restart");
    wait_until(Duration::from_secs(10), "the VIP announced from the stored copy", || announced(&lab).filter(|(a, _)| *a))?;

    // Still unreachable after the SOA expire time (8 s): no longer served.
    wait_until(Duration::from_secs(20), "the zone expired", || lab.daemon_log("pop").filter(|l| l.contains("secondary example.net.: expired")))
        .map_err(|e| anyhow::anyhow!("{e}: {}", lab.daemon_log("pop").unwrap_or_default()))?;
    // Its names stop being answered: REFUSED while the VIP is still up, no reply once the
    // withdrawal (below) has taken the address away, which can come first.
    wait_until(Duration::from_secs(5), "the zone's names no longer answered", || {
        status_line(&client, "www.example.net").ok().filter(|l| !l.contains("NOERROR"))
    })?;
    // An expired zone makes its block unhealthy: the VIP is withdrawn, saying why.
    let (_, why) = wait_until(Duration::from_secs(10), "the VIP withdrawn", || announced(&lab).filter(|(a, _)| !*a))?;
    assert!(why.contains("secondary zone example.net. is not served"), "{why}");
    assert_eq!(metric("pop_dns_secondary_served"), Some(0.0), "Prometheus still calls the expired zone served");
    Ok(())
}

/// Transfers signed with TSIG (hmac-sha256): a wrong secret gets nothing served and says
/// why; the right one, applied by `pop reload`, gets the zone.
#[test]
fn a_secondary_with_tsig_is_refused_with_the_wrong_secret_and_served_with_the_right_one() -> Result<()> {
    const SECRET: &str = "cG9wLXRlc3Qtc2VjcmV0LW9mLTMyLWJ5dGVzLWxvbmchIQ==";
    const WRONG: &str = "d3Jvbmctc2VjcmV0LW9mLTMyLWJ5dGVzLWxvbmchISEhIQ==";
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    lab.addr(&pop, "lo", &format!("{VIP}/32"))?;
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    let (run, zone) = start_primary(&mut lab, &client, Some(SECRET), false)?;
    // An unsigned transfer is refused by the primary: the ACL wants the key.
    let unsigned = client.stdout(&["dig", "+tries=1", "+time=2", &format!("@{PRIMARY}"), "example.net", "AXFR"])?;
    assert!(!unsigned.contains("192.0.2.80"), "the primary gave an unsigned transfer:\n{unsigned}");

    let state = lab.dir.join("state");
    let body = |secret: &str| {
        format!(
            "[[interface]]\nname = \"p0\"\n[[dns]]\nvips = [\"{VIP}\"]\nrate_limit = 0\n[[dns.secondary]]\nzone = \"example.net\"\n\
             primaries = [\"{PRIMARY}\"]\ntsig = {{ name = \"xfr.example\", secret = \"{secret}\" }}\n"
        )
    };
    let config = lab.pop_config_with(&pop, &format!("state_dir = \"{}\"", state.display()), &body(WRONG))?;
    lab.start_pop(&pop, "pop", &config)?;
    let log = lab.daemon_log("pop").unwrap_or_default();
    assert!(log.contains("secondary example.net.: not served until a transfer succeeds") && log.contains("TSIG"), "{log}");
    assert!(!dig(&client, "www.example.net", "A")?.contains("192.0.2.80"), "served without a transfer");

    let text = std::fs::read_to_string(&config)?.replace(WRONG, SECRET);
    std::fs::write(&config, text)?;
    let out = lab.pop(&pop, &config, &["reload"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until(Duration::from_secs(10), "the signed transfer served", || {
        dig(&client, "www.example.net", "A").ok().filter(|o| o.trim() == "192.0.2.80")
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}\nknot:\n{}", lab.daemon_log("pop").unwrap_or_default(), lab.daemon_log("knot").unwrap_or_default()))?;
    // The primary sent the zone only to the signed request (its ACL refuses others, as
    // the unsigned dig above shows), and pop checked every message's signature.
    let knot = lab.daemon_log("knot").unwrap_or_default();
    assert!(knot.contains("AXFR, outgoing, remote 192.0.2.2") && knot.contains("finished"), "knot logged no transfer to pop:\n{knot}");

    // The primary's NOTIFYs are signed: pop verifies them, answers signed (Knot checks
    // that), and takes the change.
    std::fs::write(&zone, zone_text(2, "192.0.2.81"))?;
    let reload = client.stdout(&["knotc", "-s", run.join("knot.sock").to_str().unwrap(), "zone-reload", "example.net"])?;
    assert!(reload.contains("OK"), "knotc: {reload}");
    wait_until(Duration::from_secs(5), "the change answered", || dig(&client, "www.example.net", "A").ok().filter(|o| o.trim() == "192.0.2.81"))
        .map_err(|e| anyhow::anyhow!("{e}: {}\nknot:\n{}", lab.daemon_log("pop").unwrap_or_default(), lab.daemon_log("knot").unwrap_or_default()))?;
    let log = lab.daemon_log("pop").unwrap_or_default();
    assert!(log.contains("NOTIFY for example.net. from 192.0.2.1 (TSIG xfr.example. verified)"), "{log}");
    // Knot logs this line only for an answer whose TSIG it verified (a bad one: "failed (failed to verify TSIG)").
    wait_until(Duration::from_secs(5), "Knot to log its NOTIFY of serial 2 answered", || {
        lab.daemon_log("knot").filter(|k| k.contains("notify, outgoing, remote 203.0.113.53@53, serial 2\n"))
    })
    .map_err(|e| anyhow::anyhow!("{e}:\n{}", lab.daemon_log("knot").unwrap_or_default()))?;

    // From the primary's own address, a NOTIFY unsigned or signed with another secret
    // is refused with NOTAUTH and wakes nothing.
    for signing in [vec![], vec!["-y".to_string(), format!("hmac-sha256:xfr.example:{WRONG}")]] {
        let mut argv = vec!["dig", "+opcode=notify", "+norec", "+tries=1", "+time=1", "-b", PRIMARY];
        argv.extend(signing.iter().map(String::as_str));
        let at = format!("@{VIP}");
        argv.extend([at.as_str(), "example.net", "SOA"]);
        let out = client.output(&argv)?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("status: NOTAUTH"), "{argv:?}:\n{text}");
    }
    let log = lab.daemon_log("pop").unwrap_or_default();
    assert!(log.contains("NOTIFY for example.net. from 192.0.2.1 refused: not signed (TSIG key xfr.example. expected)"), "{log}");
    assert!(log.contains("NOTIFY for example.net. from 192.0.2.1 refused: TSIG signature does not verify"), "{log}");
    Ok(())
}

/// A dynamic update at the primary (knsupdate: one address changed, 1000 names added)
/// reaches pop by NOTIFY and IXFR: only the differences cross the wire, pop answers
/// the new data from XDP within a second, and the copy it rebuilt from them is the
/// one served after a restart with the primary gone.
#[test]
fn an_update_at_the_primary_arrives_by_ixfr_and_its_result_survives_a_restart() -> Result<()> {
    const ADDED: usize = 1000;
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    lab.addr(&pop, "lo", &format!("{VIP}/32"))?;
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    start_primary(&mut lab, &client, None, true)?;
    let state = lab.dir.join("state");
    let config = lab.pop_config_with(
        &pop,
        &format!("state_dir = \"{}\"", state.display()),
        &format!(
            "[[interface]]\nname = \"p0\"\n[[dns]]\nvips = [\"{VIP}\"]\nrate_limit = 0\n[[dns.secondary]]\nzone = \"example.net\"\nprimaries = [\"{PRIMARY}\"]\n"
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    assert_eq!(dig(&client, "www.example.net", "A")?.trim(), "192.0.2.80");

    let mut update =
        format!("server {PRIMARY} 53\nzone example.net.\nupdate del www.example.net. A 192.0.2.80\nupdate add www.example.net. 300 A 192.0.2.81\n");
    for i in 0..ADDED {
        update += &format!("update add n{i}.example.net. 300 A 198.51.{}.{}\n", 100 + i / 256, i % 256);
    }
    update += "send\n";
    let script = lab.write("update.txt", &update)?;
    let out = client.output(&["knsupdate", "-v", "-t", "5", script.to_str().unwrap()])?;
    assert!(out.status.success(), "knsupdate: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Knot sends its NOTIFY on its own schedule (here up to a second after the update,
    // behind its start-up NOTIFY's retries): pop's part is timed from a NOTIFY sent now
    // from the primary's address, whichever of the two arrives first.
    let updated = Instant::now();
    let notify =
        client.stdout(&["dig", "+opcode=notify", "+norec", "+tries=1", "+time=1", "-b", PRIMARY, &format!("@{VIP}"), "example.net", "SOA"])?;
    assert!(notify.contains("opcode: NOTIFY, status: NOERROR"), "pop did not take the NOTIFY:\n{notify}");
    let logs = |lab: &Lab| format!("pop:\n{}\nknot:\n{}", lab.daemon_log("pop").unwrap_or_default(), lab.daemon_log("knot").unwrap_or_default());
    wait_until(Duration::from_secs(5), "the updated address answered", || {
        dig(&client, "www.example.net", "A").ok().filter(|o| o.trim() == "192.0.2.81")
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&lab)))?;
    let took = updated.elapsed();
    println!("update answered by pop {took:?} after a NOTIFY");
    let last = format!("n{}.example.net", ADDED - 1);
    let last_addr = format!("198.51.{}.{}", 100 + (ADDED - 1) / 256, (ADDED - 1) % 256);
    assert_eq!(dig(&client, &last, "A")?.trim(), last_addr);

    let log = lab.daemon_log("pop").unwrap_or_default();
    assert!(
        log.contains(&format!("transferred serial 2 from {PRIMARY}:53 by IXFR (1 change(s): 1 record(s) deleted, {} added)", ADDED + 1)),
        "not applied as an IXFR of the update's differences:\n{}",
        logs(&lab)
    );
    let knot = lab.daemon_log("knot").unwrap_or_default();
    assert!(
        knot.contains("IXFR, outgoing, remote 192.0.2.2") && !knot.contains("AXFR, outgoing, remote 192.0.2.2 TCP/0, started, serial 2"),
        "{knot}"
    );
    // Answered from XDP, not by the server: the fast path holds the transferred names.
    let before = lab.pop_counters(&pop, &config)?;
    assert_eq!(dig(&client, "n7.example.net", "A")?.trim(), "198.51.100.7");
    let after = lab.pop_counters(&pop, &config)?;
    assert_eq!(after["dns.xdp.noerror"], before["dns.xdp.noerror"] + 1, "{after:?}");
    assert!(took < Duration::from_secs(1), "the update was answered {took:?} after a NOTIFY\n{}", logs(&lab));

    // The primary goes away and pop restarts: the copy rebuilt from the differences is served.
    lab.stop_daemon("knot")?;
    lab.stop_daemon("pop")?;
    lab.start_pop(&pop, "pop", &config)?;
    assert_eq!(dig(&client, "www.example.net", "A")?.trim(), "192.0.2.81");
    assert_eq!(dig(&client, "n500.example.net", "A")?.trim(), "198.51.101.244");
    assert_eq!(dig(&client, &last, "A")?.trim(), last_addr);
    assert_eq!(dig(&client, "txt.example.net", "TXT")?.trim(), "\"v=spf1 -all\" \"two words\"", "the untouched records are kept");
    Ok(())
}

/// A catalog zone (RFC 9432) at the primary names the zones pop serves: the config
/// names only the catalog; a zone added to it at the primary is served with no config
/// edit, and one removed from it stops being served.
#[test]
fn zones_added_to_and_removed_from_a_catalog_at_the_primary_are_served_and_dropped() -> Result<()> {
    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    lab.addr(&pop, "lo", &format!("{VIP}/32"))?;
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    let run = lab.dir.join("knot-primary");
    std::fs::create_dir_all(run.join("db"))?;
    let net = lab.write("example.net.zone", &zone_text(1, "192.0.2.80"))?;
    let org = lab.write("example.org.zone", &zone_text(1, "192.0.2.90").replace("example.net.", "example.org."))?;
    let catalog = lab.write(
        "catalog.example.zone",
        "$ORIGIN catalog.example.\n$TTL 0\n@ IN SOA invalid. invalid. 1 60 1 8 0\n@ IN NS invalid.\n\
         version IN TXT \"2\"\nnet.zones IN PTR example.net.\n",
    )?;
    let zone = |domain: &str, file: &Path| {
        format!("  - domain: {domain}\n    file: \"{}\"\n    notify: pop\n    acl: [pop-xfr, local-update]\n    zonefile-sync: -1\n", file.display())
    };
    let conf = lab.write(
        "knot-primary.conf",
        &format!(
            "server:\n    rundir: \"{r}\"\n    listen: {PRIMARY}@53\n    udp-workers: 1\n    tcp-workers: 1\n\
             control:\n    listen: \"{r}/knot.sock\"\ndatabase:\n    storage: \"{r}/db\"\nlog:\n  - target: stderr\n    any: info\n\
             remote:\n  - id: pop\n    address: {VIP}@53\n\
             acl:\n  - id: pop-xfr\n    address: 192.0.2.2\n    action: transfer\n  - id: local-update\n    address: {PRIMARY}\n    action: update\n\
             zone:\n{}{}{}",
            zone("catalog.example", &catalog),
            zone("example.net", &net),
            zone("example.org", &org),
            r = run.display()
        ),
    )?;
    lab.spawn(&client, "knot", &["knotd", "-c", conf.to_str().unwrap()])?;
    wait_until(Duration::from_secs(20), "knotd serving the catalog", || {
        client
            .stdout(&["dig", "+tries=1", "+time=1", "+short", &format!("@{PRIMARY}"), "version.catalog.example", "TXT"])
            .ok()
            .filter(|o| o.contains("2"))
    })?;

    let state = lab.dir.join("state");
    let config = lab.pop_config_with(
        &pop,
        &format!("state_dir = \"{}\"", state.display()),
        &format!(
            "[[interface]]\nname = \"p0\"\n[[dns]]\nvips = [\"{VIP}\"]\nrate_limit = 0\n\
             [[dns.secondary]]\nzone = \"catalog.example\"\ncatalog = true\nprimaries = [\"{PRIMARY}\"]\n"
        ),
    )?;
    lab.start_pop(&pop, "pop", &config)?;
    let logs = |lab: &Lab| format!("pop:\n{}\nknot:\n{}", lab.daemon_log("pop").unwrap_or_default(), lab.daemon_log("knot").unwrap_or_default());
    // The catalog's member is served from the start; the catalog itself is not served.
    assert_eq!(dig(&client, "www.example.net", "A")?.trim(), "192.0.2.80", "{}", logs(&lab));
    assert!(status_line(&client, "www.example.org")?.contains("REFUSED"), "example.org is not in the catalog yet");
    let out = client.stdout(&["dig", "+tries=1", "+time=1", "+norec", &format!("@{VIP}"), "version.catalog.example", "TXT"])?;
    assert!(out.contains("status: REFUSED"), "the catalog zone is answered:\n{out}");

    let update = |lab: &Lab, line: &str| -> Result<()> {
        let script = lab.write("update.txt", &format!("server {PRIMARY} 53\nzone catalog.example.\n{line}\nsend\n"))?;
        let out = client.output(&["knsupdate", "-t", "5", script.to_str().unwrap()])?;
        anyhow::ensure!(out.status.success(), "knsupdate: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    // Added at the primary: served, with no config edit.
    update(&lab, "update add org.zones.catalog.example. 0 PTR example.org.")?;
    wait_until(Duration::from_secs(10), "example.org served", || dig(&client, "www.example.org", "A").ok().filter(|o| o.trim() == "192.0.2.90"))
        .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&lab)))?;
    assert_eq!(dig(&client, "www.example.net", "A")?.trim(), "192.0.2.80", "the first member stays");
    // Only the new member's refresh task started: the catalog's and example.net's kept
    // theirs (a reload does not query every primary again).
    assert!(logs(&lab).contains("secondary zones: 1 refresh task(s) started, 0 stopped, 2 kept"), "{}", logs(&lab));
    // Removed at the primary: no longer served.
    update(&lab, "update del net.zones.catalog.example. PTR example.net.")?;
    wait_until(Duration::from_secs(10), "example.net no longer served", || {
        status_line(&client, "www.example.net").ok().filter(|l| l.contains("REFUSED"))
    })
    .map_err(|e| anyhow::anyhow!("{e}\n{}", logs(&lab)))?;
    assert_eq!(dig(&client, "www.example.org", "A")?.trim(), "192.0.2.90");
    // Its stored copy is deleted with it (a member added back later is transferred
    // afresh, not served from an old copy); the remaining member's stays.
    let stored = state.join("secondary");
    wait_until(Duration::from_secs(5), "example.net's stored copy deleted", || (!stored.join("example.net.axfr").exists()).then_some(())).map_err(
        |e| anyhow::anyhow!("{e}: {:?}", std::fs::read_dir(&stored).map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect::<Vec<_>>())),
    )?;
    assert!(stored.join("example.org.axfr").exists(), "the remaining member's copy is gone too");
    Ok(())
}
