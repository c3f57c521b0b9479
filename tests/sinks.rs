//! The sinks' exactly-once effect against the real stack: the sink processes are
//! SIGKILLed again and again while samples flow, each time only once the restarted
//! process has written again (static membership gives a restarted member its
//! partitions back at once, so no kill lands on a member still waiting for them), and
//! afterwards every accepted sample is in MongoDB exactly once and in the lake exactly
//! once, checked by value once the groups committed to the end. Then the sinks'
//! consumer groups are reset to the earliest offset and run again (a replay): MongoDB
//! and the lake are unchanged. Two lake sinks share the partitions: one is killed, the
//! other takes all partitions over once the dead one's session expires (6 s here), and
//! writes what the dead one owned, each record once.

mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};
use support::power::{Contents, T0, lake_rows, mongo_rows};
use support::{TestStack, Worker};

const DAY_US: i64 = 86_400_000_000;

async fn wait_for(stack: &TestStack, db: &mongodb::Database, want: &Contents, workers: &[&Worker]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (mongo_n, _) = mongo_rows(db).await;
        let (lake_n, _) = lake_rows(stack);
        if mongo_n >= want.len() && lake_n >= want.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after 120 s MongoDB holds {mongo_n} and the lake {lake_n} of {} samples\n{}",
            want.len(),
            workers
                .iter()
                .map(|w| w.logs())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn group_offsets(stack: &TestStack, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack.brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// Rewinds a stopped consumer group to the beginning of every partition.
fn reset_to_earliest(stack: &TestStack, group: &str, topic: &str) {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .unwrap();
    }
    consumer
        .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    assert_eq!(group_offsets(stack, group, topic), 0);
}

/// A labstream config file that gives each sink process a static group membership
/// (`group.instance.id`): a member restarted after a crash takes its partitions back at
/// once instead of after the session timeout.
fn static_membership(stack: &TestStack) -> String {
    let path = stack.dir().join("static-membership.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka.librdkafka]\n\"group.instance.id\" = \"t{}-member\"\n",
            stack.id
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Waits until `worker`'s log has more lines saying it wrote than `before`.
async fn wrote_since(worker: &Worker, line: &str, before: usize) {
    support::eventually(
        &format!("the restarted sink writing ({line:?})"),
        Duration::from_secs(60),
        || async {
            let n = support::count_lines(&worker.logs(), &[line]);
            if n > before {
                Ok(())
            } else {
                Err(format!("{n} lines\n{}", worker.logs()))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_killed_repeatedly_then_replayed_hold_every_sample_exactly_once() {
    let stack = TestStack::start_command(
        "ingest",
        &[
            ("LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL", "300ms"),
            // The sinks alone are under test: the lake reads samples.raw, as the Mongo
            // sink does (tests/experiments.rs covers the enrichment in between).
            ("LABSTREAM__SINKS__LAKE__SOURCE", "raw"),
            ("LABSTREAM__SINKS__MONGO__BATCH_MAX_RECORDS", "100"),
            ("LABSTREAM__SINKS__MONGO__BATCH_MAX_WAIT", "50ms"),
            ("LABSTREAM__COMPACTION__ENABLED", "false"),
        ],
    )
    .await;
    let topic = stack.topic("samples.raw");
    let config = static_membership(&stack);
    let membership = [("LABSTREAM_CONFIG", config.as_str())];
    let mut mongo = stack.worker_with(&["sink", "mongo"], &membership);
    let mut lake = stack.worker_with(&["sink", "lake"], &membership);
    let db = stack.mongo().await;

    // 40 requests of 50 samples, spread over two days and ten sensors.
    let mut want = Contents::new();
    let mut kills = 0;
    for r in 0..40i64 {
        let batch: Vec<serde_json::Value> = (0..50i64)
            .map(|i| {
                let n = r * 50 + i;
                let id = format!("p-{}", n % 10);
                let ts = T0 - (n % 2) * DAY_US + n * 1_000;
                let watts = n as f64 + 0.25;
                want.insert((id.clone(), ts), watts);
                serde_json::json!({"sensor_id": id, "sensor_type": "power", "ts": ts, "values": {"watts": watts}})
            })
            .collect();
        let writes = (mongo_writes(&mongo), lake_writes(&lake));
        support::power::post_us(&stack, &batch).await;
        // Every few requests, once both sinks wrote this request's samples (so the
        // restarted processes are past their start and own their partitions), crash
        // both mid-stream (another request just arrived) and start them again.
        if r % 6 == 5 {
            wrote_since(&mongo, "mongo sink wrote a batch", writes.0).await;
            wrote_since(&lake, "lake sink wrote files", writes.1).await;
            support::power::post_us(&stack, &batch_after(r, &mut want)).await;
            mongo.kill9();
            lake.kill9();
            kills += 1;
            mongo.start();
            lake.start();
        }
    }
    assert!(kills >= 6);
    // Everything is written once both groups committed to the end of samples.raw:
    // anything written twice is written by then.
    for group in ["mongo", "lake"] {
        support::wait_caught_up(
            &stack.brokers,
            &format!("t{}-{group}", stack.id),
            &topic,
            Duration::from_secs(120),
        )
        .await;
    }
    wait_for(&stack, &db, &want, &[&mongo, &lake]).await;

    let (mongo_n, mongo_contents) = mongo_rows(&db).await;
    let (lake_n, lake_contents) = lake_rows(&stack);
    assert_eq!(mongo_n, want.len(), "MongoDB rows");
    assert_eq!(mongo_contents, want, "MongoDB values");
    assert_eq!(
        lake_n,
        want.len(),
        "lake rows (a duplicate would make more)"
    );
    assert_eq!(lake_contents, want, "lake values");
    // Replay: stop the sinks, rewind their groups, run them again until they caught up.
    mongo.stop();
    lake.stop();
    let mongo_group = format!("t{}-mongo", stack.id);
    let lake_group = format!("t{}-lake", stack.id);
    let end = stack.topic_records(&topic);
    assert!(group_offsets(&stack, &mongo_group, &topic) == end);
    assert!(group_offsets(&stack, &lake_group, &topic) == end);
    let files_before = stack.lake_files();
    // A static member stays in its group after it stopped, until its session expires.
    let kafka = labstream_bus::KafkaConfig {
        brokers: stack.brokers.clone(),
        ..labstream_bus::KafkaConfig::default()
    };
    for group in [&mongo_group, &lake_group] {
        let admin = labstream_bus::GroupAdmin::new(&kafka, group).unwrap();
        support::eventually(
            &format!("{group} without members"),
            Duration::from_secs(30),
            || async {
                let d = admin.describe().await.map_err(|e| e.to_string())?;
                if d.has_live_members() {
                    Err(format!("{d:?}"))
                } else {
                    Ok(())
                }
            },
        )
        .await;
    }
    reset_to_earliest(&stack, &mongo_group, &topic);
    reset_to_earliest(&stack, &lake_group, &topic);
    mongo.start();
    lake.start();
    for group in [&mongo_group, &lake_group] {
        support::wait_caught_up(&stack.brokers, group, &topic, Duration::from_secs(120)).await;
    }
    let (mongo_n, mongo_contents) = mongo_rows(&db).await;
    let (lake_n, lake_contents) = lake_rows(&stack);
    assert_eq!(
        (mongo_n, lake_n),
        (want.len(), want.len()),
        "rows after the replay"
    );
    assert_eq!(mongo_contents, want);
    assert_eq!(lake_contents, want);
    assert_eq!(
        stack.lake_files(),
        files_before,
        "the replay wrote lake files"
    );
    db.drop().await.unwrap();
}

/// Lines saying a batch was written, in the log of `worker` so far.
fn mongo_writes(worker: &Worker) -> usize {
    support::count_lines(&worker.logs(), &["mongo sink wrote a batch"])
}

fn lake_writes(worker: &Worker) -> usize {
    support::count_lines(&worker.logs(), &["lake sink wrote files"])
}

/// One more request of 50 samples (numbered after request `r`'s), so records are in
/// flight when the sinks are killed.
fn batch_after(r: i64, want: &mut Contents) -> Vec<serde_json::Value> {
    (0..50i64)
        .map(|i| {
            let n = 100_000 + r * 50 + i;
            let id = format!("p-{}", n % 10);
            let ts = T0 - (n % 2) * DAY_US + n * 1_000;
            let watts = n as f64 + 0.75;
            want.insert((id.clone(), ts), watts);
            serde_json::json!({"sensor_id": id, "sensor_type": "power", "ts": ts, "values": {"watts": watts}})
        })
        .collect()
}

/// Lines of `log` saying partitions were assigned to this member, with how many.
fn assignments(log: &str) -> Vec<usize> {
    log.lines()
        .filter(|l| l.contains("partitions assigned"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("partitions="))
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lake_sinks_sharing_the_partitions_survive_a_member_crash() {
    let stack = TestStack::start_command(
        "ingest",
        &[
            ("LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL", "200ms"),
            ("LABSTREAM__SINKS__LAKE__SOURCE", "raw"),
            // Compaction would hide duplicates; the lake must be right without it.
            ("LABSTREAM__COMPACTION__ENABLED", "false"),
        ],
    )
    .await;
    // The shortest session the broker allows: a dead member is noticed after 6 s.
    let config = stack.dir().join("session.toml");
    std::fs::write(
        &config,
        "[kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let session = [("LABSTREAM_CONFIG", config.as_str())];
    let mut first = stack.worker_with(&["sink", "lake"], &session);
    let second = stack.worker_with(&["sink", "lake"], &session);
    let topic = stack.topic("samples.raw");
    let group = format!("t{}-lake", stack.id);
    // Both members own partitions (3 between 2) before anything else happens.
    support::eventually(
        "both lake sinks owning partitions",
        Duration::from_secs(60),
        || async {
            let (a, b) = (assignments(&first.logs()), assignments(&second.logs()));
            match (a.last(), b.last()) {
                (Some(x), Some(y)) if x + y == 3 && *x > 0 && *y > 0 => Ok(()),
                _ => Err(format!("first {a:?}, second {b:?}")),
            }
        },
    )
    .await;

    let mut want = Contents::new();
    let post = async |from: i64, to: i64, want: &mut Contents| {
        for r in from..to {
            let batch: Vec<serde_json::Value> = (0..40i64)
                .map(|i| {
                    let n = r * 40 + i;
                    let id = format!("q-{}", n % 12);
                    let ts = T0 - DAY_US + n * 1_000;
                    let watts = n as f64 * 2.0;
                    want.insert((id.clone(), ts), watts);
                    serde_json::json!({"sensor_id": id, "sensor_type": "power", "ts": ts, "values": {"watts": watts}})
                })
                .collect();
            support::power::post_us(&stack, &batch).await;
        }
    };
    post(0, 8, &mut want).await;
    support::wait_caught_up(&stack.brokers, &group, &topic, Duration::from_secs(60)).await;

    // One member dies mid-stream; the other takes all three partitions over once the
    // dead one's session expires, and writes what the dead one owned.
    let seen_before = assignments(&second.logs()).len();
    post(8, 12, &mut want).await;
    first.kill9();
    post(12, 22, &mut want).await;
    support::eventually(
        "the survivor taking every partition over",
        Duration::from_secs(60),
        || async {
            let a = assignments(&second.logs());
            if a[seen_before..].contains(&3) {
                Ok(())
            } else {
                Err(format!("assignments {a:?}\n{}", second.logs()))
            }
        },
    )
    .await;
    support::wait_caught_up(&stack.brokers, &group, &topic, Duration::from_secs(60)).await;
    assert_eq!(
        lake_rows(&stack).0,
        want.len(),
        "the survivor wrote every record, the dead member's partitions' too"
    );

    // It comes back; the partitions are split again.
    let seen_before = assignments(&first.logs()).len();
    first.start();
    post(22, 30, &mut want).await;
    support::eventually(
        "the restarted member owning partitions again",
        Duration::from_secs(60),
        || async {
            let a = assignments(&first.logs());
            if a[seen_before..].iter().any(|n| *n > 0) {
                Ok(())
            } else {
                Err(format!("assignments {a:?}"))
            }
        },
    )
    .await;
    support::wait_caught_up(&stack.brokers, &group, &topic, Duration::from_secs(60)).await;
    let (n, contents) = lake_rows(&stack);
    assert_eq!(n, want.len(), "rows written twice (or lost)");
    assert_eq!(contents, want);
}

/// Waits until `lake` logged three more failed flushes than when called (counting from
/// the start of its log, which holds every run).
async fn three_more_failures(lake: &Worker, what: &str) {
    let failed = || support::count_lines(&lake.logs(), &["lake sink: flush failed; retrying"]);
    let before = failed();
    support::eventually(what, Duration::from_secs(30), || async {
        let n = failed();
        if n >= before + 3 {
            Ok(())
        } else {
            Err(format!("{n} failures"))
        }
    })
    .await;
}

/// The lake cannot be written for a while (here its `samples/power` folder is blocked by
/// a file): the lake sink retries the flush on its writing thread, commits nothing, and a
/// SIGKILL meanwhile loses nothing; once the lake is writable again every sample is in it
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_that_cannot_be_written_for_a_while_loses_and_duplicates_nothing() {
    let stack = TestStack::start_command(
        "ingest",
        &[
            ("LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL", "200ms"),
            ("LABSTREAM__SINKS__LAKE__SOURCE", "raw"),
            ("LABSTREAM__SINKS__LAKE__RETRY_BACKOFF_MAX", "500ms"),
            ("LABSTREAM__COMPACTION__ENABLED", "false"),
        ],
    )
    .await;
    let topic = stack.topic("samples.raw");
    let group = format!("t{}-lake", stack.id);
    let blocker = stack.lake.join("samples").join("power");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"not a folder").unwrap();
    let mut lake = stack.worker(&["sink", "lake"]);
    let mut want = Contents::new();
    let mut post = async |from: i64, to: i64| {
        let batch: Vec<serde_json::Value> = (from..to)
            .map(|n| {
                let id = format!("u-{}", n % 7);
                let ts = T0 + n * 1_000;
                let watts = n as f64 * 0.5;
                want.insert((id.clone(), ts), watts);
                serde_json::json!({"sensor_id": id, "sensor_type": "power", "ts": ts, "values": {"watts": watts}})
            })
            .collect();
        support::power::post_us(&stack, &batch).await;
    };
    post(0, 300).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lake.logs().contains("lake sink: flush failed; retrying") {
        assert!(
            Instant::now() < deadline,
            "the sink did not notice the lake fails:\n{}",
            lake.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    post(300, 600).await;
    // It consumes the new records and keeps failing: a few more attempts, and still
    // nothing committed.
    three_more_failures(&lake, "the sink failing on").await;
    assert_eq!(
        group_offsets(&stack, &group, &topic),
        0,
        "committed unwritten records"
    );
    // Killed while retrying, started again, still failing for a while.
    lake.kill9();
    lake.start();
    post(600, 900).await;
    three_more_failures(&lake, "the restarted sink failing too").await;
    assert_eq!(
        group_offsets(&stack, &group, &topic),
        0,
        "committed unwritten records"
    );
    assert_eq!(lake_rows(&stack).0, 0);
    std::fs::remove_file(&blocker).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lake_rows(&stack).0 < want.len() {
        assert!(
            Instant::now() < deadline,
            "the lake holds {} of {} rows after it was writable again:\n{}",
            lake_rows(&stack).0,
            want.len(),
            lake.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    support::wait_caught_up(&stack.brokers, &group, &topic, Duration::from_secs(30)).await;
    let (n, contents) = lake_rows(&stack);
    assert_eq!(n, want.len(), "rows written twice");
    assert_eq!(contents, want);
}
