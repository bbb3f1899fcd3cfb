//! DNS: zones, the authoritative answer engine, its server, the XDP answer table.
//!
//! * [`zone`]: master-file loading/validation and name-tree lookups;
//! * [`answer`]: [`Responder::respond`], query bytes → response bytes;
//! * [`fastpath`]: the precomputed responses the XDP program may send itself;
//! * [`server`]: UDP/TCP sockets around the responder;
//! * [`runtime`]: the servers and tables of the configured blocks, and reloads;
//! * [`table`]: writing the fast path into the BPF maps, one generation at a time;
//! * [`name_filter`]: the bitmap that spares the data path lookups of names not in the table;
//! * [`secondary`]: zones transferred from primaries (AXFR, and [`ixfr`] differences), NOTIFY, expiry;
//! * [`catalog`]: catalog zones (RFC 9432): their members become secondaries;
//! * [`tsig`]: signing the secondary's requests and checking the answers.

pub mod answer;
pub mod catalog;
mod dnssec;
mod dnssec_text;
pub mod fastpath;
pub mod ixfr;
mod name_filter;
pub mod runtime;
pub mod secondary;
pub mod server;
pub mod table;
pub mod tsig;
#[allow(clippy::collapsible_if)] // until issue 14's rewrite lands
pub mod zone;

pub use answer::{Responder, Transport};
pub use fastpath::{FastEntry, FastPath, FastSink, FastZone};
pub use server::{Listeners, bind_all, load_responder, serve, serve_bound};
pub use zone::{Zone, ZoneError, ZoneErrors, ZoneSet, load_zone};
