//! Alerts end to end against the real binary and the local stack: a rule created
//! through the API fires once and resolves once, seen alike by a Kafka consumer of
//! `alerts.<name>` (read_committed) and an SSE client; the stream resumes after
//! `Last-Event-ID`; a `kill -9` of `labstream process alerts` between a crossing and
//! its recovery neither repeats nor loses a transition.

mod support;

use labstream_schemas::auth::Scope;
use labstream_schemas::{AlertEvent, AlertStatus, Timestamp};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::TestStack;

fn rule(id: &str, topic: &str) -> Value {
    json!({
        "rule_id": id,
        "name": "Freezer too warm",
        "topic": topic,
        "sensor_type": "temperature",
        "field": "celsius",
        "condition": {"kind": "above", "threshold": 5.0, "recovery": 4.0},
        "severity": "critical",
        "labels": {"room": "lab-2"},
        "message": "{{sensor_id}} at {{value}} °C"
    })
}

fn token(stack: &TestStack, scope: Scope) -> String {
    stack
        .issuer
        .issue("tester", &[scope], None, Duration::from_secs(600), None)
        .unwrap()
}

async fn send(
    stack: &TestStack,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", stack.url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Posts one temperature sample of `sensor` at `ts`.
async fn sample(stack: &TestStack, sensor: &str, ts: Timestamp, celsius: f64) {
    let (status, body) = stack
        .post(
            "/v1/samples",
            "application/json",
            json!({"sensor_id": sensor, "sensor_type": "temperature", "ts": ts.to_string(),
                   "values": {"celsius": celsius}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

/// Waits until `logs()` mentions that rule `id` was applied by a processor.
async fn wait_applied(logs: impl Fn() -> String, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = logs();
        if text
            .lines()
            .any(|l| l.contains("alert rule applied") && l.contains(id))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the alerts processor did not apply rule {id} within 60 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One event of an SSE stream.
#[derive(Debug)]
struct SseEvent {
    id: String,
    event: String,
    data: Value,
}

/// A minimal SSE client over a streamed response.
struct Sse {
    response: reqwest::Response,
    pending: String,
}

impl Sse {
    async fn open(stack: &TestStack, query: &str, token: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = reqwest::Client::new()
            .get(format!("{}/v1/alerts/stream{query}", stack.url))
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            response,
            pending: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped), or None after `within`.
    async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(SseEvent {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.pending.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_created_through_the_api_fires_and_resolves_once_on_kafka_and_sse() {
    let stack = TestStack::start().await;
    let reader = token(&stack, Scope::AlertsRead);

    // Refusals say why, and nothing is stored.
    let mut bad = rule("warm", "freezers");
    bad["condition"]["recovery"] = json!(9.0);
    let (status, body) = send(
        &stack,
        reqwest::Method::POST,
        "/v1/alerts/rules",
        &stack.token,
        Some(bad),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "invalid");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("recovers at or below its threshold"),
        "{body}"
    );
    let mut unknown_kind = rule("warm", "freezers");
    unknown_kind["condition"] = json!({"kind": "sometimes"});
    let (status, body) = send(
        &stack,
        reqwest::Method::POST,
        "/v1/alerts/rules",
        &stack.token,
        Some(unknown_kind),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = send(
        &stack,
        reqwest::Method::POST,
        "/v1/alerts/rules",
        &reader,
        Some(rule("warm", "freezers")),
    )
    .await;
    assert_eq!(status, 403, "changing rules needs admin");

    let (status, body) = send(
        &stack,
        reqwest::Method::POST,
        "/v1/alerts/rules",
        &stack.token,
        Some(rule("warm", "freezers")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["revision"], 1);
    assert_eq!(body["for"], "0s");
    let (status, body) = send(
        &stack,
        reqwest::Method::POST,
        "/v1/alerts/rules",
        &stack.token,
        Some(rule("warm", "freezers")),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = send(
        &stack,
        reqwest::Method::GET,
        "/v1/alerts/rules",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");

    let mut sse = Sse::open(
        &stack,
        "?rule=warm&severity=critical&label.room=lab-2",
        &reader,
        None,
    )
    .await;
    let mut other = Sse::open(&stack, "?label.room=lab-9", &reader, None).await;
    wait_applied(|| stack.logs(), "warm").await;

    let t0 = Timestamp::now().as_micros() - 10_000_000;
    let at = |ms: i64| Timestamp::from_micros(t0 + ms * 1000);
    // Crosses at 10, stays above the recovery bound at 4.5 (hysteresis), resolves at 3.
    for (i, celsius) in [1.0, 10.0, 11.0, 4.5, 3.0].into_iter().enumerate() {
        sample(&stack, "freezer-1", at(i as i64 * 100), celsius).await;
    }

    let topic = stack.topic("alerts.freezers");
    let events: Vec<(String, AlertEvent)> = stack.read_records(&topic, 2);
    assert_eq!(
        events.len(),
        2,
        "exactly one firing and one resolved: {events:?}"
    );
    let (key, firing) = &events[0];
    assert_eq!(key, "warm/freezer-1");
    assert_eq!(firing.status, AlertStatus::Firing);
    assert_eq!(firing.event_id, "warm/freezer-1/1");
    assert_eq!(firing.value, Some(10.0));
    assert_eq!(firing.threshold, Some(5.0));
    assert_eq!(firing.ts, at(100));
    assert_eq!(firing.message, "freezer-1 at 10 °C");
    let resolved = &events[1].1;
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.event_id, "warm/freezer-1/2");
    assert_eq!(resolved.value, Some(3.0));
    assert_eq!(resolved.ts, at(400));

    let first = sse
        .next(Duration::from_secs(30))
        .await
        .expect("the firing event on SSE");
    assert_eq!(first.id, "warm/freezer-1/1");
    assert_eq!(first.event, "firing");
    assert_eq!(first.data["status"], "firing");
    assert_eq!(first.data["value"], 10.0);
    assert_eq!(first.data["threshold"], 5.0);
    assert_eq!(first.data["severity"], "critical");
    assert_eq!(first.data["labels"]["room"], "lab-2");
    let second = sse
        .next(Duration::from_secs(30))
        .await
        .expect("the resolved event on SSE");
    assert_eq!(second.id, "warm/freezer-1/2");
    assert_eq!(second.data["status"], "resolved");
    assert_eq!(second.data["value"], 3.0);
    assert!(
        sse.next(Duration::from_secs(2)).await.is_none(),
        "no third event"
    );
    assert!(
        other.next(Duration::from_millis(200)).await.is_none(),
        "filtered out"
    );

    // The alerts table of the lake has both, once.
    let rows = stack
        .query_until_rows(
            "SELECT event_id, status, value, threshold, severity, labels, date FROM alerts WHERE rule_id = 'warm' ORDER BY sequence",
            2,
        )
        .await;
    assert_eq!(rows[0]["event_id"], "warm/freezer-1/1");
    assert_eq!(rows[0]["status"], "firing");
    assert_eq!(rows[0]["value"], 10.0);
    assert_eq!(rows[0]["labels"], r#"{"room":"lab-2"}"#);
    assert_eq!(rows[1]["status"], "resolved");
    assert_eq!(rows[1]["value"], 3.0);

    // A client that saw the firing event resumes with exactly the rest.
    let mut resumed = Sse::open(&stack, "", &reader, Some("warm/freezer-1/1")).await;
    let next = resumed
        .next(Duration::from_secs(10))
        .await
        .expect("the resolved event");
    assert_eq!(next.id, "warm/freezer-1/2");
    assert!(resumed.next(Duration::from_secs(1)).await.is_none());
    // ?since= replays what the stream keeps.
    let mut recent = Sse::open(&stack, "?since=5m&sensor=freezer-1", &reader, None).await;
    assert_eq!(
        recent.next(Duration::from_secs(10)).await.unwrap().id,
        "warm/freezer-1/1"
    );
    assert_eq!(
        recent.next(Duration::from_secs(10)).await.unwrap().id,
        "warm/freezer-1/2"
    );

    // Replace (If-Match on the revision), then delete: 412 on a stale revision.
    let mut changed = rule("warm", "freezers");
    changed["condition"]["threshold"] = json!(6.0);
    let r = reqwest::Client::new()
        .put(format!("{}/v1/alerts/rules/warm", stack.url))
        .bearer_auth(&stack.token)
        .header("if-match", "\"7\"")
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let r = reqwest::Client::new()
        .put(format!("{}/v1/alerts/rules/warm", stack.url))
        .bearer_auth(&stack.token)
        .header("if-match", "\"1\"")
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let (status, _) = send(
        &stack,
        reqwest::Method::DELETE,
        "/v1/alerts/rules/warm",
        &stack.token,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(
        &stack,
        reqwest::Method::GET,
        "/v1/alerts/rules/warm",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, 404);
    // The delete is a tombstone (null value) in the compacted alerts.rules.
    let rules_topic = stack.topic("alerts.rules");
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &stack.brokers)
        .set("group.id", format!("t{}-rules-check", stack.id))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    {
        use rdkafka::Message;
        use rdkafka::consumer::Consumer;
        consumer.subscribe(&[&rules_topic]).unwrap();
        let mut values = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while values.len() < 3 && Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                values.push(m.unwrap().payload().map(<[u8]>::len));
            }
        }
        assert_eq!(values.len(), 3, "create, replace, delete");
        assert!(values[0].is_some() && values[1].is_some());
        assert_eq!(values[2], None, "a tombstone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_alerts_processor_neither_repeats_nor_loses_a_transition() {
    let stack = TestStack::start_with(&[("LABSTREAM__PROCESSORS__ALERTS__ENABLED", "false")]).await;
    let mut processor = stack.worker(&["process", "alerts"]);
    let (status, body) = send(
        &stack,
        reqwest::Method::POST,
        "/v1/alerts/rules",
        &stack.token,
        Some(rule("warm", "crash")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    wait_applied(|| processor.logs(), "warm").await;
    assert!(
        !stack.logs().contains("alert rule applied"),
        "serve runs no alerts processor here"
    );

    let t0 = Timestamp::now().as_micros() - 10_000_000;
    let at = |ms: i64| Timestamp::from_micros(t0 + ms * 1000);
    for (i, celsius) in [1.0, 10.0, 11.0].into_iter().enumerate() {
        sample(&stack, "freezer-1", at(i as i64 * 100), celsius).await;
    }
    let topic = stack.topic("alerts.crash");
    let events: Vec<(String, AlertEvent)> = stack.read_records(&topic, 1);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1.status, AlertStatus::Firing);

    // More samples of the same alert, then the kill mid-stream, then the recovery.
    for i in 3..40 {
        sample(&stack, "freezer-1", at(i * 100), 12.0).await;
    }
    processor.kill9();
    sample(&stack, "freezer-1", at(4000), 4.5).await;
    sample(&stack, "freezer-1", at(4100), 3.0).await;
    processor.start();

    let events: Vec<(String, AlertEvent)> = stack.read_records(&topic, 2);
    let seen: Vec<(i64, AlertStatus)> =
        events.iter().map(|(_, e)| (e.sequence, e.status)).collect();
    assert_eq!(
        seen,
        vec![(1, AlertStatus::Firing), (2, AlertStatus::Resolved)],
        "processor log:\n{}",
        processor.logs()
    );
    assert_eq!(events[1].1.value, Some(3.0));
    assert_eq!(events[1].1.ts, at(4100));

    // The restored machine goes on counting: the next crossing is transition 3.
    sample(&stack, "freezer-1", at(4200), 20.0).await;
    let events: Vec<(String, AlertEvent)> = stack.read_records(&topic, 3);
    let seen: Vec<(i64, AlertStatus)> =
        events.iter().map(|(_, e)| (e.sequence, e.status)).collect();
    assert_eq!(
        seen,
        vec![
            (1, AlertStatus::Firing),
            (2, AlertStatus::Resolved),
            (3, AlertStatus::Firing)
        ]
    );
    processor.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_provisioned_from_a_file_at_every_start_without_rewriting_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        r#"
        [[rules]]
        rule_id = "door-open"
        name = "Door left open"
        topic = "doors"
        sensor_type = "door"
        field = "open"
        condition = { kind = "above", threshold = 0.5 }
        for = "2m"
        severity = "info"

        [[rules]]
        rule_id = "silent-freezer"
        name = "Freezer silent"
        topic = "freezers"
        sensor_type = "temperature"
        sensor_ids = ["freezer-9"]
        condition = { kind = "absent", after = "10m" }
        "#,
    )
    .unwrap();
    let path = file.display().to_string();
    let stack = TestStack::start_with(&[("LABSTREAM__ALERTS__RULES_FILE", path.as_str())]).await;
    let reader = token(&stack, Scope::AlertsRead);
    let (status, body) = send(
        &stack,
        reqwest::Method::GET,
        "/v1/alerts/rules",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let rules = body.as_array().unwrap();
    assert_eq!(rules.len(), 2, "{body}");
    assert_eq!(rules[0]["rule_id"], "door-open");
    assert_eq!(rules[0]["for"], "2m");
    assert_eq!(rules[0]["revision"], 1);
    assert_eq!(
        rules[1]["condition"],
        json!({"kind": "absent", "after": "10m"})
    );

    // A second process with the same file (here the processor alone) changes nothing.
    let mut processor = stack.worker(&["process", "alerts"]);
    wait_applied(|| processor.logs(), "silent-freezer").await;
    processor.stop();
    assert!(
        processor.logs().contains("created=0 replaced=0"),
        "{}",
        processor.logs()
    );
    let (_, body) = send(
        &stack,
        reqwest::Method::GET,
        "/v1/alerts/rules/door-open",
        &reader,
        None,
    )
    .await;
    assert_eq!(body["revision"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_stream_sends_the_matching_alerts_as_json() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let stack = TestStack::start().await;
    let (status, body) = send(
        &stack,
        reqwest::Method::POST,
        "/v1/alerts/rules",
        &stack.token,
        Some(rule("warm", "ws")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let ws_url = stack.url.replace("http://", "ws://");
    let mut request = format!("{ws_url}/v1/alerts/ws?sensor=freezer-2")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(&stack, Scope::AlertsRead))
            .parse()
            .unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    // Without a token the upgrade is refused.
    let refused = tokio_tungstenite::connect_async(format!("{ws_url}/v1/alerts/ws")).await;
    assert!(refused.is_err());
    wait_applied(|| stack.logs(), "warm").await;

    let t0 = Timestamp::now().as_micros() - 10_000_000;
    for (i, (sensor, celsius)) in [("freezer-1", 9.0), ("freezer-2", 1.0), ("freezer-2", 9.0)]
        .into_iter()
        .enumerate()
    {
        sample(
            &stack,
            sensor,
            Timestamp::from_micros(t0 + i as i64 * 1000),
            celsius,
        )
        .await;
    }
    let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
        .await
        .expect("an alert within 30 s")
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
    assert_eq!(event["event_id"], "warm/freezer-2/1");
    assert_eq!(event["status"], "firing");
    assert_eq!(event["value"], 9.0);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .is_err(),
        "freezer-1's alert is filtered out"
    );
}

/// One request a webhook receiver got: path, event id header, body, answered status.
type Received = (String, String, Value, u16);

/// A webhook receiver that answers 500 to the first `fail_first` requests.
#[derive(Clone, Default)]
struct Receiver {
    requests: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    fail_first: usize,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, String) {
        let receiver = Receiver {
            fail_first,
            ..Receiver::default()
        };
        let r = receiver.clone();
        let app = axum::Router::new().route(
            "/{target}",
            axum::routing::post(
                move |axum::extract::Path(target): axum::extract::Path<String>,
                      headers: axum::http::HeaderMap,
                      axum::Json(body): axum::Json<Value>| {
                    let r = r.clone();
                    async move {
                        let mut requests = r.requests.lock().unwrap();
                        let status = if requests.len() < r.fail_first {
                            500
                        } else {
                            200
                        };
                        let id = headers
                            .get("x-labstream-event-id")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        requests.push((target, id, body, status));
                        axum::http::StatusCode::from_u16(status).unwrap()
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    /// (target, event id) of every accepted delivery.
    fn delivered(&self) -> Vec<(String, String)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.3 == 200)
            .map(|r| (r.0.clone(), r.1.clone()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_get_each_transition_once_also_after_failures_and_a_restart() {
    let (receiver, url) = Receiver::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("labstream.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [processors.webhooks]
            backoff_initial = "100ms"
            backoff_max = "1s"

            [[processors.webhooks.targets]]
            name = "json"
            url = "{url}/json"

            [[processors.webhooks.targets]]
            name = "slack"
            url = "{url}/slack"
            format = "slack"
            rules = ["warm"]
            min_severity = "critical"

            [[processors.webhooks.targets]]
            name = "other-rule"
            url = "{url}/other"
            rules = ["cold"]
            "#
        ),
    )
    .unwrap();
    let path = config.display().to_string();
    let stack = TestStack::start_with(&[
        ("LABSTREAM_CONFIG", path.as_str()),
        ("LABSTREAM__PROCESSORS__WEBHOOKS__ENABLED", "false"),
    ])
    .await;
    let mut webhooks = stack.worker(&["process", "webhooks"]);
    let (status, body) = send(
        &stack,
        reqwest::Method::POST,
        "/v1/alerts/rules",
        &stack.token,
        Some(rule("warm", "hooks")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    wait_applied(|| stack.logs(), "warm").await;

    let t0 = Timestamp::now().as_micros() - 10_000_000;
    for (i, celsius) in [1.0, 10.0, 3.0].into_iter().enumerate() {
        sample(
            &stack,
            "freezer-1",
            Timestamp::from_micros(t0 + i as i64 * 1000),
            celsius,
        )
        .await;
    }
    let want = |target: &str, seq: i64| (target.to_owned(), format!("warm/freezer-1/{seq}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.delivered().len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut delivered = receiver.delivered();
    delivered.sort();
    assert_eq!(
        delivered,
        vec![
            want("json", 1),
            want("json", 2),
            want("slack", 1),
            want("slack", 2)
        ],
        "webhooks log:\n{}",
        webhooks.logs()
    );
    let all = receiver.requests.lock().unwrap().clone();
    assert_eq!(
        all.iter().filter(|r| r.3 == 500).count(),
        3,
        "the first attempts failed"
    );
    let slack: Vec<&Value> = all
        .iter()
        .filter(|r| r.0 == "slack" && r.3 == 200)
        .map(|r| &r.2)
        .collect();
    assert_eq!(
        slack[0],
        &json!({"text": ":rotating_light: FIRING [critical] freezer-1 at 10 °C"})
    );
    let json_firing = all.iter().find(|r| r.0 == "json" && r.3 == 200).unwrap();
    assert_eq!(json_firing.2["event_id"], "warm/freezer-1/1");
    assert_eq!(json_firing.2["value"], 10.0);

    // A crash and restart re-reads the topic from the last commit: nothing is sent again.
    webhooks.kill9();
    webhooks.start();
    sample(&stack, "freezer-1", Timestamp::from_micros(t0 + 5000), 20.0).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.delivered().len() < 6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A repeat would be sent before the webhook group commits past the events.
    support::wait_caught_up(
        &stack.brokers,
        &format!("t{}-webhooks", stack.id),
        &stack.topic("alerts.hooks"),
        Duration::from_secs(60),
    )
    .await;
    let mut delivered = receiver.delivered();
    delivered.sort();
    assert_eq!(
        delivered,
        vec![
            want("json", 1),
            want("json", 2),
            want("json", 3),
            want("slack", 1),
            want("slack", 2),
            want("slack", 3)
        ],
        "webhooks log:\n{}",
        webhooks.logs()
    );
    webhooks.stop();
}
