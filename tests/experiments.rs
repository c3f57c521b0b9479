//! Experiments end to end against the real stack: commands over HTTP with their
//! refusals and version checks, recordings for two participants, and every sample in
//! `samples.enriched` and in the lake tagged with the recording that contains it,
//! including samples sent before the start command was written. The enrichment
//! processor SIGKILLed mid-stream still yields each sample once.

mod support;

use labstream_schemas::Timestamp;
use labstream_schemas::experiment::EnrichedSample;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::TestStack;

struct Api<'a> {
    stack: &'a TestStack,
    client: reqwest::Client,
}

impl Api<'_> {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (u16, Option<String>, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.stack.url))
            .bearer_auth(&self.stack.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}\n{}", self.stack.logs()));
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, etag, json)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Option<String>, Value) {
        self.send(reqwest::Method::POST, path, Some(body), None)
            .await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, _, body) = self.send(reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn samples(&self, sensor: &str, times: &[i64]) {
        let batch: Vec<Value> = times
            .iter()
            .map(|ts| {
                json!({"sensor_id": sensor, "sensor_type": "temperature", "ts": ts / 1000,
                       "seq": ts % 1000, "values": {"celsius": 20.0}})
            })
            .collect();
        let (status, body) = self
            .stack
            .post(
                "/v1/samples?precision=ms",
                "application/json",
                Value::Array(batch).to_string(),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
}

fn now_us() -> i64 {
    Timestamp::now().as_micros()
}

/// Microsecond timestamps rounded to whole milliseconds (what `precision=ms` keeps),
/// encoded with a per-sample `seq` so every (sensor, ts, seq) is unique.
fn times(from_us: i64, n: usize, step_ms: i64) -> Vec<i64> {
    (0..n as i64)
        .map(|i| (from_us / 1000 + i * step_ms) * 1000 + i % 1000)
        .collect()
}

fn ts_of(t: i64) -> i64 {
    // ts in µs as ingest stores it: the millisecond part only (seq carries the rest).
    (t / 1000) * 1000
}

/// Each command's answer shows the change it made, with the aggregate's new version as
/// `ETag`, so a client can chain writes on the ETags it was given. (Kafka writes a
/// transaction's commit markers after the commit returns; a store answering from a read
/// that raced them answered a new recording with 404 in CI.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_shows_its_own_change() {
    let stack = TestStack::start().await;
    let api = Api {
        stack: &stack,
        client: reqwest::Client::new(),
    };
    const ROUNDS: usize = 40;
    for i in 0..ROUNDS {
        let id = format!("rig-{i}");
        let (status, etag, body) = api
            .post(
                "/v1/sensor-configs",
                json!({"sensor_config_id": id, "name": "Rig",
                "sensors": [{"sensor_id": format!("temp-{i}"), "sensor_type": "temperature"}]}),
            )
            .await;
        assert_eq!(status, 201, "create {id}: {body}");
        assert_eq!(etag.as_deref(), Some("\"1\""), "create {id}: {body}");
        assert_eq!(body["name"], "Rig", "{body}");
        // Replace it at once with the ETag just given, twice over.
        let mut etag = etag.unwrap();
        for version in 2..=3 {
            let name = format!("Rig v{version}");
            let (status, new_etag, body) = api
                .send(
                    reqwest::Method::PUT,
                    &format!("/v1/sensor-configs/{id}"),
                    Some(json!({"name": name,
                        "sensors": [{"sensor_id": format!("temp-{i}"), "sensor_type": "temperature"}]})),
                    Some(&etag),
                )
                .await;
            assert_eq!(status, 200, "replace {id} with {etag}: {body}");
            assert_eq!(new_etag.as_deref(), Some(format!("\"{version}\"").as_str()));
            assert_eq!(body["name"], name.as_str(), "{body}");
            etag = new_etag.unwrap();
        }
        assert_eq!(
            api.get(&format!("/v1/sensor-configs/{id}")).await["name"],
            "Rig v3"
        );
    }
    assert_eq!(
        api.get("/v1/sensor-configs").await.as_array().map(Vec::len),
        Some(ROUNDS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_carry_the_recording_they_were_taken_in() {
    let stack = TestStack::start().await;
    let api = Api {
        stack: &stack,
        client: reqwest::Client::new(),
    };

    let (status, etag, body) = api
        .post(
            "/v1/sensor-configs",
            json!({"sensor_config_id": "bench", "name": "Bench 1",
            "sensors": [{"sensor_id": "temp-1", "sensor_type": "temperature"}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let (status, _, body) = api
        .post(
            "/v1/sensor-configs",
            json!({"sensor_config_id": "bad", "name": "x",
            "sensors": [{"sensor_id": "t", "sensor_type": "no-such-type"}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("no-such-type"),
        "{body}"
    );

    let definition = json!({"name": "Stroop study", "owner": "dr-lee", "sensor_config_id": "bench",
        "tasks": [{"task_id": "rest", "name": "Rest"}, {"task_id": "stroop", "name": "Stroop"}],
        "operators": ["op-1"], "participants": ["P", "Q"]});
    let mut create = definition.clone();
    create["experiment_id"] = json!("study-1");
    let (status, _, body) = api.post("/v1/experiments", create.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "draft");
    let (status, _, body) = api.post("/v1/experiments", create).await;
    assert_eq!(status, 409, "{body}");

    // Recording before activation: refused with the reason.
    let (status, _, body) = api
        .post(
            "/v1/experiments/study-1/recordings",
            json!({"participant_id": "P", "task_id": "rest"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not active"),
        "{body}"
    );

    let (status, _, body) = api
        .post("/v1/experiments/study-1/activate", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut second = definition.clone();
    second["experiment_id"] = json!("study-2");
    assert_eq!(api.post("/v1/experiments", second).await.0, 201);
    let (status, _, body) = api
        .post("/v1/experiments/study-2/activate", json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("study-1 is active"),
        "{body}"
    );

    // Optimistic concurrency: a stale If-Match is refused, a missing one on PUT too.
    let (_, etag, _) = api
        .send(reqwest::Method::GET, "/v1/experiments/study-2", None, None)
        .await;
    let etag = etag.unwrap();
    let mut changed = definition.clone();
    changed["name"] = json!("Stroop study, v2");
    let (status, _, body) = api
        .send(
            reqwest::Method::PUT,
            "/v1/experiments/study-2",
            Some(changed.clone()),
            None,
        )
        .await;
    assert_eq!(status, 428, "{body}");
    let (status, new_etag, body) = api
        .send(
            reqwest::Method::PUT,
            "/v1/experiments/study-2",
            Some(changed.clone()),
            Some(&etag),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(new_etag.as_deref(), Some(etag.as_str()));
    let (status, _, body) = api
        .send(
            reqwest::Method::PUT,
            "/v1/experiments/study-2",
            Some(changed),
            Some(&etag),
        )
        .await;
    assert_eq!(
        status, 412,
        "the second operator's stale write must fail: {body}"
    );

    // Before any recording: untagged.
    let t0 = now_us();
    let before = times(t0 - 2_000_000, 5, 100);
    api.samples("temp-1", &before).await;
    // Sent before the start command is written, with event times after its start.
    let start_p = now_us();
    let early = times(start_p + 1_000, 5, 20);
    api.samples("temp-1", &early).await;
    let started_at = Timestamp::from_micros(start_p).to_string();
    let (status, _, rec_p) = api
        .post("/v1/experiments/study-1/recordings",
            json!({"participant_id": "P", "task_id": "rest", "recording_id": "rec-p", "started_at": started_at}))
        .await;
    assert_eq!(status, 201, "{rec_p}");
    let during_p = times(now_us(), 10, 30);
    api.samples("temp-1", &during_p).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, rec_p) = api
        .post("/v1/experiments/study-1/recordings/rec-p/stop", json!({}))
        .await;
    assert_eq!(status, 200, "{rec_p}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = times(now_us(), 5, 10);
    api.samples("temp-1", &between).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, rec_q) = api
        .post(
            "/v1/experiments/study-1/recordings",
            json!({"participant_id": "Q", "task_id": "stroop", "recording_id": "rec-q"}),
        )
        .await;
    assert_eq!(status, 201, "{rec_q}");
    let during_q = times(now_us() + 1_000, 10, 30);
    api.samples("temp-1", &during_q).await;

    // The expected tag of every sample, from the recordings' actual intervals.
    let interval = |r: &Value| {
        let start = Timestamp::parse_rfc3339(r["started_at"].as_str().unwrap())
            .unwrap()
            .as_micros();
        let stop = r["stopped_at"]
            .as_str()
            .map(|s| Timestamp::parse_rfc3339(s).unwrap().as_micros());
        (start, stop)
    };
    let (p_start, p_stop) = interval(&rec_p);
    let p_stop = p_stop.expect("rec-p is stopped");
    let (q_start, _) = interval(&rec_q);
    // (ts, seq) -> (recording, participant, task) or none.
    type Tag = Option<(&'static str, &'static str, &'static str)>;
    let mut expected: BTreeMap<(i64, i64), Tag> = BTreeMap::new();
    let all: Vec<i64> = [&before, &early, &during_p, &between, &during_q]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    for t in &all {
        let ts = ts_of(*t);
        let tag = if ts >= p_start && ts < p_stop {
            Some(("rec-p", "P", "rest"))
        } else if ts >= q_start {
            Some(("rec-q", "Q", "stroop"))
        } else {
            None
        };
        expected.insert((ts, t % 1000), tag);
    }
    // The scenario covers each case.
    assert!(
        early
            .iter()
            .all(|t| expected[&(ts_of(*t), t % 1000)] == Some(("rec-p", "P", "rest"))),
        "samples sent before the start command belong to rec-p"
    );
    assert!(
        before
            .iter()
            .chain(&between)
            .all(|t| expected[&(ts_of(*t), t % 1000)].is_none())
    );
    assert!(
        during_q
            .iter()
            .all(|t| expected[&(ts_of(*t), t % 1000)] == Some(("rec-q", "Q", "stroop")))
    );

    // samples.enriched: each sample once, with its recording.
    let enriched: Vec<(String, EnrichedSample)> =
        stack.read_records(&stack.topic("samples.enriched"), all.len());
    assert_eq!(
        enriched.len(),
        all.len(),
        "each sample exactly once in samples.enriched"
    );
    let mut seen = BTreeSet::new();
    for (key, e) in &enriched {
        assert_eq!(key, "temp-1");
        let k = (e.sample.ts.as_micros(), e.sample.seq.unwrap());
        assert!(seen.insert(k), "duplicate {k:?}");
        let want = expected
            .get(&k)
            .unwrap_or_else(|| panic!("unexpected sample {k:?}"));
        let got = e.context.as_ref().map(|c| {
            (
                c.recording_id.as_str(),
                c.participant_id.as_str(),
                c.task_id.as_str(),
            )
        });
        assert_eq!(got, *want, "sample at {} seq {}", e.sample.ts, k.1);
        if let Some(c) = &e.context {
            assert_eq!(c.experiment_id.as_str(), "study-1");
        }
    }

    // The lake has the same tags, in the experiment's partition.
    let rows = stack
        .query_until_rows(
            "SELECT ts, seq, experiment_id, recording_id, participant_id, task_id FROM samples_temperature ORDER BY ts, seq",
            all.len(),
        )
        .await;
    for row in &rows {
        let ts = Timestamp::parse_rfc3339(row["ts"].as_str().unwrap_or_default())
            .map(|t| t.as_micros())
            .or_else(|| row["ts"].as_i64())
            .unwrap_or_else(|| panic!("ts of {row}"));
        let k = (ts, row["seq"].as_i64().unwrap());
        let want = expected[&k];
        let got = row["recording_id"].as_str().map(|r| {
            (
                r,
                row["participant_id"].as_str().unwrap(),
                row["task_id"].as_str().unwrap(),
            )
        });
        assert_eq!(got, want, "lake row {row}");
    }
    assert!(
        stack
            .lake_files()
            .iter()
            .any(|f| f.to_string_lossy().contains("experiment=study-1"))
    );
    assert!(
        stack
            .lake_files()
            .iter()
            .any(|f| f.to_string_lossy().contains("experiment=none"))
    );

    // History and state reads.
    let events = api.get("/v1/experiments/study-1/events").await;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ExperimentCreated",
            "ExperimentActivated",
            "RecordingStarted",
            "RecordingStopped",
            "RecordingStarted"
        ]
    );
    let recordings = api.get("/v1/experiments/study-1/recordings").await;
    assert_eq!(recordings.as_array().unwrap().len(), 2);
    let (status, _, body) = api
        .send(
            reqwest::Method::PUT,
            "/v1/experiments/study-1/progress/P/rest",
            Some(json!({"status": "done"})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = api
        .post(
            "/v1/experiments/study-1/logbook",
            json!({"text": "Q asked for a break", "recording_id": "rec-q"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let list = api.get("/v1/experiments?status=active").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["experiment_id"], "study-1");

    // `labstream rebuild experiments` recomputes the same state as the snapshots.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = stack.run_cli(&["rebuild", "experiments", "--dry-run"]);
        if out.contains("no snapshot differs") {
            assert!(out.contains("2 experiments"), "{out}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "snapshots never matched the rebuilt state: {out}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_enrichment_processor_writes_each_sample_once() {
    let stack =
        TestStack::start_with(&[("LABSTREAM__PROCESSORS__ENRICHMENT__ENABLED", "false")]).await;
    // Static membership: the restarted processor takes its partitions back at once, so
    // every kill lands on a processor that is reading and writing, not on one waiting
    // for the dead member's session to expire.
    let config = stack.dir().join("static.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka.librdkafka]\n\"group.instance.id\" = \"t{}-enrichment-member\"\n",
            stack.id
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let mut worker =
        stack.worker_with(&["process", "enrichment"], &[("LABSTREAM_CONFIG", &config)]);
    let enriched_topic = stack.topic("samples.enriched");
    let base = now_us() - 60_000_000;
    let mut sent = 0usize;
    for round in 0..6 {
        let emitted_before = stack.topic_records(&enriched_topic);
        for _ in 0..5 {
            let batch: Vec<Value> = (0..40)
                .map(|i| {
                    let n = sent + i;
                    json!({"sensor_id": format!("temp-{}", n % 4), "sensor_type": "temperature",
                           "ts": base / 1000 + n as i64, "values": {"celsius": n as f64}})
                })
                .collect();
            let (status, body) = stack
                .post(
                    "/v1/samples?precision=ms",
                    "application/json",
                    Value::Array(batch).to_string(),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            sent += 40;
        }
        if round < 5 {
            // Once the (restarted) processor wrote part of this round, crash it while
            // the rest is in flight.
            support::eventually("the processor writing", Duration::from_secs(60), || async {
                let n = stack.topic_records(&enriched_topic);
                if n > emitted_before {
                    Ok(())
                } else {
                    Err(format!(
                        "{n} records in samples.enriched\n{}",
                        worker.logs()
                    ))
                }
            })
            .await;
            worker.kill9();
            worker.start();
        }
    }
    let enriched: Vec<(String, EnrichedSample)> = stack.read_records(&enriched_topic, sent);
    let mut values: Vec<i64> = enriched
        .iter()
        .map(|(_, e)| match e.sample.values["celsius"] {
            labstream_schemas::FieldValue::Double(v) => v as i64,
            ref other => panic!("{other:?}"),
        })
        .collect();
    values.sort_unstable();
    assert_eq!(
        values,
        (0..sent as i64).collect::<Vec<_>>(),
        "each sample exactly once (read_committed)\n{}",
        worker.logs()
    );
}
