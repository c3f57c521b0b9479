//! A recording started without `sensors` records the sensors of its experiment's
//! sensor configuration: its answer lists them, a second recording of any of them is
//! refused while it runs, a sensor outside the configuration is refused, and the
//! enrichment tags the configuration's sensors' samples with the recording and leaves
//! other sensors' samples untagged.

mod support;

use labstream_schemas::Timestamp;
use labstream_schemas::experiment::EnrichedSample;
use serde_json::{Value, json};
use support::TestStack;

async fn post(stack: &TestStack, path: &str, body: Value) -> (u16, Value) {
    stack.post(path, "application/json", body.to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_without_sensors_records_the_configurations_sensors() {
    let stack = TestStack::start().await;
    let (status, body) = post(
        &stack,
        "/v1/sensor-configs",
        json!({
        "sensor_config_id": "bench", "name": "Bench",
        "sensors": [{"sensor_id": "temp-1", "sensor_type": "temperature"},
                    {"sensor_id": "co2-1", "sensor_type": "co2"}]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(
        &stack,
        "/v1/experiments",
        json!({
        "experiment_id": "study", "name": "Study", "owner": "dr-lee",
        "sensor_config_id": "bench", "participants": ["P1", "P2"],
        "tasks": [{"task_id": "rest", "name": "Rest"}]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(&stack, "/v1/experiments/study/activate", json!({})).await;
    assert_eq!(status, 200, "{body}");

    let started = Timestamp::now();
    let (status, recording) = post(
        &stack,
        "/v1/experiments/study/recordings",
        json!({"participant_id": "P1", "task_id": "rest", "recording_id": "rec-1",
               "started_at": started.to_string()}),
    )
    .await;
    assert_eq!(status, 201, "{recording}");
    assert_eq!(
        recording["sensors"],
        json!(["temp-1", "co2-1"]),
        "{recording}"
    );

    // The configuration's sensors are taken: another recording of them is refused.
    let (status, body) = post(
        &stack,
        "/v1/experiments/study/recordings",
        json!({"participant_id": "P2", "task_id": "rest"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("rec-1"),
        "{body}"
    );
    // A sensor the configuration does not have is refused.
    let (status, body) = post(
        &stack,
        "/v1/experiments/study/recordings",
        json!({"participant_id": "P2", "task_id": "rest", "sensors": ["temp-9"]}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("temp-9"),
        "{body}"
    );

    // Samples during the recording: the configuration's sensors are tagged, others not.
    let ts = Timestamp::from_micros(started.as_micros() + 1_000).to_string();
    let (status, body) = stack
        .post(
            "/v1/samples",
            "application/json",
            json!([
                {"sensor_id": "temp-1", "sensor_type": "temperature", "ts": ts, "values": {"celsius": 20.0}},
                {"sensor_id": "co2-1", "sensor_type": "co2", "ts": ts, "values": {"ppm": 400.0}},
                {"sensor_id": "temp-2", "sensor_type": "temperature", "ts": ts, "values": {"celsius": 21.0}},
            ])
            .to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let enriched: Vec<(String, EnrichedSample)> =
        stack.read_records(&stack.topic("samples.enriched"), 3);
    let tags: std::collections::BTreeMap<String, Option<String>> = enriched
        .iter()
        .map(|(_, e)| {
            (
                e.sample.sensor_id.as_str().to_owned(),
                e.context
                    .as_ref()
                    .map(|c| c.recording_id.as_str().to_owned()),
            )
        })
        .collect();
    assert_eq!(enriched.len(), 3, "{enriched:?}");
    assert_eq!(tags["temp-1"].as_deref(), Some("rec-1"));
    assert_eq!(tags["co2-1"].as_deref(), Some("rec-1"));
    assert_eq!(tags["temp-2"], None, "temp-2 is not in the configuration");

    let (status, list) = (200, {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/experiments/study/recordings", stack.url))
            .bearer_auth(&stack.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    });
    assert_eq!(status, 200);
    assert_eq!(list[0]["sensors"], json!(["temp-1", "co2-1"]), "{list}");
}
