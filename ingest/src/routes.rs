//! The ingest `Router`: `POST /v1/samples`.

use crate::error::{Error, Result};
use crate::parse::{Precision, parse_json_samples};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use labstream_bus::Producer;
use labstream_schemas::{Codec, Registry, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `[ingest]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted request body in bytes; larger ones get 413.
    pub max_body_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

/// What the ingest handlers share: already-built clients, handed in by the binary.
#[derive(Clone)]
pub struct IngestState {
    pub producer: Producer,
    pub topic: String,
    pub registry: Arc<Registry>,
    pub codec: Codec,
    pub config: IngestConfig,
}

#[derive(Deserialize)]
struct WriteParams {
    #[serde(default)]
    precision: Precision,
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}

pub fn router(state: IngestState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/v1/samples", post(post_samples))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(state))
}

#[tracing::instrument(skip_all, fields(bytes = body.len()))]
async fn post_samples(
    State(state): State<Arc<IngestState>>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let ndjson = match media.as_str() {
        "application/json" | "" => false,
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => true,
        _ => return Err(Error::UnsupportedMediaType(content_type.to_owned())),
    };
    let samples = parse_json_samples(
        &body,
        ndjson,
        params.precision,
        &state.registry,
        Timestamp::now(),
    )?;
    let mut encoded = Vec::with_capacity(samples.len());
    for s in &samples {
        let bytes = state
            .codec
            .encode(s)
            .map_err(|e| Error::Internal(e.to_string()))?;
        encoded.push((s.sensor_id.as_str(), bytes));
    }
    // All sends are queued at once and awaited together: the answer waits for the
    // acknowledgement of every sample of the request.
    let results = futures::future::join_all(
        encoded
            .iter()
            .map(|(key, bytes)| state.producer.send(&state.topic, key.as_bytes(), bytes)),
    )
    .await;
    if let Some(err) = results.into_iter().find_map(Result::err) {
        return Err(Error::Unavailable(err));
    }
    tracing::debug!(samples = samples.len(), "accepted");
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: samples.len(),
        }),
    ))
}
