//! A `std::process::Command`-shaped facade over the nook crates. Not implemented yet: see its issue.

#![forbid(unsafe_code)]

pub mod image;
