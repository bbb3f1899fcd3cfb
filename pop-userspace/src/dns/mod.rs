//! DNS: zones, the authoritative answer engine, its server, the XDP answer table.
//!
//! * [`zone`]: master-file loading/validation and name-tree lookups;
//! * [`answer`]: [`Responder::respond`], query bytes → response bytes;
//! * [`fastpath`]: the precomputed responses the XDP program may send itself;
//! * [`server`]: UDP/TCP sockets around the responder.

pub mod answer;
pub mod fastpath;
pub mod server;
pub mod zone;

pub use answer::{Responder, Transport};
pub use fastpath::{FastEntry, FastPath, FastZone};
pub use server::{load_responder, serve};
pub use zone::{Zone, ZoneError, ZoneErrors, ZoneSet, load_zone};
