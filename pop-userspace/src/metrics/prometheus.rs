//! The Prometheus exposition, in one place. One metric per quantity in base units,
//! counters named `_total`, and what varies (a drop's reason, an rcode, an XDP action)
//! as a label: `pop_drops_total{reason="lb_no_backend"}`, never a family per counter.
//! README's "Monitoring" section lists every family.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::Result;
use pop_common::Counter;

use super::{http_route_rows, read_totals, service_rows};
use crate::{config::Config, datapath::pinned::PinnedMaps, dns::server, health::Board, status::VipStatus};

/// One family: its name, type and help, in the order the exposition lists them.
pub struct Family {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family { name, kind: "counter", help }
}
const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family { name, kind: "gauge", help }
}

/// Every family pop exposes.
pub const FAMILIES: &[Family] = &[
    counter("pop_rx_packets_total", "Frames seen by the XDP program."),
    counter("pop_rx_bytes_total", "Bytes of frames seen by the XDP program."),
    counter("pop_xdp_actions_total", "Frames by the XDP program's verdict (pass, tx, redirect, drop, aborted)."),
    counter("pop_l3_packets_total", "Frames by network protocol (ipv4, ipv6, other)."),
    counter("pop_l4_packets_total", "IP packets by transport protocol (tcp, udp, icmp, icmpv6, other)."),
    counter("pop_vlan_tagged_packets_total", "Frames carrying one or two VLAN tags."),
    counter("pop_passed_total", "Packets handed to the kernel stack, by reason (pop stats shows each reason's meaning)."),
    counter("pop_drops_total", "Packets dropped, by reason (pop stats shows each reason's meaning)."),
    counter("pop_lb_packets_total", "Packets to a load-balanced service VIP."),
    counter(
        "pop_lb_forwarded_packets_total",
        "Packets encapsulated to a backend, by how they left (tx: the receiving interface, redirect: another).",
    ),
    counter("pop_lb_flow_hits_total", "Packets of a flow found in the connection table."),
    counter("pop_lb_new_flows_total", "Flows given a backend by the Maglev table."),
    counter("pop_lb_rehashed_flows_total", "Flows moved off a removed or down backend."),
    counter(
        "pop_lb_untracked_packets_total",
        "Packets of new flows placed by the Maglev table without a connection-table entry (over pop.flow_table_rate).",
    ),
    counter("pop_lb_icmp_too_big_total", "ICMP too-big answers: packets too large once encapsulated."),
    counter("pop_lb_icmp_errors_forwarded_total", "ICMP errors about a backend's packets tunnelled to that backend."),
    counter("pop_http_segments_total", "TCP segments to an HTTP VIP seen by XDP."),
    counter("pop_http_syn_answered_total", "SYNs answered with a SYN-ACK carrying a SYN cookie."),
    counter("pop_http_responses_total", "HTTP requests answered in XDP (response and FIN in one segment)."),
    counter("pop_http_bad_requests_total", "HTTP requests answered 400 in XDP."),
    counter("pop_http_fins_total", "Client FINs answered, by when (before_request, after_answer)."),
    counter("pop_dns_xdp_queries_total", "UDP datagrams to a DNS VIP seen by XDP."),
    counter("pop_dns_responses_total", "DNS responses by path (xdp, server_udp, server_tcp) and rcode."),
    counter("pop_dns_truncated_responses_total", "DNS responses sent with TC=1 because they were over the client's size, by path."),
    counter("pop_dns_rrl_slipped_total", "Rate-limited DNS queries answered TC=1 so that real clients retry over TCP."),
    counter(
        "pop_dns_unknown_names_total",
        "DNS queries whose name the XDP name filter shows has no answers, so it costs no table lookup (a random-subdomain flood).",
    ),
    counter("pop_datapath_unnamed_total", "Data-path counters this build has no family for (by pop stats name)."),
    counter("pop_service_packets_total", "Packets steered per service."),
    counter("pop_service_bytes_total", "Bytes steered per service."),
    counter("pop_service_new_flows_total", "New flows per service."),
    counter("pop_backend_packets_total", "Packets steered per backend."),
    counter("pop_backend_bytes_total", "Bytes steered per backend."),
    counter("pop_backend_new_flows_total", "New flows per backend."),
    gauge("pop_backend_up", "1 while the backend passes its health check."),
    Family { name: "pop_backend_probe_rtt_seconds", kind: "histogram", help: "Round-trip time of successful health probes." },
    counter("pop_http_route_responses_total", "Requests answered in XDP per HTTP route."),
    counter("pop_traffic_spikes_total", "VIP rates far above their moving baseline."),
    gauge("pop_vip_announced", "1 while the VIP is announced (its address on the anycast interface)."),
    gauge("pop_dns_secondary_serial", "SOA serial of the stored copy of each secondary zone."),
    gauge("pop_dns_secondary_expiry_seconds", "Seconds until a secondary zone stops being served unless a primary confirms it (negative: expired)."),
    gauge("pop_dns_secondary_served", "1 while a secondary zone has a stored copy it serves (0: never transferred, or expired)."),
    gauge("pop_monitor_up", "1 while the [[monitor]] target's last probe got the expected answer (absent before the first probe)."),
    counter("pop_monitor_probes_total", "Probes of each [[monitor]] target, by result (ok, failed); ok / all is its availability."),
    Family { name: "pop_monitor_rtt_seconds", kind: "histogram", help: "Round-trip time of successful [[monitor]] probes." },
    Family {
        name: "pop_client_rtt_seconds",
        kind: "histogram",
        help: "Client round trips measured in the path, per VIP and port: path http (SYN-ACK to the request, by TCP timestamps) or lb (SYN to the handshake's ACK).",
    },
    counter("pop_client_rtt_measured_total", "Client round trips measured in the path."),
    counter("pop_client_rtt_unrecorded_total", "Client round trips measured but not recorded: the per-VIP histogram table was full."),
];

/// Where one data-path counter goes: its family and labels, from its `pop stats` name.
pub fn series(c: Counter) -> (&'static str, Vec<(&'static str, String)>) {
    let name = c.name();
    let l = |k: &'static str, v: &str| vec![(k, v.to_string())];
    let (group, what) = name.split_once('.').unwrap_or((name, ""));
    match (group, what) {
        ("rx", "packets") => ("pop_rx_packets_total", vec![]),
        ("rx", "bytes") => ("pop_rx_bytes_total", vec![]),
        ("action", a) => ("pop_xdp_actions_total", l("action", a)),
        ("l3", p) => ("pop_l3_packets_total", l("proto", p)),
        ("l4", p) => ("pop_l4_packets_total", l("proto", p)),
        ("vlan", "tagged") => ("pop_vlan_tagged_packets_total", vec![]),
        ("pass", r) => ("pop_passed_total", l("reason", r)),
        ("drop", r) => ("pop_drops_total", l("reason", r)),
        ("lb", "packets") => ("pop_lb_packets_total", vec![]),
        ("lb", "forwarded_tx") => ("pop_lb_forwarded_packets_total", l("via", "tx")),
        ("lb", "forwarded_redirect") => ("pop_lb_forwarded_packets_total", l("via", "redirect")),
        ("lb", "flow_hit") => ("pop_lb_flow_hits_total", vec![]),
        ("lb", "new_flow") => ("pop_lb_new_flows_total", vec![]),
        ("lb", "rehashed") => ("pop_lb_rehashed_flows_total", vec![]),
        ("lb", "untracked") => ("pop_lb_untracked_packets_total", vec![]),
        ("lb", "icmp_too_big") => ("pop_lb_icmp_too_big_total", vec![]),
        ("lb", "icmp_error_forwarded") => ("pop_lb_icmp_errors_forwarded_total", vec![]),
        ("http", "segments") => ("pop_http_segments_total", vec![]),
        ("http", "syn_answered") => ("pop_http_syn_answered_total", vec![]),
        ("http", "responses") => ("pop_http_responses_total", vec![]),
        ("http", "bad_request") => ("pop_http_bad_requests_total", vec![]),
        ("http", "fin_acked") => ("pop_http_fins_total", l("when", "before_request")),
        ("http", "fin_closed") => ("pop_http_fins_total", l("when", "after_answer")),
        ("dns", "queries") => ("pop_dns_xdp_queries_total", vec![]),
        ("rtt", "measured") => ("pop_client_rtt_measured_total", vec![]),
        ("rtt", "unrecorded") => ("pop_client_rtt_unrecorded_total", vec![]),
        ("dns", "xdp.truncated") => ("pop_dns_truncated_responses_total", l("path", "xdp")),
        ("dns", "xdp.other_rcode") => ("pop_dns_responses_total", vec![("path", "xdp".into()), ("rcode", "other".into())]),
        ("dns", "unknown_name") => ("pop_dns_unknown_names_total", vec![]),
        ("dns", "rrl.slipped") => ("pop_dns_rrl_slipped_total", vec![]),
        ("dns", "rrl.dropped") => ("pop_drops_total", l("reason", "dns_rrl")),
        ("dns", "rrl.dropped_passed") => ("pop_drops_total", l("reason", "dns_rrl_server_path")),
        ("dns", w) if w.starts_with("xdp.") => ("pop_dns_responses_total", vec![("path", "xdp".into()), ("rcode", w["xdp.".len()..].into())]),
        ("dns", w) if w.starts_with("pass.") => ("pop_passed_total", l("reason", &format!("dns_{}", &w["pass.".len()..]))),
        _ => ("pop_datapath_unnamed_total", l("counter", name)),
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Samples grouped by family, rendered in [`FAMILIES`] order with HELP and TYPE once.
#[derive(Default)]
struct Exposition(BTreeMap<&'static str, String>);

impl Exposition {
    fn sample(&mut self, family: &'static str, suffix: &str, labels: &[(&str, String)], value: impl std::fmt::Display) {
        debug_assert!(FAMILIES.iter().any(|f| f.name == family), "{family} is not in FAMILIES");
        let out = self.0.entry(family).or_default();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
        let _ = writeln!(out, "{family}{suffix}{labels} {value}");
    }

    fn render(self) -> String {
        let mut out = String::new();
        for f in FAMILIES {
            if let Some(samples) = self.0.get(f.name) {
                let _ = write!(out, "# HELP {} {}\n# TYPE {} {}\n{samples}", f.name, f.help, f.name, f.kind);
            }
        }
        out
    }
}

/// One histogram's buckets (cumulative, `le` in seconds), sum and count.
fn histogram(x: &mut Exposition, family: &'static str, labels: &[(&'static str, String)], h: &crate::health::RttHistogram) {
    let with_le = |le: String| labels.iter().cloned().chain([("le", le)]).collect::<Vec<_>>();
    for (bound, n) in crate::health::RTT_BUCKETS.iter().zip(h.buckets) {
        x.sample(family, "_bucket", &with_le(bound.to_string()), n);
    }
    x.sample(family, "_bucket", &with_le("+Inf".into()), h.count);
    x.sample(family, "_sum", labels, h.sum_seconds);
    x.sample(family, "_count", labels, h.count);
}

/// A data-path round-trip histogram: cumulative buckets with `le` in seconds (powers
/// of two of microseconds), sum and count.
fn client_rtt_histogram(x: &mut Exposition, labels: &[(&'static str, String)], h: &pop_common::RttHist) {
    let family = "pop_client_rtt_seconds";
    let with_le = |le: String| labels.iter().cloned().chain([("le", le)]).collect::<Vec<_>>();
    let mut below = 0;
    for (k, n) in h.counts.iter().enumerate() {
        below += n;
        if let Some(us) = pop_common::rtt_bucket_upper_us(k) {
            x.sample(family, "_bucket", &with_le(format!("{}", us as f64 / 1e6)), below);
        }
    }
    x.sample(family, "_bucket", &with_le("+Inf".into()), h.count());
    x.sample(family, "_sum", labels, h.sum_us as f64 / 1e6);
    x.sample(family, "_count", labels, h.count());
}

/// What the controller adds to the maps' figures.
pub struct ControllerState<'a> {
    pub health: &'a Board,
    pub monitors: &'a crate::monitor::MonitorBoard,
    pub spikes_total: u64,
    pub announced: &'a [VipStatus],
}

/// The whole exposition: data-path counters, the DNS servers' answers, services and
/// backends, probe round trips, HTTP routes, spikes and announcements.
pub fn render(config: &Config, maps: &PinnedMaps, state: &ControllerState<'_>) -> Result<String> {
    let mut x = Exposition::default();
    let totals = read_totals(&maps.counters)?;
    for &c in Counter::ALL {
        let (family, labels) = series(c);
        x.sample(family, "", &labels, totals.get(c));
    }
    for (path, by_rcode) in [("server_udp", &server::STATS.udp), ("server_tcp", &server::STATS.tcp)] {
        for (rcode, n) in server::RCODES.iter().zip(by_rcode.iter()) {
            x.sample(
                "pop_dns_responses_total",
                "",
                &[("path", path.into()), ("rcode", rcode.to_string())],
                n.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
    }
    let unseen = server::STATS.unseen_by_xdp.load(std::sync::atomic::Ordering::Relaxed);
    x.sample("pop_drops_total", "", &[("reason", "dns_server_unseen_by_xdp".into())], unseen);

    for s in service_rows(maps, config)? {
        let svc = [("service", s.name.clone())];
        x.sample("pop_service_packets_total", "", &svc, s.totals.packets);
        x.sample("pop_service_bytes_total", "", &svc, s.totals.bytes);
        x.sample("pop_service_new_flows_total", "", &svc, s.totals.new_flows);
        for b in &s.backends {
            let be = [("service", s.name.clone()), ("backend", b.address.clone())];
            x.sample("pop_backend_packets_total", "", &be, b.totals.packets);
            x.sample("pop_backend_bytes_total", "", &be, b.totals.bytes);
            x.sample("pop_backend_new_flows_total", "", &be, b.totals.new_flows);
        }
    }
    for b in state.health.snapshot() {
        let be = [("service", b.service.clone()), ("backend", b.address.to_string())];
        x.sample("pop_backend_up", "", &be, (b.state == crate::health::State::Up) as u8);
    }
    for (service, address, h) in state.health.rtt_histograms() {
        histogram(&mut x, "pop_backend_probe_rtt_seconds", &[("service", service), ("backend", address.to_string())], &h);
    }
    for r in super::client_rtt_rows(maps, config) {
        client_rtt_histogram(&mut x, &[("vip", r.vip.to_string()), ("port", r.port.to_string()), ("path", r.path.into())], &r.hist);
    }
    for (route, n) in http_route_rows(maps, config)? {
        x.sample("pop_http_route_responses_total", "", &[("route", route)], n);
    }
    x.sample("pop_traffic_spikes_total", "", &[], state.spikes_total);
    for v in state.announced {
        x.sample("pop_vip_announced", "", &[("vip", v.vip.to_string())], v.announced as u8);
    }
    let now = std::time::SystemTime::now();
    for (zone, stored) in crate::dns::secondary::states() {
        let z = [("zone", zone)];
        x.sample("pop_dns_secondary_served", "", &z, stored.is_some() as u8);
        if let Some(s) = stored {
            x.sample("pop_dns_secondary_serial", "", &z, s.serial);
            let left = match s.expires_at.duration_since(now) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            x.sample("pop_dns_secondary_expiry_seconds", "", &z, format!("{left:.3}"));
        }
    }
    for m in state.monitors.snapshot() {
        let id = [("monitor", m.name.clone()), ("target", m.target.to_string())];
        if let Some(up) = m.up {
            x.sample("pop_monitor_up", "", &id, up as u8);
        }
        for (result, n) in [("ok", m.probes_ok), ("failed", m.probes_failed)] {
            x.sample("pop_monitor_probes_total", "", &[id[0].clone(), id[1].clone(), ("result", result.into())], n);
        }
    }
    for (name, target, h) in state.monitors.rtt_histograms() {
        histogram(&mut x, "pop_monitor_rtt_seconds", &[("monitor", name), ("target", target.to_string())], &h);
    }
    Ok(x.render())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    #[test]
    fn every_counter_has_a_family_and_one_series_of_its_own() {
        let mut seen = BTreeSet::new();
        let mut label_keys: HashMap<&str, Vec<&str>> = HashMap::new();
        for &c in Counter::ALL {
            let (family, labels) = series(c);
            assert_ne!(family, "pop_datapath_unnamed_total", "{} has no Prometheus family", c.name());
            assert!(FAMILIES.iter().any(|f| f.name == family && f.kind == "counter"), "{family}");
            assert!(family.ends_with("_total"));
            let keys: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
            // One family, one set of label names.
            assert_eq!(label_keys.entry(family).or_insert_with(|| keys.clone()), &keys, "{family} has mixed labels");
            assert!(seen.insert(format!("{family}{labels:?}")), "{} collides with another counter", c.name());
        }
    }

    #[test]
    fn family_names_follow_the_conventions() {
        let mut names = BTreeSet::new();
        for f in FAMILIES {
            assert!(names.insert(f.name), "{} twice", f.name);
            assert!(f.name.starts_with("pop_") && f.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{}", f.name);
            assert_eq!(f.kind == "counter", f.name.ends_with("_total"), "{}", f.name);
            assert!(!f.name.contains("_ms"), "{}: base units", f.name);
        }
    }

    /// The metric names `text` mentions (pop_ and then lowercase letters, digits and `_`).
    fn names_in(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(i) = rest.find("pop_") {
            let name: String = rest[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            rest = &rest[i + name.len()..];
            out.insert(name);
        }
        out
    }

    #[test]
    fn shipped_alerts_and_dashboard_name_only_exposed_metrics() {
        let exposed = |n: &str| {
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| n.strip_suffix(s)).unwrap_or(n);
            FAMILIES.iter().any(|f| f.name == n || (f.kind == "histogram" && f.name == base))
        };
        for (file, text) in [
            ("deploy/prometheus/pop-alerts.yml", include_str!("../../../deploy/prometheus/pop-alerts.yml")),
            ("deploy/grafana/pop-dashboard.json", include_str!("../../../deploy/grafana/pop-dashboard.json")),
        ] {
            let names = names_in(text);
            assert!(names.len() >= 5, "{file}: {names:?}");
            for n in names {
                assert!(exposed(&n), "{file} names {n}, which pop does not expose");
            }
        }
    }

    #[test]
    fn samples_are_grouped_under_one_help_and_type_and_escaped() {
        let mut x = Exposition::default();
        x.sample("pop_drops_total", "", &[("reason", "a".into())], 1);
        x.sample("pop_rx_packets_total", "", &[], 5);
        x.sample("pop_drops_total", "", &[("reason", "b\"c".into())], 2);
        let text = x.render();
        assert_eq!(text.matches("# TYPE pop_drops_total counter").count(), 1);
        assert!(text.find("pop_rx_packets_total 5").unwrap() < text.find("pop_drops_total{reason=\"a\"} 1").unwrap(), "{text}");
        assert!(text.contains("pop_drops_total{reason=\"b\\\"c\"} 2\n"), "{text}");
    }
}
