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
//! - [`config`]: `pop.toml` parsing and validation (errors as `file:line: message`).
//! - [`loader`]: loading the XDP object, attaching it to interfaces, pinning program,
//!   links and maps on bpffs, detaching.
//! - [`map_batch`]: BPF map batch operations (millions of DNS entries per reload).
//! - [`vip`]: the VIP table, synced from the config.
//! - [`metrics`]: reading the per-CPU data-path counters and rendering them.
//! - [`dns`]: zones (parsed by hickory), the authoritative answer engine, its UDP/TCP
//!   server, and the compiled table the XDP fast path answers from.
//! - [`http`]: `[[http]]` sites: rendering responses and loading the XDP route table.
//! - [`lb`]: services and backends: Maglev tables, backend ids, `pop decap`.
//! - [`health`]: probing backends (tcp/http/dns), rise/fall, RTT; drain state.
//! - [`control`]: the control socket the CLI uses to talk to `pop run`.
//! - [`controller`]: `pop run`: attach, the run loop, reloads (staged off the loop);
//!   [`controller::apply`], the one transactional apply; [`controller::gate`],
//!   connection caps and timeouts of the metrics and control listeners.
//! - [`datapath`]: map writes that remember what they replaced ([`datapath::undo`]).
//! - [`anycast`]: announcing VIPs (addresses on `lo` for BGP) only while healthy.
//! - [`analysis`]: per-VIP rates, top client prefixes, spike detection.
//! - [`cli`]: the command line (`run`, `check`, `stats`, `detach`).
//! - [`manual`]: man pages and shell completions generated from the CLI definition.
//! - [`systemd`]: readiness notification to systemd (`Type=notify`).
//!
//! The data path itself is in `pop-ebpf/`; the types both sides share are in
//! `pop-common/`.

pub mod analysis;
pub mod anycast;
pub mod cli;
pub mod config;
pub mod control;
pub mod controller;
pub mod datapath;
pub mod dns;
pub mod health;
pub mod http;
pub mod lb;
pub mod loader;
pub mod manual;
pub mod map_batch;
pub mod metrics;
pub mod systemd;
pub mod vip;
