//! Anycast VIP announcement.
//!
//! A PoP announces a VIP by putting the address on a local interface (for the
//! routing daemon to pick up) and withdraws it by removing the address. The address
//! is a lease (a finite kernel lifetime the controller keeps renewing), so an
//! announcement lapses by itself when no controller is alive to renew it.
//!
//! - [`netlink`]: add, remove and list VIP addresses on an interface through
//!   rtnetlink (never by shelling out to `ip`).
//! - [`announcer`]: the per-VIP-group state machine that decides *when* to
//!   announce or withdraw, from health observations, with rise/fall counting,
//!   a minimum hold time against flapping, and maintenance.

pub mod announcer;
pub mod netlink;
pub mod runtime;
