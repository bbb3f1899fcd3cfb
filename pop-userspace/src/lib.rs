//! # pop: a Point-of-Presence edge data plane
//!
//! ## The flow
//! config + zones → [`config`] validates → [`controller::apply`] plans, stages (off to
//! the side: DNS sockets, next table generations, idle Maglev halves) and commits with
//! atomic flips into the BPF maps (VIPs, DNS answers, Maglev tables, backend state,
//! HTTP responses), or rolls back → XDP per interface answers or steers each packet →
//! per-CPU counters → [`metrics`], `pop stats/top/status`. [`health`] probes →
//! backend state → [`anycast`] announces a VIP (its address on the anycast interface)
//! only while it is healthy and the XDP program is attached.
//!
//! ## Layout
//! - [`config`]: `pop.toml` parsing and validation (errors as `file:line: message`),
//!   one file per section; it imports no feature module but the pure helpers below.
//! - [`addr`]: addresses as the maps key them (IPv4-mapped), converted in one place.
//! - [`metrics`]: reading the per-CPU data-path counters and rendering them.
//! - [`dns`]: zones (parsed by hickory), the authoritative answer engine, its UDP/TCP
//!   server, the compiled table the XDP fast path answers from, and secondary zones
//!   (AXFR, IXFR, NOTIFY, TSIG, catalog zones).
//! - [`http`]: `[[http]]` sites: [`http::reply`] renders and checks each response
//!   (pure); the module loads the XDP route table.
//! - [`lb`]: services and backends: Maglev tables, backend ids, `pop decap`.
//! - [`health`]: probing backends (tcp/http/dns), rise/fall, RTT; drain state.
//! - [`monitor`]: `[[monitor]]` peer checks (other PoPs, any endpoint): availability
//!   and round trips for `pop status` and Prometheus.
//! - [`controller`]: `pop run`: attach, the run loop, reloads (staged off the loop);
//!   [`controller::apply`], the one transactional apply; [`controller::control`], the
//!   control socket and the one place every request is answered;
//!   [`controller::run_state`], the run lock and the status file `pop reload` waits on;
//!   [`controller::gate`], connection caps and timeouts of the metrics and control
//!   listeners.
//! - [`datapath`]: the controller's side of the maps: [`datapath::loader`] (loading the
//!   XDP object, attaching, pinning, detaching), [`datapath::map_batch`] (batch ops for
//!   millions of DNS entries), [`datapath::vip`] (the VIP table), [`datapath::undo`]
//!   (map writes that remember what they replaced), [`datapath::pinned`] (read handles
//!   of the counters' pinned maps).
//! - [`anycast`]: announcing VIPs (addresses on `lo` for BGP) only while healthy.
//! - [`analysis`]: per-VIP rates, top client prefixes, spike detection.
//! - [`status`]: the typed `pop status` report, shared by the controller and the CLI.
//! - [`cli`]: the command line: its definition and dispatch, and one file per command
//!   that renders something (`stats`, `top`, `status`).
//! - [`manual`]: man pages and shell completions generated from the CLI definition.
//! - [`systemd`]: readiness notification to systemd (`Type=notify`).
//!
//! The data path itself is in `pop-ebpf/`; the types both sides share are in
//! `pop-common/`.

pub mod addr;
pub mod analysis;
pub mod anycast;
pub mod cli;
pub mod config;
pub mod controller;
pub mod datapath;
pub mod dns;
pub mod health;
pub mod http;
pub mod lb;
pub mod manual;
pub mod metrics;
pub mod monitor;
pub mod status;
pub mod systemd;
