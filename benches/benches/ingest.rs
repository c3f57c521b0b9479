//! The CPU cost ingest pays per request and per sample before Kafka: parsing and
//! validating JSON and line protocol against the default registry, and verifying the
//! request's token (EdDSA, once per request). The bodies are the load generator's, so
//! these figures explain the end-to-end ones in RESULTS.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use labstream_benches::fleet::Fleet;
use labstream_benches::wire::{json_body, line_protocol_body};
use labstream_ingest::{Precision, Validator, parse_json, parse_line_protocol};
use labstream_schemas::auth::{Issuer, KeyAlg, Scope, Verifier, generate_keypair};
use labstream_schemas::{Registry, Timestamp};
use std::hint::black_box;
use std::time::Duration;

fn parsing(c: &mut Criterion) {
    let registry = Registry::default_lab();
    let validator = Validator::new(&registry, Timestamp::now());
    let mut fleet = Fleet::new(&registry, 100, 0);
    for n in [1usize, 500] {
        let samples = fleet.take(n);
        let json = json_body(&samples);
        let lp = line_protocol_body(&samples);
        let mut group = c.benchmark_group(format!("ingest_parse_{n}"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function("json", |b| {
            b.iter(|| parse_json(black_box(&json), false, Precision::Ms, &validator).unwrap())
        });
        group.bench_function("line_protocol", |b| {
            b.iter(|| {
                parse_line_protocol(black_box(&lp), Precision::Ns, "sensor_id", &validator).unwrap()
            })
        });
        group.finish();
    }
}

fn token(c: &mut Criterion) {
    let (private_pem, public_pem) = generate_keypair(KeyAlg::Ed25519).unwrap();
    let token = Issuer::from_pem(&private_pem)
        .unwrap()
        .issue(
            "bench",
            &[Scope::SamplesWrite],
            None,
            Duration::from_secs(3600),
            None,
        )
        .unwrap();
    let verifier = Verifier::from_pem(&public_pem).unwrap();
    let mut group = c.benchmark_group("ingest_auth");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_eddsa_token", |b| {
        b.iter(|| verifier.verify(black_box(&token)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, parsing, token);
criterion_main!(benches);
