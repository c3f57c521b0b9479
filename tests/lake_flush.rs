//! The lake sink flushes by rows and by bytes, counted over all its open files (one per
//! directory and topic-partition), not only by time: with `flush_interval` an hour, the
//! samples still reach the lake once the buffered rows (or bytes) reach the bound, each
//! flush writing every open file, so no file grows to the bound alone and memory holds
//! about one bound's worth. What is left below the bound is written when the sink is
//! stopped with SIGTERM (it finishes and commits).

mod support;

use std::path::Path;
use std::time::Duration;
use support::TestStack;
use support::power::{T0, lake_rows};

const DAY_US: i64 = 86_400_000_000;

/// Rows of every Parquet file under `lake`.
fn file_rows(lake: &Path) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let mut dirs = vec![lake.to_owned()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let reader = parquet::file::serialized_reader::SerializedFileReader::new(
                    std::fs::File::open(&p).unwrap(),
                )
                .unwrap();
                let rows = parquet::file::reader::FileReader::metadata(&reader)
                    .file_metadata()
                    .num_rows();
                out.push((p.display().to_string(), rows));
            }
        }
    }
    out
}

/// Posts `requests` batches of `per_request` power samples over 4 days and 12 sensors
/// (4 directories x 3 partitions of open files), each with a tag of `tag_bytes`, one
/// request every 600 ms: the sink fetches what arrived in up to 500 ms at once, so a
/// fetched batch holds one request (two at most) and a flush starts near the bound.
async fn post(stack: &TestStack, requests: i64, per_request: i64, tag_bytes: usize) -> i64 {
    let tag = "x".repeat(tag_bytes);
    for r in 0..requests {
        let batch: Vec<_> = (0..per_request)
            .map(|i| {
                let n = r * per_request + i;
                serde_json::json!({"sensor_id": format!("fl-{}", n % 12), "sensor_type": "power",
                    "ts": T0 - (n % 4) * DAY_US + n * 1000, "values": {"watts": n as f64},
                    "tags": {"note": tag}})
            })
            .collect();
        support::power::post_us(stack, &batch).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    requests * per_request
}

async fn flushes_by(
    setting: (&str, &str),
    requests: i64,
    per_request: i64,
    tag_bytes: usize,
    bound_rows: i64,
) {
    let stack = TestStack::start_command(
        "ingest",
        &[
            ("LABSTREAM__SINKS__LAKE__SOURCE", "raw"),
            ("LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL", "1h"),
            ("LABSTREAM__SINKS__LAKE__FLUSH_ROWS", "1000000000"),
            ("LABSTREAM__SINKS__LAKE__FLUSH_BYTES", "1000000000000"),
            setting,
            ("LABSTREAM__COMPACTION__ENABLED", "false"),
        ],
    )
    .await;
    let mut sink = stack.worker(&["sink", "lake"]);
    let total = post(&stack, requests, per_request, tag_bytes).await;
    // Flushed by the bound long before the hour: all but what is below the bound (and
    // the batch that crossed it last) is in the lake.
    support::eventually(
        &format!("the lake sink flushing by {}", setting.0),
        Duration::from_secs(60),
        || async {
            let n = lake_rows(&stack).0 as i64;
            if n >= total - 2 * bound_rows {
                Ok(())
            } else {
                Err(format!("{n} of {total} rows\n{}", sink.logs()))
            }
        },
    )
    .await;
    let files = file_rows(&stack.lake);
    let dirs: std::collections::BTreeSet<String> = files
        .iter()
        .map(|(p, _)| Path::new(p).parent().unwrap().display().to_string())
        .collect();
    assert_eq!(dirs.len(), 4, "{files:?}");
    // The bound is over all open files together: each flush wrote several files, none
    // of which held the bound's rows alone.
    let max = files.iter().map(|(_, r)| *r).max().unwrap();
    assert!(
        max <= bound_rows / 2,
        "a file of {max} rows: the bound of about {bound_rows} rows was applied per file, not over all open files\n{files:?}"
    );
    assert!(files.len() >= 12, "{} files: {files:?}", files.len());

    // SIGTERM: the sink writes what it holds and commits it.
    sink.stop();
    assert_eq!(lake_rows(&stack).0 as i64, total, "after the sink stopped");
    let group = format!("t{}-lake", stack.id);
    assert_eq!(
        support::group_lag(&stack.brokers, &group, &stack.topic("samples.raw")).await,
        0,
        "the stopped sink committed what it wrote"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_sink_flushes_by_rows_over_all_open_files() {
    // 200 rows in all; 20 requests of 60 samples.
    flushes_by(
        ("LABSTREAM__SINKS__LAKE__FLUSH_ROWS", "200"),
        20,
        60,
        8,
        200,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_sink_flushes_by_bytes_over_all_open_files() {
    // 1 KiB tags: 256 KiB of buffered columns is about 250 rows.
    flushes_by(
        ("LABSTREAM__SINKS__LAKE__FLUSH_BYTES", "262144"),
        20,
        60,
        1024,
        250,
    )
    .await;
}
