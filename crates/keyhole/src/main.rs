//! The `keyhole` command: parses arguments and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = keyhole::cli::Cli::parse();
    keyhole::cli::run(cli)
}
