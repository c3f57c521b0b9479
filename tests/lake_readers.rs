//! The lake is readable as-is by the tools analysts use: DuckDB and pyarrow (from PyPI,
//! installed by `infra/local/pytools`) read the very files the lake sink wrote and give
//! the same rows as labstream's own SQL.

mod support;

use serde_json::json;
use std::process::Command;
use support::TestStack;

const READERS: &str = r#"
import json, sys
import duckdb, pyarrow.dataset as ds
lake = sys.argv[1]
con = duckdb.connect()
rows = con.execute(f"""
    SELECT sensor_id, epoch_us(ts) AS ts_us, celsius, tags['room'] AS room, "date", experiment
    FROM read_parquet('{lake}/samples/temperature/**/*.parquet', hive_partitioning = true)
    ORDER BY sensor_id, ts_us""").fetchall()
duck = [dict(sensor_id=r[0], ts_us=r[1], celsius=r[2], room=r[3], date=str(r[4]), experiment=r[5]) for r in rows]
table = ds.dataset(f"{lake}/samples/temperature", format="parquet", partitioning="hive").to_table()
arrow = []
for r in table.to_pylist():
    arrow.append(dict(sensor_id=r["sensor_id"], ts_us=int(r["ts"].timestamp() * 1_000_000),
                      celsius=r["celsius"], room=dict(r["tags"]).get("room"),
                      date=str(r["date"]), experiment=r["experiment"]))
arrow.sort(key=lambda r: (r["sensor_id"], r["ts_us"]))
schema = {f.name: str(f.type) for f in table.schema}
print(json.dumps({"duckdb": duck, "pyarrow": arrow, "schema": schema}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_and_pyarrow_read_the_same_rows_as_labstream() {
    let python = support::readers::python();
    let stack = TestStack::start().await;
    let samples: Vec<_> = (0..20)
        .map(|i| {
            json!({
                "sensor_id": format!("fridge-{}", i % 3),
                "sensor_type": "temperature",
                "ts": 1_795_428_000_000_000_i64 + i * 1_500_000 + i,
                "values": {"celsius": 3.5 + i as f64 / 8.0},
                "tags": {"room": format!("lab-{}", i % 2)},
            })
        })
        .collect();
    let (status, _) = stack
        .post(
            "/v1/samples?precision=us",
            "application/json",
            json!(samples).to_string(),
        )
        .await;
    assert_eq!(status, 202);
    let ours = stack
        .query_until_rows(
            "SELECT sensor_id, CAST(ts AS BIGINT) AS ts_us, celsius, tags['room'] AS room, date, experiment \
             FROM samples_temperature ORDER BY sensor_id, ts_us",
            20,
        )
        .await;

    let out = Command::new(&python)
        .arg("-c")
        .arg(READERS)
        .arg(&stack.lake)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python readers failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = serde_json::Value::Array(ours);
    assert_eq!(
        theirs["duckdb"], ours,
        "DuckDB reads other rows than labstream"
    );
    assert_eq!(
        theirs["pyarrow"], ours,
        "pyarrow reads other rows than labstream"
    );
    // Typed columns, UTC timestamps, a real map for tags.
    assert_eq!(theirs["schema"]["celsius"], "double");
    assert_eq!(theirs["schema"]["ts"], "timestamp[us, tz=UTC]");
    assert!(
        theirs["schema"]["tags"]
            .as_str()
            .unwrap()
            .starts_with("map<string, string"),
        "{}",
        theirs["schema"]
    );
}
