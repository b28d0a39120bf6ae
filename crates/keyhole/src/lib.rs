//! Keyhole: one domain for every file. CloudFront-format signed upload and download links, the
//! API that mints them and the edge that checks them.
//!
//! The binary's subcommands live in [`cli`]; signing itself is in the `keyhole-sign` crate.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod direct;
pub mod edge;
pub mod http;
pub mod ids;
pub mod jwt;
pub mod keyfile;
pub mod keys;
pub mod links;
pub mod server;
pub mod signq;
pub mod state;
pub mod store;
pub mod sweeper;
pub mod telemetry;
pub mod ui;
pub mod workers;
