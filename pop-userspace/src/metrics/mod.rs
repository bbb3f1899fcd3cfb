//! Data-path counters: read from the pinned per-CPU map (no daemon needed), summed
//! over CPUs, for `pop stats`, `pop top` and Prometheus ([`prometheus`]).

pub mod prometheus;

use std::time::Duration;

use anyhow::Result;
use aya::maps::{MapData, PerCpuArray};
use pop_common::{COUNTER_SLOTS, Counter, Counters};
use serde::Serialize;

use crate::datapath::pinned::PinnedMaps;

/// Totals summed over CPUs, indexed like `Counters::slots`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totals(pub [u64; COUNTER_SLOTS]);

impl Totals {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
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
    }
}

/// Packets, bytes and new flows of one service or backend, summed over CPUs.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct LbTotals {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct BackendRow {
    pub address: String,
    pub state: &'static str,
    #[serde(flatten)]
    pub totals: LbTotals,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct ServiceRow {
    pub name: String,
    #[serde(flatten)]
    pub totals: LbTotals,
    pub backends: Vec<BackendRow>,
}

fn sum_stats(map: &PerCpuArray<MapData, pop_common::LbStats>, index: u32) -> Result<LbTotals> {
    let mut t = LbTotals::default();
    for s in map.get(&index, 0)?.iter() {
        t.packets += s.packets;
        t.bytes += s.bytes;
        t.new_flows += s.new_flows;
    }
    Ok(t)
}

/// Per-service and per-backend totals from the pinned maps, named by `config`.
pub fn service_rows(maps: &PinnedMaps, config: &crate::config::Config) -> Result<Vec<ServiceRow>> {
    use pop_common::{BACKEND_DOWN, BACKEND_DRAIN, BACKEND_LIVE};
    if config.services.is_empty() {
        return Ok(Vec::new());
    }
    let (svc_stats, be_stats) = (&maps.lb_service_stats, &maps.lb_backend_stats);
    let all = crate::lb::runtime::LbRuntime::read_backends(&maps.lb_backends)?;
    let mut rows = Vec::new();
    for (i, svc) in config.services.iter().enumerate() {
        let mut be_rows = Vec::new();
        for (id, b) in all.iter().filter(|(_, b)| b.service == i as u32) {
            let address = crate::lb::runtime::unmapped(&b.addr);
            let state = match b.state {
                BACKEND_LIVE if svc.backends.iter().any(|c| c.address == address && c.weight == 0) => "live (weight 0)",
                BACKEND_LIVE => "live",
                BACKEND_DRAIN => "drain",
                BACKEND_DOWN => "removed",
                _ => "unused",
            };
            be_rows.push(BackendRow { address: address.to_string(), state, totals: sum_stats(be_stats, *id)? });
        }
        rows.push(ServiceRow { name: svc.name.clone(), totals: sum_stats(svc_stats, i as u32)?, backends: be_rows });
    }
    Ok(rows)
}

/// Requests answered per HTTP route (named "site host/path"), from the pinned map.
pub fn http_route_rows(maps: &PinnedMaps, config: &crate::config::Config) -> Result<Vec<(String, u64)>> {
    if config.http.is_empty() {
        return Ok(Vec::new());
    }
    let map = &maps.http_route_stats;
    let (_, names) = crate::http::entries(config);
    let mut rows = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        rows.push((name, map.get(&(i as u32), 0)?.iter().sum()));
    }
    Ok(rows)
}

/// One VIP's client round trips: its address, port, where they are measured ("http":
/// answered in XDP, "lb": a load-balanced service) and the histogram. VIP keys the
/// config no longer names are left out.
pub struct RttRow {
    pub vip: std::net::IpAddr,
    pub port: u16,
    pub path: &'static str,
    pub hist: pop_common::RttHist,
}

/// Client round trips per configured VIP, from the pinned map.
pub fn client_rtt_rows(maps: &PinnedMaps, config: &crate::config::Config) -> Vec<RttRow> {
    let Some(map) = &maps.client_rtt else { return Vec::new() };
    let mut rows: Vec<RttRow> = crate::analysis::vip_rtts(map)
        .into_iter()
        .filter_map(|(key, hist)| {
            let (vip, port) = (crate::addr::unmapped(&key.addr), u16::from_be(key.port_be));
            let http = config.http.iter().any(|h| h.port == port && h.vips.contains(&vip));
            let lb = config.services.iter().any(|s| s.port == port && s.vips.contains(&vip));
            let path = if http {
                "http"
            } else if lb {
                "lb"
            } else {
                return None;
            };
            Some(RttRow { vip, port, path, hist })
        })
        .collect();
    rows.sort_by_key(|r| (r.vip, r.port));
    rows
}
