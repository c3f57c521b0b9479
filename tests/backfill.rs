//! `labstream backfill` against the real stack: NDJSON, CSV and line-protocol files go
//! through ingest's validation to samples.raw; a file with a bad line sends nothing
//! (the line is named as file:line) unless --partial; sending the same files twice
//! leaves MongoDB with each sample once.

mod support;

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use std::collections::BTreeMap;
use std::time::Duration;
use support::TestStack;

const T0_MS: i64 = 1_795_392_000_000; // 2026-11-23T00:00:00Z

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_validated_sent_once_and_duplicates_are_harmless() {
    let stack = TestStack::start_command("ingest", &[]).await;
    let dir = stack.dir().to_owned();
    let mut want = BTreeMap::<(String, i64), f64>::new(); // (sensor, ts ms) -> watts

    let mut nd = String::new();
    for i in 0..30i64 {
        let ts = T0_MS - 40 * 86_400_000 + i * 1000; // older than ingest's 30-day window
        want.insert(("bf-nd".into(), ts), i as f64);
        nd.push_str(&format!(
            "{{\"sensor_id\":\"bf-nd\",\"sensor_type\":\"power\",\"ts\":{ts},\"values\":{{\"watts\":{i}}}}}\n"
        ));
    }
    std::fs::write(dir.join("gw.ndjson"), nd).unwrap();
    let mut csv = String::from("sensor_id,sensor_type,ts,seq,watts,tag.room\n");
    for i in 0..20i64 {
        let ts = T0_MS + i * 1000;
        want.insert(("bf-csv".into(), ts), i as f64 + 0.5);
        csv.push_str(&format!(
            "bf-csv,power,{ts},{i},{},lab-{}\n",
            i as f64 + 0.5,
            i % 2
        ));
    }
    std::fs::write(dir.join("gw.csv"), &csv).unwrap();
    let mut lp = String::from("# exported by the gateway\n");
    for i in 0..10i64 {
        let ts = T0_MS + i * 1000;
        want.insert(("bf-lp".into(), ts), i as f64 * 2.0);
        lp.push_str(&format!(
            "power,sensor_id=bf-lp watts={} {}\n",
            i as f64 * 2.0,
            ts * 1_000_000
        ));
    }
    std::fs::write(dir.join("gw.lp"), lp).unwrap();
    // One bad row (line 4: a non-number) in an otherwise good file.
    let bad = "sensor_id,sensor_type,ts,watts\nbf-bad,power,1795392000000,1\nbf-bad,power,1795392001000,2\nbf-bad,power,1795392002000,lots\n";
    std::fs::write(dir.join("bad.csv"), bad).unwrap();
    let files: Vec<String> = ["gw.ndjson", "gw.csv", "gw.lp"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    let bad_file = dir.join("bad.csv").display().to_string();
    let topic = stack.topic("samples.raw");

    // A bad line anywhere: nothing is sent, the line is named.
    let mut args = vec!["backfill"];
    args.extend(files.iter().map(String::as_str));
    args.push(&bad_file);
    let out = stack.run_cli(&args);
    assert!(
        out.contains(&format!("{bad_file}:4: wrong_type")),
        "the bad line is named: {out}"
    );
    assert!(out.contains("nothing was sent"), "{out}");
    assert_eq!(stack.topic_records(&topic), 0, "nothing may be sent: {out}");

    // --partial: the valid lines go, the bad one is still listed.
    args.insert(1, "--partial");
    let out = stack.run_cli(&args);
    assert!(out.contains("backfill done: 62 samples sent"), "{out}");
    assert!(out.contains(&format!("{bad_file}:4:")), "{out}");
    let samples = stack.read_samples(&topic, 62);
    assert_eq!(samples.len(), 62);
    let csv_sample = samples
        .iter()
        .find(|(k, s)| k == "bf-csv" && s.seq == Some(3))
        .unwrap();
    assert_eq!(csv_sample.1.tags["room"], "lab-1");

    // The same files again (a duplicate backfill), then the Mongo sink: each sample once.
    let out = stack.run_cli(&args);
    assert!(out.contains("62 samples sent"), "{out}");
    let mut mongo = stack.worker(&["sink", "mongo"]);
    let db = stack.mongo().await;
    want.insert(("bf-bad".into(), 1_795_392_000_000), 1.0);
    want.insert(("bf-bad".into(), 1_795_392_001_000), 2.0);
    // Each sample once, looked at after the sink committed everything it read.
    support::wait_caught_up(
        &stack.brokers,
        &format!("t{}-mongo", stack.id),
        &topic,
        Duration::from_secs(60),
    )
    .await;
    let got: Vec<Document> = db
        .collection::<Document>("samples_power")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let contents: BTreeMap<(String, i64), f64> = got
        .iter()
        .map(|d| {
            (
                (
                    d.get_str("sensor_id").unwrap().to_owned(),
                    d.get_i64("ts_us").unwrap() / 1000,
                ),
                d.get_document("values").unwrap().get_f64("watts").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "each sample once in MongoDB\n{}",
        mongo.logs()
    );
    assert_eq!(contents, want);
    mongo.stop();
    db.drop().await.unwrap();
}
