//! Traffic analysis: per-VIP rates and the busiest client prefixes (from data-path
//! counters with bounded memory), and spike detection against a moving baseline.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use aya::maps::{MapData, PerCpuHashMap};
use pop_common::{RttHist, VipKey};

use crate::addr::unmapped;

/// Packets per VIP address (all its ports), summed over CPUs: each VIPS key's
/// counters are at its slot of VIP_STATS.
pub fn vip_packets(
    vips: &aya::maps::HashMap<MapData, VipKey, pop_common::VipValue>,
    stats: &aya::maps::PerCpuArray<MapData, pop_common::VipTraffic>,
) -> HashMap<IpAddr, u64> {
    let mut out = HashMap::new();
    for (k, v) in vips.iter().filter_map(|e| e.ok()) {
        if let Ok(per_cpu) = stats.get(&v.slot, 0) {
            *out.entry(unmapped(&k.addr)).or_default() += per_cpu.iter().map(|t| t.packets).sum::<u64>();
        }
    }
    out
}

/// Packets to VIPs per client prefix (/24 or /56), summed over CPUs.
pub fn prefix_packets(map: &PerCpuHashMap<MapData, [u8; 16], u64>) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for entry in map.iter().filter_map(|e| e.ok()) {
        let (k, per_cpu) = entry;
        *out.entry(prefix_name(&k)).or_default() += per_cpu.iter().sum::<u64>();
    }
    out
}

/// A client prefix as the data path keys it (v4-mapped /24, or /56), as text.
fn prefix_name(key: &[u8; 16]) -> String {
    let ip = unmapped(key);
    if ip.is_ipv4() { format!("{ip}/24") } else { format!("{ip}/56") }
}

/// Client round trips per VIP key, summed over CPUs.
pub fn vip_rtts(map: &PerCpuHashMap<MapData, VipKey, RttHist>) -> Vec<(VipKey, RttHist)> {
    map.iter().filter_map(|e| e.ok()).map(|(k, per_cpu)| (k, merged(per_cpu.iter()))).collect()
}

/// Client round trips (sampled) per client prefix, summed over CPUs.
pub fn prefix_rtts(map: &PerCpuHashMap<MapData, [u8; 16], RttHist>) -> HashMap<String, RttHist> {
    let mut out: HashMap<String, RttHist> = HashMap::new();
    for (k, per_cpu) in map.iter().filter_map(|e| e.ok()) {
        out.entry(prefix_name(&k)).or_default().merge(&merged(per_cpu.iter()));
    }
    out
}

fn merged<'a>(hists: impl Iterator<Item = &'a RttHist>) -> RttHist {
    let mut all = RttHist::default();
    for h in hists {
        all.merge(h);
    }
    all
}

/// Rates between two samples `secs` apart, busiest first.
pub fn rates<K: Clone + Eq + std::hash::Hash + Ord>(before: &HashMap<K, u64>, after: &HashMap<K, u64>, secs: f64) -> Vec<(K, f64)> {
    let mut v: Vec<(K, f64)> = after
        .iter()
        .map(|(k, &n)| (k.clone(), n.saturating_sub(before.get(k).copied().unwrap_or(0)) as f64 / secs))
        .filter(|(_, r)| *r > 0.0)
        .collect();
    v.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    v
}

/// A rate far above its moving baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Spike {
    pub vip: IpAddr,
    pub rate: f64,
    pub baseline: f64,
}

/// Moving baseline per VIP (exponentially weighted), and spike episodes.
#[derive(Default)]
pub struct Analyzer {
    baseline: HashMap<IpAddr, f64>,
    samples: HashMap<IpAddr, u32>,
    active: HashSet<IpAddr>,
    /// Spikes raised so far.
    pub spikes_total: u64,
}

/// Weight of a new sample in the baseline.
const ALPHA: f64 = 0.1;
/// Samples before a baseline is trusted.
const WARMUP: u32 = 5;
/// A spike: this many times the baseline...
const FACTOR: f64 = 10.0;
/// ...and at least this many packets per second (quiet VIPs do not alarm on a few packets).
const FLOOR: f64 = 1000.0;

impl Analyzer {
    /// Feeds one set of per-VIP rates; returns spikes that start now (one per episode).
    pub fn observe(&mut self, rates: &HashMap<IpAddr, f64>) -> Vec<Spike> {
        let mut out = Vec::new();
        for (&vip, &rate) in rates {
            let n = self.samples.entry(vip).or_default();
            let base = self.baseline.entry(vip).or_insert(rate);
            if *n >= WARMUP && rate > (*base * FACTOR).max(FLOOR) {
                if self.active.insert(vip) {
                    self.spikes_total += 1;
                    out.push(Spike { vip, rate, baseline: *base });
                }
                // A spike does not become the new normal.
                continue;
            }
            if rate < (*base * 2.0).max(FLOOR / 2.0) {
                self.active.remove(&vip);
            }
            *base = if *n == 0 { rate } else { *base * (1.0 - ALPHA) + rate * ALPHA };
            *n += 1;
        }
        out
    }

    pub fn in_spike(&self, vip: &IpAddr) -> bool {
        self.active.contains(vip)
    }

    pub fn baseline(&self, vip: &IpAddr) -> Option<f64> {
        self.baseline.get(vip).copied()
    }
}

/// The controller's spike watch, a task of its own so a large VIP_STATS walk never
/// delays the run loop: every second, per-VIP rates from the pinned map (read on a
/// blocking thread) feed an [`Analyzer`]; `spikes_total` is published in `spikes`.
pub async fn watch_spikes(maps: std::sync::Arc<crate::datapath::pinned::PinnedMaps>, spikes: std::sync::Arc<std::sync::Mutex<u64>>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut analyzer = Analyzer::default();
    let mut last: Option<(std::time::Instant, HashMap<IpAddr, u64>)> = None;
    loop {
        tick.tick().await;
        let m = maps.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || vip_packets(&m.vips, &m.vip_stats)).await else { continue };
        if let Some((t, before)) = &last {
            let rates = rates(before, &now, t.elapsed().as_secs_f64()).into_iter().collect();
            for s in analyzer.observe(&rates) {
                log::warn!("traffic spike: VIP {} at {:.0} packets/s, baseline {:.0}", s.vip, s.rate, s.baseline);
            }
            *spikes.lock().unwrap() = analyzer.spikes_total;
        }
        last = Some((std::time::Instant::now(), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(rate: f64) -> HashMap<IpAddr, f64> {
        [("203.0.113.10".parse().unwrap(), rate)].into()
    }

    #[test]
    fn spike_is_raised_once_per_episode_and_not_learned() {
        let mut a = Analyzer::default();
        for _ in 0..10 {
            assert!(a.observe(&r(500.0)).is_empty());
        }
        let s = a.observe(&r(20_000.0));
        assert_eq!(s.len(), 1);
        assert!((s[0].baseline - 500.0).abs() < 1.0);
        assert!(a.observe(&r(25_000.0)).is_empty(), "one event per episode");
        assert!(a.baseline(&"203.0.113.10".parse().unwrap()).unwrap() < 600.0, "the spike leaked into the baseline");
        assert!(a.observe(&r(500.0)).is_empty());
        assert!(!a.in_spike(&"203.0.113.10".parse().unwrap()));
        assert_eq!(a.observe(&r(30_000.0)).len(), 1, "a new episode alarms again");
        assert_eq!(a.spikes_total, 2);
    }

    #[test]
    fn no_alarm_during_warmup_or_under_the_floor_or_on_gradual_growth() {
        let mut a = Analyzer::default();
        assert!(a.observe(&r(10.0)).is_empty());
        assert!(a.observe(&r(900.0)).is_empty(), "warm-up");
        let mut a = Analyzer::default();
        for _ in 0..10 {
            a.observe(&r(10.0));
        }
        assert!(a.observe(&r(900.0)).is_empty(), "under the floor");
        let mut a = Analyzer::default();
        let mut rate = 1000.0;
        for _ in 0..100 {
            rate *= 1.05;
            assert!(a.observe(&r(rate)).is_empty(), "gradual growth is not a spike");
        }
    }

    #[test]
    fn rates_are_sorted_busiest_first() {
        let before: HashMap<String, u64> = [("a".into(), 10), ("b".into(), 0)].into();
        let after: HashMap<String, u64> = [("a".into(), 20), ("b".into(), 100), ("c".into(), 0)].into();
        assert_eq!(rates(&before, &after, 2.0), vec![("b".to_string(), 50.0), ("a".to_string(), 5.0)]);
    }
}
