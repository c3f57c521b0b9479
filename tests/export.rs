//! Exports against the real stack: a two-participant experiment with two sensor types,
//! exported whole with `labstream export` and narrowed to one participant (and day) over
//! `GET /v1/experiments/{id}/export`; each archive's Parquet files hold exactly the rows
//! SQL returns for the same selection, and its JSON files the experiment's state. The
//! lake's `experiments` and `recordings` tables join with the samples, and DuckDB reads
//! them and the unpacked archive as they are.

mod support;

use labstream_schemas::Timestamp;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};
use support::TestStack;

const EXPERIMENT: &str = "export-1";

/// A row as compared between SQL and the archive:
/// (sensor_id, ts µs, seq, value in thousandths, recording_id, participant_id, task_id).
type Row = (String, i64, i64, i64, String, String, String);

async fn call(stack: &TestStack, method: reqwest::Method, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", stack.url))
        .bearer_auth(&stack.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert!(status < 300, "{path}: {status} {body}");
    body
}

async fn post(stack: &TestStack, path: &str, body: Value) -> Value {
    call(stack, reqwest::Method::POST, path, body).await
}

async fn samples(stack: &TestStack, from_us: i64, n: i64) -> i64 {
    let mut batch = Vec::new();
    for i in 0..n {
        let ts = from_us / 1000 + i * 20;
        batch.push(
            json!({"sensor_id": "temp-1", "sensor_type": "temperature", "ts": ts,
            "seq": i, "values": {"celsius": 20.0 + i as f64 / 8.0}}),
        );
        batch.push(json!({"sensor_id": "co2-1", "sensor_type": "co2", "ts": ts,
            "seq": i, "values": {"ppm": 400.0 + i as f64}}));
    }
    let (status, body) = stack
        .post(
            "/v1/samples?precision=ms",
            "application/json",
            Value::Array(batch).to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    2 * n
}

/// Defines the sensor configuration and the experiment (participants P1 and P2, tasks
/// rest and stroop) and activates it.
async fn active_experiment(stack: &TestStack) {
    post(
        stack,
        "/v1/sensor-configs",
        json!({"sensor_config_id": "bench", "name": "Bench",
            "sensors": [{"sensor_id": "temp-1", "sensor_type": "temperature"},
                        {"sensor_id": "co2-1", "sensor_type": "co2"}]}),
    )
    .await;
    post(
        stack,
        "/v1/experiments",
        json!({"experiment_id": EXPERIMENT, "name": "Export study", "owner": "dr-lee",
            "sensor_config_id": "bench", "participants": ["P1", "P2"],
            "tasks": [{"task_id": "rest", "name": "Rest"}, {"task_id": "stroop", "name": "Stroop"}]}),
    )
    .await;
    post(
        stack,
        &format!("/v1/experiments/{EXPERIMENT}/activate"),
        json!({}),
    )
    .await;
}

/// The rows of `table` SQL returns for the experiment (and `narrow`, an SQL condition).
async fn sql_rows(stack: &TestStack, table: &str, value: &str, narrow: &str) -> Vec<Row> {
    let sql = format!(
        "SELECT sensor_id, CAST(ts AS BIGINT) AS ts_us, seq, {value} AS v, \
         recording_id, participant_id, task_id FROM {table} \
         WHERE experiment = '{EXPERIMENT}' {narrow}"
    );
    let (status, body) = stack.query(&sql).await;
    assert_eq!(status, 200, "{sql}: {body}");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut rows: Vec<Row> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                text(&r["sensor_id"]),
                r["ts_us"].as_i64().unwrap(),
                r["seq"].as_i64().unwrap(),
                (r["v"].as_f64().unwrap() * 1000.0).round() as i64,
                text(&r["recording_id"]),
                text(&r["participant_id"]),
                text(&r["task_id"]),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The archive's files by path.
fn untar(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(path, data);
    }
    files
}

/// Rows of Parquet files as pyarrow reads them (the archive's) or of the lake's files of
/// the experiment as DuckDB reads them, in the shape of `Row`.
const ROWS: &str = r#"
import json, sys, glob
import duckdb, pyarrow.parquet as pq, pyarrow as pa
mode, where, kind, value = sys.argv[1:5]
def row(r):
    return [r["sensor_id"], r["ts_us"], r["seq"], round(r["v"] * 1000),
            r["recording_id"] or "", r["participant_id"] or "", r["task_id"] or ""]
if mode == "archive":
    files = sorted(glob.glob(f"{where}/samples/{kind}/*.parquet"))
    names = set()
    rows = []
    for f in files:
        t = pq.read_table(f)
        names |= set(t.column_names)
        assert str(t.schema.field("ts").type) == "timestamp[us, tz=UTC]", t.schema
        micros = t.column("ts").cast(pa.int64()).to_pylist()
        for r, us in zip(t.to_pylist(), micros):
            r["ts_us"] = us
            r["v"] = r[value]
            rows.append(row(r))
    assert "experiment" not in names and "date" not in names, "partition columns are folder names"
else:
    experiment, narrow = sys.argv[5:7]
    con = duckdb.connect()
    result = con.execute(f"""
        SELECT sensor_id, epoch_us(ts) AS ts_us, seq, {value} AS v, recording_id,
               participant_id, task_id
        FROM read_parquet('{where}/samples/{kind}/**/*.parquet', hive_partitioning = true)
        WHERE experiment = '{experiment}' {narrow}""")
    names = [d[0] for d in result.description]
    rows = [row(dict(zip(names, r))) for r in result.fetchall()]
print(json.dumps(sorted(rows)))
"#;

fn rows_of(value: Value) -> Vec<Row> {
    serde_json::from_value(value).unwrap()
}

/// The rows of the archive's Parquet files of one sensor type, read by pyarrow.
fn archive_rows(files: &BTreeMap<String, Vec<u8>>, kind: &str, value: &str) -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("samples/{kind}/");
    for (path, data) in files.iter().filter(|(p, _)| p.starts_with(&prefix)) {
        assert!(path.ends_with(".parquet"), "{path}");
        let target = dir.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, data).unwrap();
    }
    rows_of(support::readers::python_json(
        ROWS,
        &[
            "archive".as_ref(),
            dir.path().as_os_str(),
            kind.as_ref(),
            value.as_ref(),
        ],
    ))
}

/// The experiment's rows of one sensor type in the lake (and `narrow`), read by DuckDB.
fn lake_rows_by_duckdb(stack: &TestStack, kind: &str, value: &str, narrow: &str) -> Vec<Row> {
    rows_of(support::readers::python_json(
        ROWS,
        &[
            "lake".as_ref(),
            stack.lake.as_os_str(),
            kind.as_ref(),
            value.as_ref(),
            EXPERIMENT.as_ref(),
            narrow.as_ref(),
        ],
    ))
}

fn json_file(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Value {
    serde_json::from_slice(
        files
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing: {:?}", files.keys())),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_the_rows_sql_returns_and_the_experiment_state() {
    let stack = TestStack::start().await;
    active_experiment(&stack).await;

    // Outside the experiment, then P1 (rest), then P2 (stroop).
    let now = || Timestamp::now().as_micros();
    let mut total = samples(&stack, now() - 5_000_000, 20).await;
    let mut in_experiment = 0;
    // The rows the export must hold, from what was sent: per sensor type, 40 samples
    // of each participant, in their recording.
    let (mut want_temperature, mut want_co2): (Vec<Row>, Vec<Row>) = (Vec::new(), Vec::new());
    for (participant, task) in [("P1", "rest"), ("P2", "stroop")] {
        let rec = post(
            &stack,
            &format!("/v1/experiments/{EXPERIMENT}/recordings"),
            json!({"participant_id": participant, "task_id": task}),
        )
        .await;
        let rid = rec["recording_id"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let from = now();
        let n = samples(&stack, from, 40).await;
        for i in 0..40i64 {
            let ts = (from / 1000 + i * 20) * 1000;
            let tag = (rid.clone(), participant.to_owned(), task.to_owned());
            want_temperature.push((
                "temp-1".into(),
                ts,
                i,
                20_000 + i * 125,
                tag.0.clone(),
                tag.1.clone(),
                tag.2.clone(),
            ));
            want_co2.push(("co2-1".into(), ts, i, (400 + i) * 1000, tag.0, tag.1, tag.2));
        }
        total += n;
        in_experiment += n;
        tokio::time::sleep(Duration::from_millis(900)).await;
        post(
            &stack,
            &format!("/v1/experiments/{EXPERIMENT}/recordings/{rid}/stop"),
            json!({}),
        )
        .await;
        call(
            &stack,
            reqwest::Method::PUT,
            &format!("/v1/experiments/{EXPERIMENT}/progress/{participant}/{task}"),
            json!({"status": "done"}),
        )
        .await;
        post(
            &stack,
            &format!("/v1/experiments/{EXPERIMENT}/logbook"),
            json!({"text": format!("{participant} finished"), "recording_id": rid}),
        )
        .await;
    }
    post(
        &stack,
        &format!("/v1/experiments/{EXPERIMENT}/logbook"),
        json!({"text": "session over"}),
    )
    .await;
    let state = call(
        &stack,
        reqwest::Method::GET,
        &format!("/v1/experiments/{EXPERIMENT}"),
        json!(null),
    )
    .await;

    // Every sample in the lake; the experiment tables at the final version.
    stack
        .query_until_rows(
            "SELECT 1 FROM samples_temperature UNION ALL SELECT 1 FROM samples_co2",
            total as usize,
        )
        .await;
    stack
        .query_until_rows(
            &format!(
                "SELECT * FROM experiments WHERE experiment_id = '{EXPERIMENT}' AND version = {}",
                state["version"]
            ),
            1,
        )
        .await;

    want_temperature.sort();
    want_co2.sort();
    assert_eq!(
        want_temperature.len() + want_co2.len(),
        in_experiment as usize
    );
    // SQL and DuckDB over the lake's files agree with what was sent.
    let temperature = sql_rows(&stack, "samples_temperature", "celsius", "").await;
    let co2 = sql_rows(&stack, "samples_co2", "ppm", "").await;
    assert_eq!(temperature, want_temperature, "SQL");
    assert_eq!(co2, want_co2, "SQL");
    assert_eq!(
        lake_rows_by_duckdb(&stack, "temperature", "celsius", ""),
        want_temperature,
        "DuckDB"
    );
    assert_eq!(
        lake_rows_by_duckdb(&stack, "co2", "ppm", ""),
        want_co2,
        "DuckDB"
    );

    // The whole experiment, with the CLI.
    let out = stack.dir().join("whole.tar");
    let log = stack.run_cli(&[
        "export",
        "--experiment",
        EXPERIMENT,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(log.contains("archive complete"), "{log}");
    assert!(log.contains("samples_temperature: 80 rows"), "{log}");
    let files = untar(&std::fs::read(&out).unwrap());
    assert_eq!(
        archive_rows(&files, "temperature", "celsius"),
        want_temperature
    );
    assert_eq!(archive_rows(&files, "co2", "ppm"), want_co2);
    assert_eq!(json_file(&files, "metadata.json"), state);
    assert_eq!(json_file(&files, "recordings.json"), state["recordings"]);
    assert_eq!(json_file(&files, "logbook.json"), state["logbook"]);
    assert_eq!(json_file(&files, "progress.json"), state["progress"]);
    assert_eq!(
        json_file(&files, "logbook.json").as_array().unwrap().len(),
        3
    );
    let manifest = json_file(&files, "manifest.json");
    assert_eq!(
        manifest["tables"].as_array().unwrap().len(),
        2,
        "{manifest}"
    );

    // One participant (and its day), over HTTP.
    let day = Timestamp::from_micros(temperature[0].1).to_string()[..10].to_owned();
    let response = reqwest::Client::new()
        .get(format!(
            "{}/v1/experiments/{EXPERIMENT}/export?participant=P1&day={day}",
            stack.url
        ))
        .bearer_auth(&stack.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    let files = untar(&response.bytes().await.unwrap());
    let narrow = format!("AND participant_id = 'P1' AND date = DATE '{day}'");
    let p1: Vec<Row> = want_temperature
        .iter()
        .filter(|r| r.5 == "P1")
        .cloned()
        .collect();
    assert_eq!(p1.len(), 40);
    assert_eq!(archive_rows(&files, "temperature", "celsius"), p1);
    assert_eq!(
        lake_rows_by_duckdb(&stack, "temperature", "celsius", &narrow),
        p1
    );
    let p1_co2: Vec<Row> = want_co2.iter().filter(|r| r.5 == "P1").cloned().collect();
    assert_eq!(archive_rows(&files, "co2", "ppm"), p1_co2);
    assert_eq!(lake_rows_by_duckdb(&stack, "co2", "ppm", &narrow), p1_co2);
    let recordings = json_file(&files, "recordings.json");
    assert_eq!(recordings.as_array().unwrap().len(), 1);
    assert_eq!(recordings[0]["participant_id"], "P1");
    let progress = json_file(&files, "progress.json");
    assert!(
        progress
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["participant_id"] == "P1")
    );
    let texts: Vec<String> = json_file(&files, "logbook.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["P1 finished", "session over"]);

    // Refusals before anything is sent.
    let status = |path: String| {
        let (url, token) = (stack.url.clone(), stack.token.clone());
        async move {
            reqwest::Client::new()
                .get(format!("{url}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("/v1/experiments/nope/export".into()).await, 404);
    assert_eq!(
        status(format!("/v1/experiments/{EXPERIMENT}/export?day=yesterday")).await,
        400
    );

    // The experiment tables, joined with the samples.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, body) = loop {
        let answer = stack
            .query(&format!(
                "SELECT r.participant_id, r.task_id, e.name, count(*) AS n \
                 FROM samples_temperature s \
                 JOIN recordings r ON s.sensor_id = 'temp-1' AND s.ts >= r.started_at \
                   AND (r.stopped_at IS NULL OR s.ts < r.stopped_at) \
                 JOIN experiments e ON e.experiment_id = r.experiment_id \
                 WHERE e.experiment_id = '{EXPERIMENT}' GROUP BY 1, 2, 3 ORDER BY 1"
            ))
            .await;
        if answer.0 == 200 || Instant::now() > deadline {
            break answer;
        }
    };
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([
            {"participant_id": "P1", "task_id": "rest", "name": "Export study", "n": 40},
            {"participant_id": "P2", "task_id": "stroop", "name": "Export study", "n": 40}
        ])
    );

    // DuckDB reads the experiment tables and the unpacked archive as they are.
    let unpacked = stack.dir().join("whole");
    tar::Archive::new(std::fs::File::open(&out).unwrap())
        .unpack(&unpacked)
        .unwrap();
    let python = support::readers::python();
    let script = r#"
import json, sys, duckdb
lake, unpacked = sys.argv[1], sys.argv[2]
con = duckdb.connect()
recordings = con.execute(f"SELECT participant_id, task_id, stopped_at IS NOT NULL FROM '{lake}/experiments/recordings.parquet' ORDER BY 1").fetchall()
experiments = con.execute(f"SELECT experiment_id, name, len(participants), version FROM '{lake}/experiments/experiments.parquet'").fetchall()
samples = con.execute(f"SELECT count(*), count(DISTINCT participant_id) FROM read_parquet('{unpacked}/samples/temperature/*.parquet')").fetchone()
print(json.dumps({"recordings": recordings, "experiments": experiments, "samples": samples}))
"#;
    let result = Command::new(&python)
        .args(["-c", script])
        .arg(&stack.lake)
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "DuckDB failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let theirs: Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(
        theirs,
        json!({
            "recordings": [["P1", "rest", true], ["P2", "stroop", true]],
            "experiments": [[EXPERIMENT, "Export study", 2, state["version"]]],
            "samples": [80, 2],
        })
    );
}

/// An API instance of `stack` on its own port with settings of its own, serving.
async fn api_instance(stack: &TestStack, settings: &[(&str, &str)]) -> (support::Worker, String) {
    let listen = format!("127.0.0.1:{}", support::free_port());
    let mut env = vec![("LABSTREAM__HTTP__LISTEN", listen.as_str())];
    env.extend_from_slice(settings);
    let worker = stack.worker_with(&["api"], &env);
    let url = format!("http://{listen}");
    support::eventually(
        "the API instance serving",
        Duration::from_secs(60),
        || async {
            match reqwest::get(format!("{url}/healthz")).await {
                Ok(r) if r.status().is_success() => Ok(()),
                other => Err(format!("{other:?}\n{}", worker.logs())),
            }
        },
    )
    .await;
    (worker, url)
}

async fn get(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Over HTTP an export takes one of `query.max_concurrent` slots but is not bound by
/// `query.timeout`; an error after the first bytes aborts the transfer. The CLI writes
/// to a temporary name and renames it once complete: a failed export leaves no partial
/// archive and an older file of that name as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_takes_a_query_slot_has_no_timeout_and_fails_whole() {
    let stack = TestStack::start_with(&[("LABSTREAM__COMPACTION__ENABLED", "false")]).await;
    active_experiment(&stack).await;
    post(
        &stack,
        &format!("/v1/experiments/{EXPERIMENT}/recordings"),
        json!({"participant_id": "P1", "task_id": "rest"}),
    )
    .await;
    let n = samples(&stack, Timestamp::now().as_micros() + 1000, 50).await;
    stack
        .query_until_rows(
            &format!(
                "SELECT 1 FROM samples_temperature WHERE experiment = '{EXPERIMENT}' \
                 UNION ALL SELECT 1 FROM samples_co2 WHERE experiment = '{EXPERIMENT}'"
            ),
            n as usize,
        )
        .await;
    let export_path = format!("/v1/experiments/{EXPERIMENT}/export");
    support::eventually(
        "the experiment in the lake's tables",
        Duration::from_secs(60),
        || async {
            let r = get(&format!("{}{export_path}", stack.url), &stack.token).await;
            if r.status() == 200 {
                Ok(())
            } else {
                Err(r.status().to_string())
            }
        },
    )
    .await;

    // One query slot, held by a query whose endless result nobody reads: the export is
    // refused for want of a slot, and served once the query is gone.
    let (mut one_slot, url) =
        api_instance(&stack, &[("LABSTREAM__QUERY__MAX_CONCURRENT", "1")]).await;
    let held = reqwest::Client::new()
        .post(format!("{url}/v1/query?format=csv"))
        .bearer_auth(&stack.token)
        .json(&json!({"sql": "SELECT v FROM generate_series(1, 100000000000) AS t(v)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let refused = get(&format!("{url}{export_path}"), &stack.token).await;
    assert_eq!(refused.status(), 429, "an export needs a query slot");
    assert!(refused.headers().contains_key("retry-after"));
    drop(held);
    support::eventually(
        "the export served once the slot is free",
        Duration::from_secs(30),
        || async {
            let r = get(&format!("{url}{export_path}"), &stack.token).await;
            match r.status().as_u16() {
                200 => {
                    r.bytes().await.map_err(|e| e.to_string())?;
                    Ok(())
                }
                s => Err(s.to_string()),
            }
        },
    )
    .await;
    one_slot.stop();

    // A timeout no query can meet: queries fail with 504, exports are whole.
    let (mut no_time, url) = api_instance(&stack, &[("LABSTREAM__QUERY__TIMEOUT", "1ms")]).await;
    let timed_out = reqwest::Client::new()
        .post(format!("{url}/v1/query"))
        .bearer_auth(&stack.token)
        .json(&json!({"sql": "SELECT count(*) AS n FROM samples_temperature CROSS JOIN generate_series(1, 10000000) AS t(v)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(timed_out.status(), 504, "query.timeout is in force");
    let r = get(&format!("{url}{export_path}"), &stack.token).await;
    assert_eq!(r.status(), 200);
    let files = untar(
        &r.bytes()
            .await
            .expect("a whole archive despite query.timeout"),
    );
    assert!(files.contains_key("manifest.json"), "{:?}", files.keys());
    no_time.stop();

    // A sample file that cannot be read any more (its data pages overwritten, its
    // footer intact): the failure comes after the JSON files were sent.
    let victim = stack
        .lake_files()
        .into_iter()
        .find(|p| {
            let p = p.to_string_lossy();
            p.contains(&format!("experiment={EXPERIMENT}")) && p.ends_with(".parquet")
        })
        .expect("a sample file of the experiment");
    let mut bytes = std::fs::read(&victim).unwrap();
    let len = bytes.len();
    let footer = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().unwrap()) as usize;
    for b in &mut bytes[4..len - 8 - footer] {
        *b = 0x5A;
    }
    std::fs::write(&victim, &bytes).unwrap();

    let r = get(&format!("{}{export_path}", stack.url), &stack.token).await;
    assert_eq!(r.status(), 200, "the status went out with the first bytes");
    assert!(
        r.bytes().await.is_err(),
        "an export that failed midway must not read as complete"
    );
    assert!(
        stack.logs().contains("response aborted"),
        "the server logs why it cut the transfer"
    );

    // The CLI: exit status 1 with the reason, nothing at the output's name but what
    // was there before, and no partial file left behind.
    let out = stack.dir().join("study.tar");
    std::fs::write(&out, b"an older archive").unwrap();
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_labstream"))
        .args(["export", "--experiment", EXPERIMENT, "--output"])
        .arg(&out)
        .args(["--lake"])
        .arg(&stack.lake)
        .env("LABSTREAM__AUTH__DISABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: the export failed; no archive was written"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"an older archive");
    let leftovers: Vec<_> = std::fs::read_dir(stack.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("study.tar") && n != "study.tar")
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}
