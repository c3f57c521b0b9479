//! The ops outage drill against the real stack: ingest and enrichment keep running while
//! the sink workers are stopped; they restart and catch up; then both sink groups are
//! replayed with `labstream replay` from a time before the outage (refused while a
//! worker runs, executed once they are stopped) and run again. MongoDB and the lake
//! hold every accepted sample exactly once, with no gap, checked by value.

mod support;

use labstream_bus::{GroupAdmin, KafkaConfig};
use std::time::{Duration, Instant};
use support::power::{Contents, T0, lake_rows, mongo_rows};
use support::{TestStack, Worker};

/// Posts `requests` batches of 25 samples, numbered from `first`, recording them in `want`.
async fn ingest(stack: &TestStack, want: &mut Contents, first: i64, requests: i64) {
    for r in 0..requests {
        let batch: Vec<serde_json::Value> = (0..25i64)
            .map(|i| {
                let n = first + r * 25 + i;
                let id = format!("drill-{}", n % 7);
                let ts = T0 + n * 1_000;
                let watts = n as f64 + 0.5;
                want.insert((id.clone(), ts), watts);
                serde_json::json!({"sensor_id": id, "sensor_type": "power", "ts": ts, "values": {"watts": watts}})
            })
            .collect();
        support::power::post_us(stack, &batch).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

async fn wait_for_all(
    stack: &TestStack,
    db: &mongodb::Database,
    want: &Contents,
    workers: &[&Worker],
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (mongo_n, _) = mongo_rows(db).await;
        let (lake_n, _) = lake_rows(stack);
        if mongo_n >= want.len() && lake_n >= want.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after 120 s MongoDB holds {mongo_n} and the lake {lake_n} of {} samples\n{}\n{}",
            want.len(),
            workers
                .iter()
                .map(|w| w.logs())
                .collect::<Vec<_>>()
                .join("\n----\n"),
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn assert_exactly(stack: &TestStack, db: &mongodb::Database, want: &Contents, when: &str) {
    let (mongo_n, mongo) = mongo_rows(db).await;
    let (lake_n, lake) = lake_rows(stack);
    assert_eq!(mongo_n, want.len(), "MongoDB rows {when}");
    assert_eq!(&mongo, want, "MongoDB values {when}");
    assert_eq!(
        lake_n,
        want.len(),
        "lake rows {when} (a duplicate makes more)"
    );
    assert_eq!(&lake, want, "lake values {when}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_stopped_restarted_and_replayed_hold_every_sample_exactly_once() {
    // serve runs ingest, API and enrichment; the sinks run as separate workers.
    let stack = TestStack::start_with(&[
        ("LABSTREAM__SINKS__MONGO__ENABLED", "false"),
        ("LABSTREAM__SINKS__LAKE__ENABLED", "false"),
        // Compaction would hide duplicates; the lake must be right without it.
        ("LABSTREAM__COMPACTION__ENABLED", "false"),
        ("LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL", "300ms"),
        ("LABSTREAM__PROCESSORS__ENRICHMENT__LATENESS", "1s"),
    ])
    .await;
    let mut mongo = stack.worker(&["sink", "mongo"]);
    let mut lake = stack.worker(&["sink", "lake"]);
    let db = stack.mongo().await;
    let mut want = Contents::new();

    // Before the outage; the replay will start in the middle of it.
    ingest(&stack, &mut want, 0, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let replay_from = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ingest(&stack, &mut want, 250, 10).await;
    wait_for_all(&stack, &db, &want, &[&mongo, &lake]).await;

    // The outage: the sinks are down, ingest keeps accepting.
    mongo.stop();
    lake.stop();
    ingest(&stack, &mut want, 500, 20).await;
    assert!(mongo_rows(&db).await.0 < want.len());
    // Back: they catch up from their committed offsets while more arrives.
    mongo.start();
    lake.start();
    ingest(&stack, &mut want, 1000, 10).await;
    wait_for_all(&stack, &db, &want, &[&mongo, &lake]).await;
    caught_up(&stack).await;
    assert_exactly(&stack, &db, &want, "after the restart").await;

    // Replay from before the outage. Refused while a worker of the group runs.
    let mongo_group = format!("t{}-mongo", stack.id);
    let lake_group = format!("t{}-lake", stack.id);
    let out = stack.run_cli(&[
        "replay",
        "--group",
        &mongo_group,
        "--to",
        &replay_from,
        "--execute",
    ]);
    assert!(
        out.contains("refused") && out.contains("labstream sink mongo"),
        "a replay with a live member must be refused, saying what to stop: {out}"
    );
    mongo.stop();
    lake.stop();
    let kafka = KafkaConfig {
        brokers: stack.brokers.clone(),
        ..KafkaConfig::default()
    };
    for group in [&mongo_group, &lake_group] {
        let admin = GroupAdmin::new(&kafka, group).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while admin.describe().await.unwrap().has_live_members() {
            assert!(Instant::now() < deadline, "{group} still has members");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The dry run shows the moves and changes nothing.
        let dry = stack.run_cli(&["replay", "--group", group, "--to", &replay_from]);
        assert!(dry.contains("dry run: nothing changed"), "{dry}");
        assert!(dry.contains("records read again"), "{dry}");
        let lag_before = lag(&admin, group, &stack).await;
        assert_eq!(lag_before, 0, "{dry}");
        let out = stack.run_cli(&[
            "replay",
            "--group",
            group,
            "--to",
            &replay_from,
            "--execute",
        ]);
        assert!(out.contains("moved group"), "{out}");
        // The records since the replay time are to be read again: at least the
        // outage's 500 and the 250 after the cut, not the whole log.
        let lag_after = lag(&admin, group, &stack).await;
        assert!(
            (750..want.len() as i64).contains(&lag_after),
            "{group}: {lag_after} records to re-read of {} in all\n{out}",
            want.len()
        );
    }
    let lake_files = stack.lake_files();

    mongo.start();
    lake.start();
    for group in [&mongo_group, &lake_group] {
        let admin = GroupAdmin::new(&kafka, group).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while lag(&admin, group, &stack).await > 0 {
            assert!(
                Instant::now() < deadline,
                "{group} did not finish the replay in 120 s\n{}\n{}",
                mongo.logs(),
                lake.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    caught_up(&stack).await;
    assert_exactly(&stack, &db, &want, "after the replay").await;
    assert_eq!(
        stack.lake_files(),
        lake_files,
        "the replay wrote lake files for samples already there"
    );
    let out = stack.run_cli(&["lag"]);
    assert!(
        out.contains(&mongo_group) && out.contains(&lake_group),
        "{out}"
    );
    mongo.stop();
    lake.stop();
    db.drop().await.unwrap();
}

/// Waits until both sink groups committed to the end of what they read (enrichment
/// included): anything they would write twice is written by then.
async fn caught_up(stack: &TestStack) {
    let enrichment = format!("t{}-enrichment", stack.id);
    support::wait_caught_up(
        &stack.brokers,
        &enrichment,
        &stack.topic("samples.raw"),
        Duration::from_secs(60),
    )
    .await;
    for (group, topic) in [("mongo", "samples.raw"), ("lake", "samples.enriched")] {
        support::wait_caught_up(
            &stack.brokers,
            &format!("t{}-{group}", stack.id),
            &stack.topic(topic),
            Duration::from_secs(60),
        )
        .await;
    }
}

/// Records the group has still to read in the topic its role reads.
async fn lag(admin: &GroupAdmin, group: &str, stack: &TestStack) -> i64 {
    let topic = if group.ends_with("-lake") {
        stack.topic("samples.enriched")
    } else {
        stack.topic("samples.raw")
    };
    admin
        .offsets(&topic)
        .await
        .unwrap()
        .iter()
        .map(|p| p.lag())
        .sum()
}
