//! Types shared by the XDP program (`pop-ebpf`) and the controller (`pop-userspace`).
//!
//! Everything here is `#[repr(C)]` plain data: the same bytes are written by one side
//! and read by the other through BPF maps. Changing a layout means bumping
//! [`MAP_LAYOUT_VERSION`], so a new controller never reads maps pinned by an old one.
#![cfg_attr(not(test), no_std)]

/// Version of every pinned map's key/value layout. Pinned maps live under
/// `<bpffs dir>/maps-v<N>/`, so an incompatible upgrade starts from fresh maps
/// instead of misreading old ones.
pub const MAP_LAYOUT_VERSION: u32 = 5;

// One module per concern; everything is re-exported here, so `pop_common::X` names
// every shared item whichever file it lives in.
mod counters;
mod dns;
mod http;
mod latency;
mod lb;
mod maps;
mod net;
mod rrl;
mod siphash;
#[cfg(feature = "user")]
mod user;
mod vip;

pub use counters::*;
pub use dns::*;
pub use http::*;
pub use latency::*;
pub use lb::*;
pub use maps::*;
pub use net::*;
pub use rrl::*;
pub use siphash::*;
pub use vip::*;
