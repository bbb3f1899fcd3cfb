//! The controller's side of the data path: what it writes into the pinned maps and how
//! it takes writes back.
//!
//! * [`loader`]: loading the XDP object, attaching it, pinning program, links and maps.
//! * [`map_batch`]: BPF map batch operations.
//! * [`vip`]: the VIP table, synced from the config.
//! * [`pinned`]: typed handles of the pinned maps the CLI and Prometheus read, opened once.
//! * [`undo`]: map writes that record what they replaced, so a failed apply restores
//!   exactly what was live.

pub mod loader;
pub mod map_batch;
pub mod pinned;
pub mod undo;
pub mod vip;
