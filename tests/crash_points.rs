//! Crashes inside the windows that matter, made to happen: the real binary is started
//! with a crash point armed (`LABSTREAM_CRASH_POINT`, see schemas/src/crash_point.rs),
//! aborts there (no destructor, no commit, no leaving the group), is started again
//! without it, and each test checks that the recovery path ran (its log says so, or
//! the raw log holds the aborted attempt) and that every sample or transition is
//! there exactly once.
//!
//! - MongoDB sink before the insert, and between the insert and the offset commit: the
//!   batch is read again (and meets the unique index: duplicates counted, none stored).
//! - Lake sink before a file is written, between the temporary file and its rename, and
//!   between the rename and the offset commit: an unrenamed file is never read; a
//!   renamed one makes the restarted sink skip the records it holds.
//! - Alerts processor inside its Kafka transaction, before and after the commit call:
//!   an aborted transaction's event is never seen by read_committed consumers and is
//!   decided again; a committed one is not repeated.
//! - Compaction between the merged file's write and its rename, and between the rename
//!   and the deletion of its inputs: queries see every row once, and the next run
//!   cleans up.

mod support;

use labstream_schemas::{AlertEvent, AlertStatus, Timestamp};
use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;
use support::power::{Contents, T0, lake_rows, mongo_rows};
use support::{TestStack, Worker};

const SIGABRT: i32 = 6;

/// A stack whose sinks run as workers, the lake from samples.raw, no compaction.
async fn sink_stack() -> TestStack {
    TestStack::start_command(
        "ingest",
        &[
            ("LABSTREAM__SINKS__LAKE__SOURCE", "raw"),
            ("LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL", "200ms"),
            ("LABSTREAM__SINKS__MONGO__BATCH_MAX_RECORDS", "100"),
            ("LABSTREAM__SINKS__MONGO__BATCH_MAX_WAIT", "50ms"),
            ("LABSTREAM__COMPACTION__ENABLED", "false"),
        ],
    )
    .await
}

/// Posts `requests` requests of 50 power samples numbered from `first`.
async fn post(stack: &TestStack, want: &mut Contents, first: i64, requests: i64) {
    for r in 0..requests {
        let batch: Vec<_> = (0..50)
            .map(|i| {
                let n = first + r * 50 + i;
                let id = format!("cp-{}", n % 7);
                let ts = T0 + n * 1000;
                let watts = n as f64 + 0.5;
                want.insert((id.clone(), ts), watts);
                json!({"sensor_id": id, "sensor_type": "power", "ts": ts, "values": {"watts": watts}})
            })
            .collect();
        support::power::post_us(stack, &batch).await;
    }
}

/// Waits until `worker` ended at crash point `point`, and checks it was that abort.
async fn crashed_at(worker: &mut Worker, point: &str) {
    let status = worker.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "expected the abort of crash point {point}, got {status}:\n{}",
        worker.logs()
    );
    assert!(
        worker
            .logs()
            .contains(&format!("crash point {point} reached")),
        "{}",
        worker.logs()
    );
}

/// Runs one sink with `point` armed at its second hit, then again without, and checks
/// every sample is stored once; returns the worker (its log has both runs).
async fn sink_crash(sink: &str, point: &str) -> (TestStack, Worker, Contents) {
    let stack = sink_stack().await;
    let mut worker = stack.idle_worker(&["sink", sink], &[]);
    let crash = format!("{point}@2");
    worker.start_with_env(&[(labstream_schemas::CRASH_POINT_VAR, crash.as_str())]);
    let mut want = Contents::new();
    // One request at a time until the worker crashed: every batch is a hit.
    let mut first = 0;
    while worker.is_running() && first < 50 * 40 {
        post(&stack, &mut want, first, 1).await;
        first += 50;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    crashed_at(&mut worker, point).await;
    worker.start();
    post(&stack, &mut want, 100_000, 4).await;
    support::wait_caught_up(
        &stack.brokers,
        &format!("t{}-{sink}", stack.id),
        &stack.topic("samples.raw"),
        Duration::from_secs(60),
    )
    .await;
    (stack, worker, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_holds_each_sample_once_after_a_crash_between_write_and_commit() {
    let (stack, worker, want) = sink_crash("mongo", "mongo.written_before_commit").await;
    let db = stack.mongo().await;
    let (n, contents) = mongo_rows(&db).await;
    assert_eq!(n, want.len(), "rows in MongoDB\n{}", worker.logs());
    assert_eq!(contents, want);
    // Recovery: the written but uncommitted batch was read again and met the index.
    let log = worker.logs();
    let after_crash = &log[log.find("crash point").unwrap()..];
    let repeated: u64 = after_crash
        .lines()
        .filter(|l| l.contains("mongo sink wrote a batch"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("duplicates="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum();
    assert!(
        repeated > 0,
        "the restarted sink never met the batch written before the crash:\n{log}"
    );
    db.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_holds_each_sample_once_after_a_crash_before_the_write() {
    let (stack, worker, want) = sink_crash("mongo", "mongo.before_write").await;
    let db = stack.mongo().await;
    let (n, contents) = mongo_rows(&db).await;
    assert_eq!(
        n,
        want.len(),
        "rows in MongoDB (a commit before the write loses the batch)\n{}",
        worker.logs()
    );
    assert_eq!(contents, want);
    db.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_holds_each_sample_once_after_a_crash_before_the_write() {
    let (stack, worker, want) = sink_crash("lake", "lake.before_write").await;
    let (n, contents) = lake_rows(&stack);
    assert_eq!(
        n,
        want.len(),
        "rows in the lake (a commit before the write loses them)\n{}",
        worker.logs()
    );
    assert_eq!(contents, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_holds_each_sample_once_after_a_crash_between_rename_and_commit() {
    let (stack, worker, want) = sink_crash("lake", "lake.renamed_before_commit").await;
    let (n, contents) = lake_rows(&stack);
    assert_eq!(n, want.len(), "rows in the lake\n{}", worker.logs());
    assert_eq!(contents, want);
    // Recovery: the records of the renamed but uncommitted file were delivered again
    // and skipped, by the offsets in the lake's file names.
    let log = worker.logs();
    let after_crash = &log[log.find("crash point").unwrap()..];
    assert!(
        after_crash.contains("lake sink: skipped records already in the lake"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_holds_each_sample_once_after_a_crash_between_write_and_rename() {
    let (stack, worker, want) = sink_crash("lake", "lake.written_before_rename").await;
    let (n, contents) = lake_rows(&stack);
    assert_eq!(n, want.len(), "rows in the lake\n{}", worker.logs());
    assert_eq!(contents, want);
    // The file written but never renamed is still there under its temporary name
    // (removed once stale), and no query read it.
    assert!(
        stack
            .lake_files()
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".parquet.tmp")),
        "{:?}",
        stack.lake_files()
    );
}

/// An alerts processor crashing inside its transaction: `point` armed at the first
/// transaction, the one holding the firing transition.
async fn alerts_crash(point: &str) -> (TestStack, Worker, Vec<support::RawRecord>) {
    let stack = TestStack::start_with(&[("LABSTREAM__PROCESSORS__ALERTS__ENABLED", "false")]).await;
    let mut processor = stack.idle_worker(&["process", "alerts"], &[]);
    processor.start_with_env(&[(labstream_schemas::CRASH_POINT_VAR, point)]);
    let (status, body) = stack
        .post(
            "/v1/alerts/rules",
            "application/json",
            json!({"rule_id": "warm", "name": "Warm", "topic": "crash",
                   "sensor_type": "temperature", "field": "celsius",
                   "condition": {"kind": "above", "threshold": 5.0, "recovery": 4.0}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    support::eventually("the rule applied", Duration::from_secs(60), || async {
        if processor.logs().contains("alert rule applied") {
            Ok(())
        } else {
            Err(processor.logs())
        }
    })
    .await;
    let t0 = Timestamp::now().as_micros() - 10_000_000;
    let at = |ms: i64| Timestamp::from_micros(t0 + ms * 1000).to_string();
    let sample = |ms: i64, celsius: f64| {
        json!({"sensor_id": "freezer-1",
        "sensor_type": "temperature", "ts": at(ms), "values": {"celsius": celsius}})
    };
    // Below, then above: one batch, one transaction with the firing event.
    let (status, body) = stack
        .post(
            "/v1/samples",
            "application/json",
            json!([sample(0, 1.0), sample(100, 10.0)]).to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    crashed_at(&mut processor, point).await;
    let log = processor.logs();
    let transition = log.find("alert transition").unwrap_or(usize::MAX);
    assert!(
        transition < log.find("crash point").unwrap(),
        "the crashed transaction held the firing transition:\n{log}"
    );
    processor.start();
    let (status, body) = stack
        .post(
            "/v1/samples",
            "application/json",
            json!([sample(200, 3.0)]).to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let topic = stack.topic("alerts.crash");
    let events: Vec<(String, AlertEvent)> = stack.read_records(&topic, 2);
    let seen: Vec<(i64, AlertStatus)> =
        events.iter().map(|(_, e)| (e.sequence, e.status)).collect();
    assert_eq!(
        seen,
        [(1, AlertStatus::Firing), (2, AlertStatus::Resolved)],
        "each transition once (read_committed)\n{}",
        processor.logs()
    );
    let uncommitted = stack.read_raw_uncommitted(&topic, 2);
    (stack, processor, uncommitted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_transitions_are_once_after_a_crash_before_the_transaction_commits() {
    let (_stack, processor, raw) = alerts_crash("kafka.transaction.before_commit").await;
    // Recovery: the open transaction was aborted when the restarted processor fenced
    // it; its firing event is in the log (aborted), and was decided and sent again.
    let firing = raw
        .iter()
        .filter(|r| {
            String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()) == "warm/freezer-1"
        })
        .count();
    assert_eq!(
        firing,
        3,
        "the aborted firing event, the committed one and the resolved one\n{}",
        processor.logs()
    );
    assert!(processor.logs().contains("alerts: state restored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_transitions_are_once_after_a_crash_after_the_transaction_committed() {
    let (_stack, processor, raw) = alerts_crash("kafka.transaction.after_commit").await;
    // The committed transaction is not repeated: the restart resumed after its offsets.
    assert_eq!(raw.len(), 2, "nothing sent twice, aborted or not: {raw:?}");
    let log = processor.logs();
    let after_crash = &log[log.find("crash point").unwrap()..];
    assert!(
        !after_crash.contains("status=firing"),
        "the firing transition was decided again after the commit:\n{log}"
    );
}

/// `labstream compact` over the stack's lake, with `point` armed or not.
fn compact(stack: &TestStack, point: Option<&str>) -> (std::process::ExitStatus, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_labstream"));
    command
        .args([
            "compact",
            "--min-files",
            "1",
            "--delete-grace",
            "0s",
            "--lake",
        ])
        .arg(&stack.lake)
        .env("LABSTREAM__AUTH__DISABLED", "true")
        .env("LABSTREAM__LOG__FILTER", "info,labstream=debug");
    if let Some(point) = point {
        command.env(labstream_schemas::CRASH_POINT_VAR, point);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// Small files: one request at a time, each flushed on its own.
async fn small_files(stack: &TestStack, want: &mut Contents, from: i64) {
    for r in 0..8 {
        post(stack, want, from + r * 50, 1).await;
        let n = want.len();
        support::eventually(
            "the lake sink writing the request",
            Duration::from_secs(30),
            || async {
                let rows = lake_rows(stack).0;
                if rows >= n {
                    Ok(())
                } else {
                    Err(format!("{rows} of {n}"))
                }
            },
        )
        .await;
    }
}

fn parquet_files(stack: &TestStack) -> usize {
    stack
        .lake_files()
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_crashing_mid_swap_loses_and_repeats_nothing() {
    let stack = TestStack::start_with(&[
        ("LABSTREAM__SINKS__LAKE__SOURCE", "raw"),
        ("LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL", "100ms"),
        ("LABSTREAM__PROCESSORS__ENRICHMENT__ENABLED", "false"),
        ("LABSTREAM__COMPACTION__ENABLED", "false"),
    ])
    .await;
    let mut want = Contents::new();
    small_files(&stack, &mut want, 0).await;
    let before = parquet_files(&stack);
    assert!(before >= 8, "{before} files");

    // Between the merged file's write and its rename.
    let (status, out) = compact(&stack, Some("compaction.merged_before_rename"));
    assert_eq!(status.signal(), Some(SIGABRT), "{out}");
    assert!(
        out.contains("crash point compaction.merged_before_rename reached"),
        "{out}"
    );
    assert_eq!(parquet_files(&stack), before, "nothing renamed");
    let leftover = |stack: &TestStack| {
        stack
            .lake_files()
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        leftover(&stack).len(),
        1,
        "the crashed merge's temporary file"
    );
    let (n, contents) = lake_rows(&stack);
    assert_eq!((n, &contents), (want.len(), &want), "rows after the crash");
    let (status, out) = compact(&stack, None);
    assert!(status.success(), "{out}");
    assert!(
        leftover(&stack).is_empty(),
        "the next run removes the crashed merge's temporary file: {:?}\n{out}",
        leftover(&stack)
    );
    let (n, contents) = lake_rows(&stack);
    assert_eq!((n, &contents), (want.len(), &want), "rows after compaction");

    // Between the rename and the deletion of the merged inputs.
    small_files(&stack, &mut want, 10_000).await;
    let before = parquet_files(&stack);
    let (status, out) = compact(&stack, Some("compaction.renamed_before_delete"));
    assert_eq!(status.signal(), Some(SIGABRT), "{out}");
    assert!(
        parquet_files(&stack) > before,
        "the merged file is in place beside all its inputs"
    );
    let (n, contents) = lake_rows(&stack);
    assert_eq!(
        (n, &contents),
        (want.len(), &want),
        "a query reads the merged file or its inputs, never both"
    );
    let (status, out) = compact(&stack, None);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("superseded files deleted"),
        "the next run deletes the merged inputs:\n{out}"
    );
    let (n, contents) = lake_rows(&stack);
    assert_eq!(
        (n, &contents),
        (want.len(), &want),
        "rows after the clean-up"
    );
    assert!(parquet_files(&stack) < before, "{}", parquet_files(&stack));
}
