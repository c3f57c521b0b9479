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
