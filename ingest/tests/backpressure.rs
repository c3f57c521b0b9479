//! Backpressure and durability answers of the ingest router, through `oneshot`, with a
//! real producer whose broker does not answer: a request waiting for Kafka holds its
//! share of the in-flight budget (others get 429 + Retry-After), and when Kafka does
//! not acknowledge by the deadline the answer is 503 + Retry-After, never a 2xx.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use labstream_bus::{KafkaConfig, Producer};
use labstream_ingest::{IngestConfig, IngestMetrics, IngestState, router};
use labstream_schemas::{Codec, Registry};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

fn app(config: IngestConfig) -> axum::Router {
    app_with_metrics(config, IngestMetrics::register(&mut Default::default()))
}

fn app_with_metrics(config: IngestConfig, metrics: IngestMetrics) -> axum::Router {
    let kafka = KafkaConfig {
        // Nothing listens on port 1: every produce waits until the deadline.
        brokers: "127.0.0.1:1".into(),
        produce_timeout: Duration::from_secs(3),
        ..KafkaConfig::default()
    };
    router(IngestState {
        producer: Producer::new(&kafka).unwrap(),
        topic: "samples.raw".into(),
        registry: Arc::new(Registry::default_lab()),
        codec: Codec::new(),
        config,
        metrics,
        auth: None,
    })
}

fn request(len: usize) -> Request<Body> {
    let sample = format!(
        r#"{{"sensor_id": "t1", "sensor_type": "temperature", "ts": "{}", "values": {{"celsius": 20.5}}}}"#,
        chrono::Utc::now().to_rfc3339()
    );
    let body = format!("{sample:<len$}");
    Request::post("/v1/samples")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body))
        .unwrap()
}

async fn json(response: axum::response::Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_in_flight_budget_is_429_and_an_unacknowledged_write_is_503() {
    let metrics = IngestMetrics::register(&mut Default::default());
    let app = app_with_metrics(
        IngestConfig {
            max_body_bytes: 1000,
            max_in_flight_bytes: 1000,
            ..IngestConfig::default()
        },
        metrics.clone(),
    );
    let waiting = tokio::spawn(app.clone().oneshot(request(600)));
    // Once the first request holds its share of the budget (it waits for Kafka).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.in_flight_bytes.get() < 600 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first request never reserved its bytes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let busy = app.clone().oneshot(request(600)).await.unwrap();
    assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(busy.headers()["retry-after"], "1");
    let body = json(busy).await;
    assert_eq!(body["error"], "busy");

    // A small request still fits beside the waiting one.
    let small = tokio::spawn(app.clone().oneshot(request(300)));

    let unavailable = waiting.await.unwrap().unwrap();
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.headers()["retry-after"], "5");
    let body = json(unavailable).await;
    assert_eq!(body["error"], "unavailable");
    assert!(
        body["message"].as_str().unwrap().contains("retry"),
        "{body}"
    );
    assert_eq!(
        small.await.unwrap().unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The budget is released: the same request is admitted again (and waits for Kafka).
    let again = app.oneshot(request(600)).await.unwrap();
    assert_eq!(again.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413() {
    let app = app(IngestConfig {
        max_body_bytes: 1000,
        ..IngestConfig::default()
    });
    let chunks = futures::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 200]))),
    );
    let response = app
        .oneshot(
            Request::post("/v1/samples")
                .header("content-type", "application/json")
                .body(Body::from_stream(chunks))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(response).await["error"], "too_large");
}
