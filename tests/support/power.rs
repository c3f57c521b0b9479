//! `power` samples as stored by the sinks, by value: what the sink crash, replay and
//! outage tests compare. Shared by those test binaries only, hence the allow.
#![allow(dead_code)]

use super::TestStack;
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use std::collections::BTreeMap;
use std::process::Command;

/// (sensor_id, ts in µs) -> watts
pub type Contents = BTreeMap<(String, i64), f64>;

pub const T0: i64 = 1_795_392_000_000_000; // 2026-11-23T00:00:00Z

pub fn lake_rows(stack: &TestStack) -> (usize, Contents) {
    let out = Command::new(env!("CARGO_BIN_EXE_labstream"))
        .args(["query", "--lake"])
        .arg(&stack.lake)
        .args([
            "-f",
            "json",
            "SELECT sensor_id, CAST(ts AS BIGINT) AS ts_us, watts FROM samples_power",
        ])
        .env("LABSTREAM__AUTH__DISABLED", "true")
        .output()
        .unwrap();
    if !out.status.success() {
        return (0, Contents::new());
    }
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let contents = rows
        .iter()
        .map(|r| {
            (
                (
                    r["sensor_id"].as_str().unwrap().to_owned(),
                    r["ts_us"].as_i64().unwrap(),
                ),
                r["watts"].as_f64().unwrap(),
            )
        })
        .collect();
    (rows.len(), contents)
}

pub async fn mongo_rows(db: &mongodb::Database) -> (usize, Contents) {
    let docs: Vec<Document> = db
        .collection::<Document>("samples_power")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let contents = docs
        .iter()
        .map(|d| {
            (
                (
                    d.get_str("sensor_id").unwrap().to_owned(),
                    d.get_i64("ts_us").unwrap(),
                ),
                d.get_document("values").unwrap().get_f64("watts").unwrap(),
            )
        })
        .collect();
    (docs.len(), contents)
}

/// Posts `batch` (JSON samples, timestamps in µs) and asserts ingest accepted it.
pub async fn post_us(stack: &TestStack, batch: &[serde_json::Value]) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/samples?precision=us", stack.url))
        .bearer_auth(&stack.token)
        .json(batch)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        202,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}
