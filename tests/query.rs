//! SQL over the lake through the real binary: results in every format read back to the
//! same values, filters on `date` and `experiment` read only their folders, a query over
//! its memory limit fails with a clear error while the server keeps serving, an error
//! mid-stream aborts the response, and `labstream query` prints and writes files.

mod support;

use serde_json::{Value, json};
use std::process::Command;
use support::TestStack;

const MEMORY_LIMIT: &str = "8388608"; // 8 MiB

/// 10 samples on each of 2026-11-20, -21 and -22 (UTC).
fn samples() -> Vec<Value> {
    (0..3)
        .flat_map(|day| {
            (0..10).map(move |i| {
                json!({
                    "sensor_id": format!("fridge-{}", i % 3),
                    "sensor_type": "temperature",
                    "ts": format!("2026-11-{}T12:00:{i:02}Z", 20 + day),
                    "values": {"celsius": f64::from(day * 10) + f64::from(i) / 4.0},
                })
            })
        })
        .collect()
}

async fn stack_with_samples() -> TestStack {
    let stack = TestStack::start_with(&[
        ("LABSTREAM__QUERY__MAX_MEMORY_BYTES", MEMORY_LIMIT),
        ("LABSTREAM__QUERY__TIMEOUT", "3s"),
    ])
    .await;
    let (status, body) = stack
        .post(
            "/v1/samples",
            "application/json",
            Value::Array(samples()).to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    stack
        .query_until_rows("SELECT * FROM samples_temperature", 30)
        .await;
    stack
}

async fn fetch(stack: &TestStack, format: &str, sql: &str) -> (u16, String, Vec<u8>) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/query?format={format}", stack.url))
        .bearer_auth(&stack.token)
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    (status, content_type, r.bytes().await.unwrap().to_vec())
}

/// (sensor_id, celsius, date) of the posted samples in the order of
/// `ORDER BY date, sensor_id, ts`: the expected rows, from the input alone.
fn expected_rows() -> Vec<(String, f64, String)> {
    let mut rows: Vec<(String, String, String, f64)> = samples()
        .iter()
        .map(|s| {
            let ts = s["ts"].as_str().unwrap().to_owned();
            (
                ts[..10].to_owned(),
                s["sensor_id"].as_str().unwrap().to_owned(),
                ts,
                s["values"]["celsius"].as_f64().unwrap(),
            )
        })
        .collect();
    rows.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    rows.into_iter().map(|(d, id, _, c)| (id, c, d)).collect()
}

fn json_rows(rows: &[Value]) -> Vec<(String, f64, String)> {
    rows.iter()
        .map(|r| {
            (
                r["sensor_id"].as_str().unwrap().to_owned(),
                r["celsius"].as_f64().unwrap(),
                r["date"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Reads an Arrow IPC stream and a Parquet file (query results) with pyarrow, and the
/// lake's temperature files with DuckDB (the same query), as rows of
/// [sensor_id, celsius, date] with the type each gave `date`.
const READERS: &str = r#"
import json, sys
import duckdb, pyarrow as pa, pyarrow.parquet as pq
arrow_file, parquet_file, lake = sys.argv[1:4]
def rows(table):
    return [[r["sensor_id"], r["celsius"], str(r["date"])] for r in table.to_pylist()]
with pa.OSFile(arrow_file, "rb") as f:
    arrow = pa.ipc.open_stream(f).read_all()
parquet = pq.read_table(parquet_file)
duck = duckdb.connect().execute(f"""
    SELECT sensor_id, celsius, CAST("date" AS VARCHAR) FROM read_parquet(
        '{lake}/samples/temperature/**/*.parquet', hive_partitioning = true)
    ORDER BY "date", sensor_id, ts""").fetchall()
print(json.dumps({
    "arrow": rows(arrow), "arrow_date": str(arrow.schema.field("date").type),
    "parquet": rows(parquet), "parquet_date": str(parquet.schema.field("date").type),
    "duckdb": [list(r) for r in duck],
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_reads_back_to_the_same_rows() {
    let stack = stack_with_samples().await;
    let sql =
        "SELECT sensor_id, celsius, date FROM samples_temperature ORDER BY date, sensor_id, ts";
    let expected = expected_rows();
    assert_eq!(expected.len(), 30);
    assert_eq!(
        expected[0],
        ("fridge-0".to_owned(), 0.0, "2026-11-20".to_owned())
    );

    let (status, content_type, body) = fetch(&stack, "json", sql).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let json: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(json_rows(&json), expected, "JSON");

    let (_, content_type, body) = fetch(&stack, "ndjson", sql).await;
    assert_eq!(content_type, "application/x-ndjson");
    let ndjson: Vec<Value> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json_rows(&ndjson), expected, "NDJSON");

    let (_, content_type, body) = fetch(&stack, "csv", sql).await;
    assert_eq!(content_type, "text/csv; charset=utf-8");
    let csv = String::from_utf8(body).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("sensor_id,celsius,date"));
    let from_csv: Vec<(String, f64, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), f[1].parse().unwrap(), f[2].to_owned())
        })
        .collect();
    assert_eq!(from_csv, expected, "CSV");

    // Arrow IPC and Parquet read by pyarrow, and DuckDB's answer over the lake's files.
    let (_, content_type, arrow) = fetch(&stack, "arrow", sql).await;
    assert_eq!(content_type, "application/vnd.apache.arrow.stream");
    let (_, content_type, parquet) = fetch(&stack, "parquet", sql).await;
    assert_eq!(content_type, "application/vnd.apache.parquet");
    let arrow_file = stack.dir().join("result.arrow");
    let parquet_file = stack.dir().join("result.parquet");
    std::fs::write(&arrow_file, arrow).unwrap();
    std::fs::write(&parquet_file, parquet).unwrap();
    let theirs = support::readers::python_json(
        READERS,
        &[
            arrow_file.as_os_str(),
            parquet_file.as_os_str(),
            stack.lake.as_os_str(),
        ],
    );
    let as_rows = |v: &Value| -> Vec<(String, f64, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_owned(),
                    r[1].as_f64().unwrap(),
                    r[2].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        as_rows(&theirs["arrow"]),
        expected,
        "Arrow IPC read by pyarrow"
    );
    assert_eq!(theirs["arrow_date"], "date32[day]");
    assert_eq!(
        as_rows(&theirs["parquet"]),
        expected,
        "Parquet read by pyarrow"
    );
    assert_eq!(theirs["parquet_date"], "date32[day]");
    assert_eq!(as_rows(&theirs["duckdb"]), expected, "DuckDB over the lake");

    // The Accept header chooses too, and a large result streams whole.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/query", stack.url))
        .bearer_auth(&stack.token)
        .header("accept", "text/csv")
        .json(&json!({ "sql": "SELECT v FROM generate_series(1, 1000000) AS t(v)" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.unwrap();
    assert_eq!(text.lines().count(), 1_000_001);
    assert_eq!(text.lines().last(), Some("1000000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_on_date_and_experiment_read_only_their_folders() {
    let stack = stack_with_samples().await;
    let plan = |rows: Vec<Value>| -> String {
        rows.iter()
            .map(|r| r["plan"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let files = |plan: &str, date: &str| plan.matches(&format!("date={date}/")).count();

    let (status, all) = stack
        .query("EXPLAIN SELECT sensor_id, celsius FROM samples_temperature")
        .await;
    assert_eq!(status, 200, "{all}");
    let all = plan(all.as_array().unwrap().clone());
    for date in ["2026-11-20", "2026-11-21", "2026-11-22"] {
        assert!(files(&all, date) > 0, "{date} missing from\n{all}");
    }

    let (status, one) = stack
        .query(
            "EXPLAIN SELECT sensor_id, celsius FROM samples_temperature WHERE date = '2026-11-21'",
        )
        .await;
    assert_eq!(status, 200, "{one}");
    let one = plan(one.as_array().unwrap().clone());
    assert!(files(&one, "2026-11-21") > 0, "{one}");
    assert_eq!(
        files(&one, "2026-11-20") + files(&one, "2026-11-22"),
        0,
        "{one}"
    );

    // The answers agree: only that day's rows, and date ranges work as dates.
    let (_, rows) = stack
        .query("SELECT DISTINCT date FROM samples_temperature WHERE date = '2026-11-21'")
        .await;
    assert_eq!(rows, json!([{"date": "2026-11-21"}]));
    let (_, rows) = stack
        .query("SELECT count(*) AS n, min(celsius) AS lo FROM samples_temperature WHERE date > DATE '2026-11-20' AND experiment = 'none'")
        .await;
    assert_eq!(rows, json!([{"n": 20, "lo": 10.0}]));
    let (_, rows) = stack
        .query("SELECT count(*) AS n FROM samples_temperature WHERE experiment = 'exp-1'")
        .await;
    assert_eq!(rows, json!([{"n": 0}]));
    let (status, none) = stack
        .query("EXPLAIN SELECT celsius FROM samples_temperature WHERE experiment = 'exp-1'")
        .await;
    assert_eq!(status, 200);
    assert!(!plan(none.as_array().unwrap().clone()).contains(".parquet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_fail_the_query_not_the_server() {
    let stack = stack_with_samples().await;
    let big_sort = "SELECT v FROM generate_series(1, 5000000) AS t(v) ORDER BY v DESC";
    let (status, body) = stack.query(big_sort).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "memory_limit");
    assert_eq!(
        body["message"],
        "the query needs more than 8 MiB of memory (query.max_memory_bytes): narrow it (filter on date, experiment or sensor_id, aggregate, add a LIMIT) or raise query.max_memory_bytes"
    );
    // Over the lake too: a sort of the lake's rows many times over.
    let (status, body) = stack
        .query("SELECT a.celsius, v FROM samples_temperature a CROSS JOIN generate_series(1, 300000) AS t(v) ORDER BY a.celsius, v")
        .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("memory_limit")),
        "{body}"
    );

    // The server keeps serving, queries included.
    let (status, body) = stack
        .query("SELECT count(*) AS n FROM samples_temperature")
        .await;
    assert_eq!((status, body), (200, json!([{"n": 30}])));
    let health = reqwest::get(format!("{}/healthz", stack.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Past query.timeout before the first row: 504 with a clear error.
    let (status, body) = stack
        .query("SELECT count(*) AS n FROM generate_series(1, 100000000000) AS t(v) WHERE v % 7 = 3")
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "timeout");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("3s (query.timeout)"),
        "{body}"
    );

    // Past it while streaming: the status was sent, so the response is cut off (a
    // broken transfer, never a result that merely looks complete).
    let r = reqwest::Client::new()
        .post(format!("{}/v1/query?format=csv", stack.url))
        .bearer_auth(&stack.token)
        .json(&json!({ "sql": "SELECT v FROM generate_series(1, 100000000000) AS t(v)" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().await.is_err(),
        "the cut-off body read as complete"
    );
    let (status, _) = stack.query("SELECT 1 AS one").await;
    assert_eq!(status, 200);

    // Refusals say what is allowed, and nothing is written outside the lake.
    let outside = stack.dir().join("outside.csv");
    for sql in [
        format!("COPY (SELECT 1 AS a) TO '{}'", outside.display()),
        "INSERT INTO samples_temperature SELECT * FROM samples_temperature".to_owned(),
        "DELETE FROM samples_temperature".to_owned(),
    ] {
        let (status, body) = stack.query(&sql).await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("not_allowed")),
            "{sql}: {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("allowed are SELECT"),
            "{body}"
        );
    }
    assert!(!outside.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_a_table_and_writes_files() {
    let stack = stack_with_samples().await;
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_labstream"))
            .arg("query")
            .args(args)
            .arg("--lake")
            .arg(&stack.lake)
            .env_remove("LABSTREAM_CONFIG")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let sql = "SELECT date, count(*) AS n FROM samples_temperature GROUP BY date ORDER BY date";
    let (ok, stdout, stderr) = cli(&[sql]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("| 2026-11-21 | 10 |"), "{stdout}");
    assert!(stdout.contains("3 row(s)"), "{stdout}");

    let (ok, stdout, stderr) = cli(&["--format", "csv", sql]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "date,n\n2026-11-20,10\n2026-11-21,10\n2026-11-22,10\n"
    );

    let file = stack.dir().join("out.parquet");
    let (ok, _, stderr) = cli(&["-f", "parquet", "-o", file.to_str().unwrap(), sql]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("wrote 3 row(s)"), "{stderr}");
    let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .map(|b| b.unwrap().num_rows())
    .sum();
    assert_eq!(rows, 3);

    let file = stack.dir().join("out.arrow");
    let (ok, _, stderr) = cli(&["-f", "arrow", "-o", file.to_str().unwrap(), sql]);
    assert!(ok, "{stderr}");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::fs::File::open(&file).unwrap(), None)
            .unwrap();
    assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 3);

    let (ok, _, stderr) = cli(&["DROP TABLE samples_temperature"]);
    assert!(!ok);
    assert!(stderr.contains("DROP TABLE is not allowed"), "{stderr}");
}
