//! Records the sinks cannot decode go to `samples.dlq` with the reason: written to
//! `samples.raw` by hand among good samples, each poison record lands in the
//! dead-letter queue once per sink (MongoDB and lake), with its original key and bytes
//! and headers naming the reason, the sink and where it came from; the sinks move on
//! (their offsets pass it) and every good sample is stored; the metric counts them.

mod support;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::time::Duration;
use support::TestStack;
use support::power::{T0, lake_rows, mongo_rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_go_to_the_dead_letter_queue_with_the_reason() {
    let stack = TestStack::start_with(&[
        ("LABSTREAM__SINKS__LAKE__SOURCE", "raw"),
        ("LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL", "200ms"),
        ("LABSTREAM__PROCESSORS__ENRICHMENT__ENABLED", "false"),
    ])
    .await;
    let raw = stack.topic("samples.raw");
    let good = |from: i64| -> String {
        let batch: Vec<_> = (from..from + 10)
            .map(|n| {
                serde_json::json!({"sensor_id": "dl-1", "sensor_type": "power",
                "ts": T0 + n * 1000, "values": {"watts": n as f64}})
            })
            .collect();
        serde_json::Value::Array(batch).to_string()
    };
    let (status, _) = stack
        .post("/v1/samples?precision=us", "application/json", good(0))
        .await;
    assert_eq!(status, 202);

    // Poison, all with the key of a good sensor (so the same partition): not Avro at
    // all; the single-object header with a fingerprint of no known schema; no value.
    let mut unknown_schema = vec![0xC3, 0x01];
    unknown_schema.extend_from_slice(&[0xAB; 8]);
    unknown_schema.extend_from_slice(b"body");
    let poison: Vec<Option<Vec<u8>>> = vec![
        Some(b"{\"sensor_id\": \"not avro\"}".to_vec()),
        Some(unknown_schema),
        None,
    ];
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack.brokers)
        .create()
        .unwrap();
    for payload in &poison {
        let mut record = BaseRecord::<[u8], [u8]>::to(&raw).key(b"dl-1".as_slice());
        if let Some(p) = payload {
            record = record.payload(p.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let (status, _) = stack
        .post("/v1/samples?precision=us", "application/json", good(10))
        .await;
    assert_eq!(status, 202);

    // Both sinks pass the poison: their groups commit to the end of samples.raw.
    for group in ["mongo", "lake"] {
        support::wait_caught_up(
            &stack.brokers,
            &format!("t{}-{group}", stack.id),
            &raw,
            Duration::from_secs(60),
        )
        .await;
    }
    let db = stack.mongo().await;
    assert_eq!(mongo_rows(&db).await.0, 20, "every good sample in MongoDB");
    assert_eq!(lake_rows(&stack).0, 20, "every good sample in the lake");

    let letters = stack.read_raw(&stack.topic("samples.dlq"), 6);
    assert_eq!(
        letters.len(),
        6,
        "each poison record once per sink: {letters:?}"
    );
    let raw_records = stack.read_raw(&raw, 23);
    let mut by_sink: BTreeMap<String, Vec<&support::RawRecord>> = BTreeMap::new();
    for l in &letters {
        by_sink
            .entry(l.headers["labstream.sink"].clone())
            .or_default()
            .push(l);
    }
    assert_eq!(by_sink.keys().collect::<Vec<_>>(), ["lake", "mongo"]);
    for (sink, letters) in &by_sink {
        for (letter, original) in letters.iter().zip(&poison) {
            assert_eq!(letter.key.as_deref(), Some(b"dl-1".as_slice()), "{sink}");
            assert_eq!(
                letter.payload.as_deref().unwrap_or_default(),
                original.as_deref().unwrap_or_default(),
                "{sink}: the original bytes"
            );
            assert_eq!(letter.headers["labstream.source.topic"], raw, "{sink}");
            let (partition, offset): (i32, i64) = (
                letter.headers["labstream.source.partition"]
                    .parse()
                    .unwrap(),
                letter.headers["labstream.source.offset"].parse().unwrap(),
            );
            let source = raw_records
                .iter()
                .find(|r| r.partition == partition && r.offset == offset)
                .unwrap_or_else(|| panic!("{sink}: no record at {partition}/{offset}"));
            assert_eq!(
                source.payload, *original,
                "{sink}: the header names the record"
            );
            assert!(
                !letter.headers["labstream.reason"].is_empty(),
                "{sink}: a reason"
            );
        }
        let reasons: Vec<&str> = letters
            .iter()
            .map(|l| l.headers["labstream.reason"].as_str())
            .collect();
        assert!(reasons[2].contains("no value"), "{sink}: {reasons:?}");
        assert_ne!(reasons[0], reasons[1], "{sink}: each says what is wrong");
    }

    let metrics = reqwest::get(format!("{}/metrics", stack.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for sink in ["mongo", "lake"] {
        let line = format!("labstream_sink_dead_letters_total{{sink=\"{sink}\"}} 3");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    db.drop().await.unwrap();
}
