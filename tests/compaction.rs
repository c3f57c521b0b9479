//! Lake compaction as analysts see it: many small files become few, SQL answers stay
//! the same (minus duplicate samples), files of an older registry still merge, crash
//! leftovers are read once, and a query racing compaction counts every row exactly
//! once. Last, end to end: the real `serve` writes the lake, `labstream compact` merges it.

mod support;

use labstream_api::QueryEngine;
use labstream_lake::layout::{SAMPLES_DIR, live_files};
use labstream_lake::{CompactOptions, LakeWriter, LogPosition, compact};
use labstream_schemas::{FieldValue, Registry, Sample, Timestamp};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::TestStack;

/// 2026-11-23T00:00:00Z
const DAY0: i64 = 1_795_392_000_000_000;
const DAY: i64 = 86_400_000_000;

fn registry(with_raw: bool) -> Registry {
    let raw = if with_raw {
        r#", "raw": {"type": "long"}"#
    } else {
        ""
    };
    Registry::from_json_str(
        "test",
        &format!(
            r#"{{"sensor_types": {{
                "temperature": {{"fields": {{"celsius": {{"type": "double"}}{raw}}}}},
                "door": {{"fields": {{"open": {{"type": "boolean"}}}}}}
            }}}}"#
        ),
    )
    .unwrap()
}

fn record(partition: i32, offset: i64) -> LogPosition<'static> {
    LogPosition {
        topic: "t.samples.raw",
        partition,
        offset,
    }
}

fn temperature(sensor: &str, ts: i64, seq: Option<i64>, celsius: f64, raw: Option<i64>) -> Sample {
    let mut values = BTreeMap::from([("celsius".to_owned(), FieldValue::Double(celsius))]);
    if let Some(r) = raw {
        values.insert("raw".into(), FieldValue::Long(r));
    }
    Sample {
        sensor_id: sensor.into(),
        sensor_type: "temperature".into(),
        ts: Timestamp::from_micros(ts),
        seq,
        values,
        tags: BTreeMap::from([("room".to_owned(), format!("lab-{}", ts % 3))]),
        received_at: Timestamp::from_micros(ts + 17),
    }
}

fn door(sensor: &str, ts: i64, open: bool) -> Sample {
    Sample {
        sensor_id: sensor.into(),
        sensor_type: "door".into(),
        ts: Timestamp::from_micros(ts),
        seq: None,
        values: BTreeMap::from([("open".to_owned(), FieldValue::Bool(open))]),
        tags: BTreeMap::new(),
        received_at: Timestamp::from_micros(ts),
    }
}

/// A lake the way the sink leaves it after a while: per partition, `flushes` small
/// files in each of `days` date directories, for two sensor types. Returns the rows
/// and the number of (directory, partition) groups.
fn small_files_lake(root: &Path, registry: Registry, days: i64, flushes: i64) -> (u64, usize) {
    let mut w = LakeWriter::open(root, Arc::new(registry)).unwrap();
    let mut offsets = [0i64; 3];
    let mut rows = 0;
    let mut groups = std::collections::BTreeSet::new();
    for f in 0..flushes {
        for n in 0..30 {
            let i = f * 30 + n;
            let partition = (i % 3) as usize;
            let day = (i / 3) % days;
            let ts = DAY0 + day * DAY + (i * 7919 % 5000) * 1_000_000 + i;
            groups.insert((i % 5 == 0, day, partition));
            let sample = if i % 5 == 0 {
                door(&format!("door-{}", i % 2), ts, i % 2 == 0)
            } else {
                temperature(
                    &format!("fridge-{}", i % 4),
                    ts,
                    Some(i),
                    i as f64 / 4.0,
                    None,
                )
            };
            w.add(record(partition as i32, offsets[partition]), sample);
            offsets[partition] += 1;
            rows += 1;
        }
        w.flush().unwrap();
    }
    (rows, groups.len())
}

fn parquet_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join(SAMPLES_DIR), &mut out);
    out
}

/// Live lake files, per `live_files` applied to each directory.
fn live_count(root: &Path) -> usize {
    let mut by_dir: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for p in parquet_files(root) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        by_dir
            .entry(p.parent().unwrap().to_owned())
            .or_default()
            .push(name);
    }
    by_dir
        .into_values()
        .map(|names| live_files(names).0.len())
        .sum()
}

async fn answer(engine: &QueryEngine, sql: &str) -> String {
    let r = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    arrow::util::pretty::pretty_format_batches(&r.batches)
        .unwrap()
        .to_string()
}

async fn count(engine: &QueryEngine, table: &str) -> i64 {
    let r = engine
        .query(&format!("SELECT count(*) AS n FROM {table}"))
        .await
        .unwrap_or_else(|e| panic!("count of {table}: {e:?}"));
    let col = r.batches[0].column(0);
    col.as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

const QUERIES: &[&str] = &[
    "SELECT count(*) AS n FROM samples_temperature",
    "SELECT count(*) AS n FROM samples_door",
    "SELECT date, experiment, count(*) AS n, sum(celsius) AS s, min(ts) AS first, max(ts) AS last FROM samples_temperature GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT sensor_id, ts, seq, celsius, tags['room'] AS room, received_at, date FROM samples_temperature ORDER BY sensor_id, ts, seq",
    "SELECT sensor_id, ts, open, date FROM samples_door ORDER BY sensor_id, ts",
    "SELECT sensor_id, avg(celsius) AS mean FROM samples_temperature WHERE date = '2026-11-24' GROUP BY 1 ORDER BY 1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_files_become_few_and_sql_answers_stay_the_same() {
    let root = tempfile::tempdir().unwrap();
    let (rows, groups) = small_files_lake(root.path(), registry(false), 3, 12);
    assert_eq!(groups, 2 * 3 * 3);
    let files_before = parquet_files(root.path()).len();
    // 2 tables x 3 days x 3 partitions x 12 flushes, less what a flush had no rows for.
    assert!(files_before > 150, "{files_before} files");
    let engine = QueryEngine::new(root.path());
    let mut before = Vec::new();
    for sql in QUERIES {
        before.push(answer(&engine, sql).await);
    }
    assert_eq!(
        count(&engine, "samples_temperature").await + count(&engine, "samples_door").await,
        rows as i64
    );

    let report = compact(
        root.path(),
        &registry(false),
        &CompactOptions {
            min_files: 1,
            delete_grace: Duration::ZERO,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.files_before, files_before);
    assert_eq!(report.rows_in, rows);
    assert_eq!(report.rows_out, rows);
    // One file per directory and partition.
    assert_eq!(report.files_after, 2 * 3 * 3);
    assert_eq!(parquet_files(root.path()).len(), 2 * 3 * 3);

    for (sql, want) in QUERIES.iter().zip(&before) {
        assert_eq!(&answer(&engine, sql).await, want, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_disappear_and_older_files_merge_into_the_current_schema() {
    let root = tempfile::tempdir().unwrap();
    let mut old = LakeWriter::open(root.path(), Arc::new(registry(false))).unwrap();
    for i in 0..10 {
        old.add(
            record(0, i),
            temperature("a", DAY0 + i, Some(i), i as f64, None),
        );
        old.flush().unwrap();
    }
    drop(old);
    // The registry gained a field; a sender retried some samples (same dedupe key,
    // new offsets), which landed in the lake again.
    let mut new = LakeWriter::open(root.path(), Arc::new(registry(true))).unwrap();
    for i in 10..20 {
        new.add(
            record(0, i),
            temperature("a", DAY0 + i, Some(i), i as f64, Some(i * 10)),
        );
        new.flush().unwrap();
    }
    for i in 0..10 {
        new.add(
            record(0, 20 + i),
            temperature("a", DAY0 + i, Some(i), -1.0, None),
        );
        if i % 5 == 4 {
            new.flush().unwrap();
        }
    }
    let engine = QueryEngine::new(root.path());
    assert_eq!(count(&engine, "samples_temperature").await, 30);

    let report = compact(
        root.path(),
        &registry(true),
        &CompactOptions {
            min_files: 1,
            delete_grace: Duration::ZERO,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!((report.duplicates_dropped, report.files_after), (10, 1));
    let r = engine
        .query("SELECT count(*) AS n, count(DISTINCT seq) AS keys, count(raw) AS raws, sum(raw) AS raw, sum(celsius) AS c FROM samples_temperature")
        .await
        .unwrap();
    let got = arrow::util::pretty::pretty_format_batches(&r.batches)
        .unwrap()
        .to_string();
    // The first copy by offset stays: the old files' values, not the retries' -1.0.
    let want = "+----+------+------+------+-------+\n\
                | n  | keys | raws | raw  | c     |\n\
                +----+------+------+------+-------+\n\
                | 20 | 20   | 10   | 1450 | 190.0 |\n\
                +----+------+------+------+-------+";
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_leftovers_are_read_once() {
    let root = tempfile::tempdir().unwrap();
    let (rows, _) = small_files_lake(root.path(), registry(false), 1, 6);
    let engine = QueryEngine::new(root.path());
    let before: Vec<String> = {
        let mut v = Vec::new();
        for sql in QUERIES {
            v.push(answer(&engine, sql).await);
        }
        v
    };
    // Compaction "crashes" after renaming its outputs, before deleting the inputs
    // (a grace period that never ends leaves exactly that state).
    let report = compact(
        root.path(),
        &registry(false),
        &CompactOptions {
            min_files: 1,
            delete_grace: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.merges > 0);
    let files = parquet_files(root.path());
    assert_eq!(files.len(), report.files_before + report.merges);
    // And a crash in the middle of a write leaves temporary files with garbage.
    let dir = files[0].parent().unwrap();
    std::fs::write(
        dir.join(
            ".part-t.samples.raw-p0-00000000000000000000-00000000000000099999.parquet.compact.tmp",
        ),
        b"garbage",
    )
    .unwrap();
    std::fs::write(
        dir.join(".part-t.samples.raw-p1-00000000000000090000-00000000000000099999.parquet.tmp"),
        b"garbage",
    )
    .unwrap();

    assert_eq!(
        count(&engine, "samples_temperature").await + count(&engine, "samples_door").await,
        rows as i64
    );
    for (sql, want) in QUERIES.iter().zip(&before) {
        assert_eq!(&answer(&engine, sql).await, want, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_racing_compaction_counts_every_row_once() {
    let root = tempfile::tempdir().unwrap();
    let (rows, groups) = small_files_lake(root.path(), registry(false), 4, 40);
    let rows = rows as i64;
    let temperature_rows = {
        let engine = QueryEngine::new(root.path());
        count(&engine, "samples_temperature").await
    };
    assert!(temperature_rows > 0 && temperature_rows < rows);
    let avg_file = {
        let files = parquet_files(root.path());
        files
            .iter()
            .map(|p| p.metadata().unwrap().len())
            .sum::<u64>()
            / files.len() as u64
    };

    // Passes with growing outputs: each one merges the previous pass's outputs again,
    // and deletes what earlier passes superseded once their grace period is over.
    let done = Arc::new(AtomicBool::new(false));
    let compactor = {
        let root = root.path().to_owned();
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let mut merges = 0;
            let mut deleted = 0;
            for factor in [3, 9, 27, 0] {
                let options = CompactOptions {
                    min_files: 1,
                    max_merge_bytes: if factor == 0 {
                        u64::MAX / 4
                    } else {
                        avg_file * factor
                    },
                    delete_grace: Duration::from_secs(2),
                    dry_run: false,
                };
                let r = compact(&root, &registry(false), &options).unwrap();
                assert!(r.failed.is_empty(), "{:?}", r.failed);
                merges += r.merges;
                deleted += r.deleted;
                std::thread::sleep(Duration::from_millis(2500));
            }
            done.store(true, Ordering::SeqCst);
            (merges, deleted)
        })
    };
    let engine = QueryEngine::new(root.path());
    let mut queries = 0;
    while !done.load(Ordering::SeqCst) {
        assert_eq!(
            count(&engine, "samples_temperature").await,
            temperature_rows
        );
        let both =
            count(&engine, "samples_temperature").await + count(&engine, "samples_door").await;
        assert_eq!(both, rows);
        queries += 1;
    }
    let (merges, deleted) = compactor.await.unwrap();
    assert!(
        merges > 20 && deleted > 20,
        "{merges} merges, {deleted} deleted"
    );
    assert!(queries > 10, "only {queries} queries raced the compaction");
    assert_eq!(live_count(root.path()), groups);
    assert_eq!(
        count(&engine, "samples_temperature").await,
        temperature_rows
    );
}

/// End to end: the real `serve` writes small files (a short flush interval and several
/// requests), then `labstream compact` merges them while the stack runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labstream_compact_merges_what_serve_wrote() {
    let stack = TestStack::start_with(&[("LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL", "100ms")]).await;
    let mut total = 0;
    for request in 0..10 {
        let samples: Vec<_> = (0..12)
            .map(|i| {
                json!({
                    "sensor_id": format!("fridge-{}", i % 6),
                    "sensor_type": "temperature",
                    "ts": 1_795_428_000_000_i64 + request * 60_000 + i * 1000,
                    "seq": i,
                    "values": {"celsius": 4.0 + (request * 12 + i) as f64 / 8.0},
                    "tags": {"room": format!("lab-{}", i % 2)},
                })
            })
            .collect();
        let (status, body) = stack
            .post(
                "/v1/samples",
                "application/json",
                json!(samples).to_string(),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        total += samples.len();
        // Let the sink flush each request into files of its own.
        stack
            .query_until_rows(
                &format!("SELECT 1 FROM samples_temperature LIMIT {total}"),
                total,
            )
            .await;
    }
    let files_before = parquet_files(&stack.lake).len();
    assert!(files_before >= 10, "{files_before} files");

    let queries = [
        "SELECT count(*) AS n FROM samples_temperature",
        "SELECT sensor_id, ts, seq, celsius, tags['room'] AS room, date, experiment FROM samples_temperature ORDER BY sensor_id, ts",
        "SELECT sensor_id, count(*) AS n, avg(celsius) AS mean FROM samples_temperature GROUP BY 1 ORDER BY 1",
    ];
    let mut before = Vec::new();
    for sql in queries {
        let (status, body) = stack.query(sql).await;
        assert_eq!(status, 200, "{body}");
        before.push(body);
    }
    assert_eq!(before[0], json!([{"n": total}]));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_labstream"))
        .args(["compact", "--lake"])
        .arg(&stack.lake)
        .args(["--min-files", "1", "--delete-grace", "0s"])
        .env_remove("LABSTREAM_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("temperature/date=2026-11-23/experiment=none: merged"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{total} rows (0 duplicates dropped)")),
        "{stdout}"
    );

    // At most one file per partition (the stack's samples topic has 3).
    let files_after = parquet_files(&stack.lake).len();
    assert!(
        files_after <= 3,
        "{files_after} files after, {files_before} before\n{stdout}"
    );
    for (sql, want) in queries.iter().zip(&before) {
        let (status, body) = stack.query(sql).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(&body, want, "{sql}");
    }

    // The running sink keeps writing after the lake under it was compacted.
    let (status, _) = stack
        .post(
            "/v1/samples",
            "application/json",
            json!({"sensor_id": "fridge-9", "sensor_type": "temperature", "ts": 1_795_428_000_000_i64, "values": {"celsius": 1.0}}).to_string(),
        )
        .await;
    assert_eq!(status, 202);
    stack
        .query_until_rows(
            &format!("SELECT 1 FROM samples_temperature LIMIT {}", total + 1),
            total + 1,
        )
        .await;
}
