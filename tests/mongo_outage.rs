//! MongoDB goes down for a while and comes back: the Mongo sink retries the same batch
//! with backoff, commits nothing it did not write, and in the end MongoDB holds every
//! accepted sample exactly once. The server is a private one (own folder and port).

mod support;

use mongodb::bson::{Document, doc};
use std::time::{Duration, Instant};
use support::{PrivateStack, TestStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_down_then_back_loses_and_duplicates_nothing() {
    let private = PrivateStack::new();
    private.stack(&["up", "mongo"]);
    let uri = private.mongo_uri();
    let stack = TestStack::start_with(&[
        ("LABSTREAM__MONGO__URI", &uri),
        ("LABSTREAM__SINKS__LAKE__ENABLED", "false"),
        ("LABSTREAM__SINKS__MONGO__BATCH_MAX_RECORDS", "50"),
        ("LABSTREAM__SINKS__MONGO__RETRY_BACKOFF_MAX", "1s"),
    ])
    .await;
    let db = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&stack.database);
    let coll = db.collection::<Document>("samples_co2");
    let post = |from: i64, to: i64| {
        let batch: Vec<_> = (from..to)
            .map(|i| serde_json::json!({"sensor_id": format!("c-{}", i % 4), "sensor_type": "co2", "ts": 1_795_428_000_000_i64 + i, "values": {"ppm": 400.0 + i as f64}}))
            .collect();
        let url = format!("{}/v1/samples", stack.url);
        let token = stack.token.clone();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&batch)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 202);
        }
    };

    post(0, 300).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while coll.count_documents(doc! {}).await.unwrap() < 300 {
        assert!(Instant::now() < deadline, "the first 300 did not arrive");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // MongoDB goes away; ingest keeps accepting (Kafka holds the samples).
    private.stack(&["down", "mongo"]);
    for k in 0..6 {
        post(300 + k * 100, 400 + k * 100).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stack
        .logs()
        .contains("mongo sink: write failed; retrying the batch")
    {
        assert!(
            Instant::now() < deadline,
            "the sink did not notice the outage:\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    private.stack(&["up", "mongo"]);

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = coll.count_documents(doc! {}).await.unwrap_or(0);
        if n >= 900 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of 900 after MongoDB came back\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    support::wait_caught_up(
        &stack.brokers,
        &format!("t{}-mongo", stack.id),
        &stack.topic("samples.raw"),
        Duration::from_secs(60),
    )
    .await;
    // Exactly once, by value.
    let mut rows: Vec<(String, i64, f64)> = Vec::new();
    let mut cursor = coll.find(doc! {}).await.unwrap();
    use futures::TryStreamExt;
    while let Some(d) = cursor.try_next().await.unwrap() {
        rows.push((
            d.get_str("sensor_id").unwrap().to_owned(),
            d.get_i64("ts_us").unwrap(),
            d.get_document("values").unwrap().get_f64("ppm").unwrap(),
        ));
    }
    rows.sort_by_key(|r| r.1);
    let want: Vec<(String, i64, f64)> = (0..900)
        .map(|i| {
            (
                format!("c-{}", i % 4),
                (1_795_428_000_000_i64 + i) * 1000,
                400.0 + i as f64,
            )
        })
        .collect();
    assert_eq!(rows.len(), 900);
    assert_eq!(rows, want);
}
