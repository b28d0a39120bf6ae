//! `keyhole upload`, `download`, `ls` and `rm`: the commands that talk to a running server. The
//! work is done by [`crate::client`]; this file holds the arguments and the output.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use futures_util::stream::StreamExt;

use super::CliError;
use crate::client::api::{ApiClient, FileInfo};
use crate::client::download::{download, DownloadOptions};
use crate::client::progress::Ui;
use crate::client::resume::StateDir;
use crate::client::upload::{UploadOptions, Uploader};
use crate::client::Backoff;

/// Test hook: milliseconds to pause before each part of a multipart upload, so integration
/// tests can interrupt an upload half-way. Not meant for normal use.
const TEST_PART_DELAY_ENV: &str = "KEYHOLE_TEST_PART_DELAY_MS";

/// Which server to talk to and how to authenticate. Its `Debug` output leaves the token out.
#[derive(Args)]
pub struct ServerArgs {
    /// The Keyhole server (where its API answers), e.g. https://files.example.com.
    #[arg(
        long,
        env = "KEYHOLE_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL",
        value_parser = parse_server
    )]
    server: String,
    /// API token, sent as `Authorization: Bearer TOKEN`; needed when the server has tokens
    /// configured (`keyhole tokens generate`). Prefer the environment variable: other users can
    /// see command lines.
    #[arg(
        long,
        env = "KEYHOLE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

impl std::fmt::Debug for ServerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerArgs")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Options of the commands that move bytes.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Retries of a failed transfer (a part, a whole file, or the rest of a download), waiting
    /// longer each time (exponential backoff from 0.5 s up to 20 s).
    #[arg(long, value_name = "N", default_value_t = 5)]
    retries: u32,
    /// No progress bars and no status lines; errors are still printed. Bars are also left out
    /// when standard error is not a terminal.
    #[arg(long, short)]
    quiet: bool,
}

/// Arguments of `keyhole upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Files to upload. Each one's file id is printed on standard output, one per line, in the
    /// order given.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Transfers in flight at once (parts of large files, whole small files), across all files.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// Content type to declare for every file, e.g. application/pdf; downloads are served with
    /// it. Default: guessed from each file's extension (application/octet-stream if unknown).
    #[arg(long, value_name = "TYPE", value_parser = parse_content_type)]
    content_type: Option<String>,
    #[command(flatten)]
    transfer: TransferArgs,
}

/// Arguments of `keyhole download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The file's id, as `keyhole upload` printed it or `keyhole ls` lists it.
    #[arg(value_name = "FILE_ID")]
    file_id: String,
    /// Where to write: a file path in an existing directory, or a directory to put the file in
    /// under its own name (an existing one, or a path ending in /, created if missing). Default:
    /// the file's name in the current directory. The path is printed on standard output when
    /// done.
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace PATH if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    transfer: TransferArgs,
}

/// Arguments of `keyhole ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the files as a JSON array (the API's fields) instead of a table.
    #[arg(long)]
    json: bool,
    /// Show at most N files, newest first. Default: all.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
}

/// Arguments of `keyhole rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Ids of the files to delete (object and record). Pending uploads are aborted.
    #[arg(required = true, value_name = "FILE_ID")]
    file_ids: Vec<String>,
}

fn parse_server(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    match url.split_once("://") {
        Some(("http" | "https", rest))
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.contains(['?', '#'])
                && !rest.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(url.to_owned())
        }
        _ => Err(format!(
            "expected http://HOST[:PORT] or https://HOST[:PORT], got {text:?}"
        )),
    }
}

fn parse_content_type(text: &str) -> Result<String, String> {
    let essence = text.split(';').next().unwrap_or("").trim();
    match essence.split_once('/') {
        Some((a, b))
            if !a.is_empty()
                && !b.is_empty()
                && !text.chars().any(char::is_control)
                && !essence.contains(char::is_whitespace) =>
        {
            Ok(text.trim().to_owned())
        }
        _ => Err(format!(
            "expected a MIME type such as application/pdf, got {text:?}"
        )),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn backoff(retries: u32) -> Backoff {
    Backoff {
        retries,
        ..Backoff::default()
    }
}

fn api(server: &ServerArgs, retries: u32) -> Result<ApiClient, CliError> {
    Ok(ApiClient::new(
        &server.server,
        server.token.clone(),
        backoff(retries),
    )?)
}

fn test_part_delay() -> Option<Duration> {
    std::env::var(TEST_PART_DELAY_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

/// `keyhole upload`
pub(super) fn upload(args: UploadArgs) -> Result<ExitCode, CliError> {
    runtime()?.block_on(async move {
        let ui = Ui::new(args.transfer.quiet);
        let api = api(&args.server, args.transfer.retries)?;
        let config = api.config().await?;
        let options = UploadOptions {
            parallel: usize::from(args.parallel),
            content_type: args.content_type.clone(),
            backoff: backoff(args.transfer.retries),
            part_delay: test_part_delay(),
        };
        let uploader = Uploader::new(api, config, options, StateDir::from_env(), ui.clone());
        let uploader = &uploader;
        // Files start in order, up to --parallel at once (their parts share the same slots);
        // ids are printed in the order the files were given.
        let mut results = futures_util::stream::iter(&args.files)
            .map(|path| async move { (path, uploader.upload(path).await) })
            .buffered(usize::from(args.parallel));
        let mut failed = 0;
        while let Some((path, result)) = results.next().await {
            match result {
                Ok(id) => ui.suspend(|| {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{id}").and_then(|()| out.flush())
                })?,
                Err(e) => {
                    failed += 1;
                    ui.error(format!("{}: {e}", path.display()));
                }
            }
        }
        if failed > 0 {
            if args.files.len() > 1 {
                ui.error(format!("{failed} of {} uploads failed", args.files.len()));
            }
            return Ok(ExitCode::from(1));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `keyhole download`
pub(super) fn download_file(args: DownloadArgs) -> Result<ExitCode, CliError> {
    runtime()?.block_on(async move {
        let ui = Ui::new(args.transfer.quiet);
        let api = api(&args.server, args.transfer.retries)?;
        let states = StateDir::from_env();
        let options = DownloadOptions {
            output: args.output.clone(),
            force: args.force,
            backoff: backoff(args.transfer.retries),
        };
        let path = download(&api, &ui, states.as_ref(), &args.file_id, &options).await?;
        ui.suspend(|| println!("{}", path.display()));
        Ok(ExitCode::SUCCESS)
    })
}

/// `keyhole ls`
pub(super) fn ls(args: LsArgs) -> Result<ExitCode, CliError> {
    runtime()?.block_on(async move {
        let api = api(&args.server, Backoff::default().retries)?;
        let limit = args.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
        let mut files: Vec<serde_json::Value> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let want = limit.map_or(1000, |l| l.saturating_sub(files.len()).min(1000));
            if want == 0 {
                break;
            }
            let page = api.list_page(want, cursor.as_deref()).await?;
            files.extend(page.files);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if let Some(l) = limit {
            files.truncate(l);
        }
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&files)?)?;
        } else if files.is_empty() {
            eprintln!("keyhole: no files");
        } else {
            let infos = files
                .into_iter()
                .map(serde_json::from_value::<FileInfo>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the server listed files in an unexpected shape: {e}"))?;
            write!(out, "{}", table(&infos))?;
        }
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The `ls` table: id, name, size (binary units), status, expiry.
fn table(files: &[FileInfo]) -> String {
    const NAME_MAX: usize = 40;
    let rows: Vec<[String; 5]> = files
        .iter()
        .map(|f| {
            [
                f.file_id.clone(),
                shorten(&f.filename, NAME_MAX),
                f.size
                    .map(|s| indicatif::HumanBytes(s).to_string())
                    .unwrap_or_else(|| "-".to_owned()),
                f.status.clone(),
                f.expires_at.clone().unwrap_or_else(|| "never".to_owned()),
            ]
        })
        .collect();
    let header = ["ID", "NAME", "SIZE", "STATUS", "EXPIRES"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                // Sizes right-aligned, everything else left.
                if i == 2 {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// `keyhole rm`
pub(super) fn rm(args: RmArgs) -> Result<ExitCode, CliError> {
    runtime()?.block_on(async move {
        let api = api(&args.server, Backoff::default().retries)?;
        let mut failed = 0;
        for id in &args.file_ids {
            match api.delete(id).await {
                Ok(()) => eprintln!("keyhole: deleted {id}"),
                // Unreachable server or refused token: the same for every id, so stop here.
                Err(
                    e @ (crate::client::ClientError::Unreachable { .. }
                    | crate::client::ClientError::TokenMissing { .. }
                    | crate::client::ClientError::TokenRefused { .. }),
                ) => return Err(e.into()),
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e}");
                }
            }
        }
        Ok(if failed > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bearer token is a credential: the parsed command line's debug output never shows it,
    /// whichever command carries it.
    #[test]
    fn debug_output_leaves_the_token_out() {
        use clap::Parser;
        let secret = "kh_s3cr3t-t0ken";
        for args in [
            vec!["upload", "--token", secret, "a.txt"],
            vec!["download", "--token", secret, "id_a.txt"],
            vec!["ls", "--token", secret],
            vec!["rm", "--token", secret, "id_a.txt"],
        ] {
            let cli =
                crate::cli::Cli::try_parse_from(std::iter::once("keyhole").chain(args)).unwrap();
            let shown = format!("{cli:?} {cli:#?}");
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            parse_server("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            parse_server("https://files.example.com").unwrap(),
            "https://files.example.com"
        );
        assert!(parse_server("127.0.0.1:8080").is_err());
        assert!(parse_server("ftp://x").is_err());
        assert!(parse_server("http://").is_err());
        assert!(parse_server("http://x?y").is_err());
    }

    #[test]
    fn content_types() {
        assert!(parse_content_type("application/pdf").is_ok());
        assert!(parse_content_type("text/plain; charset=utf-8").is_ok());
        assert!(parse_content_type("pdf").is_err());
        assert!(parse_content_type("text/ plain").is_err());
    }

    #[test]
    fn table_aligns_columns() {
        let f = |id: &str, name: &str, size| FileInfo {
            file_id: id.into(),
            filename: name.into(),
            content_type: "a/b".into(),
            status: "uploaded".into(),
            size,
            sha256: None,
            expires_at: None,
        };
        let text = table(&[f("k1_a", "a", Some(2048)), f("k2_long", "long name", None)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID       NAME           SIZE  STATUS    EXPIRES");
        assert_eq!(lines[1], "k1_a     a          2.00 KiB  uploaded  never");
        assert_eq!(lines[2], "k2_long  long name         -  uploaded  never");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
