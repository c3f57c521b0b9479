//! Tombstones against the real broker of the local stack: a record without value (what
//! deletes a key of a compacted topic) is read back as a record with no payload, from
//! the plain producer and inside a transaction.

use labstream_bus::{
    KafkaConfig, LogReader, Producer, TopicSpec, TransactionalProducer, ensure_topics,
};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_arrive_without_a_value() {
    let config = KafkaConfig {
        brokers: std::env::var("LABSTREAM__KAFKA__BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        ..KafkaConfig::default()
    };
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("bus-tomb-{unique}.rules");
    ensure_topics(
        &config,
        &[TopicSpec::new(&topic, 1).with_config("cleanup.policy", "compact")],
    )
    .await
    .expect("Kafka of the local stack must be running: infra/local/stack up");
    let producer = Producer::new(&config).unwrap();
    producer.send(&topic, b"a", b"rule a").await.unwrap();
    producer.send_tombstone(&topic, b"a").await.unwrap();
    let txn = TransactionalProducer::new(&config, &format!("bus-tomb-{unique}")).unwrap();
    txn.begin().unwrap();
    txn.send(&topic, b"b", b"rule b").unwrap();
    txn.send_tombstone(&topic, b"b").unwrap();
    txn.commit_without_offsets().unwrap();

    let reader = LogReader::new(&config, &topic).await.unwrap();
    let records = reader.read_to_end(Duration::from_secs(20)).await.unwrap();
    let seen: Vec<(&[u8], Option<&[u8]>)> = records
        .iter()
        .map(|r| (r.key.as_deref().unwrap(), r.payload.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (&b"a"[..], Some(&b"rule a"[..])),
            (&b"a"[..], None),
            (&b"b"[..], Some(&b"rule b"[..])),
            (&b"b"[..], None),
        ]
    );
}
