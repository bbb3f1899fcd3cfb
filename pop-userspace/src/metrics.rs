//! Data-path counters: read from the pinned per-CPU map (no daemon needed), summed
//! over CPUs, and rendered for `pop stats` as a table or JSON.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result, bail};
use aya::maps::{Map, MapData, PerCpuArray};
use pop_common::{COUNTER_SLOTS, Counter, Counters, MAP_COUNTERS};
use serde::Serialize;

use crate::loader::Pins;

/// Totals summed over CPUs, indexed like `Counters::slots`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals(pub [u64; COUNTER_SLOTS]);

impl Totals {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
}

/// Opens the pinned counter map of the PoP pinned at `bpffs_dir`.
pub fn open_counters(bpffs_dir: &Path) -> Result<PerCpuArray<MapData, Counters>> {
    let pins = Pins::new(bpffs_dir);
    let path = pins.map(MAP_COUNTERS);
    if !path.exists() {
        bail!(
            "no pop data path is pinned at {} (no {}): start it with `pop run`",
            bpffs_dir.display(),
            path.display()
        );
    }
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    Ok(PerCpuArray::try_from(Map::PerCpuArray(data))?)
}

pub fn read_totals(map: &PerCpuArray<MapData, Counters>) -> Result<Totals> {
    let mut totals = [0u64; COUNTER_SLOTS];
    for cpu in map.get(&0, 0)?.iter() {
        for (t, v) in totals.iter_mut().zip(cpu.slots.iter()) {
            *t = t.wrapping_add(*v);
        }
    }
    Ok(Totals(totals))
}

#[derive(Serialize, Debug, PartialEq)]
pub struct CounterRow {
    pub name: &'static str,
    pub total: u64,
    /// Per second over the sampling interval; absent when no interval was sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_second: Option<f64>,
    pub help: &'static str,
}

/// One row per counter; `before` and `interval` give rates.
pub fn rows(now: &Totals, before: Option<(&Totals, Duration)>) -> Vec<CounterRow> {
    Counter::ALL
        .iter()
        .map(|&c| CounterRow {
            name: c.name(),
            total: now.get(c),
            per_second: before.map(|(b, d)| now.get(c).saturating_sub(b.get(c)) as f64 / d.as_secs_f64()),
            help: c.help(),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_are_unique_and_fit_the_slots() {
        assert!(Counter::ALL.len() <= COUNTER_SLOTS);
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?} is out of slot order");
        }
    }

    #[test]
    fn rates_and_hidden_zeroes() {
        let mut a = [0u64; COUNTER_SLOTS];
        let mut b = a;
        a[Counter::RxPackets as usize] = 10;
        b[Counter::RxPackets as usize] = 30;
        let rows = rows(&Totals(b), Some((&Totals(a), Duration::from_secs(2))));
        let rx = rows.iter().find(|r| r.name == "rx.packets").unwrap();
        assert_eq!(rx.total, 30);
        assert_eq!(rx.per_second, Some(10.0));
        let table = render_table(&rows, false);
        assert!(table.contains("rx.packets"));
        assert!(!table.contains("action.drop"));
        assert!(render_table(&rows, true).contains("action.drop"));
    }
}
