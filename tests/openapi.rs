//! `/openapi.json` and `/readyz` on the real binary: every method a documented path does
//! not document is 405, and readiness names the dependency that is down. That every
//! documented operation is served, refused without a token or with an unrelated scope
//! and accepted with its scopes is tests/authorization.rs (the matrix); src/openapi.rs
//! checks that every registered route is documented.

mod support;

use support::TestStack;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served_and_ready_names_what_is_down() {
    let stack = TestStack::start().await;
    let client = reqwest::Client::new();
    let doc: serde_json::Value = client
        .get(format!("{}/openapi.json", stack.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for required in [
        "/v1/samples",
        "/api/v2/write",
        "/v1/query",
        "/v1/experiments/{id}",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(required), "{required} is not documented");
    }
    let mut probed = 0;
    for (path, item) in paths {
        let url = format!("{}{}", stack.url, fill(path));
        for method in METHODS {
            if item.get(method).is_some() {
                probed += 1;
                continue;
            }
            let response = client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert_eq!(
                status,
                405,
                "{} {path} is not documented but answers {status}",
                method.to_uppercase()
            );
        }
    }
    assert!(probed >= 30, "only {probed} operations documented");

    let ready = client
        .get(format!("{}/readyz", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["kafka"]["status"], "ok", "{body}");
    assert_eq!(body["checks"]["mongo"]["status"], "ok", "{body}");
    stack.mongo().await.drop().await.unwrap();

    // MongoDB unreachable (nothing listens there): not ready, and the body says which.
    let dead = format!(
        "mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=500",
        support::free_port()
    );
    let down = TestStack::start_with(&[("LABSTREAM__MONGO__URI", &dead)]).await;
    let response = client
        .get(format!("{}/readyz", down.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["unreachable"], serde_json::json!(["mongo"]), "{body}");
    assert_eq!(body["checks"]["kafka"]["status"], "ok", "{body}");

    // A process without the MongoDB sink does not depend on MongoDB.
    let ingest = TestStack::start_command("ingest", &[("LABSTREAM__MONGO__URI", &dead)]).await;
    let response = client
        .get(format!("{}/readyz", ingest.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let doc: serde_json::Value = client
        .get(format!("{}/openapi.json", ingest.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"].get("/v1/samples").is_some());
    assert!(
        doc["paths"].get("/v1/query").is_none(),
        "ingest alone does not serve queries"
    );
}

/// A concrete URL for a templated path: `{id}` -> `x`.
fn fill(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}
