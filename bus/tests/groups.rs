//! Consumer-group admin against the real broker of the local stack: describe a group
//! with a live member, refuse to move its offsets then, and once it is stopped reset
//! it to a time (offsets-for-times), to the start and to the end, with lag reported.

use labstream_bus::{
    BatchConsumer, Error, GroupAdmin, KafkaConfig, Producer, ResetTarget, TopicSpec, ensure_topics,
    probe,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn config() -> KafkaConfig {
    KafkaConfig {
        brokers: std::env::var("LABSTREAM__KAFKA__BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        ..KafkaConfig::default()
    }
}

async fn consume_all(consumer: &BatchConsumer, want: usize) -> Vec<labstream_bus::Record> {
    let cancel = CancellationToken::new();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: got {} of {want} records",
            got.len()
        );
        got.extend(
            consumer
                .next_batch(want - got.len(), Duration::from_millis(500), &cancel)
                .await
                .unwrap(),
        );
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_group_is_reset_to_a_time_the_start_and_the_end() {
    let config = config();
    probe(&config, Duration::from_secs(10))
        .await
        .expect("Kafka of the local stack must be running: infra/local/stack up");
    let topic = format!("test.groups.{}", uuid::Uuid::new_v4());
    let group = format!("test-groups-{}", uuid::Uuid::new_v4());
    ensure_topics(&config, &[TopicSpec::new(&topic, 3)])
        .await
        .unwrap();
    let producer = Producer::new(&config).unwrap();

    // Before: 30 records; then the time of the "outage"; after: 20 more.
    let mut before = BTreeMap::<i32, i64>::new(); // partition -> records before the cut
    for i in 0..30 {
        let d = producer
            .send(&topic, format!("k{i}").as_bytes(), b"before")
            .await
            .unwrap();
        *before.entry(d.partition).or_default() += 1;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut_ms = chrono_now_ms();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..20 {
        producer
            .send(&topic, format!("k{i}").as_bytes(), b"after")
            .await
            .unwrap();
    }

    let admin = GroupAdmin::new(&config, &group).unwrap();
    // Never committed: everything is lag.
    let offsets = admin.offsets(&topic).await.unwrap();
    assert_eq!(offsets.len(), 3);
    assert!(offsets.iter().all(|p| p.committed.is_none()));
    assert_eq!(offsets.iter().map(|p| p.lag()).sum::<i64>(), 50);

    let consumer = BatchConsumer::new(&config, &group, &[&topic]).unwrap();
    let all = consume_all(&consumer, 50).await;
    consumer.commit(&all).await.unwrap();
    let offsets = admin.offsets(&topic).await.unwrap();
    assert_eq!(offsets.iter().map(|p| p.lag()).sum::<i64>(), 0);
    assert!(offsets.iter().all(|p| p.committed == Some(p.end)));

    // A live member: described, and a reset is refused.
    let described = admin.describe().await.unwrap();
    assert_eq!(described.members.len(), 1, "{described:?}");
    assert_eq!(described.state, "Stable");
    let plan = admin
        .plan_reset(&topic, ResetTarget::Earliest)
        .await
        .unwrap();
    match admin.apply_reset(&plan).await {
        Err(Error::GroupActive { members: 1, .. }) => {}
        other => panic!("a reset with a live member must be refused, got {other:?}"),
    }
    drop(consumer); // closes: leaves the group

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while admin.describe().await.unwrap().has_live_members() {
        assert!(tokio::time::Instant::now() < deadline, "member never left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // To the cut: each partition goes back to its first record after the cut.
    let plan = admin
        .plan_reset(&topic, ResetTarget::Time(cut_ms))
        .await
        .unwrap();
    for m in &plan {
        assert_eq!(m.target, before.get(&m.partition).copied().unwrap_or(0));
        assert_eq!(m.current, Some(m.end));
        assert_eq!(m.reread(), m.end - m.target);
    }
    assert_eq!(plan.iter().map(|m| m.reread()).sum::<i64>(), 20);
    admin.apply_reset(&plan).await.unwrap();
    let offsets = admin.offsets(&topic).await.unwrap();
    assert_eq!(offsets.iter().map(|p| p.lag()).sum::<i64>(), 20);
    let consumer = BatchConsumer::new(&config, &group, &[&topic]).unwrap();
    let again = consume_all(&consumer, 20).await;
    assert!(
        again
            .iter()
            .all(|r| r.payload.as_deref() == Some(&b"after"[..]))
    );
    consumer.commit(&again).await.unwrap();
    drop(consumer);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while admin.describe().await.unwrap().has_live_members() {
        assert!(tokio::time::Instant::now() < deadline, "member never left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A time after every record: the end of each partition, nothing to re-read.
    let plan = admin
        .plan_reset(&topic, ResetTarget::Time(chrono_now_ms() + 60_000))
        .await
        .unwrap();
    assert!(plan.iter().all(|m| m.target == m.end && m.reread() == 0));

    // The start, then the end.
    let plan = admin
        .plan_reset(&topic, ResetTarget::Earliest)
        .await
        .unwrap();
    assert_eq!(plan.iter().map(|m| m.reread()).sum::<i64>(), 50);
    admin.apply_reset(&plan).await.unwrap();
    assert_eq!(
        admin
            .offsets(&topic)
            .await
            .unwrap()
            .iter()
            .map(|p| p.lag())
            .sum::<i64>(),
        50
    );
    let plan = admin.plan_reset(&topic, ResetTarget::Latest).await.unwrap();
    assert_eq!(plan.iter().map(|m| m.reread()).sum::<i64>(), -50);
    admin.apply_reset(&plan).await.unwrap();
    let offsets = admin.offsets(&topic).await.unwrap();
    assert!(offsets.iter().all(|p| p.committed == Some(p.end)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_group_has_no_members_and_a_missing_topic_is_named() {
    let config = config();
    let admin = GroupAdmin::new(&config, &format!("nobody-{}", uuid::Uuid::new_v4())).unwrap();
    let d = admin.describe().await.unwrap();
    assert!(!d.has_live_members());
    let err = admin
        .offsets(&format!("missing.{}", uuid::Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_read_a_transactional_topic_to_its_end_has_no_lag() {
    let config = config();
    let topic = format!("test.groups.tx.{}", uuid::Uuid::new_v4());
    let group = format!("test-groups-tx-{}", uuid::Uuid::new_v4());
    ensure_topics(&config, &[TopicSpec::new(&topic, 1)])
        .await
        .unwrap();
    let tx = labstream_bus::TransactionalProducer::new(
        &config,
        &format!("test-groups-tx-{}", uuid::Uuid::new_v4()),
    )
    .unwrap();
    tx.begin().unwrap();
    for i in 0..5 {
        tx.send(&topic, b"k", format!("r{i}").as_bytes()).unwrap();
    }
    tx.commit_without_offsets().unwrap();

    let admin = GroupAdmin::new(&config, &group).unwrap();
    let consumer = BatchConsumer::new(&config, &group, &[&topic]).unwrap();
    let records = consume_all(&consumer, 5).await;
    consumer.commit(&records).await.unwrap();
    let offsets = admin.offsets(&topic).await.unwrap();
    // 5 records and the commit marker: the end is past the committed offset...
    assert_eq!((offsets[0].committed, offsets[0].end), (Some(5), 6));
    // ...but nothing is left to read.
    assert!(offsets[0].only_markers_left);
    assert_eq!(offsets[0].lag(), 0);

    // A record after the marker is lag again.
    tx.begin().unwrap();
    tx.send(&topic, b"k", b"r5").unwrap();
    tx.commit_without_offsets().unwrap();
    // The commit returns once the coordinator has logged it; the partition's commit
    // marker (and with it the end a read_committed reader sees) follows a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let offsets = loop {
        let offsets = admin.offsets(&topic).await.unwrap();
        if offsets[0].end == 8 || std::time::Instant::now() >= deadline {
            break offsets;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(offsets[0].end, 8);
    assert!(!offsets[0].only_markers_left);
    assert_eq!(offsets[0].lag(), 3); // the old marker, the record, its marker
}
