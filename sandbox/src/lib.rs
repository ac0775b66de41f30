//! A `std::process::Command`-shaped facade over the nook crates. Not implemented yet: see its issue.
//!
//! - [`probe()`]: what this host can give a sandbox, and why not ([`probe`](mod@probe) module docs).
//! - [`cleanup()`]: owner records in a state directory, and removing what dead owners left
//!   ([`state`] module docs).

#![forbid(unsafe_code)]

pub mod image;
pub mod probe;
pub use probe::{HostReport, Requirement, Support, Unmet, Unsupported, probe};
pub mod state;
pub use state::{CleanupReport, StateDir, cleanup};
