//! # pop: a Point-of-Presence edge data plane
//!
//! ## Layout
//! - [`config`]: `pop.toml` parsing and validation (errors as `file:line: message`).
//! - [`loader`]: loading the XDP object, attaching it to interfaces, pinning program,
//!   links and maps on bpffs, detaching.
//! - [`metrics`]: reading the per-CPU data-path counters and rendering them.
//! - [`daemon`]: `pop run`: attach, fill the maps, bridge eBPF logs, run until a signal.
//! - [`cli`]: the command line (`run`, `check`, `stats`, `detach`).
//!
//! The data path itself is in `pop-ebpf/`; the types both sides share are in
//! `pop-common/`.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod loader;
pub mod metrics;
