//! SIGTERM drains `labstream serve`: the HTTP server stops taking connections, a request
//! already being received is still answered (and its samples reach Kafka), the lake
//! sink writes what it buffered (with a one-hour flush interval, only the drain writes
//! it) and both sinks commit what they wrote, and the process exits with status 0.

mod support;

use std::time::Duration;
use support::TestStack;
use support::power::{T0, lake_rows, mongo_rows};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The value of `name{sink="<sink>"}` in a Prometheus text.
fn metric(text: &str, name: &str, sink: &str) -> f64 {
    let prefix = format!("{name}{{sink=\"{sink}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_http_first_then_the_sinks_write_and_commit() {
    let mut stack = TestStack::start_with(&[
        ("LABSTREAM__SINKS__LAKE__SOURCE", "raw"),
        ("LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL", "1h"),
        ("LABSTREAM__PROCESSORS__ENRICHMENT__ENABLED", "false"),
        ("LABSTREAM__COMPACTION__ENABLED", "false"),
    ])
    .await;
    let batch: Vec<_> = (0..200i64)
        .map(|n| {
            serde_json::json!({"sensor_id": format!("sd-{}", n % 5), "sensor_type": "power",
            "ts": T0 + n * 1000, "values": {"watts": n as f64}})
        })
        .collect();
    let (status, body) = stack
        .post(
            "/v1/samples?precision=us",
            "application/json",
            serde_json::Value::Array(batch).to_string(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // Both sinks have read all 200: MongoDB holds them, the lake sink buffers them.
    let db = stack.mongo().await;
    support::eventually(
        "both sinks reading the 200 samples",
        Duration::from_secs(60),
        || async {
            let text = reqwest::get(format!("{}/metrics", stack.url))
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            let lake = metric(&text, "labstream_sink_records_consumed_total", "lake");
            let mongo = mongo_rows(&db).await.0;
            if lake >= 200.0 && mongo >= 200 {
                Ok(())
            } else {
                Err(format!("lake sink consumed {lake}, MongoDB holds {mongo}"))
            }
        },
    )
    .await;
    assert_eq!(lake_rows(&stack).0, 0, "nothing is flushed before the hour");

    // A request whose body is still arriving when SIGTERM comes.
    let address = stack.url.trim_start_matches("http://").to_owned();
    let lines: Vec<String> = (0..5i64)
        .map(|n| {
            serde_json::json!({"sensor_id": "sd-late", "sensor_type": "power",
                "ts": T0 + 1_000_000 + n, "values": {"watts": 1.0}})
            .to_string()
                + "\n"
        })
        .collect();
    let length: usize = lines.iter().map(String::len).sum();
    let mut upload = tokio::net::TcpStream::connect(&address).await.unwrap();
    upload
        .write_all(
            format!(
                "POST /v1/samples?precision=us HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {}\r\n\
                 content-type: application/x-ndjson\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n{}",
                stack.token, lines[0]
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // The server has the request once its headers are read; give it that moment by
    // asking for the health of the same server on another connection (served after).
    let health = reqwest::get(format!("{}/healthz", stack.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let pid = stack.pid().expect("serve runs");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    // No new connection is taken any more...
    support::eventually(
        "the HTTP server refusing new connections",
        Duration::from_secs(10),
        || async {
            match tokio::net::TcpStream::connect(&address).await {
                Err(_) => Ok(()),
                Ok(_) => Err("still accepted".to_owned()),
            }
        },
    )
    .await;
    // ...but the request in progress is received and answered.
    for line in &lines[1..] {
        upload.write_all(line.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), upload.read_to_string(&mut answer))
        .await
        .expect("an answer to the request in progress")
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 202"),
        "the request in progress: {answer}\n{}",
        stack.logs()
    );

    let status = stack.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "exit status {status}\n{}", stack.logs());
    let logs = stack.logs();
    for line in [
        "shutdown requested",
        "lake sink stopped",
        "mongo sink stopped",
    ] {
        assert!(logs.contains(line), "{line:?} missing from\n{logs}");
    }
    // What the lake sink held was written by the drain, and each sink committed exactly
    // what it wrote: the 200, and the 5 late samples if it read them before stopping.
    let raw = stack.topic("samples.raw");
    assert_eq!(
        stack.topic_records(&raw),
        205,
        "the late request's samples are in Kafka"
    );
    let (lake_n, contents) = lake_rows(&stack);
    assert!(
        lake_n >= 200,
        "the drain wrote what the lake sink held: {lake_n} rows"
    );
    assert_eq!(contents.len(), lake_n, "no row twice");
    let mongo_n = mongo_rows(&db).await.0;
    for (group, rows) in [("mongo", mongo_n), ("lake", lake_n)] {
        let lag = support::group_lag(&stack.brokers, &format!("t{}-{group}", stack.id), &raw).await;
        assert!(lag == 0 || lag == 5, "{group}: lag {lag}\n{logs}");
        assert_eq!(
            rows as i64,
            205 - lag,
            "{group}: the rows it holds are the records it committed\n{logs}"
        );
    }
    db.drop().await.unwrap();
}
