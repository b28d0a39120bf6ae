//! `keyhole verify`

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use keyhole_sign::{KeyRing, Request, Verifier};

use super::{now_epoch, CliError};
use crate::keyfile;

/// Arguments of `keyhole verify`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("input").required(true).args(["url", "stdin"])))]
pub struct VerifyArgs {
    /// A trusted public key as ID=PUBLIC.pem (SubjectPublicKeyInfo or PKCS#1 PEM). Repeat to
    /// trust several keys, as a CloudFront key group does during a rotation.
    #[arg(long = "key", value_name = "ID=PUBLIC.pem", required = true, value_parser = parse_key)]
    keys: Vec<(String, PathBuf)>,
    /// The time to check against, in epoch seconds. Default: now.
    #[arg(long, value_name = "EPOCH", value_parser = super::sign::parse_epoch)]
    now: Option<u64>,
    /// The client address, for links with an IP condition.
    #[arg(long, value_name = "IP")]
    client_ip: Option<IpAddr>,
    /// A cookie sent with the request, as NAME=VALUE (repeatable), for signed cookies.
    #[arg(long = "cookie", value_name = "NAME=VALUE", value_parser = parse_cookie)]
    cookies: Vec<String>,
    /// Read URLs from standard input, one per line; print one result per line (`error (...)` for
    /// a line that is not a URL). Exits 0 only if every URL is valid.
    #[arg(long)]
    stdin: bool,
    /// The full URL as the client requests it (scheme://host/path?query).
    url: Option<String>,
}

/// `ID=PUBLIC.pem` → (ID, PUBLIC.pem), the id one CloudFront could issue.
fn parse_key(spec: &str) -> Result<(String, PathBuf), String> {
    match spec.split_once('=') {
        Some((id, path)) if !id.is_empty() && !path.is_empty() => {
            keyhole_sign::check_key_pair_id(id).map_err(|e| e.to_string())?;
            Ok((id.to_owned(), PathBuf::from(path)))
        }
        _ => Err("expected ID=PUBLIC.pem: the key pair id, `=`, and the public key file".into()),
    }
}

/// `NAME=VALUE`, as a `Cookie` header carries it.
fn parse_cookie(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((name, _))
            if !name.is_empty()
                && !text.contains(';')
                && text.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(text.to_owned())
        }
        _ => Err(format!(
            "expected NAME=VALUE (such as CloudFront-Key-Pair-Id=K2JCJMDEHXQW5F), got {text:?}"
        )),
    }
}

/// Splits an absolute URL into its origin (`scheme://host[:port]`) and request target, without
/// any `#fragment`: clients never send it.
fn split_url(url: &str) -> Result<(&str, String), CliError> {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    let scheme_end = url
        .find("://")
        .ok_or_else(|| format!("not an absolute URL: {url}"))?;
    let rest = &url[scheme_end + 3..];
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    let origin = &url[..scheme_end + 3 + authority_len];
    let target = &rest[authority_len..];
    let target = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("/{target}")
    };
    Ok((origin, target))
}

pub(super) fn run(args: VerifyArgs) -> Result<ExitCode, CliError> {
    let mut ring = KeyRing::new();
    for (id, path) in &args.keys {
        ring.insert(id, keyfile::read_public_key(path)?);
    }
    let now = args.now.unwrap_or_else(now_epoch);
    let cookie_header = (!args.cookies.is_empty()).then(|| args.cookies.join("; "));

    let check = |url: &str| -> Result<String, CliError> {
        let (origin, target) = split_url(url)?;
        let verifier = Verifier::new(origin, ring.clone())?;
        let request = Request {
            target: &target,
            client_ip: args.client_ip,
            now,
            cookies: cookie_header.as_deref(),
        };
        Ok(match verifier.verify(&request) {
            Ok(_) => "valid".to_owned(),
            Err(rejection) => format!("{} ({})", rejection.code, rejection.reason),
        })
    };

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut all_valid = true;
    if args.stdin {
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let url = line.trim();
            if url.is_empty() {
                continue;
            }
            // One result line per input line, even for a line that is not a URL.
            let result = check(url).unwrap_or_else(|e| format!("error ({e})"));
            all_valid &= result == "valid";
            writeln!(out, "{result}")?;
        }
    } else {
        let result = check(args.url.as_deref().unwrap_or_default())?;
        all_valid = result == "valid";
        writeln!(out, "{result}")?;
    }
    out.flush()?;
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_key, split_url};

    #[test]
    fn key_specs() {
        assert_eq!(
            parse_key("K1=keys/public.pem"),
            Ok(("K1".to_owned(), "keys/public.pem".into()))
        );
        for bad in ["foo", "=public.pem", "K1="] {
            let e = parse_key(bad).unwrap_err();
            assert!(e.contains("ID=PUBLIC.pem"), "{e}");
        }
    }

    #[test]
    fn splits_origin_and_target() {
        assert_eq!(
            split_url("https://cdn.example.com/a/b?x=1").unwrap(),
            ("https://cdn.example.com", "/a/b?x=1".to_owned())
        );
        assert_eq!(
            split_url("http://127.0.0.1:8080?x").unwrap(),
            ("http://127.0.0.1:8080", "/?x".to_owned())
        );
        assert!(split_url("cdn.example.com/a").is_err());
        // A fragment stays in the browser: the request target is without it.
        assert_eq!(
            split_url("https://cdn.example.com/a?Expires=1&Signature=x#page=2").unwrap(),
            (
                "https://cdn.example.com",
                "/a?Expires=1&Signature=x".to_owned()
            )
        );
    }
}
