//! `keyhole keys ...`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use keyhole_sign::KeyAlgorithm;

use super::CliError;
use crate::keyfile;

/// Key management.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair: DIR/private.pem (mode 0600; PKCS#1 for RSA, PKCS#8 for ECDSA),
    /// DIR/public.pem (SubjectPublicKeyInfo, what CloudFront's public key `encoded_key` takes) and
    /// DIR/key-pair-id. Prints the key pair id.
    Generate {
        /// Key algorithm. CloudFront accepts both; RSA-2048 with SHA-1 is what every SDK signs by
        /// default.
        #[arg(long, value_enum, default_value_t = Algorithm::Rsa2048)]
        algorithm: Algorithm,
        /// Directory to write the key files into (created with mode 0700). Existing keys are never
        /// overwritten.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Key pair id to record, when it is already known. CloudFront gives a new key its id only
        /// once the public key is uploaded: then pass that id to `keyhole serve --key-pair-id`
        /// or write it into `keys/key-pair-id`. Default: an id derived from the public key (K +
        /// 13 base32 characters).
        #[arg(long, value_name = "ID", value_parser = parse_key_pair_id)]
        id: Option<String>,
    },
}

/// A key pair id as CloudFront issues them.
fn parse_key_pair_id(text: &str) -> Result<String, String> {
    keyhole_sign::check_key_pair_id(text).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// Key algorithms offered by `keys generate`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Algorithm {
    /// RSA 2048-bit.
    #[value(name = "rsa-2048")]
    Rsa2048,
    /// ECDSA on NIST P-256.
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
}

pub(super) fn run(cmd: KeysCommand) -> Result<ExitCode, CliError> {
    match cmd {
        KeysCommand::Generate { algorithm, out, id } => {
            let algorithm = match algorithm {
                Algorithm::Rsa2048 => KeyAlgorithm::Rsa,
                Algorithm::EcdsaP256 => KeyAlgorithm::EcdsaP256,
            };
            let generated = keyfile::generate_into(&out, algorithm, id.as_deref())?;
            eprintln!(
                "wrote {} (private, 0600) and {} (public)",
                generated.private_path.display(),
                generated.public_path.display()
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // A directory others may write to lets them replace or remove the key files.
                let mode = std::fs::metadata(&out).map_or(0, |m| m.permissions().mode());
                if mode & 0o022 != 0 {
                    eprintln!(
                        "warning: others may write to {} (mode {:o}) and so replace the key files \
                         in it; keep keys in a directory only you can write to (chmod 700)",
                        out.display(),
                        mode & 0o7777
                    );
                }
            }
            println!("{}", generated.key_pair_id);
            Ok(ExitCode::SUCCESS)
        }
    }
}
