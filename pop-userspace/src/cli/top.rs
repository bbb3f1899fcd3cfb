//! `pop top`: live per-VIP, per-backend and per-client-prefix rates, refreshed until
//! interrupted (or `--count` times).

use std::{collections::HashMap, time::Duration};

use anyhow::Result;

use crate::{analysis, config::Config, datapath::pinned::PinnedMaps, metrics};

pub fn run(config: &Config, interval: f64, count: u32, limit: usize) -> Result<()> {
    let maps = PinnedMaps::open(&config.pop.bpffs_dir)?;
    let (mut vips, mut prefixes) = (analysis::vip_packets(&maps.vips, &maps.vip_stats), analysis::prefix_packets(&maps.top_prefixes));
    let backend_packets = |rows: Vec<metrics::ServiceRow>| -> HashMap<String, u64> {
        rows.into_iter().flat_map(|s| s.backends.into_iter().map(move |b| (format!("{} {}", s.name, b.address), b.totals.packets))).collect()
    };
    let mut backends = backend_packets(metrics::service_rows(&maps, config)?);
    let mut n = 0;
    loop {
        std::thread::sleep(Duration::from_secs_f64(interval)); // the sampling window
        let (v2, p2) = (analysis::vip_packets(&maps.vips, &maps.vip_stats), analysis::prefix_packets(&maps.top_prefixes));
        println!("-- pop {} -- packets/s over {interval:.1} s", config.pop.name);
        println!("{:<40} {:>12}", "VIP", "packets/s");
        for (vip, r) in analysis::rates(&vips, &v2, interval) {
            println!("{:<40} {:>12.1}", vip.to_string(), r);
        }
        let b2 = backend_packets(metrics::service_rows(&maps, config)?);
        if !b2.is_empty() {
            println!("{:<40} {:>12}", "service backend", "packets/s");
            for (b, r) in analysis::rates(&backends, &b2, interval) {
                println!("{b:<40} {r:>12.1}");
            }
        }
        // Round trips since the start of the run, sampled (see RTT_SAMPLE): the
        // bound of the bucket holding p50 and p99, "-" for a prefix none was measured of.
        let rtts = maps.client_rtt_prefixes.as_ref().map(analysis::prefix_rtts).unwrap_or_default();
        let ms = |us: Option<u64>| us.map(|us| format!("{:.3}", us as f64 / 1000.0)).unwrap_or_else(|| "-".into());
        println!("{:<40} {:>12} {:>10} {:>10}", "client prefix", "packets/s", "rtt p50 ms", "rtt p99 ms");
        for (p, r) in analysis::rates(&prefixes, &p2, interval).into_iter().take(limit) {
            let h = rtts.get(&p);
            println!("{p:<40} {r:>12.1} {:>10} {:>10}", ms(h.and_then(|h| h.quantile_us(500))), ms(h.and_then(|h| h.quantile_us(990))));
        }
        println!();
        (vips, prefixes, backends) = (v2, p2, b2);
        n += 1;
        if count != 0 && n >= count {
            break;
        }
    }
    Ok(())
}
