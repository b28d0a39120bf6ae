//! Keyhole: one domain for every file. CloudFront-format signed upload and download links, the
//! API that mints them and the edge that checks them.
//!
//! The binary's subcommands live in [`cli`]; signing itself is in the `keyhole-sign` crate.
#![forbid(unsafe_code)]

pub mod cli;
pub mod keyfile;
