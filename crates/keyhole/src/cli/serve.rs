//! `keyhole serve` and `keyhole tokens`.

use std::process::ExitCode;

use clap::Subcommand;

use super::CliError;
use crate::config::ServeArgs;
use crate::{auth, server, telemetry};

pub(super) fn run(args: ServeArgs) -> Result<ExitCode, CliError> {
    let config = args.resolve()?;
    let _log_guard = telemetry::init_logging(config.log_format, telemetry::SERVE_LOG_LINGER);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let public = config.public_origin().to_owned();
        let running = server::start(config).await?;
        if running.generated_key {
            eprintln!(
                "keyhole: first start: generated an RSA-2048 key pair in {}",
                data_dir.join("keys").display()
            );
        }
        eprintln!("keyhole: listening on http://{}", running.addr);
        eprintln!("keyhole: public URL   {public}");
        eprintln!("keyhole: key pair id  {}", running.key_pair_id);
        eprintln!("keyhole: data dir     {}", data_dir.display());
        tracing::info!(listen = %running.addr, public_url = %public, key_pair_id = %running.key_pair_id, workers = running.worker_count, "keyhole serving");
        wait_for_signal().await;
        tracing::info!("shutting down; waiting for transfers in flight");
        // A second signal (Ctrl-C again) stops waiting: the transfers still running are cut
        // off, as when the grace ends. Uploads cut off leave nothing visible (nothing is
        // committed before its body has arrived and been checked).
        tokio::select! {
            () = running.shutdown() => {
                tracing::info!("stopped");
                Ok::<_, CliError>(ExitCode::SUCCESS)
            }
            () = wait_for_signal() => {
                tracing::warn!("second signal: stopping without waiting for transfers in flight");
                Ok(ExitCode::from(130))
            }
        }
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// API token management.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a random API token for a principal. Prints the token (give it to the client; it is
    /// not stored) and the hash to configure (`--token PRINCIPAL:SHA256` or `[[tokens]]`).
    Generate {
        /// Who the token acts as; files belong to their principal.
        #[arg(long, value_parser = parse_principal)]
        principal: String,
    },
}

/// A principal that every form of the printed configuration can carry: also usable as
/// `--token PRINCIPAL:SHA256` and in the comma-separated `KEYHOLE_TOKENS`.
fn parse_principal(text: &str) -> Result<String, String> {
    if crate::config::valid_principal(text) && !text.contains([':', ',']) {
        Ok(text.to_owned())
    } else {
        Err("the principal must be 1 to 128 printable characters, without ':' or ',' and without whitespace at either end".into())
    }
}

/// `word` as one word for a POSIX shell: as it is when it has nothing a shell would read,
/// else in single quotes (each `'` in it written `'\''`).
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:/@%+=,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

pub(super) fn tokens(cmd: TokensCommand) -> Result<ExitCode, CliError> {
    match cmd {
        TokensCommand::Generate { principal } => {
            let (token, hash) = auth::generate_token()?;
            // A JSON string is a TOML basic string too: quotes and backslashes escaped.
            let quoted = serde_json::to_string(&principal)
                .map_err(|e| CliError::from(format!("cannot quote the principal: {e}")))?;
            println!("token:   {token}");
            println!(
                "config:  --token {}",
                shell_word(&format!("{principal}:{hash}"))
            );
            println!(
                "toml:    [[tokens]]\n         principal = {quoted}\n         sha256 = \"{hash}\""
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
