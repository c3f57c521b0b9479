//! Several API instances may run: two `labstream api` processes against one Kafka,
//! sent conflicting commands at the same moment, round after round. Each decision is
//! taken on the log read to its end under the site's transactional writer, so exactly
//! one of two conflicting commands wins every round; the loser was fenced, read the
//! log again and decided again (it says so in its log), and answers with the reason.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::TestStack;

async fn send(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = client
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_instances_never_both_win_a_conflict() {
    let first = TestStack::start_command("api", &[]).await;
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut second = first.worker_with(&["api"], &[("LABSTREAM__HTTP__LISTEN", &listen)]);
    let second_url = format!("http://{listen}");
    let client = reqwest::Client::new();
    support::eventually(
        "the second API instance serving",
        Duration::from_secs(60),
        || async {
            match client.get(format!("{second_url}/healthz")).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let urls = [first.url.clone(), second_url.clone()];
    let token = first.token.clone();

    let (status, body) = send(
        &client,
        &urls[0],
        &token,
        "/v1/sensor-configs",
        json!({
        "sensor_config_id": "rig", "name": "Rig",
        "sensors": [{"sensor_id": "temp-1", "sensor_type": "temperature"}]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    const ROUNDS: usize = 12;
    let mut fence_retries_seen = 0;
    for round in 0..ROUNDS {
        // The same new experiment id created on both at once: one 201, one 409.
        let id = format!("exp-{round}");
        let create = |url: String| {
            let (client, token, id) = (client.clone(), token.clone(), id.clone());
            async move {
                send(
                    &client,
                    &url,
                    &token,
                    "/v1/experiments",
                    json!({
                    "experiment_id": id, "name": format!("{id} by {url}"), "owner": "dr-lee",
                    "sensor_config_id": "rig", "participants": ["P"],
                    "tasks": [{"task_id": "t", "name": "Task"}]}),
                )
                .await
            }
        };
        let (a, b) = tokio::join!(create(urls[0].clone()), create(urls[1].clone()));
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: {a:?} {b:?}");

        // Two experiments activated on both at once: one active experiment at a time.
        let (x, y) = (format!("act-{round}-a"), format!("act-{round}-b"));
        for (i, e) in [&x, &y].into_iter().enumerate() {
            let (status, body) = send(
                &client,
                &urls[i],
                &token,
                "/v1/experiments",
                json!({
                "experiment_id": e, "name": e, "owner": "dr-lee", "sensor_config_id": "rig",
                "participants": ["P"], "tasks": [{"task_id": "t", "name": "Task"}]}),
            )
            .await;
            assert_eq!(status, 201, "{body}");
        }
        let activate = |url: String, e: String| {
            let (client, token) = (client.clone(), token.clone());
            async move {
                send(
                    &client,
                    &url,
                    &token,
                    &format!("/v1/experiments/{e}/activate"),
                    json!({}),
                )
                .await
            }
        };
        let (a, b) = tokio::join!(
            activate(urls[0].clone(), x.clone()),
            activate(urls[1].clone(), y.clone())
        );
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}: {a:?} {b:?}");
        let loser = if a.0 == 409 { &a.1 } else { &b.1 };
        assert!(
            loser["message"]
                .as_str()
                .unwrap_or_default()
                .contains("is active"),
            "the loser says why: {loser}"
        );
        let winner = if a.0 == 200 { &x } else { &y };
        let (status, body) = send(
            &client,
            &urls[round % 2],
            &token,
            &format!("/v1/experiments/{winner}/deactivate"),
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        fence_retries_seen = support::count_lines(&first.logs(), &["fenced by another instance"])
            + support::count_lines(&second.logs(), &["fenced by another instance"]);
    }

    // Both instances agree with the log: each experiment created once, and at most one
    // active at any point of the history.
    for url in &urls {
        let list: Value = client
            .get(format!("{url}/v1/experiments"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.as_array().unwrap().len(), ROUNDS * 3, "{url}: {list}");
    }
    let events: Vec<(String, labstream_schemas::experiment::ExperimentEvent)> =
        first.read_records(&first.topic("experiments.events"), 1 + ROUNDS * 5);
    let mut active = 0i32;
    let mut created = std::collections::BTreeSet::new();
    for (_, e) in &events {
        let kind = serde_json::to_value(&e.payload).unwrap();
        match kind["type"].as_str().unwrap() {
            "ExperimentCreated" => assert!(created.insert(e.aggregate_id.clone()), "{e:?}"),
            "ExperimentActivated" => active += 1,
            "ExperimentDeactivated" => active -= 1,
            _ => {}
        }
        assert!(
            (0..=1).contains(&active),
            "two experiments active at once: {events:?}"
        );
    }
    assert_eq!(
        events.len(),
        1 + ROUNDS * 5,
        "one event per accepted command"
    );
    // The race was real: instances fenced each other and decided again.
    assert!(
        fence_retries_seen > 0,
        "no instance was ever fenced; the test raced nothing\n{}\n----\n{}",
        first.logs(),
        second.logs()
    );
    second.stop();
}
