//! The `keyhole` command line: argument definitions and dispatch.
//!
//! Exit codes: 0 success, 1 rejected or failed (the reason is printed), 2 usage error.

mod keys;
mod serve;
mod sign;
mod verify;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

/// Keyhole: one domain for every file, with CloudFront-format signed upload and download links.
#[derive(Debug, Parser)]
#[command(name = "keyhole", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the file gateway: the API that mints links, the edge that checks them and moves the
    /// bytes, on local disk and SQLite. The first start generates a key pair.
    Serve(Box<crate::config::ServeArgs>),
    /// Manage API tokens.
    #[command(subcommand)]
    Tokens(serve::TokensCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Sign a URL (or print signed cookies) in CloudFront's format.
    Sign(sign::SignArgs),
    /// Check a signed URL (or cookies) as CloudFront would: prints `valid` (exit 0) or the
    /// CloudFront error code and the precise reason (exit 1).
    Verify(verify::VerifyArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Tokens(cmd) => serve::tokens(cmd),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Errors of the CLI's own commands; printed as `error: ...`.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;
