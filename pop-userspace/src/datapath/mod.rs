//! The controller's side of the data path: what it writes into the pinned maps and how
//! it takes writes back.
//!
//! * [`undo`]: map writes that record what they replaced, so a failed apply restores
//!   exactly what was live.

pub mod undo;
