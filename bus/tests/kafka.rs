//! Bus plumbing against the real broker of the local stack (`infra/local/stack up`):
//! produce, consume in a group, commit, restart the consumer, resume where it stopped.

use labstream_bus::{BatchConsumer, KafkaConfig, Producer, TopicSpec, ensure_topics, probe};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn config() -> KafkaConfig {
    KafkaConfig {
        brokers: std::env::var("LABSTREAM__KAFKA__BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        ..KafkaConfig::default()
    }
}

async fn consume(consumer: &BatchConsumer, want: usize) -> Vec<labstream_bus::Record> {
    let cancel = CancellationToken::new();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: got {} of {want} records",
            got.len()
        );
        let batch = consumer
            .next_batch(want - got.len(), Duration::from_millis(500), &cancel)
            .await
            .unwrap();
        got.extend(batch);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_resumes_from_the_committed_offset_after_a_restart() {
    let config = config();
    probe(&config, Duration::from_secs(10))
        .await
        .expect("Kafka of the local stack must be running: infra/local/stack up");
    let topic = format!("test.bus.{}", uuid::Uuid::new_v4());
    let group = format!("test-bus-{}", uuid::Uuid::new_v4());
    ensure_topics(&config, &[TopicSpec::new(&topic, 1)])
        .await
        .unwrap();
    // A second call finds the topic and leaves it alone.
    ensure_topics(&config, &[TopicSpec::new(&topic, 1)])
        .await
        .unwrap();

    let producer = Producer::new(&config).unwrap();
    for i in 0..10 {
        let d = producer
            .send(&topic, b"k", format!("message-{i}").as_bytes())
            .await
            .unwrap();
        assert_eq!((d.partition, d.offset), (0, i));
    }

    let first = BatchConsumer::new(&config, &group, &[&topic]).unwrap();
    let got = consume(&first, 4).await;
    let payloads: Vec<_> = got
        .iter()
        .map(|r| String::from_utf8(r.payload.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(
        payloads,
        ["message-0", "message-1", "message-2", "message-3"]
    );
    first.commit(&got).await.unwrap();
    // The member knows what it owns, and that the assignment changed since it joined.
    assert!(first.assignment_generation() > 0);
    assert_eq!(
        first.assigned().into_iter().collect::<Vec<_>>(),
        [(topic.clone(), 0)]
    );
    // Read two more without committing them: a restart must deliver them again.
    let uncommitted = consume(&first, 2).await;
    assert_eq!(uncommitted[0].offset, 4);
    drop(first);

    let second = BatchConsumer::new(&config, &group, &[&topic]).unwrap();
    let rest = consume(&second, 6).await;
    let offsets: Vec<i64> = rest.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [4, 5, 6, 7, 8, 9]);
    assert_eq!(rest[0].payload.as_deref(), Some(&b"message-4"[..]));
    assert_eq!(rest[0].key.as_deref(), Some(&b"k"[..]));
    second.commit(&rest).await.unwrap();
    let committed = second.committed(Duration::from_secs(10)).await.unwrap();
    assert_eq!(committed, [(topic.clone(), 0, Some(10))]);
}

#[tokio::test]
async fn an_unreachable_broker_is_reported_not_hung() {
    let config = KafkaConfig {
        brokers: "127.0.0.1:1".into(),
        produce_timeout: Duration::from_secs(2),
        ..KafkaConfig::default()
    };
    let err = probe(&config, Duration::from_secs(2)).await.unwrap_err();
    assert!(err.to_string().contains("not reachable"), "{err}");
    let producer = Producer::new(&config).unwrap();
    let err = producer.send("nowhere", b"k", b"v").await.unwrap_err();
    assert!(err.is_retryable());
}

/// Partitions move while a member gathers a batch (another member joins and leaves
/// again and again). A partition revoked mid-batch is read anew from its committed
/// offset, so a batch must never hold records of an earlier assignment next to the
/// re-read ones: per partition, offsets rise within every batch. Nothing is committed
/// here, so every re-read starts at offset 0 and a stale record would show at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_never_mixes_records_of_an_earlier_assignment() {
    let config = config();
    probe(&config, Duration::from_secs(10))
        .await
        .expect("Kafka of the local stack must be running: infra/local/stack up");
    let topic = format!("test.bus.rebalance.{}", uuid::Uuid::new_v4());
    let group = format!("test-bus-rebalance-{}", uuid::Uuid::new_v4());
    ensure_topics(&config, &[TopicSpec::new(&topic, 4)])
        .await
        .unwrap();
    let cancel = CancellationToken::new();

    // A steady stream, so the member is receiving when partitions move.
    let producing = {
        let (config, topic, cancel) = (config.clone(), topic.clone(), cancel.clone());
        tokio::spawn(async move {
            let producer = Producer::new(&config).unwrap();
            let mut i = 0u64;
            while !cancel.is_cancelled() {
                for _ in 0..50 {
                    let key = format!("k{}", i % 16);
                    let _ = producer.send(&topic, key.as_bytes(), b"v").await;
                    i += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Another member joins, reads a little and leaves, over and over.
    let churning = {
        let (config, topic, group, cancel) =
            (config.clone(), topic.clone(), group.clone(), cancel.clone());
        tokio::spawn(async move {
            while !cancel.is_cancelled() {
                let other = BatchConsumer::new(&config, &group, &[&topic]).unwrap();
                let _ = other
                    .next_batch(100_000, Duration::from_millis(2_500), &cancel)
                    .await;
                drop(other);
                tokio::time::sleep(Duration::from_millis(1_500)).await;
            }
        })
    };

    let member = BatchConsumer::new(&config, &group, &[&topic]).unwrap();
    let mut spanning = 0;
    let mut revoked_seen = 0;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(40) && spanning < 3 {
        let before = member.assignment_generation();
        let batch = member
            .next_batch(1_000_000, Duration::from_secs(2), &cancel)
            .await
            .unwrap();
        if member.assignment_generation() != before && !batch.is_empty() {
            spanning += 1;
            revoked_seen += member.revoked_since(before).len();
        }
        let mut last: std::collections::HashMap<i32, i64> = Default::default();
        for r in &batch {
            if let Some(prev) = last.insert(r.partition, r.offset) {
                assert!(
                    r.offset > prev,
                    "partition {} went from offset {prev} back to {} within one batch",
                    r.partition,
                    r.offset
                );
            }
        }
    }
    cancel.cancel();
    producing.await.unwrap();
    churning.await.unwrap();
    assert!(
        spanning >= 3,
        "only {spanning} batches spanned a rebalance: the test did not exercise one"
    );
    assert!(revoked_seen > 0, "revoked_since reported nothing");
}

/// A write in progress holds back the revocation of the member's partitions (so the next
/// owner finds it complete), and no write can begin under an assignment that has moved:
/// `write_in_progress_at` refuses a generation that is no longer current, even while
/// another task is polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_waits_for_writes_and_no_write_begins_after_it() {
    let config = config();
    probe(&config, Duration::from_secs(10))
        .await
        .expect("Kafka of the local stack must be running: infra/local/stack up");
    let topic = format!("test.bus.hold.{}", uuid::Uuid::new_v4());
    let group = format!("test-bus-hold-{}", uuid::Uuid::new_v4());
    ensure_topics(&config, &[TopicSpec::new(&topic, 2)])
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let first = BatchConsumer::new(&config, &group, &[&topic]).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while first.assigned().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "never assigned");
        first
            .next_batch(10, Duration::from_millis(200), &cancel)
            .await
            .unwrap();
    }
    let generation = first.assignment_generation();
    let hold = first
        .write_in_progress_at(generation)
        .expect("the current generation");
    assert!(first.write_in_progress_at(generation - 1).is_none());

    // The first member keeps polling on its own task, as the lake sink's fetch task does.
    let polling = {
        let (first, cancel) = (first.clone(), cancel.clone());
        tokio::spawn(async move {
            while !cancel.is_cancelled() {
                let _ = first
                    .next_batch(10, Duration::from_millis(200), &cancel)
                    .await;
            }
        })
    };
    let joining = {
        let (config, topic, group, cancel) =
            (config.clone(), topic.clone(), group.clone(), cancel.clone());
        tokio::spawn(async move {
            let second = BatchConsumer::new(&config, &group, &[&topic]).unwrap();
            while !cancel.is_cancelled() {
                let _ = second
                    .next_batch(10, Duration::from_millis(200), &cancel)
                    .await;
            }
            second.assigned().len()
        })
    };
    // The second member's join revokes the first's partitions: not while the write is on.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        first.assignment_generation(),
        generation,
        "partitions were revoked while a write was in progress"
    );
    assert_eq!(first.assigned().len(), 2);
    drop(hold);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while first.assignment_generation() == generation {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation never went on after the write ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(first.write_in_progress_at(generation).is_none());
    assert!(
        !first.revoked_since(generation).is_empty(),
        "revoked_since does not show the revocation"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while first.assigned().len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "partitions not split"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    polling.await.unwrap();
    assert_eq!(joining.await.unwrap(), 1);
}
