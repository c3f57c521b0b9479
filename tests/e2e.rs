//! End to end: the real `labstream serve` against the local stack (Kafka and the
//! MongoDB-wire server from `infra/local/stack up`). Samples posted over HTTP must come
//! back, value for value, from SQL over the lake and from MongoDB; bad input must get a
//! clear 4xx and be written nowhere.

mod support;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde_json::json;
use support::TestStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_samples_come_back_from_sql_and_mongodb() {
    let stack = TestStack::start().await;

    // The sample of DESIGN.md, alone.
    let (status, body) = stack
        .post(
            "/v1/samples",
            "application/json",
            r#"{"sensor_id": "door-3", "sensor_type": "door", "ts": "2026-11-23T10:00:00.123Z", "seq": 7, "values": {"open": true}, "tags": {"room": "lab-2"}}"#,
        )
        .await;
    assert_eq!((status, &body), (202, &json!({"accepted": 1})));

    // A batch of temperatures from two sensors, integer ms timestamps.
    let temps: Vec<_> = (0..6)
        .map(|i| {
            json!({
                "sensor_id": format!("fridge-{}", i % 2),
                "sensor_type": "temperature",
                "ts": 1_795_428_000_000_i64 + i * 1000,
                "values": {"celsius": 4.0 + i as f64 * 0.25},
            })
        })
        .collect();
    let (status, body) = stack
        .post("/v1/samples", "application/json", json!(temps).to_string())
        .await;
    assert_eq!((status, &body), (202, &json!({"accepted": 6})));

    let rows = stack
        .query_until_rows(
            "SELECT sensor_id, ts, seq, open, tags['room'] AS room, date, experiment FROM samples_door",
            1,
        )
        .await;
    assert_eq!(
        rows[0],
        json!({
            "sensor_id": "door-3",
            "ts": "2026-11-23T10:00:00.123Z",
            "seq": 7,
            "open": true,
            "room": "lab-2",
            "date": "2026-11-23",
            "experiment": "none",
        })
    );

    let rows = stack
        .query_until_rows(
            "SELECT sensor_id, celsius FROM samples_temperature ORDER BY ts",
            6,
        )
        .await;
    let got: Vec<(String, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["sensor_id"].as_str().unwrap().to_owned(),
                r["celsius"].as_f64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, f64)> = (0..6)
        .map(|i| (format!("fridge-{}", i % 2), 4.0 + i as f64 * 0.25))
        .collect();
    assert_eq!(got, want);

    let (status, rows) = stack
        .query("SELECT sensor_id, count(*) AS n, avg(celsius) AS mean FROM samples_temperature GROUP BY sensor_id ORDER BY sensor_id")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        rows,
        json!([
            {"sensor_id": "fridge-0", "n": 3, "mean": 4.5},
            {"sensor_id": "fridge-1", "n": 3, "mean": 4.75},
        ])
    );

    // MongoDB: one collection per sensor type, the same values.
    let db = stack.mongo().await;
    let door: Vec<Document> = wait_for_docs(&db, "samples_door", 1).await;
    let d = &door[0];
    assert_eq!(d.get_str("sensor_id").unwrap(), "door-3");
    assert_eq!(d.get_i64("ts_us").unwrap(), 1_795_428_000_123_000);
    assert_eq!(d.get_i64("seq").unwrap(), 7);
    assert!(d.get_document("values").unwrap().get_bool("open").unwrap());
    assert_eq!(
        d.get_document("tags").unwrap().get_str("room").unwrap(),
        "lab-2"
    );
    assert_eq!(
        d.get_datetime("ts").unwrap().timestamp_millis(),
        1_795_428_000_123
    );

    let temps: Vec<Document> = wait_for_docs(&db, "samples_temperature", 6).await;
    let mut got: Vec<(String, i64, f64, Bson)> = temps
        .iter()
        .map(|d| {
            (
                d.get_str("sensor_id").unwrap().to_owned(),
                d.get_i64("ts_us").unwrap(),
                d.get_document("values")
                    .unwrap()
                    .get_f64("celsius")
                    .unwrap(),
                d.get("seq").cloned().unwrap(),
            )
        })
        .collect();
    got.sort_by_key(|g| g.1);
    let want: Vec<(String, i64, f64, Bson)> = (0..6)
        .map(|i| {
            (
                format!("fridge-{}", i % 2),
                (1_795_428_000_000_i64 + i * 1000) * 1000,
                4.0 + i as f64 * 0.25,
                Bson::Null,
            )
        })
        .collect();
    assert_eq!(got, want);

    // Posting the same sample again (a sender's retry) leaves one copy in MongoDB.
    let (status, _) = stack
        .post(
            "/v1/samples",
            "application/json",
            r#"{"sensor_id": "door-3", "sensor_type": "door", "ts": "2026-11-23T10:00:00.123Z", "seq": 7, "values": {"open": true}}"#,
        )
        .await;
    assert_eq!(status, 202);
    // Wait until the lake has the retry too, which shows the sinks consumed it.
    stack
        .query_until_rows("SELECT * FROM samples_door", 2)
        .await;
    wait_for_mongo_offset(&stack).await;
    assert_eq!(
        db.collection::<Document>("samples_door")
            .count_documents(doc! {})
            .await
            .unwrap(),
        1
    );

    // The sinks count what they did: 8 records, the retry a duplicate for MongoDB.
    let metrics = reqwest::get(format!("{}/metrics", stack.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"labstream_sink_records_consumed_total{sink="mongo"} 8"#,
        r#"labstream_sink_rows_written_total{sink="mongo"} 7"#,
        r#"labstream_sink_duplicates_skipped_total{sink="mongo"} 1"#,
        r#"labstream_sink_records_consumed_total{sink="lake"} 8"#,
        r#"labstream_sink_rows_written_total{sink="lake"} 8"#,
        r#"labstream_sink_dead_letters_total{sink="lake"} 0"#,
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    db.drop().await.unwrap();
}

async fn wait_for_docs(db: &mongodb::Database, collection: &str, n: usize) -> Vec<Document> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let docs: Vec<Document> = db
            .collection::<Document>(collection)
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        if docs.len() >= n {
            assert_eq!(docs.len(), n, "more documents than samples in {collection}");
            return docs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{collection} holds {} of {n} documents after 60 s",
            docs.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Waits until the Mongo sink's group has committed everything in `samples.raw`.
async fn wait_for_mongo_offset(stack: &TestStack) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let topic = stack.topic("samples.raw");
    let total = stack.topic_records(&topic);
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::brokers())
        .set("group.id", format!("t{}-mongo", stack.id))
        .create()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition(&topic, p);
        }
        let committed = consumer
            .committed_offsets(tpl, std::time::Duration::from_secs(10))
            .unwrap();
        let sum: i64 = committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum();
        if sum >= total {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mongo sink committed {sum} of {total}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_is_written_nowhere() {
    let stack = TestStack::start().await;

    let (status, body) = stack
        .post(
            "/v1/samples",
            "application/json",
            r#"{"sensor_id": "door-3", "#,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_json");
    assert!(
        body["message"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    let (status, body) = stack
        .post(
            "/v1/samples",
            "application/json",
            r#"{"sensor_type": "door", "ts": "2026-11-23T10:00:00Z", "values": {"open": true}}"#,
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"], "invalid_sample");
    assert_eq!(body["rejected"][0]["index"], 0);
    assert!(
        body["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("missing field `sensor_id`"),
        "{body}"
    );

    // One bad sample in a batch refuses the whole batch, naming the culprit.
    let (status, body) = stack
        .post(
            "/v1/samples",
            "application/json",
            r#"[{"sensor_id": "d1", "sensor_type": "door", "ts": 1, "values": {"open": true}},
                {"sensor_id": "d2", "sensor_type": "door", "ts": 1, "values": {"open": "yes"}}]"#,
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["rejected"],
        json!([{"index": 1, "code": "wrong_type", "reason": "field \"open\" must be a boolean, got a string"}])
    );

    let (status, body) = stack.post("/v1/samples", "text/plain", "door-3 open").await;
    assert_eq!(status, 415, "{body}");

    // Then one good sample, so the pipeline is shown to be working while it wrote nothing else.
    let (status, _) = stack
        .post(
            "/v1/samples",
            "application/json",
            r#"{"sensor_id": "ok-1", "sensor_type": "co2", "ts": 1795428000000, "values": {"ppm": 410.0}}"#,
        )
        .await;
    assert_eq!(status, 202);
    let rows = stack
        .query_until_rows("SELECT sensor_id, ppm FROM samples_co2", 1)
        .await;
    assert_eq!(rows, [json!({"sensor_id": "ok-1", "ppm": 410.0})]);

    assert_eq!(stack.topic_records(&stack.topic("samples.raw")), 1);
    assert_eq!(stack.topic_records(&stack.topic("samples.dlq")), 0);
    let db = stack.mongo().await;
    wait_for_docs(&db, "samples_co2", 1).await;
    let mut names = db.list_collection_names().await.unwrap();
    names.sort();
    assert_eq!(names, ["samples_co2"]);
    let tables: Vec<_> = std::fs::read_dir(stack.lake.join("samples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(tables, ["co2"]);
    db.drop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_read_only_and_errors_are_clear() {
    let stack = TestStack::start().await;
    let (status, body) = stack.query("SELEC 1").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_query");

    let (status, body) = stack.query("SELECT * FROM samples_nothing").await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("samples_nothing"),
        "{body}"
    );

    for sql in [
        "CREATE TABLE x AS SELECT 1",
        "CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '/etc/passwd'",
        "DROP TABLE samples_door",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let (status, body) = stack.query(sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("not supported")
                || body["message"].as_str().unwrap().contains("not allowed")
                || body["message"].as_str().unwrap().contains("Unsupported"),
            "{sql}: {body}"
        );
    }

    let (status, body) = stack
        .post("/v1/query", "application/json", r#"{"query": "SELECT 1"}"#)
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_request");

    let (status, body) = stack.query("SELECT 1 + 1 AS two").await;
    assert_eq!((status, body), (200, json!([{"two": 2}])));
}
