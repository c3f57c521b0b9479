//! The authorization matrix of the real server, generated from its route table: every
//! operation `/openapi.json` documents (src/openapi.rs `ROUTES`) is sent as a valid
//! request without a token (401), with a token that is not a JWT of the server (401),
//! with a token of every scope it does not accept (403), and with a token of every
//! scope it accepts (success). The refused requests go first and must change nothing:
//! the same request then succeeds. A device token outside its `sensors` claim is refused
//! on the ingest routes. A route added to the table without a request here fails the
//! test, so the matrix stays complete.

mod support;

use labstream_schemas::auth::Scope;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use support::TestStack;
use tokio_tungstenite::tungstenite;

/// One documented operation.
#[derive(Debug)]
struct Operation {
    method: String,
    path: String,
    /// Scopes of which one is required; empty: no token needed.
    scopes: Vec<String>,
}

/// A concrete request for an operation.
#[derive(Clone, Debug)]
struct Call {
    method: Method,
    path: String,
    body: Option<(String, Vec<u8>)>,
    headers: Vec<(String, String)>,
    /// Sent as a WebSocket upgrade.
    websocket: bool,
}

impl Call {
    fn new(method: &str, path: impl Into<String>) -> Self {
        Self {
            method: method.to_uppercase().parse().unwrap(),
            path: path.into(),
            body: None,
            headers: Vec::new(),
            websocket: false,
        }
    }

    fn json(mut self, body: Value) -> Self {
        self.body = Some(("application/json".into(), body.to_string().into_bytes()));
        self
    }

    fn text(mut self, content_type: &str, body: String) -> Self {
        self.body = Some((content_type.into(), body.into_bytes()));
        self
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What came back: the status and the body (JSON when it is).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    challenge: Option<String>,
}

struct Matrix {
    stack: TestStack,
    client: reqwest::Client,
    admin: String,
    counter: std::cell::Cell<u32>,
}

impl Matrix {
    fn token(&self, scopes: &[Scope], sensors: Option<Vec<String>>) -> String {
        self.stack
            .issuer
            .issue("matrix", scopes, sensors, Duration::from_secs(600), None)
            .unwrap()
    }

    fn next(&self) -> u32 {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        n
    }

    async fn send(&self, call: &Call, authorization: Option<&str>) -> Answer {
        if call.websocket {
            return self.upgrade(call, authorization).await;
        }
        let mut request = self.client.request(
            call.method.clone(),
            format!("{}{}", self.stack.url, call.path),
        );
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        for (k, v) in &call.headers {
            request = request.header(k, v);
        }
        if let Some((content_type, bytes)) = &call.body {
            request = request
                .header("content-type", content_type)
                .body(bytes.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        // A stream (SSE) answers at once and never ends: read no body of a success.
        let body = if status < 300
            && response
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"))
        {
            Value::Null
        } else {
            let text = response.text().await.unwrap_or_default();
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            body,
            challenge,
        }
    }

    /// A WebSocket handshake: 101 when accepted, else the refusal's status and body.
    async fn upgrade(&self, call: &Call, authorization: Option<&str>) -> Answer {
        use tungstenite::client::IntoClientRequest;
        let url = format!(
            "{}{}",
            self.stack.url.replace("http://", "ws://"),
            call.path
        );
        let mut request = url.into_client_request().unwrap();
        if let Some(a) = authorization {
            request
                .headers_mut()
                .insert("authorization", a.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((mut socket, response)) => {
                let _ = socket.close(None).await;
                Answer {
                    status: response.status().as_u16(),
                    body: Value::Null,
                    challenge: None,
                }
            }
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let challenge = response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body = response
                    .into_body()
                    .map(|b| serde_json::from_slice(&b).unwrap_or(Value::Null))
                    .unwrap_or(Value::Null);
                Answer {
                    status,
                    body,
                    challenge,
                }
            }
            Err(e) => panic!("websocket {}: {e}", call.path),
        }
    }

    /// Sends `call` with the admin token and asserts it succeeded; returns the answer.
    async fn admin(&self, call: Call) -> Answer {
        let answer = self.send(&call, Some(&bearer(&self.admin))).await;
        assert!(
            answer.status < 300,
            "setup {} {}: {} {}",
            call.method,
            call.path,
            answer.status,
            answer.body
        );
        answer
    }

    async fn create_experiment(&self, id: &str) -> String {
        let r = self
            .admin(Call::new("post", "/v1/experiments").json(json!({
                "experiment_id": id, "name": "Matrix", "owner": "dr-lee",
                "sensor_config_id": "cfg-base", "participants": ["P"],
                "tasks": [{"task_id": "t", "name": "Task"}]
            })))
            .await;
        assert_eq!(r.status, 201);
        id.to_owned()
    }

    async fn start_recording(&self, experiment: &str) -> String {
        let r = self
            .admin(
                Call::new("post", format!("/v1/experiments/{experiment}/recordings"))
                    .json(json!({"participant_id": "P", "task_id": "t"})),
            )
            .await;
        r.body["recording_id"].as_str().unwrap().to_owned()
    }

    /// A valid request for `op` (whatever it needs created first, with the admin token)
    /// and what to undo once it succeeded, so the next call finds the site as it was.
    async fn request_for(&self, op: &Operation) -> (Call, Vec<Call>) {
        let n = self.next();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let call = match (op.method.as_str(), op.path.as_str()) {
            ("get", p @ ("/healthz" | "/readyz" | "/metrics" | "/openapi.json")) => {
                Call::new("get", p)
            }
            ("post", "/v1/samples") => Call::new("post", "/v1/samples").json(json!({
                "sensor_id": "door-1", "sensor_type": "door", "ts": now_ms, "values": {"open": true}
            })),
            ("post", "/api/v2/write") => Call::new("post", "/api/v2/write").text(
                "text/plain",
                format!("door,sensor_id=door-1 open=true {}\n", now_ms * 1_000_000),
            ),
            ("post", "/v1/query") => {
                Call::new("post", "/v1/query").json(json!({"sql": "SELECT 1 AS one"}))
            }
            ("get", "/v1/experiments/{id}/export") => {
                Call::new("get", "/v1/experiments/exp-base/export")
            }
            ("get", "/v1/sensor-configs") => Call::new("get", "/v1/sensor-configs"),
            ("post", "/v1/sensor-configs") => Call::new("post", "/v1/sensor-configs").json(json!({
                "sensor_config_id": format!("cfg-{n}"), "name": "Rig",
                "sensors": [{"sensor_id": "temp-1", "sensor_type": "temperature"}]
            })),
            ("get", "/v1/sensor-configs/{id}") => Call::new("get", "/v1/sensor-configs/cfg-base"),
            ("put", "/v1/sensor-configs/{id}") => {
                let id = format!("cfg-put-{n}");
                self.admin(Call::new("post", "/v1/sensor-configs").json(json!({
                    "sensor_config_id": id, "name": "Rig",
                    "sensors": [{"sensor_id": "temp-1", "sensor_type": "temperature"}]
                })))
                .await;
                Call::new("put", format!("/v1/sensor-configs/{id}"))
                    .header("if-match", "\"1\"")
                    .json(json!({"name": "Rig v2",
                        "sensors": [{"sensor_id": "temp-1", "sensor_type": "temperature"}]}))
            }
            ("get", "/v1/experiments") => Call::new("get", "/v1/experiments"),
            ("post", "/v1/experiments") => Call::new("post", "/v1/experiments").json(json!({
                "experiment_id": format!("exp-{n}"), "name": "Matrix", "owner": "dr-lee",
                "sensor_config_id": "cfg-base", "participants": ["P"],
                "tasks": [{"task_id": "t", "name": "Task"}]
            })),
            ("get", "/v1/experiments/{id}") => Call::new("get", "/v1/experiments/exp-base"),
            ("put", "/v1/experiments/{id}") => {
                let id = self.create_experiment(&format!("exp-put-{n}")).await;
                Call::new("put", format!("/v1/experiments/{id}"))
                    .header("if-match", "\"1\"")
                    .json(json!({"name": "Matrix v2", "owner": "dr-lee",
                        "sensor_config_id": "cfg-base", "participants": ["P"],
                        "tasks": [{"task_id": "t", "name": "Task"}]}))
            }
            ("post", "/v1/experiments/{id}/activate") => {
                let id = self.create_experiment(&format!("exp-act-{n}")).await;
                let call = Call::new("post", format!("/v1/experiments/{id}/activate"));
                let undo = Call::new("post", format!("/v1/experiments/{id}/deactivate"));
                return (call, vec![undo]);
            }
            ("post", "/v1/experiments/{id}/deactivate") => {
                let id = self.create_experiment(&format!("exp-deact-{n}")).await;
                self.admin(Call::new("post", format!("/v1/experiments/{id}/activate")))
                    .await;
                Call::new("post", format!("/v1/experiments/{id}/deactivate"))
            }
            ("post", "/v1/experiments/{id}/archive") => {
                let id = self.create_experiment(&format!("exp-arch-{n}")).await;
                Call::new("post", format!("/v1/experiments/{id}/archive"))
            }
            ("get", "/v1/experiments/{id}/recordings") => {
                Call::new("get", "/v1/experiments/exp-base/recordings")
            }
            ("post", "/v1/experiments/{id}/recordings") => {
                let id = self.create_experiment(&format!("exp-rec-{n}")).await;
                self.admin(Call::new("post", format!("/v1/experiments/{id}/activate")))
                    .await;
                let call = Call::new("post", format!("/v1/experiments/{id}/recordings")).json(
                    json!({"participant_id": "P", "task_id": "t", "recording_id": format!("rec-{n}")}),
                );
                let undo = vec![
                    Call::new(
                        "post",
                        format!("/v1/experiments/{id}/recordings/rec-{n}/stop"),
                    ),
                    Call::new("post", format!("/v1/experiments/{id}/deactivate")),
                ];
                return (call, undo);
            }
            ("post", "/v1/experiments/{id}/recordings/{rid}/stop") => {
                let id = self.create_experiment(&format!("exp-stop-{n}")).await;
                self.admin(Call::new("post", format!("/v1/experiments/{id}/activate")))
                    .await;
                let rid = self.start_recording(&id).await;
                let call = Call::new(
                    "post",
                    format!("/v1/experiments/{id}/recordings/{rid}/stop"),
                );
                return (
                    call,
                    vec![Call::new(
                        "post",
                        format!("/v1/experiments/{id}/deactivate"),
                    )],
                );
            }
            ("get", "/v1/experiments/{id}/logbook") => {
                Call::new("get", "/v1/experiments/exp-base/logbook")
            }
            ("post", "/v1/experiments/{id}/logbook") => {
                Call::new("post", "/v1/experiments/exp-base/logbook")
                    .json(json!({"text": format!("entry {n}")}))
            }
            ("get", "/v1/experiments/{id}/progress") => {
                Call::new("get", "/v1/experiments/exp-base/progress")
            }
            ("put", "/v1/experiments/{id}/progress/{participant}/{task}") => {
                Call::new("put", "/v1/experiments/exp-base/progress/P/t")
                    .json(json!({"status": "in_progress"}))
            }
            ("get", "/v1/experiments/{id}/events") => {
                Call::new("get", "/v1/experiments/exp-base/events")
            }
            ("get", "/v1/alerts/rules") => Call::new("get", "/v1/alerts/rules"),
            ("post", "/v1/alerts/rules") => {
                Call::new("post", "/v1/alerts/rules").json(rule(&format!("rule-{n}")))
            }
            ("get", "/v1/alerts/rules/{id}") => Call::new("get", "/v1/alerts/rules/rule-base"),
            ("put", "/v1/alerts/rules/{id}") => {
                let id = format!("rule-put-{n}");
                Call::new("put", format!("/v1/alerts/rules/{id}")).json(rule(&id))
            }
            ("delete", "/v1/alerts/rules/{id}") => {
                let id = format!("rule-del-{n}");
                self.admin(Call::new("post", "/v1/alerts/rules").json(rule(&id)))
                    .await;
                Call::new("delete", format!("/v1/alerts/rules/{id}"))
            }
            ("get", "/v1/alerts/stream") => Call::new("get", "/v1/alerts/stream"),
            ("get", "/v1/alerts/ws") => {
                let mut call = Call::new("get", "/v1/alerts/ws");
                call.websocket = true;
                call
            }
            (method, path) => panic!(
                "no request for {} {path} in tests/authorization.rs: add one, so the \
                 authorization matrix covers every route",
                method.to_uppercase()
            ),
        };
        (call, Vec::new())
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn rule(id: &str) -> Value {
    json!({"rule_id": id, "name": "Warm", "topic": "matrix", "sensor_type": "temperature",
           "field": "celsius", "condition": {"kind": "above", "threshold": 5.0}})
}

fn scope_name(scope: Scope) -> String {
    serde_json::to_value(scope)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_missing_invalid_and_unrelated_tokens_and_serves_its_scopes() {
    let stack = TestStack::start().await;
    let admin = stack.token.clone();
    let matrix = Matrix {
        stack,
        client: reqwest::Client::new(),
        admin,
        counter: std::cell::Cell::new(0),
    };
    let doc: Value = matrix
        .client
        .get(format!("{}/openapi.json", matrix.stack.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let scopes: Vec<String> = op["x-labstream-scopes"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            assert_eq!(
                scopes.is_empty(),
                op["security"] == json!([]),
                "{method} {path}: security and scopes disagree"
            );
            operations.push(Operation {
                method: method.clone(),
                path: path.clone(),
                scopes,
            });
        }
    }
    assert!(operations.len() >= 30, "{} operations", operations.len());

    // What the requests need: a sensor configuration, an experiment (in the lake's
    // experiments table too, for its export) and an alert rule.
    matrix
        .admin(Call::new("post", "/v1/sensor-configs").json(json!({
            "sensor_config_id": "cfg-base", "name": "Rig",
            "sensors": [{"sensor_id": "temp-1", "sensor_type": "temperature"}]
        })))
        .await;
    matrix.create_experiment("exp-base").await;
    matrix
        .admin(Call::new("post", "/v1/alerts/rules").json(rule("rule-base")))
        .await;
    support::eventually(
        "the experiments processor writing exp-base to the lake",
        Duration::from_secs(60),
        || async {
            let call = Call::new("get", "/v1/experiments/exp-base/export");
            let a = matrix.send(&call, Some(&bearer(&matrix.admin))).await;
            if a.status == 200 {
                Ok(())
            } else {
                Err(format!("{} {}", a.status, a.body))
            }
        },
    )
    .await;

    let tokens: BTreeMap<String, String> = Scope::ALL
        .iter()
        .map(|s| (scope_name(*s), matrix.token(&[*s], None)))
        .collect();
    let mut checked: BTreeMap<&str, usize> = BTreeMap::new();
    for op in &operations {
        let name = format!("{} {}", op.method.to_uppercase(), op.path);
        let (call, mut undo) = matrix.request_for(op).await;
        if op.scopes.is_empty() {
            let a = matrix.send(&call, None).await;
            assert!(
                a.status < 300,
                "{name} needs no token but answers {} {}",
                a.status,
                a.body
            );
            *checked.entry("open").or_default() += 1;
            continue;
        }
        // Refused: no token, a token that is not one of the server's, an unrelated scope.
        for (what, authorization) in [
            ("no token", None),
            ("an invalid token", Some("Bearer not.a.jwt".to_owned())),
        ] {
            let a = matrix.send(&call, authorization.as_deref()).await;
            assert_eq!(a.status, 401, "{name} with {what}: {}", a.body);
            if !call.websocket {
                assert_eq!(a.body["error"], "unauthorized", "{name} with {what}");
            }
            assert!(
                a.challenge
                    .as_deref()
                    .is_some_and(|c| c.starts_with("Bearer")),
                "{name} with {what}: a 401 names the Bearer scheme"
            );
            *checked.entry("401").or_default() += 1;
        }
        for (scope, token) in &tokens {
            if op.scopes.contains(scope) {
                continue;
            }
            let a = matrix.send(&call, Some(&bearer(token))).await;
            assert_eq!(a.status, 403, "{name} with a {scope} token: {}", a.body);
            if !call.websocket {
                assert_eq!(a.body["error"], "forbidden", "{name} with a {scope} token");
            }
            *checked.entry("403").or_default() += 1;
        }
        // Accepted with each scope it lists; the first request is the one refused above,
        // which must have changed nothing for it to succeed now.
        for (i, scope) in op.scopes.iter().enumerate() {
            let token = &tokens[scope];
            let call = if i == 0 {
                call.clone()
            } else {
                for u in std::mem::take(&mut undo) {
                    matrix.admin(u).await;
                }
                let (call, u) = matrix.request_for(op).await;
                undo = u;
                call
            };
            let a = matrix.send(&call, Some(&bearer(token))).await;
            assert!(
                a.status < 300 || (call.websocket && a.status == 101),
                "{name} with a {scope} token answers {} {}",
                a.status,
                a.body
            );
            *checked.entry("accepted").or_default() += 1;
        }
        for u in undo {
            matrix.admin(u).await;
        }
    }

    // A device token writes only the sensors of its `sensors` claim.
    let device = matrix.token(&[Scope::SamplesWrite], Some(vec!["door-*".into()]));
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (call, mine) in [
        (
            Call::new("post", "/v1/samples").json(json!({"sensor_id": "fridge-1",
                "sensor_type": "temperature", "ts": now_ms, "values": {"celsius": 4.0}})),
            false,
        ),
        (
            Call::new("post", "/api/v2/write").text(
                "text/plain",
                format!(
                    "temperature,sensor_id=fridge-1 celsius=4 {}\n",
                    now_ms * 1_000_000
                ),
            ),
            false,
        ),
        (
            Call::new("post", "/v1/samples").json(json!({"sensor_id": "door-9",
                "sensor_type": "door", "ts": now_ms, "values": {"open": false}})),
            true,
        ),
        (
            Call::new("post", "/api/v2/write").text(
                "text/plain",
                format!("door,sensor_id=door-9 open=false {}\n", now_ms * 1_000_000),
            ),
            true,
        ),
    ] {
        let a = matrix.send(&call, Some(&bearer(&device))).await;
        if mine {
            assert!(
                a.status < 300,
                "{} of its own sensor: {} {}",
                call.path,
                a.status,
                a.body
            );
        } else {
            assert_eq!(a.status, 403, "{} of another sensor: {}", call.path, a.body);
            assert!(
                a.body["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("fridge-1"),
                "{}",
                a.body
            );
        }
    }
    eprintln!("authorization matrix: {checked:?}");
    let protected: Vec<&Operation> = operations.iter().filter(|o| !o.scopes.is_empty()).collect();
    let expected = BTreeMap::from([
        ("401", 2 * protected.len()),
        (
            "403",
            protected
                .iter()
                .map(|o| Scope::ALL.len() - o.scopes.len())
                .sum(),
        ),
        ("accepted", protected.iter().map(|o| o.scopes.len()).sum()),
        ("open", operations.len() - protected.len()),
    ]);
    assert_eq!(checked, expected, "every cell of the matrix was probed");
}
