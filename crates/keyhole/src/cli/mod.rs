//! The `keyhole` command line: argument definitions and dispatch.
//!
//! Exit codes: 0 success, 1 rejected or failed (the reason is printed), 2 usage error.

mod client;
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
    /// Upload files to a running server, with progress bars.
    ///
    /// Each file's SHA-256 is computed first and declared, so the server refuses bytes that do
    /// not match. Files at or above the server's multipart threshold go up in parts, several at
    /// a time (--parallel); failed parts are retried with exponential backoff. An interrupted
    /// multipart upload resumes when the same command is run again: only the missing parts are
    /// sent (state in $XDG_CACHE_HOME/keyhole/uploads, else ~/.cache/keyhole/uploads). Prints
    /// each file's id on standard output, one per line.
    Upload(client::UploadArgs),
    /// Download a file from a running server, with a progress bar.
    ///
    /// The bytes go to PATH.part and are renamed to PATH once complete and checked against the
    /// SHA-256 the server lists. An interrupted download continues from PATH.part when the same
    /// command is run again (Range requests, with If-Range so bytes of two versions never mix).
    Download(client::DownloadArgs),
    /// List your files on a running server, newest first: id, name, size, status, expiry.
    Ls(client::LsArgs),
    /// Delete files on a running server (object and record); pending uploads are aborted.
    Rm(client::RmArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Tokens(cmd) => serve::tokens(cmd),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Upload(args) => client::upload(args),
        Command::Download(args) => client::download_file(args),
        Command::Ls(args) => client::ls(args),
        Command::Rm(args) => client::rm(args),
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
