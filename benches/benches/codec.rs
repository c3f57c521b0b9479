//! Avro single-object encode/decode of a sample: the per-record cost on every hop.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use labstream_schemas::{Codec, FieldValue, Sample, SensorId, SensorType, Timestamp};
use std::collections::BTreeMap;
use std::hint::black_box;

fn sample() -> Sample {
    Sample {
        sensor_id: SensorId::new("accel-17"),
        sensor_type: SensorType::new("accelerometer"),
        ts: Timestamp::from_micros(1_795_428_000_123_000),
        seq: Some(42),
        values: BTreeMap::from([
            ("x".to_owned(), FieldValue::Double(0.12)),
            ("y".to_owned(), FieldValue::Double(-9.81)),
            ("z".to_owned(), FieldValue::Double(0.03)),
        ]),
        tags: BTreeMap::from([("room".to_owned(), "lab-2".to_owned())]),
        received_at: Timestamp::from_micros(1_795_428_000_200_000),
    }
}

fn codec(c: &mut Criterion) {
    let codec = Codec::new();
    let s = sample();
    let bytes = codec.encode(&s).unwrap();
    let mut group = c.benchmark_group("avro_sample");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        b.iter(|| codec.encode(black_box(&s)).unwrap())
    });
    group.bench_function("decode", |b| {
        b.iter(|| codec.decode::<Sample>(black_box(&bytes)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
