//! `pop stats`: the data-path counters, per service and backend, and per HTTP route,
//! as a table or JSON (from the pinned maps; no controller needed).

use std::time::Duration;

use anyhow::Result;

use crate::{
    config::Config,
    datapath::pinned::PinnedMaps,
    metrics::{self, CounterRow, ServiceRow},
};

pub fn run(config: &Config, json: bool, interval: f64, all: bool) -> Result<()> {
    let maps = PinnedMaps::open(&config.pop.bpffs_dir)?;
    let first = metrics::read_totals(&maps.counters)?;
    let (now, before) = if interval > 0.0 {
        let d = Duration::from_secs_f64(interval);
        std::thread::sleep(d); // the measurement window for rates, not synchronisation
        (metrics::read_totals(&maps.counters)?, Some((&first, d)))
    } else {
        (first.clone(), None)
    };
    let rows = metrics::rows(&now, before);
    let services = metrics::service_rows(&maps, config)?;
    let routes = metrics::http_route_rows(&maps, config)?;
    if json {
        let out = serde_json::json!({
            "pop": config.pop.name,
            "interval_seconds": if interval > 0.0 { Some(interval) } else { None },
            "counters": rows,
            "services": services,
            "http_routes": routes.iter().map(|(n, c)| serde_json::json!({"route": n, "answered": c})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render_table(&rows, all));
        print!("{}", render_services(&services));
        if !routes.is_empty() {
            println!("\n{:<50} {:>12}", "http route", "answered");
            for (name, count) in &routes {
                println!("{name:<50} {count:>12}");
            }
        }
    }
    Ok(())
}

/// The human table: zero counters are hidden unless `all`.
pub fn render_table(rows: &[CounterRow], all: bool) -> String {
    let mut out = String::new();
    let rate_hdr = if rows.iter().any(|r| r.per_second.is_some()) { "per second" } else { "" };
    out.push_str(&format!("{:<22} {:>16} {:>14}  {}\n", "counter", "total", rate_hdr, "meaning"));
    for r in rows.iter().filter(|r| all || r.total != 0) {
        let rate = r.per_second.map(|p| format!("{p:.1}")).unwrap_or_default();
        out.push_str(&format!("{:<22} {:>16} {:>14}  {}\n", r.name, r.total, rate, r.help));
    }
    out
}

pub fn render_services(rows: &[ServiceRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    out.push_str(&format!("\n{:<28} {:<16} {:>12} {:>14} {:>10}\n", "service / backend", "state", "packets", "bytes", "new flows"));
    for s in rows {
        out.push_str(&format!("{:<28} {:<16} {:>12} {:>14} {:>10}\n", s.name, "", s.totals.packets, s.totals.bytes, s.totals.new_flows));
        for b in &s.backends {
            out.push_str(&format!(
                "  {:<26} {:<16} {:>12} {:>14} {:>10}\n",
                b.address, b.state, b.totals.packets, b.totals.bytes, b.totals.new_flows
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use pop_common::{COUNTER_SLOTS, Counter};

    use super::*;
    use crate::metrics::{Totals, rows};

    #[test]
    fn zero_counters_are_hidden_unless_all() {
        let mut now = [0u64; COUNTER_SLOTS];
        now[Counter::RxPackets as usize] = 30;
        let rows = rows(&Totals(now), None);
        let table = render_table(&rows, false);
        assert!(table.contains("rx.packets"));
        assert!(!table.contains("action.drop"));
        assert!(render_table(&rows, true).contains("action.drop"));
    }
}
