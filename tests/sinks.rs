//! The sinks' exactly-once effect against the real stack: the sink processes are
//! SIGKILLed again and again while samples flow, and afterwards every accepted sample
//! is in MongoDB exactly once and in the lake exactly once, checked by value. Then the
//! sinks' consumer groups are reset to the earliest offset and run again (a replay):
//! MongoDB and the lake are unchanged.

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

/// Posts a JSON batch (µs timestamps) and asserts ingest accepted it.
async fn post_accepted(client: &reqwest::Client, stack: &TestStack, batch: &[serde_json::Value]) {
    let resp = client
        .post(format!("{}/v1/samples?precision=us", stack.url))
        .bearer_auth(&stack.token)
        .json(batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
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
        ],
    )
    .await;
    let topic = stack.topic("samples.raw");
    let mut mongo = stack.worker(&["sink", "mongo"]);
    let mut lake = stack.worker(&["sink", "lake"]);
    let db = stack.mongo().await;

    // 40 requests of 50 samples, spread over two days and ten sensors.
    let mut want = Contents::new();
    let client = reqwest::Client::new();
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
        post_accepted(&client, &stack, &batch).await;
        // Every few requests, crash both sinks mid-stream and start them again.
        if r % 6 == 5 {
            tokio::time::sleep(Duration::from_millis(150 + (r as u64 * 37) % 400)).await;
            mongo.kill9();
            lake.kill9();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            mongo.start();
            lake.start();
        }
    }
    assert!(kills >= 6);
    wait_for(&stack, &db, &want, &[&mongo, &lake]).await;
    // Let anything that would be a duplicate arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;

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
    reset_to_earliest(&stack, &mongo_group, &topic);
    reset_to_earliest(&stack, &lake_group, &topic);
    mongo.start();
    lake.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while group_offsets(&stack, &mongo_group, &topic) < end
        || group_offsets(&stack, &lake_group, &topic) < end
    {
        assert!(
            Instant::now() < deadline,
            "the replay did not finish in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
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
    let mut first = stack.worker(&["sink", "lake"]);
    let second = stack.worker(&["sink", "lake"]);
    let mut want = Contents::new();
    let client = reqwest::Client::new();
    for r in 0..30i64 {
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
        post_accepted(&client, &stack, &batch).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        // One member dies mid-stream; the other takes its partitions after the session
        // timeout; then it comes back and the partitions are split again.
        if r == 8 {
            first.kill9();
        }
        if r == 22 {
            first.start();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (n, _) = lake_rows(&stack);
        if n >= want.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lake holds {n} of {} rows\n{}\n----\n{}",
            want.len(),
            first.logs(),
            second.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (n, contents) = lake_rows(&stack);
    assert_eq!(n, want.len(), "rows written twice");
    assert_eq!(contents, want);
    assert!(
        second.logs().contains("partitions assigned"),
        "the survivor never took over:\n{}",
        second.logs()
    );
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
    let client = reqwest::Client::new();
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
        post_accepted(&client, &stack, &batch).await;
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        group_offsets(&stack, &group, &topic),
        0,
        "committed unwritten records"
    );
    // Killed while retrying, started again, still failing for a while.
    lake.kill9();
    lake.start();
    post(600, 900).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
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
    let end = stack.topic_records(&topic);
    let deadline = Instant::now() + Duration::from_secs(30);
    while group_offsets(&stack, &group, &topic) < end {
        assert!(
            Instant::now() < deadline,
            "offsets not committed after the write"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (n, contents) = lake_rows(&stack);
    assert_eq!(n, want.len(), "rows written twice");
    assert_eq!(contents, want);
}
