//! `alerts.rules_file` is applied at every start: each rule of the file is created, or
//! replaced when it differs from the stored one (a new revision); a rule the file holds
//! unchanged keeps its revision, and rules the file does not name are left alone.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::TestStack;

const FIRST: &str = r#"
[[rules]]
rule_id = "door-open"
name = "Door left open"
topic = "doors"
sensor_type = "door"
field = "open"
condition = { kind = "above", threshold = 0.5 }
for = "2m"

[[rules]]
rule_id = "silent-freezer"
name = "Freezer silent"
topic = "freezers"
sensor_type = "temperature"
sensor_ids = ["freezer-9"]
condition = { kind = "absent", after = "10m" }
"#;

async fn rule(stack: &TestStack, id: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{}/v1/alerts/rules/{id}", stack.url))
        .bearer_auth(&stack.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "rule {id}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_file_replaces_rules_that_differ_and_leaves_others_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, FIRST).unwrap();
    let path = file.display().to_string();
    let stack = TestStack::start_with(&[("LABSTREAM__ALERTS__RULES_FILE", path.as_str())]).await;
    assert!(
        stack.logs().contains("created=2 replaced=0"),
        "{}",
        stack.logs()
    );
    // A rule made through the API, which the file does not name.
    let (status, body) = stack
        .post(
            "/v1/alerts/rules",
            "application/json",
            json!({"rule_id": "api-made", "name": "Warm", "topic": "freezers",
                   "sensor_type": "temperature", "field": "celsius",
                   "condition": {"kind": "above", "threshold": 5.0}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The door rule changes in the file; the freezer rule stays as it was.
    std::fs::write(&file, FIRST.replace("for = \"2m\"", "for = \"5m\"")).unwrap();
    let mut processor = stack.worker(&["process", "alerts"]);
    support::eventually(
        "the processor applying the file and running",
        Duration::from_secs(60),
        || async {
            if processor.logs().contains("labstream running") {
                Ok(())
            } else {
                Err(processor.logs())
            }
        },
    )
    .await;
    assert!(
        processor.logs().contains("created=0 replaced=1"),
        "{}",
        processor.logs()
    );
    processor.stop();
    // The running API instance reads the new revision from alerts.rules.
    let door = support::eventually(
        "the API serving revision 2",
        Duration::from_secs(30),
        || async {
            let r = rule(&stack, "door-open").await;
            if r["revision"] == 2 {
                Ok(r)
            } else {
                Err(r.to_string())
            }
        },
    )
    .await;
    assert_eq!(door["for"], "5m", "{door}");
    assert_eq!(rule(&stack, "silent-freezer").await["revision"], 1);
    let api_made = rule(&stack, "api-made").await;
    assert_eq!(api_made["revision"], 1, "left alone: {api_made}");
    assert_eq!(api_made["condition"]["threshold"], 5.0);
}
