//! Webhook retry rules against the real binary: a receiver (a plain TCP server here, so
//! it can also drop a connection without answering) plays one script of answers per
//! target. 408, 429, 5xx and network errors are retried with exponential backoff up to
//! `processors.webhooks.max_attempts`; other answers (400, 404) are not retried; every
//! attempt carries `Idempotency-Key` and `X-Labstream-Event-Id` = the event id.

mod support;

use labstream_schemas::Timestamp;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::TestStack;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// What the receiver does with one request.
#[derive(Clone, Copy, Debug)]
enum Act {
    Answer(u16),
    /// Close the connection without an answer (a network error to the sender).
    Drop,
}

/// One request as the receiver got it.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    idempotency_key: Option<String>,
    event_id: Option<String>,
    act: Act,
    at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    scripts: Arc<BTreeMap<String, Vec<Act>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    /// Serves on a free port; each target's requests get its script in order, then 200.
    async fn start(scripts: BTreeMap<String, Vec<Act>>) -> (Receiver, String) {
        let receiver = Receiver {
            scripts: Arc::new(scripts),
            ..Receiver::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let r = receiver.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let r = r.clone();
                tokio::spawn(async move { r.serve(socket).await });
            }
        });
        (receiver, url)
    }

    async fn serve(&self, socket: tokio::net::TcpStream) {
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let target = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await.unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.unwrap();
        let act = {
            let mut seen = self.seen.lock().unwrap();
            let attempt = seen.iter().filter(|s| s.target == target).count();
            let act = self
                .scripts
                .get(&target)
                .and_then(|s| s.get(attempt).copied())
                .unwrap_or(Act::Answer(200));
            seen.push(Seen {
                target: target.clone(),
                idempotency_key: headers.get("idempotency-key").cloned(),
                event_id: headers.get("x-labstream-event-id").cloned(),
                act,
                at: Instant::now(),
            });
            act
        };
        let mut socket = reader.into_inner();
        if let Act::Answer(status) = act {
            let response = format!(
                "HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
        let _ = socket.shutdown().await;
    }

    fn requests(&self, target: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.target == target)
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_only_when_they_may_succeed() {
    use Act::{Answer, Drop};
    let scripts = BTreeMap::from([
        ("r408".to_owned(), vec![Answer(408)]),
        ("r429".to_owned(), vec![Answer(429)]),
        ("r5xx".to_owned(), vec![Answer(503), Answer(502)]),
        ("network".to_owned(), vec![Drop]),
        ("r400".to_owned(), vec![Answer(400)]),
        ("r404".to_owned(), vec![Answer(404)]),
        ("always500".to_owned(), vec![Answer(500); 10]),
    ]);
    let (receiver, url) = Receiver::start(scripts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("labstream.toml");
    let mut toml = String::from(
        "[processors.webhooks]\nmax_attempts = 3\nbackoff_initial = \"200ms\"\nbackoff_max = \"1s\"\n",
    );
    for target in scripts.keys() {
        toml.push_str(&format!(
            "\n[[processors.webhooks.targets]]\nname = \"{target}\"\nurl = \"{url}/{target}\"\n"
        ));
    }
    std::fs::write(&config, toml).unwrap();
    let path = config.display().to_string();
    let stack = TestStack::start_with(&[("LABSTREAM_CONFIG", path.as_str())]).await;

    let (status, body) = stack
        .post(
            "/v1/alerts/rules",
            "application/json",
            json!({"rule_id": "warm", "name": "Warm", "topic": "hooks",
                   "sensor_type": "temperature", "field": "celsius",
                   "condition": {"kind": "above", "threshold": 5.0}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    support::eventually(
        "the alerts processor applying the rule",
        Duration::from_secs(60),
        || async {
            if support::count_lines(&stack.logs(), &["alert rule applied", "warm"]) > 0 {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;
    let t0 = Timestamp::now().as_micros() - 10_000_000;
    for (i, celsius) in [1.0, 10.0].into_iter().enumerate() {
        let (status, body) = stack
            .post(
                "/v1/samples",
                "application/json",
                json!({"sensor_id": "freezer-1", "sensor_type": "temperature",
                       "ts": Timestamp::from_micros(t0 + i as i64 * 1000).to_string(),
                       "values": {"celsius": celsius}})
                .to_string(),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    // The firing event is in alerts.hooks; once the webhook group committed past it,
    // every target had all the attempts it will ever get.
    let topic = stack.topic("alerts.hooks");
    support::eventually(
        "the firing event on alerts.hooks",
        Duration::from_secs(60),
        || async {
            let n = stack.read_raw(&topic, 0).len();
            if n == 1 {
                Ok(())
            } else {
                Err(format!("{n} events"))
            }
        },
    )
    .await;
    support::wait_caught_up(
        &stack.brokers,
        &format!("t{}-webhooks", stack.id),
        &topic,
        Duration::from_secs(90),
    )
    .await;

    let statuses = |target: &str| -> Vec<String> {
        receiver
            .requests(target)
            .iter()
            .map(|s| match s.act {
                Answer(code) => code.to_string(),
                Drop => "dropped".to_owned(),
            })
            .collect()
    };
    let logs = stack.logs();
    assert_eq!(statuses("r408"), ["408", "200"], "408 is retried\n{logs}");
    assert_eq!(statuses("r429"), ["429", "200"], "429 is retried");
    assert_eq!(statuses("r5xx"), ["503", "502", "200"], "5xx are retried");
    assert_eq!(
        statuses("network"),
        ["dropped", "200"],
        "network errors are retried"
    );
    assert_eq!(statuses("r400"), ["400"], "400 is not retried");
    assert_eq!(statuses("r404"), ["404"], "404 is not retried");
    assert_eq!(
        statuses("always500"),
        ["500", "500", "500"],
        "max_attempts = 3 bounds the attempts"
    );
    for target in ["r400", "r404", "always500"] {
        assert_eq!(
            support::count_lines(
                &logs,
                &["webhook delivery given up", &format!("target=\"{target}\"")]
            ) + support::count_lines(
                &logs,
                &["webhook delivery given up", &format!("target={target}")]
            ),
            1,
            "{target}: one give-up, logged\n{logs}"
        );
    }

    // Every attempt names the event, under the same Idempotency-Key.
    let all = receiver.seen.lock().unwrap().clone();
    assert_eq!(all.len(), 2 + 2 + 3 + 2 + 1 + 1 + 3);
    for s in &all {
        assert_eq!(
            s.idempotency_key.as_deref(),
            Some("warm/freezer-1/1"),
            "{s:?}"
        );
        assert_eq!(s.event_id.as_deref(), Some("warm/freezer-1/1"), "{s:?}");
    }
    // Exponential backoff: 200 ms, then 400 ms.
    let r5xx = receiver.requests("r5xx");
    let first = r5xx[1].at - r5xx[0].at;
    let second = r5xx[2].at - r5xx[1].at;
    assert!(
        first >= Duration::from_millis(200) && second >= Duration::from_millis(400),
        "pauses {first:?} and {second:?}"
    );
}
