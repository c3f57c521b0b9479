//! `labstream rebuild experiments` folds `experiments.events` from its start, compares
//! each experiment's state with its snapshot in `experiments.state` and republishes
//! exactly the snapshots that differ or are missing (`--dry-run` only says which). The
//! experiments processor is off here, so the snapshots are only what the test and the
//! rebuild write.

mod support;

use labstream_schemas::experiment::ExperimentState;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::TestStack;

/// The latest snapshot per experiment, and how many records the topic holds.
fn snapshots(stack: &TestStack) -> (BTreeMap<String, ExperimentState>, usize) {
    let records: Vec<(String, ExperimentState)> =
        stack.read_records(&stack.topic("experiments.state"), 0);
    let n = records.len();
    (records.into_iter().collect(), n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_republishes_exactly_the_snapshots_that_differ() {
    let stack =
        TestStack::start_with(&[("LABSTREAM__PROCESSORS__EXPERIMENTS__ENABLED", "false")]).await;
    let post = |path: &'static str, body: serde_json::Value| {
        let stack = &stack;
        async move {
            let (status, body) = stack.post(path, "application/json", body.to_string()).await;
            assert!(status < 300, "{path}: {status} {body}");
            body
        }
    };
    post(
        "/v1/sensor-configs",
        json!({"sensor_config_id": "rig", "name": "Rig",
        "sensors": [{"sensor_id": "temp-1", "sensor_type": "temperature"}]}),
    )
    .await;
    for id in ["alpha", "beta"] {
        post("/v1/experiments", json!({"experiment_id": id, "name": id, "owner": "dr-lee",
            "sensor_config_id": "rig", "participants": ["P"], "tasks": [{"task_id": "t", "name": "T"}]}))
        .await;
    }
    assert_eq!(snapshots(&stack).1, 0);

    let out = stack.run_cli(&["rebuild", "experiments", "--dry-run"]);
    assert!(
        out.contains("would republish 2 snapshots: alpha, beta"),
        "{out}"
    );
    assert_eq!(snapshots(&stack).1, 0, "a dry run publishes nothing");

    let out = stack.run_cli(&["rebuild", "experiments"]);
    assert!(
        out.contains("republished 2 snapshots: alpha, beta"),
        "{out}"
    );
    let (rebuilt, n) = snapshots(&stack);
    assert_eq!(n, 2);
    for id in ["alpha", "beta"] {
        let api: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/v1/experiments/{id}", stack.url))
            .bearer_auth(&stack.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let served: ExperimentState =
            serde_json::from_value(api.clone()).unwrap_or_else(|e| panic!("{e}: {api}"));
        assert_eq!(
            rebuilt[id], served,
            "the snapshot is the state the API serves"
        );
    }
    let out = stack.run_cli(&["rebuild", "experiments"]);
    assert!(out.contains("no snapshot differs"), "{out}");
    assert_eq!(
        snapshots(&stack).1,
        2,
        "nothing republished when nothing differs"
    );

    // A wrong snapshot of alpha (as a bug or a bad restore would leave), and a change
    // to beta the snapshots never saw.
    let mut wrong = rebuilt["alpha"].clone();
    wrong.definition.name = "tampered".into();
    let bytes = labstream_schemas::Codec::new().encode(&wrong).unwrap();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack.brokers)
        .create()
        .unwrap();
    producer
        .send(
            BaseRecord::to(&stack.topic("experiments.state"))
                .key("alpha")
                .payload(&bytes),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    post("/v1/experiments/beta/activate", json!({})).await;

    let out = stack.run_cli(&["rebuild", "experiments", "--dry-run"]);
    assert!(
        out.contains("would republish 2 snapshots: alpha, beta"),
        "{out}"
    );
    assert!(out.contains("0 snapshots identical"), "{out}");
    let out = stack.run_cli(&["rebuild", "experiments"]);
    assert!(
        out.contains("republished 2 snapshots: alpha, beta"),
        "{out}"
    );
    let (latest, n) = snapshots(&stack);
    assert_eq!(n, 5, "two first snapshots, the wrong one, two republished");
    assert_eq!(
        latest["alpha"], rebuilt["alpha"],
        "alpha as the log says again"
    );
    assert_eq!(latest["beta"].version, rebuilt["beta"].version + 1);
    let out = stack.run_cli(&["rebuild", "experiments"]);
    assert!(out.contains("no snapshot differs"), "{out}");
    assert!(out.contains("2 snapshots identical"), "{out}");
}
