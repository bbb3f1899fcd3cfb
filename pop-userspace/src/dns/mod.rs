//! DNS: zones, the authoritative answer engine, its server, the XDP answer table.
//!
//! * [`zone`]: master-file loading/validation and name-tree lookups;
//! * [`answer`]: [`Responder::respond`], query bytes → response bytes;
//! * [`fastpath`]: the precomputed responses the XDP program may send itself;
//! * [`server`]: UDP/TCP sockets around the responder;
//! * [`runtime`]: the servers and tables of the configured blocks, and reloads;
//! * [`table`]: writing the fast path into the BPF maps, one generation at a time.

// Skipped by rustfmt until the rewrites of issues 13 and 14 land (formatting them
// now would only conflict with those branches).
#[rustfmt::skip]
pub mod answer;
#[rustfmt::skip]
mod dnssec;
#[rustfmt::skip]
mod dnssec_text;
#[rustfmt::skip]
pub mod fastpath;
pub mod runtime;
#[rustfmt::skip]
pub mod server;
#[rustfmt::skip]
pub mod table;
#[rustfmt::skip]
#[allow(clippy::collapsible_if)] // until issue 14's rewrite lands
pub mod zone;

pub use answer::{Responder, Transport};
pub use fastpath::{FastEntry, FastPath, FastSink, FastZone};
pub use server::{Listeners, bind_all, load_responder, serve, serve_bound};
pub use zone::{Zone, ZoneError, ZoneErrors, ZoneSet, load_zone};
