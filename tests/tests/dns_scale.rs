//! A zone of a million names loads into the XDP table within the stated memory, and XDP
//! answers from it.
//!
//! Stated memory for one zone of 1M names with one AAAA each (see README):
//! * kernel: at most 128 MiB + 512 bytes per name charged for the DNS maps (answers,
//!   tails, seeds, rate-limit buckets) with `pop.dns_table_size = 4194304`: 616 MiB;
//! * controller: at most 64 MiB + 1100 bytes per name peak resident while parsing,
//!   compiling and loading: 1.1 GiB.
//!
//! A reload of that zone needs room for two generations (6M answers) and is refused
//! whole with a clear error while the old answers keep being served.
//!
//! `POP_SCALE_NAMES` changes the zone size (e.g. 10000 for a quick run).

use std::{collections::BTreeMap, net::Ipv6Addr, time::Duration};

use anyhow::{Context as _, Result, bail};
use pop_lab::{Host, Lab, big_zone_address as address, big_zone_text as zone_text, process_memory_kib};

const VIP: &str = "203.0.113.53";
const MIB: u64 = 1 << 20;

fn names() -> usize {
    std::env::var("POP_SCALE_NAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn dig(client: &Host, name: &str, qtype: &str) -> Result<String> {
    client.stdout(&["dig", "+tries=2", "+time=2", "+norec", "+short", &format!("@{VIP}"), name, qtype])
}

#[test]
fn a_million_name_zone_loads_within_stated_memory_and_xdp_answers_it() -> Result<()> {
    let n = names();
    // Hash buckets for the configured capacity are charged up front; entries as written.
    let maps_budget = 128 * MIB + 512 * n as u64;
    let rss_budget_kib = 64 * 1024 + 1100 * n as u64 / 1024;

    let mut lab = Lab::new()?;
    let (client, pop) = lab.client_and_pop()?;
    lab.addr(&pop, "lo", &format!("{VIP}/32"))?;
    lab.route(&client, "203.0.113.0/24 via 192.0.2.2")?;
    let zone = lab.write("big.example.zone", &zone_text(n))?;
    let config = lab.pop_config_with(
        &pop,
        "dns_table_size = 4194304",
        &format!("[[interface]]\nname = \"p0\"\n\n[[dns]]\nvips = [\"{VIP}\"]\nzones = [\"{}\"]\nrate_limit = 0\n", zone.display()),
    )?;
    let d = lab.start_pop_within(&pop, "pop", &config, Duration::from_secs(300))?;
    let log = d.log_text();
    let pid = lab.daemon_pid("pop").context("pop is not running")?;
    // Per name AAAA, ANY and NODATA for other types (plus a few for the apex, ns1 and the
    // server's CH names); answers with equal bytes share one tail.
    let count = |what: &str| -> Option<usize> {
        let at = log.find(what)?;
        log[..at].trim_end().rsplit(' ').next()?.parse().ok()
    };
    let answers = count(" fast-path answers").context("no fast-path answer count in the log")?;
    let tails = count(" distinct tails").context("no tail count in the log")?;
    assert!((3 * n..3 * n + 20).contains(&answers), "{answers} answers for {n} names");
    assert!((n..n + 20).contains(&tails), "{tails} tails for {n} names");

    // XDP answers names from anywhere in the zone, and NXDOMAIN past its end.
    let before = lab.pop_counters(&pop, &config)?;
    let picks: Vec<usize> = [0, 1, n / 3, n / 2, n - 1].into_iter().chain((0..15).map(|k| (k * 7919 * 104729) % n)).collect();
    for &i in &picks {
        let got = dig(&client, &format!("N{i}.Big.Example."), "AAAA")?;
        if got.trim().parse::<Ipv6Addr>().ok() != Some(address(i)) {
            bail!("n{i}.big.example AAAA: got {got:?}, want {}", address(i));
        }
    }
    let nx = client.stdout(&["dig", "+tries=2", "+time=2", "+norec", &format!("@{VIP}"), &format!("n{n}.big.example."), "AAAA"])?;
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let after = lab.pop_counters(&pop, &config)?;
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    assert_eq!(delta("dns.xdp.noerror"), picks.len() as u64, "{after:?}");
    assert_eq!(delta("dns.xdp.nxdomain"), 1, "{after:?}");
    assert_eq!(delta("dns.pass.not_in_table"), 0, "{after:?}");

    // Memory: what the kernel charges for the DNS maps, and the controller's peak.
    let maps: BTreeMap<String, u64> = pop_lab::pinned_map_memory(&lab.pop_maps_dir(&pop.name))?.into_iter().collect();
    let dns_maps: u64 = maps.iter().filter(|(k, _)| k.starts_with("DNS_")).map(|(_, v)| v).sum();
    let (rss, _) = process_memory_kib(pid)?;
    println!(
        "{n} names: DNS maps {} MiB ({:?}), controller peak {} MiB",
        dns_maps / MIB,
        maps.iter().filter(|(k, _)| k.starts_with("DNS_")).map(|(k, v)| format!("{k} {} MiB", v / MIB)).collect::<Vec<_>>(),
        rss / 1024
    );
    assert!(dns_maps <= maps_budget, "DNS maps take {dns_maps} bytes, budget {maps_budget}");
    assert!(rss <= rss_budget_kib, "controller peak {rss} KiB, budget {rss_budget_kib} KiB");

    // A reload that does not fit beside the live generation is refused whole: the error
    // names the setting, nothing of the new zone is served, the old answers stay.
    if 6 * n + 100 > 4194304 {
        let edited = std::fs::read_to_string(&zone)?.replacen(&format!("n0 AAAA {}", address(0)), "n0 AAAA 2001:db8:ffff::1", 1);
        std::fs::write(&zone, edited)?;
        let out = lab.pop(&pop, &config, &["reload"])?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("DNS table full") && err.contains("pop.dns_table_size"), "{err}");
        assert_eq!(dig(&client, "n0.big.example.", "AAAA")?.trim().parse::<Ipv6Addr>().ok(), Some(address(0)));
        let maps_after: u64 =
            pop_lab::pinned_map_memory(&lab.pop_maps_dir(&pop.name))?.into_iter().filter(|(k, _)| k.starts_with("DNS_")).map(|(_, v)| v).sum();
        assert!(maps_after <= dns_maps + MIB, "a refused reload left {} bytes behind", maps_after - dns_maps);
        let c = lab.pop_counters(&pop, &config)?;
        assert_eq!(c.get("dns.pass.not_in_table").copied().unwrap_or(0), 0, "{c:?}");
    }
    Ok(())
}
