use super::*;
use crate::layout::{NO_EXPERIMENT, table_dir};
use crate::test_support::{T0, TOPIC, bloom_filter_answers, record, registry, sample};
use crate::writer::{Added, LakeWriter};
use arrow::array::{Array, AsArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn dir(root: &Path) -> PathBuf {
    table_dir(
        root,
        "temperature",
        chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
        NO_EXPERIMENT,
    )
}

/// Writes `files` flushes of `per_file` samples of partition 0, offsets from `first`,
/// sensor ids and timestamps interleaved so that every file spans the whole key range.
fn write_lake(root: &Path, registry: Registry, first: i64, files: i64, per_file: i64) {
    let mut w = LakeWriter::open(root, Arc::new(registry)).unwrap();
    let mut offset = first;
    for f in 0..files {
        for i in 0..per_file {
            let n = f * per_file + i;
            let s = sample(
                &format!("s{}", n % 4),
                T0 + (n * 7919 % 1000) * 1_000_000 + n,
                Some(n),
                n as f64,
                None,
            );
            w.add(record(0, offset), s);
            offset += 1;
        }
        w.flush().unwrap();
    }
}

type Row = (String, i64, Option<i64>, Option<f64>, Option<i64>);

/// The rows of the live files of `dir`, in file order and row order.
fn live_rows(dir: &Path) -> Vec<Row> {
    let live = list_dir(dir).unwrap().live;
    let mut out = Vec::new();
    for f in live {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(dir.join(&f.name)).unwrap())
                .unwrap()
                .build()
                .unwrap();
        for b in reader {
            let b = b.unwrap();
            let ids = b.column_by_name("sensor_id").unwrap();
            let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
            let ts = b.column_by_name("ts").unwrap();
            let ts = ts.as_primitive::<TimestampMicrosecondType>();
            let seq = b.column_by_name("seq").unwrap();
            let seq = seq.as_primitive::<Int64Type>();
            let c = b.column_by_name("celsius").unwrap();
            let c = c.as_any().downcast_ref::<Float64Array>().unwrap();
            let raw = b
                .column_by_name("raw")
                .map(|r| r.as_any().downcast_ref::<Int64Array>().unwrap().clone());
            for i in 0..b.num_rows() {
                out.push((
                    ids.value(i).to_owned(),
                    ts.value(i),
                    seq.is_valid(i).then(|| seq.value(i)),
                    c.is_valid(i).then(|| c.value(i)),
                    raw.as_ref().and_then(|r| r.is_valid(i).then(|| r.value(i))),
                ));
            }
        }
    }
    out
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn options(min_files: usize, delete_grace: Duration) -> CompactOptions {
    CompactOptions {
        min_files,
        delete_grace,
        ..Default::default()
    }
}

fn key(r: &Row) -> (&str, i64, Option<i64>) {
    (r.0.as_str(), r.1, r.2)
}

/// A partition read again from an earlier offset (its consumer was rewound, or it
/// was revoked and assigned again) delivers records the writer holds already: they
/// are neither buffered twice nor written again after the flush.
#[test]
fn a_record_delivered_again_is_written_once() {
    let root = tempfile::tempdir().unwrap();
    let mut w = LakeWriter::open(root.path(), Arc::new(registry(false))).unwrap();
    let s = |n: i64| sample("s1", T0 + n, Some(n), n as f64, None);
    for offset in 10..13 {
        assert_eq!(w.add(record(0, offset), s(offset)), Added::Buffered);
    }
    // Read again from offset 10 before the flush: already buffered.
    for offset in 10..13 {
        assert_eq!(w.add(record(0, offset), s(offset)), Added::AlreadyInLake);
    }
    assert_eq!(w.add(record(0, 13), s(13)), Added::Buffered);
    // Another partition's offsets are its own.
    assert_eq!(w.add(record(1, 10), s(100)), Added::Buffered);
    assert_eq!(w.buffered_rows(), 5);
    w.flush().unwrap();
    // And again after the flush: in the lake already.
    assert_eq!(w.add(record(0, 12), s(12)), Added::AlreadyInLake);
    assert_eq!(w.add(record(0, 14), s(14)), Added::Buffered);
    w.flush().unwrap();
    let rows = live_rows(&dir(root.path()));
    let mut seqs: Vec<i64> = rows.iter().map(|r| r.2.unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [10, 11, 12, 13, 14, 100]);
}

#[test]
fn many_small_files_become_one_sorted_file_with_the_same_rows() {
    let root = tempfile::tempdir().unwrap();
    write_lake(root.path(), registry(false), 0, 20, 50);
    let d = dir(root.path());
    let mut before = live_rows(&d);
    assert_eq!(before.len(), 1000);
    assert_eq!(list_dir(&d).unwrap().live.len(), 20);

    let mut seen = Vec::new();
    let report = compact_with_progress(
        root.path(),
        &registry(false),
        &options(8, Duration::from_secs(3600)),
        |d| seen.push(d.clone()),
    )
    .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (report.files_before, report.files_after, report.merges),
        (20, 1, 1)
    );
    assert_eq!((report.rows_in, report.rows_out), (1000, 1000));
    assert_eq!(report.duplicates_dropped, 0);
    assert!(report.failed.is_empty());
    // The inputs stay for their grace period, superseded by the output.
    assert_eq!(report.awaiting_delete, 20);
    let names = file_names(&d);
    assert_eq!(names.len(), 21);
    assert!(
        names.contains(
            &PartFile {
                topic: TOPIC.into(),
                partition: 0,
                first_offset: 0,
                last_offset: 999
            }
            .file_name()
        )
    );

    let after = live_rows(&d);
    assert!(
        after.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "the output is sorted by (sensor_id, ts, seq)"
    );
    before.sort_by(|a, b| key(a).cmp(&key(b)));
    assert_eq!(after, before);
    // The output has the bloom filters of a lake file, with every sensor in them.
    let output = d.join(list_dir(&d).unwrap().live[0].name.clone());
    for sensor in ["s0", "s1", "s2", "s3"] {
        let answers = bloom_filter_answers(&output, "sensor_id", sensor);
        assert!(
            answers.iter().all(|(a, _)| *a == Some(true)),
            "{sensor}: {answers:?}"
        );
    }
    let answers = bloom_filter_answers(&output, "sensor_id", "s9");
    assert!(
        answers.iter().all(|(a, _)| *a == Some(false)),
        "{answers:?}"
    );

    // The next run past the grace period deletes the inputs and merges nothing.
    let report = compact(root.path(), &registry(false), &options(8, Duration::ZERO)).unwrap();
    assert_eq!((report.merges, report.deleted), (0, 20));
    assert_eq!(file_names(&d).len(), 1);
    assert_eq!(live_rows(&d), after);
}

#[test]
fn few_files_are_left_alone_and_topic_partitions_merge_separately() {
    let root = tempfile::tempdir().unwrap();
    let mut w = LakeWriter::open(root.path(), Arc::new(registry(false))).unwrap();
    for f in 0..5 {
        for p in 0..2 {
            w.add(record(p, f), sample("a", T0 + f, None, 1.0, None));
        }
        w.flush().unwrap();
    }
    let d = dir(root.path());
    let r = compact(root.path(), &registry(false), &options(5, Duration::ZERO)).unwrap();
    assert_eq!((r.merges, r.files_after), (0, 10));
    let r = compact(root.path(), &registry(false), &options(4, Duration::ZERO)).unwrap();
    assert_eq!((r.merges, r.files_before, r.files_after), (2, 10, 2));
    assert_eq!(r.deleted, 10);
    assert_eq!(
        file_names(&d),
        [
            "part-t.samples.raw-p0-00000000000000000000-00000000000000000004.parquet",
            "part-t.samples.raw-p1-00000000000000000000-00000000000000000004.parquet"
        ]
    );
    assert_eq!(live_rows(&d).len(), 10);
}

#[test]
fn duplicates_of_the_dedupe_key_are_dropped_keeping_the_first_by_offset() {
    let root = tempfile::tempdir().unwrap();
    let mut w = LakeWriter::open(root.path(), Arc::new(registry(false))).unwrap();
    // The same reading posted three times (a sender's retries), twice in one file,
    // once in a later file, with a different value each time so we see which stays;
    // and a reading without seq, twice.
    w.add(record(0, 0), sample("a", T0, Some(1), 1.0, None));
    w.add(record(0, 1), sample("a", T0, Some(1), 2.0, None));
    w.add(record(0, 2), sample("a", T0, None, 5.0, None));
    w.add(record(0, 3), sample("b", T0, Some(1), 7.0, None));
    w.flush().unwrap();
    w.add(record(0, 4), sample("a", T0, Some(1), 3.0, None));
    w.add(record(0, 5), sample("a", T0, None, 6.0, None));
    w.add(record(0, 6), sample("a", T0, Some(2), 4.0, None));
    w.flush().unwrap();
    let r = compact(root.path(), &registry(false), &options(1, Duration::ZERO)).unwrap();
    assert_eq!((r.rows_in, r.rows_out, r.duplicates_dropped), (7, 4, 3));
    let rows: Vec<(String, Option<i64>, Option<f64>)> = live_rows(&dir(root.path()))
        .into_iter()
        .map(|r| (r.0, r.2, r.3))
        .collect();
    assert_eq!(
        rows,
        [
            ("a".to_owned(), None, Some(5.0)),
            ("a".to_owned(), Some(1), Some(1.0)),
            ("a".to_owned(), Some(2), Some(4.0)),
            ("b".to_owned(), Some(1), Some(7.0)),
        ]
    );
}

#[test]
fn files_of_an_older_registry_merge_into_the_current_schema() {
    let root = tempfile::tempdir().unwrap();
    write_lake(root.path(), registry(false), 0, 3, 10);
    let mut w = LakeWriter::open(root.path(), Arc::new(registry(true))).unwrap();
    for i in 0..10 {
        w.add(record(0, 30 + i), sample("n", T0 + i, None, 0.5, Some(i)));
        if i % 5 == 4 {
            w.flush().unwrap();
        }
    }
    let r = compact(root.path(), &registry(true), &options(1, Duration::ZERO)).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert_eq!((r.files_before, r.files_after, r.rows_out), (5, 1, 40));
    let rows = live_rows(&dir(root.path()));
    assert_eq!(rows.iter().filter(|r| r.4.is_some()).count(), 10);
    assert!(
        rows.iter()
            .filter(|r| r.0 != "n")
            .all(|r| r.4.is_none() && r.3.is_some())
    );
    let live = list_dir(&dir(root.path())).unwrap().live;
    let file = File::open(dir(root.path()).join(&live[0].name)).unwrap();
    let schema = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .schema()
        .clone();
    assert_eq!(
        schema.fields(),
        arrow_schema(registry(true).get("temperature").unwrap()).fields()
    );
}

#[test]
fn a_file_with_a_column_the_registry_lost_is_left_uncompacted() {
    let root = tempfile::tempdir().unwrap();
    let mut w = LakeWriter::open(root.path(), Arc::new(registry(true))).unwrap();
    for i in 0..3 {
        w.add(record(0, i), sample("a", T0 + i, None, 0.5, Some(i)));
        w.flush().unwrap();
    }
    let d = dir(root.path());
    let before = file_names(&d);
    let r = compact(root.path(), &registry(false), &options(1, Duration::ZERO)).unwrap();
    assert_eq!(r.failed.len(), 1);
    let error = r.failed[0].error.as_deref().unwrap();
    assert!(error.contains("\"raw\""), "{error}");
    assert_eq!(file_names(&d), before, "nothing written, nothing deleted");
}

#[test]
fn crash_leftovers_are_harmless_and_cleaned_up() {
    let root = tempfile::tempdir().unwrap();
    write_lake(root.path(), registry(false), 0, 4, 5);
    let d = dir(root.path());
    let rows = live_rows(&d);
    // A crash before the rename leaves a half-written output, and a writer's crash
    // an old temporary file; a writer's temporary file in progress is fresh.
    let half = d.join(
        ".part-t.samples.raw-p0-00000000000000000000-00000000000000000019.parquet.compact.tmp",
    );
    std::fs::write(&half, b"PAR1 half").unwrap();
    let old =
        d.join(".part-t.samples.raw-p0-00000000000000000020-00000000000000000029.parquet.tmp");
    std::fs::write(&old, b"PAR1").unwrap();
    File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - 2 * STALE_TMP_AGE)
        .unwrap();
    let fresh =
        d.join(".part-t.samples.raw-p0-00000000000000000030-00000000000000000039.parquet.tmp");
    std::fs::write(&fresh, b"PAR1").unwrap();
    assert_eq!(live_rows(&d), rows, "temporary files are not lake files");

    let r = compact(
        root.path(),
        &registry(false),
        &options(1, Duration::from_secs(3600)),
    )
    .unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert!(!half.exists() && !old.exists() && fresh.exists());
    // A crash after the rename leaves the output and all its inputs: read once.
    assert_eq!(file_names(&d).len(), 4 + 1 + 1);
    let mut sorted = rows.clone();
    sorted.sort_by(|a, b| key(a).cmp(&key(b)));
    assert_eq!(live_rows(&d), sorted);
}

#[test]
fn a_dry_run_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    write_lake(root.path(), registry(false), 0, 10, 3);
    let d = dir(root.path());
    let tmp = d.join(".x.compact.tmp");
    std::fs::write(&tmp, b"").unwrap();
    let before = file_names(&d);
    let r = compact(
        root.path(),
        &registry(false),
        &CompactOptions {
            dry_run: true,
            ..options(1, Duration::ZERO)
        },
    )
    .unwrap();
    assert_eq!((r.files_before, r.files_after, r.merges), (10, 1, 1));
    assert_eq!(r.rows_out, 0);
    assert_eq!(file_names(&d), before);
}

#[test]
fn one_compaction_at_a_time() {
    let root = tempfile::tempdir().unwrap();
    write_lake(root.path(), registry(false), 0, 3, 3);
    let held = lock(root.path()).unwrap();
    let err = compact(root.path(), &registry(false), &options(1, Duration::ZERO)).unwrap_err();
    assert!(err.to_string().contains("another compaction"), "{err}");
    drop(held);
    let r = compact(root.path(), &registry(false), &options(1, Duration::ZERO)).unwrap();
    assert_eq!(r.files_after, 1);
}

#[test]
fn unsorted_input_is_refused() {
    let root = tempfile::tempdir().unwrap();
    write_lake(root.path(), registry(false), 0, 2, 3);
    let d = dir(root.path());
    // A foreign file: right name, rows in reverse order.
    let spec = registry(false).get("temperature").unwrap().clone();
    let mut samples: Vec<_> = (0..3)
        .map(|i| labstream_schemas::experiment::EnrichedSample {
            sample: sample("z", T0 + i, None, 1.0, None),
            context: None,
        })
        .collect();
    let batch = crate::batch::to_record_batch(&spec, &mut samples).unwrap();
    let reversed =
        arrow::compute::take_record_batch(&batch, &arrow::array::UInt32Array::from(vec![2, 1, 0]))
            .unwrap();
    let name = PartFile {
        topic: TOPIC.into(),
        partition: 0,
        first_offset: 100,
        last_offset: 102,
    }
    .file_name();
    let mut w =
        ArrowWriter::try_new(File::create(d.join(&name)).unwrap(), batch.schema(), None).unwrap();
    w.write(&reversed).unwrap();
    w.close().unwrap();
    let before = file_names(&d);
    let r = compact(root.path(), &registry(false), &options(1, Duration::ZERO)).unwrap();
    let error = r.failed[0].error.as_deref().unwrap();
    assert!(error.contains("not sorted"), "{error}");
    assert_eq!(file_names(&d), before);
}

#[test]
fn plans_merge_only_consecutive_small_files() {
    let f = |first: i64, size: u64| LakeFile {
        name: String::new(),
        part: PartFile {
            topic: TOPIC.into(),
            partition: 0,
            first_offset: first,
            last_offset: first + 9,
        },
        size,
        modified: SystemTime::now(),
    };
    let o = CompactOptions {
        min_files: 1,
        max_merge_bytes: 100,
        ..Default::default()
    };
    // A large file (>= 50) splits the runs; a run stops before 100 bytes.
    let live = [
        f(0, 10),
        f(10, 10),
        f(20, 60),
        f(30, 40),
        f(40, 40),
        f(50, 40),
        f(60, 5),
    ];
    let firsts: Vec<Vec<i64>> = plan(&live, &o)
        .iter()
        .map(|s| s.iter().map(|f| f.part.first_offset).collect())
        .collect();
    assert_eq!(firsts, [vec![0, 10], vec![30, 40], vec![50, 60]]);
    // More than MAX_FAN_IN small files: several outputs.
    let many: Vec<LakeFile> = (0..(MAX_FAN_IN as i64 + 10))
        .map(|i| f(i * 10, 1))
        .collect();
    let sizes: Vec<usize> = plan(&many, &o).iter().map(Vec::len).collect();
    assert_eq!(sizes, [MAX_FAN_IN, 10]);
    assert!(
        plan(
            &many,
            &CompactOptions {
                min_files: many.len(),
                ..o.clone()
            }
        )
        .is_empty()
    );
}

#[test]
fn settings_are_validated() {
    assert!(CompactionConfig::default().validate().is_ok());
    let zero = CompactionConfig {
        interval: Duration::ZERO,
        ..Default::default()
    };
    assert!(zero.validate().unwrap_err().contains("interval"));
}
