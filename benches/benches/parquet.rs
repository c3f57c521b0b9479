//! The lake's write path per batch: samples (with their recording) -> a sorted Arrow
//! batch with the registry's typed columns -> zstd Parquet in memory, as a lake file.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use labstream_schemas::experiment::{EnrichedSample, RecordingContext};
use labstream_schemas::{FieldValue, Registry, Sample, SensorId, SensorType, Timestamp};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::hint::black_box;

const ROWS: usize = 10_000;

fn samples() -> Vec<EnrichedSample> {
    (0..ROWS)
        .map(|i| EnrichedSample {
            sample: Sample {
                sensor_id: SensorId::new(format!("temp-{}", i % 50)),
                sensor_type: SensorType::new("temperature"),
                ts: Timestamp::from_micros(1_795_428_000_000_000 + (i as i64) * 1000),
                seq: Some(i as i64),
                values: BTreeMap::from([(
                    "celsius".to_owned(),
                    FieldValue::Double(20.0 + (i % 70) as f64 / 10.0),
                )]),
                tags: BTreeMap::from([("room".to_owned(), "lab-2".to_owned())]),
                received_at: Timestamp::from_micros(1_795_428_000_100_000 + (i as i64) * 1000),
            },
            context: (i % 2 == 0).then(|| RecordingContext {
                experiment_id: "stroop-2026".into(),
                recording_id: "rec-1".into(),
                participant_id: "P01".into(),
                task_id: "rest".into(),
            }),
        })
        .collect()
}

fn parquet_write(c: &mut Criterion) {
    let registry = Registry::default_lab();
    let spec = registry.get("temperature").unwrap().clone();
    let input = samples();
    let mut group = c.benchmark_group("lake_write");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("arrow_batch_10k", |b| {
        b.iter_batched(
            || input.clone(),
            |mut s| labstream_lake::to_record_batch(&spec, black_box(&mut s)).unwrap(),
            criterion::BatchSize::LargeInput,
        )
    });
    let batch = labstream_lake::to_record_batch(&spec, &mut input.clone()).unwrap();
    group.bench_function("parquet_zstd_10k", |b| {
        b.iter(|| {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let mut out = Vec::with_capacity(512 * 1024);
            let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
            writer.write(black_box(&batch)).unwrap();
            writer.close().unwrap();
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, parquet_write);
criterion_main!(benches);
