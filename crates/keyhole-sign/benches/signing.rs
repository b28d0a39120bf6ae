//! Signing and verification throughput for the key types CloudFront uses.
//!
//! `cargo bench -p keyhole-sign --bench signing` (about a minute). The benchmark ids
//! (`<key>/<operation>`) are parsed by scripts: keep them stable.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use keyhole_sign::{
    HashAlgorithm, KeyAlgorithm, KeyRing, Policy, PrivateKey, Request, Signer, Verifier,
};

const ORIGIN: &str = "https://cdn.example.com";
const URL: &str = "https://cdn.example.com/files/k3v9q2xw8d7m4n6b5c1z0_report-2026.pdf";
const EXPIRES: u64 = 1_893_456_000;
const NOW: u64 = 1_767_225_600;
const CLIENT: &str = "198.51.100.7";

fn custom_policy() -> Policy {
    Policy::custom(EXPIRES)
        .and_then(|p| p.with_not_before(NOW - 60))
        .and_then(|p| p.with_ip("198.51.100.0/24"))
        .and_then(|p| p.with_resource("https://cdn.example.com/files/*"))
        .expect("valid policy")
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
}

/// Benchmarks signing and verifying with one key; `custom` adds the custom-policy pair.
fn bench_key(c: &mut Criterion, name: &str, algorithm: KeyAlgorithm, custom: bool) {
    let key = PrivateKey::generate(algorithm).expect("key generation");
    let mut ring = KeyRing::new();
    ring.insert("KBENCH", key.public_key().expect("public key"));
    let verifier = Verifier::new(ORIGIN, ring).expect("valid origin");
    let signer = Signer::new("KBENCH", key)
        .expect("valid key pair id")
        .with_hash(match algorithm {
            KeyAlgorithm::Rsa => HashAlgorithm::Sha1,
            KeyAlgorithm::EcdsaP256 => HashAlgorithm::Sha256,
        });
    let canned = Policy::canned(EXPIRES).expect("valid expiry");
    let client: IpAddr = CLIENT.parse().expect("valid address");

    let mut group = c.benchmark_group(name);
    configure(&mut group);

    group.bench_function("sign_url_canned", |b| {
        b.iter(|| signer.sign_url(black_box(URL), black_box(&canned)).unwrap())
    });
    let url = signer.sign_url(URL, &canned).unwrap();
    let target = &url[ORIGIN.len()..];
    group.bench_function("verify_url_canned", |b| {
        b.iter(|| {
            let request = Request {
                target: black_box(target),
                client_ip: None,
                now: NOW,
                cookies: None,
            };
            verifier.verify(&request).unwrap()
        })
    });

    if custom {
        let policy = custom_policy();
        group.bench_function("sign_url_custom", |b| {
            b.iter(|| signer.sign_url(black_box(URL), black_box(&policy)).unwrap())
        });
        let url = signer.sign_url(URL, &policy).unwrap();
        let target = &url[ORIGIN.len()..];
        group.bench_function("verify_url_custom", |b| {
            b.iter(|| {
                let request = Request {
                    target: black_box(target),
                    client_ip: Some(client),
                    now: NOW,
                    cookies: None,
                };
                verifier.verify(&request).unwrap()
            })
        });
    }
    group.finish();
}

fn signing(c: &mut Criterion) {
    bench_key(c, "rsa2048_sha1", KeyAlgorithm::Rsa, true);
    bench_key(c, "ecdsa_p256", KeyAlgorithm::EcdsaP256, false);
}

criterion_group!(benches, signing);
criterion_main!(benches);
