use super::*;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

fn app(lake: &std::path::Path, config: crate::QueryConfig) -> Router {
    router(ApiState {
        engine: config.build(lake).unwrap(),
        auth: None,
    })
}

async fn post(
    app: &Router,
    uri: &str,
    accept: Option<&str>,
    sql: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::post(uri).header("content-type", "application/json");
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = app
        .clone()
        .oneshot(
            request
                .body(Body::from(serde_json::json!({ "sql": sql }).to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, body)
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn every_statement_that_is_not_a_query_gets_a_400_naming_what_is_allowed() {
    let lake = tempfile::tempdir().unwrap();
    let app = app(lake.path(), Default::default());
    let outside = lake.path().parent().unwrap().join("outside.csv");
    for (sql, kind) in [
        ("CREATE TABLE x AS SELECT 1", "CREATE TABLE"),
        (
            &format!(
                "CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '{}'",
                outside.display()
            ),
            "CREATE EXTERNAL TABLE",
        ),
        ("INSERT INTO x VALUES (1)", "INSERT"),
        ("DELETE FROM x", "DELETE"),
        ("UPDATE x SET a = 1", "UPDATE"),
        ("DROP TABLE x", "DROP TABLE"),
        (
            &format!("COPY (SELECT 1 AS a) TO '{}'", outside.display()),
            "COPY",
        ),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        (
            "SELECT 1 AS a INTO t",
            "the statement would create or change something (DDL not supported: CreateMemoryTable)",
        ),
    ] {
        let (status, _, body) = post(&app, "/v1/query", None, sql).await;
        let body = json(&body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        assert_eq!(body["error"], "not_allowed", "{sql}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with(kind) && message.contains("allowed are SELECT"),
            "{sql}: {message}"
        );
    }
    assert!(!outside.exists(), "COPY wrote outside the lake");
    // Files outside the lake are not tables, and no table function reads them.
    for sql in [
        format!("SELECT * FROM '{}'", outside.display()),
        format!("SELECT * FROM read_csv('{}')", outside.display()),
        format!("SELECT * FROM read_parquet('{}')", outside.display()),
    ] {
        let (status, _, body) = post(&app, "/v1/query", None, &sql).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {}", json(&body));
        assert_eq!(json(&body)["error"], "bad_query");
    }
    let (status, _, body) = post(&app, "/v1/query", None, "EXPLAIN SELECT 1").await;
    assert_eq!(status, StatusCode::OK, "{}", json(&body));
}

#[tokio::test]
async fn results_come_in_the_format_asked_for() {
    let lake = tempfile::tempdir().unwrap();
    let app = app(lake.path(), Default::default());
    let sql = "SELECT v, v * 1.5 AS x, 'r' || v AS s FROM generate_series(1, 3) AS t(v)";

    let (status, headers, body) = post(&app, "/v1/query", None, sql).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        json(&body),
        serde_json::json!([
            {"v": 1, "x": 1.5, "s": "r1"},
            {"v": 2, "x": 3.0, "s": "r2"},
            {"v": 3, "x": 4.5, "s": "r3"},
        ])
    );

    let (_, headers, body) = post(&app, "/v1/query?format=csv", None, sql).await;
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(&body[..], b"v,x,s\n1,1.5,r1\n2,3.0,r2\n3,4.5,r3\n");

    let (_, headers, body) = post(&app, "/v1/query", Some("text/csv"), sql).await;
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(body.starts_with(b"v,x,s\n"));

    let (_, _, body) = post(&app, "/v1/query?format=ndjson", None, sql).await;
    let lines: Vec<serde_json::Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(json)
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["s"], "r3");

    let (_, headers, body) = post(
        &app,
        "/v1/query",
        Some("application/vnd.apache.arrow.stream"),
        sql,
    )
    .await;
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/vnd.apache.arrow.stream"
    );
    let batches: Vec<_> =
        datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .unwrap()
            .map(std::result::Result::unwrap)
            .collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);

    let (_, headers, body) = post(&app, "/v1/query?format=parquet", None, sql).await;
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/vnd.apache.parquet"
    );
    let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 3);

    // An empty result is still a whole document.
    let (status, _, body) = post(&app, "/v1/query", None, "SELECT 1 AS a WHERE false").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"[]"[..]));

    let (status, _, body) = post(&app, "/v1/query?format=xml", None, sql).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(json(&body)["message"].as_str().unwrap().contains("parquet"));
    let (status, _, body) = post(&app, "/v1/query", Some("image/png"), sql).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(json(&body)["error"], "not_acceptable");
}

#[tokio::test]
async fn a_query_over_its_memory_limit_fails_cleanly_and_the_next_one_runs() {
    let lake = tempfile::tempdir().unwrap();
    let app = app(
        lake.path(),
        crate::QueryConfig {
            max_memory_bytes: 4 * 1024 * 1024,
            ..Default::default()
        },
    );
    let (status, _, body) = post(
        &app,
        "/v1/query",
        None,
        "SELECT v FROM generate_series(1, 2000000) AS t(v) ORDER BY v DESC",
    )
    .await;
    let body = json(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "memory_limit");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("the query needs more than 4 MiB of memory"),
        "{body}"
    );
    let (status, _, body) = post(
        &app,
        "/v1/query",
        None,
        "SELECT count(*) AS n FROM generate_series(1, 2000000)",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body), serde_json::json!([{"n": 2000000}]));
}

#[tokio::test]
async fn a_query_past_its_deadline_gets_a_504_and_too_many_get_a_429() {
    let lake = tempfile::tempdir().unwrap();
    let app = app(
        lake.path(),
        crate::QueryConfig {
            timeout: std::time::Duration::from_millis(50),
            max_concurrent: 1,
            ..Default::default()
        },
    );
    let slow = "SELECT count(*) AS n FROM generate_series(1, 2000000000) AS a(v) WHERE v % 7 = 3";
    let (status, _, body) = post(&app, "/v1/query", None, slow).await;
    let body = json(&body);
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"], "timeout");
    assert!(body["message"].as_str().unwrap().contains("query.timeout"));

    // Past the deadline while streaming (batches always ready): the body is cut off.
    let response = app
        .clone()
        .oneshot(
            Request::post("/v1/query?format=csv")
                .header("content-type", "application/json")
                .body(Body::from(
                    r#"{"sql": "SELECT v FROM generate_series(1, 100000000000) AS t(v)"}"#,
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .is_err()
    );

    // The slot of the timed-out query is free again; hold it with a live stream.
    let ApiState { engine, .. } = ApiState {
        engine: crate::QueryConfig {
            max_concurrent: 1,
            ..Default::default()
        }
        .build(lake.path())
        .unwrap(),
        auth: None,
    };
    let held = engine
        .query_stream("SELECT v FROM generate_series(1, 100000000) AS t(v)")
        .await
        .unwrap();
    let app = router(ApiState {
        engine: engine.clone(),
        auth: None,
    });
    let response = app
        .oneshot(
            Request::post("/v1/query")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"sql": "SELECT 1"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    drop(held);
    assert!(engine.query("SELECT 1").await.is_ok());
}
