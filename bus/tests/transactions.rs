//! Transactions and the log reader against the real broker of the local stack:
//! committed records are read (with their offsets moved in the same transaction),
//! aborted ones never are, a second producer with the same id fences the first, and
//! `read_to_end` returns everything committed before it was called.

use labstream_bus::{
    BatchConsumer, Error, KafkaConfig, LogReader, TopicSpec, TransactionalProducer, ensure_topics,
    probe,
};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn config() -> KafkaConfig {
    KafkaConfig {
        brokers: std::env::var("LABSTREAM__KAFKA__BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        ..KafkaConfig::default()
    }
}

fn unique(name: &str) -> String {
    format!("bus-txn-{}.{name}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_records_are_read_aborted_ones_never_and_a_second_owner_fences_the_first() {
    let config = config();
    probe(&config, Duration::from_secs(10))
        .await
        .expect("Kafka of the local stack must be running: infra/local/stack up");
    let topic = unique("events");
    ensure_topics(&config, &[TopicSpec::new(&topic, 1)])
        .await
        .unwrap();
    let txn_id = unique("writer");

    let reader = LogReader::new(&config, &topic).await.unwrap();
    assert!(
        reader
            .read_to_end(Duration::from_secs(10))
            .await
            .unwrap()
            .is_empty()
    );

    let producer = TransactionalProducer::new(&config, &txn_id).unwrap();
    producer.begin().unwrap();
    producer.send(&topic, b"k", b"one").unwrap();
    producer.send(&topic, b"k", b"two").unwrap();
    producer.commit_without_offsets().unwrap();

    producer.begin().unwrap();
    producer.send(&topic, b"k", b"aborted").unwrap();
    producer.abort().unwrap();

    producer.begin().unwrap();
    producer.send(&topic, b"k", b"three").unwrap();
    producer.commit_without_offsets().unwrap();

    let started = Instant::now();
    let records = reader.read_to_end(Duration::from_secs(10)).await.unwrap();
    let took = started.elapsed();
    let payloads: Vec<_> = records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(payloads, ["one", "two", "three"]);
    assert!(
        took < Duration::from_secs(5),
        "read_to_end must stop at the end, not at its timeout ({took:?})"
    );
    // Nothing new: an empty answer, promptly.
    assert!(
        reader
            .read_to_end(Duration::from_secs(10))
            .await
            .unwrap()
            .is_empty()
    );

    // A new owner of the id fences the old one.
    let successor = TransactionalProducer::new(&config, &txn_id).unwrap();
    let fenced = producer
        .begin()
        .and_then(|()| producer.send(&topic, b"k", b"zombie"))
        .and_then(|()| producer.commit_without_offsets());
    assert!(
        matches!(fenced, Err(Error::Fenced(_))),
        "the old producer must be fenced, got {fenced:?}"
    );
    successor.begin().unwrap();
    successor.send(&topic, b"k", b"four").unwrap();
    successor.commit_without_offsets().unwrap();
    let records = reader.read_to_end(Duration::from_secs(10)).await.unwrap();
    let payloads: Vec<_> = records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(payloads, ["four"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_and_consumer_offsets_commit_together() {
    let config = config();
    let input = unique("in");
    let output = unique("out");
    ensure_topics(
        &config,
        &[TopicSpec::new(&input, 2), TopicSpec::new(&output, 1)],
    )
    .await
    .unwrap();
    let plain = labstream_bus::Producer::new(&config).unwrap();
    for i in 0..10 {
        plain
            .send(
                &input,
                format!("k{i}").as_bytes(),
                format!("{i}").as_bytes(),
            )
            .await
            .unwrap();
    }
    let group = unique("group");
    let cancel = CancellationToken::new();

    // First attempt: process everything, then abort; the rewind delivers it again.
    let consumer = BatchConsumer::new(&config, &group, &[&input]).unwrap();
    let producer = TransactionalProducer::new(&config, &unique("proc")).unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 10 records within 60 s",
            seen.len()
        );
        seen.extend(
            consumer
                .next_batch(10, Duration::from_millis(500), &cancel)
                .await
                .unwrap(),
        );
    }
    producer.begin().unwrap();
    for r in &seen {
        producer
            .send(&output, b"k", r.payload.as_deref().unwrap())
            .unwrap();
    }
    producer.abort().unwrap();
    consumer
        .rewind_to_committed(Duration::from_secs(10))
        .await
        .unwrap();

    let mut again = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while again.len() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 10 records within 60 s",
            again.len()
        );
        again.extend(
            consumer
                .next_batch(10, Duration::from_millis(500), &cancel)
                .await
                .unwrap(),
        );
    }
    let mut positions = labstream_bus::Positions::default();
    producer.begin().unwrap();
    for r in &again {
        producer
            .send(&output, b"k", r.payload.as_deref().unwrap())
            .unwrap();
        positions.advance(r);
    }
    producer.commit(&positions, &consumer).unwrap();
    let committed = consumer.committed(Duration::from_secs(10)).await.unwrap();
    let total: i64 = committed.iter().map(|(_, _, o)| o.unwrap_or(0)).sum();
    assert_eq!(
        total, 10,
        "the group's offsets were committed with the outputs"
    );

    let reader = LogReader::new(&config, &output).await.unwrap();
    let out = reader.read_to_end(Duration::from_secs(10)).await.unwrap();
    let mut values: Vec<i32> = out
        .iter()
        .map(|r| {
            std::str::from_utf8(r.payload.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    values.sort();
    assert_eq!(
        values,
        (0..10).collect::<Vec<_>>(),
        "each input once in the output"
    );
}
