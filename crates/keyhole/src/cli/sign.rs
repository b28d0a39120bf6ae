//! `keyhole sign`

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};
use keyhole_sign::{check_key_pair_id, HashAlgorithm, Ipv4Cidr, Policy, Signer, MAX_EPOCH};

use super::{now_epoch, CliError};
use crate::keyfile;

/// Arguments of `keyhole sign`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("expiry").required(true).args(["expires", "ttl"])))]
#[command(group(ArgGroup::new("input").required(true).args(["url", "stdin"])))]
pub struct SignArgs {
    /// Private key PEM (PKCS#1, PKCS#8 or SEC1; RSA or ECDSA P-256).
    #[arg(long, value_name = "PRIVATE.pem")]
    key: PathBuf,
    /// The CloudFront public key id (Key-Pair-Id) the links carry.
    #[arg(long, value_name = "ID", value_parser = parse_key_pair_id)]
    key_pair_id: String,
    /// Expiry as epoch seconds (not milliseconds).
    #[arg(long, value_name = "EPOCH", value_parser = parse_epoch)]
    expires: Option<u64>,
    /// Expiry as a duration from now, e.g. 15m, 1h, 7d (at least 1s).
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    ttl: Option<Duration>,
    /// Refuse the link until after this time (epoch seconds). Makes the policy custom.
    #[arg(long, value_name = "EPOCH", value_parser = parse_epoch)]
    not_before: Option<u64>,
    /// Only clients in this IPv4 CIDR (or single address) may use the link. Makes it custom.
    #[arg(long, value_name = "CIDR", value_parser = parse_ip)]
    ip: Option<String>,
    /// Sign a resource pattern (`*` any run of characters, `?` one character) instead of the URL
    /// itself, so the signature covers many URLs. Makes the policy custom.
    #[arg(long, value_name = "PATTERN", value_parser = parse_resource)]
    resource: Option<String>,
    /// Digest: sha1 (CloudFront's default for RSA) or sha256 (adds Hash-Algorithm=SHA256; the
    /// default for ECDSA keys).
    #[arg(long, value_enum)]
    hash: Option<Hash>,
    /// Print the signed cookies (one NAME=VALUE per line) instead of a signed URL.
    #[arg(long)]
    cookies: bool,
    /// Read URLs from standard input, one per line, and print one signed URL per line.
    #[arg(long, conflicts_with = "cookies")]
    stdin: bool,
    /// The URL to sign, already percent-encoded (it is never re-encoded).
    url: Option<String>,
}

/// An epoch time in seconds as CloudFront takes it (1 to 2147483647: milliseconds are refused).
pub(super) fn parse_epoch(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(value) if (1..=MAX_EPOCH).contains(&value) => Ok(value),
        Ok(value) => Err(format!(
            "expected epoch seconds between 1 and {MAX_EPOCH} (got {value}; milliseconds?)"
        )),
        Err(_) => Err(format!(
            "expected epoch seconds such as 1767290400, got {text:?}"
        )),
    }
}

/// A link's lifetime from now: whole seconds (links carry seconds), at least one, and ending
/// before CloudFront's last expiry time.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if ttl.as_secs() == 0 {
        return Err(format!(
            "a link must live at least 1s (got {text:?}): it would be expired when made"
        ));
    }
    if now_epoch().saturating_add(ttl.as_secs()) > MAX_EPOCH {
        return Err(format!(
            "{text:?} from now is past {MAX_EPOCH} (2038-01-19), the last expiry CloudFront takes"
        ));
    }
    Ok(ttl)
}

/// A key pair id as CloudFront issues them.
fn parse_key_pair_id(text: &str) -> Result<String, String> {
    check_key_pair_id(text).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// A resource pattern a policy can carry.
fn parse_resource(text: &str) -> Result<String, String> {
    Policy::custom(MAX_EPOCH)
        .and_then(|p| p.with_resource(text))
        .map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// An IPv4 CIDR block or single address.
fn parse_ip(text: &str) -> Result<String, String> {
    text.parse::<Ipv4Cidr>().map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// Digest choice on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Hash {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

pub(super) fn run(args: SignArgs) -> Result<ExitCode, CliError> {
    let key = keyfile::read_private_key(&args.key)?;
    let mut signer = Signer::new(args.key_pair_id.clone(), key)?;
    if let Some(hash) = args.hash {
        signer = signer.with_hash(match hash {
            Hash::Sha1 => HashAlgorithm::Sha1,
            Hash::Sha256 => HashAlgorithm::Sha256,
        });
    }
    let expires = match (args.expires, args.ttl) {
        (Some(e), _) => e,
        (None, Some(ttl)) => now_epoch().saturating_add(ttl.as_secs()),
        (None, None) => unreachable!("clap requires --expires or --ttl"),
    };
    // Signed all the same: known-answer tests sign with fixed times long past.
    if expires <= now_epoch() {
        eprintln!("warning: --expires {expires} is not in the future: the link is expired already");
    }
    let custom = args.not_before.is_some() || args.ip.is_some() || args.resource.is_some();
    let mut policy = if custom {
        Policy::custom(expires)?
    } else {
        Policy::canned(expires)?
    };
    if let Some(nb) = args.not_before {
        policy = policy.with_not_before(nb)?;
    }
    if let Some(ip) = &args.ip {
        policy = policy.with_ip(ip)?;
    }
    if let Some(resource) = &args.resource {
        policy = policy.with_resource(resource)?;
    }

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.stdin {
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line?;
            let url = line.trim();
            if url.is_empty() {
                continue;
            }
            let signed = signer
                .sign_url(url, &policy)
                .map_err(|e| format!("line {}: {e}", n + 1))?;
            writeln!(out, "{signed}")?;
        }
    } else {
        let url = args.url.as_deref().unwrap_or_default();
        if args.cookies {
            if policy.is_custom() {
                // The URL is not signed, but it must be one the cookies open: checked as a link
                // to it would be (absolute, and covered by --resource).
                signer.sign_url(url, &policy)?;
            } else if url.contains('*') {
                eprintln!(
                    "warning: canned cookies cover exactly {url}; `*` is no wildcard in them. \
                     For cookies that open every URL matching a pattern, give it as --resource"
                );
            }
            for (name, value) in signer.sign_cookies(url, &policy)?.cookies {
                writeln!(out, "{name}={value}")?;
            }
        } else {
            writeln!(out, "{}", signer.sign_url(url, &policy)?)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_and_addresses() {
        assert_eq!(parse_epoch("1767290400"), Ok(1_767_290_400));
        let ms = parse_epoch("1893456000000").unwrap_err();
        assert!(ms.contains("milliseconds?"), "{ms}");
        assert!(parse_epoch("0").is_err());
        assert!(parse_epoch("soon").unwrap_err().contains("epoch seconds"));
        assert_eq!(parse_ip("192.0.2.0/24").as_deref(), Ok("192.0.2.0/24"));
        assert_eq!(parse_ip("192.0.2.10").as_deref(), Ok("192.0.2.10"));
        let bad = parse_ip("banana").unwrap_err();
        assert!(bad.contains("IPv4 CIDR"), "{bad}");
        assert!(parse_key_pair_id("K2JCJMDEHXQW5F").is_ok());
        assert!(parse_key_pair_id("K2 JC").is_err());
        assert!(parse_resource("https://cdn.example.com/files/*").is_ok());
        assert!(parse_resource("").is_err());
    }
}
