//! The ingest `Router`: `POST /v1/samples` (JSON, array, NDJSON) and
//! `POST /api/v2/write` (InfluxDB v2 line protocol). Every request reserves its size
//! from a bounded in-flight budget before its body is read (429 when exhausted), so
//! memory stays bounded under any load; the answer waits for Kafka's acknowledgement
//! of every sample it accepts.

use crate::error::{Error, Result};
use crate::json::parse_json;
use crate::line_protocol::parse_line_protocol;
use crate::metrics::{Format, IngestMetrics, Outcome, ReasonLabels, RequestLabels};
use crate::validate::Rejection;
use crate::validate::{Parsed, Precision, Validator};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use labstream_bus::Producer;
use labstream_schemas::auth::{Claims, Scope, Verifier};
use labstream_schemas::{Codec, Registry, Timestamp};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// `[ingest]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted request body in bytes, also after gzip decompression (413).
    pub max_body_bytes: usize,
    /// Most samples in one request (413).
    pub max_samples_per_request: usize,
    /// Bytes of requests processed at once; past it requests get 429 + Retry-After.
    pub max_in_flight_bytes: usize,
    /// Oldest accepted event time, relative to arrival.
    #[serde(with = "humantime_serde")]
    pub max_ts_past: Duration,
    /// Furthest accepted event time in the future (sensor clock skew).
    #[serde(with = "humantime_serde")]
    pub max_ts_future: Duration,
    /// Line protocol tag whose value is the sensor id (Telegraf users may pick `host`).
    pub sensor_id_tag: String,
    /// Retry-After sent with 503 when Kafka does not acknowledge in time.
    #[serde(with = "humantime_serde")]
    pub unavailable_retry_after: Duration,
    /// Retry-After sent with 429 when the in-flight budget is exhausted.
    #[serde(with = "humantime_serde")]
    pub busy_retry_after: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            max_samples_per_request: 100_000,
            max_in_flight_bytes: 256 * 1024 * 1024,
            max_ts_past: Duration::from_secs(30 * 24 * 3600),
            max_ts_future: Duration::from_secs(5 * 60),
            sensor_id_tag: "sensor_id".into(),
            unavailable_retry_after: Duration::from_secs(5),
            busy_retry_after: Duration::from_secs(1),
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
    pub metrics: IngestMetrics,
    /// `None` only when `auth.disabled` (allowed on a loopback address only).
    pub auth: Option<Verifier>,
}

struct Shared {
    state: IngestState,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

#[derive(Deserialize)]
struct SamplesParams {
    #[serde(default)]
    precision: Precision,
    #[serde(default)]
    partial: bool,
}

#[derive(Deserialize)]
struct WriteParams {
    /// Line protocol defaults to nanoseconds, as InfluxDB does.
    #[serde(default = "ns")]
    precision: Precision,
    #[serde(default)]
    partial: bool,
    // Accepted for compatibility with Influx clients; labstream has one destination.
    #[serde(default, rename = "org")]
    _org: Option<String>,
    #[serde(default, rename = "bucket")]
    _bucket: Option<String>,
}

fn ns() -> Precision {
    Precision::Ns
}

#[derive(Serialize)]
struct Accepted<'a> {
    accepted: usize,
    #[serde(skip_serializing_if = "<[Rejection]>::is_empty")]
    rejected: &'a [Rejection],
}

pub fn router(state: IngestState) -> Router {
    let budget_bytes = state
        .config
        .max_in_flight_bytes
        .max(state.config.max_body_bytes);
    let shared = Arc::new(Shared {
        budget: Arc::new(Semaphore::new(budget_bytes)),
        budget_bytes,
        state,
    });
    Router::new()
        .route("/v1/samples", post(post_samples))
        .route("/api/v2/write", post(post_write))
        .with_state(shared)
}

#[tracing::instrument(skip_all)]
async fn post_samples(
    State(shared): State<Arc<Shared>>,
    params: std::result::Result<Query<SamplesParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
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
    // An unsupported type is reported after authentication, so anonymous callers learn nothing.
    let format = match media.as_str() {
        "application/json" | "" => Ok(Format::json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Format::ndjson),
        _ => Err(content_type.to_owned()),
    };
    let result = match params {
        Err(e) => Err(Error::BadParameter(e.body_text())),
        Ok(Query(p)) => {
            handle(
                &shared,
                &headers,
                body,
                p.partial,
                |bytes, validator| match &format {
                    Ok(f) => parse_json(bytes, *f == Format::ndjson, p.precision, validator),
                    Err(ct) => Err(Error::UnsupportedMediaType(ct.clone())),
                },
            )
            .await
        }
    };
    let format = format.unwrap_or(Format::json);
    finish(&shared, format, result)
}

#[tracing::instrument(skip_all)]
async fn post_write(
    State(shared): State<Arc<Shared>>,
    params: std::result::Result<Query<WriteParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = match params {
        Err(e) => Err(Error::BadParameter(e.body_text())),
        Ok(Query(p)) => {
            let tag = shared.state.config.sensor_id_tag.clone();
            handle(&shared, &headers, body, p.partial, |bytes, validator| {
                parse_line_protocol(bytes, p.precision, &tag, validator)
            })
            .await
        }
    };
    match result {
        // InfluxDB answers a complete write with 204 and no body; clients expect it.
        Ok((n, rejected)) if rejected.is_empty() => {
            record(
                &shared.state.metrics,
                Format::line_protocol,
                Outcome::accepted,
            );
            shared.state.metrics.samples_accepted.inc_by(n as u64);
            StatusCode::NO_CONTENT.into_response()
        }
        other => {
            let mut response = finish(&shared, Format::line_protocol, other);
            // InfluxDB answers invalid line protocol with 400; Telegraf and the client
            // libraries treat it as "fix the data, do not retry".
            if response.status() == StatusCode::UNPROCESSABLE_ENTITY {
                *response.status_mut() = StatusCode::BAD_REQUEST;
            }
            response
        }
    }
}

fn record(metrics: &IngestMetrics, format: Format, outcome: Outcome) {
    metrics
        .requests
        .get_or_create(&RequestLabels { format, outcome })
        .inc();
}

fn finish(shared: &Shared, format: Format, result: Result<(usize, Vec<Rejection>)>) -> Response {
    let metrics = &shared.state.metrics;
    match result {
        Ok((accepted, rejected)) => {
            record(metrics, format, Outcome::accepted);
            metrics.samples_accepted.inc_by(accepted as u64);
            for r in &rejected {
                metrics
                    .samples_rejected
                    .get_or_create(&ReasonLabels {
                        reason: r.code.as_str(),
                    })
                    .inc();
            }
            (
                StatusCode::ACCEPTED,
                axum::Json(Accepted {
                    accepted,
                    rejected: &rejected,
                }),
            )
                .into_response()
        }
        Err(e) => {
            let outcome = if e.kind().is_retryable() {
                Outcome::retry
            } else {
                Outcome::rejected
            };
            record(metrics, format, outcome);
            if let Error::InvalidSamples { rejected, .. } = &e {
                for r in rejected {
                    metrics
                        .samples_rejected
                        .get_or_create(&ReasonLabels {
                            reason: r.code.as_str(),
                        })
                        .inc();
                }
            }
            let config = &shared.state.config;
            e.into_response_with(config.unavailable_retry_after, config.busy_retry_after)
        }
    }
}

/// The format-independent part: budget, body, decompression, limits, produce.
/// Returns the number of accepted samples and the rejected ones (partial mode).
async fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
    partial: bool,
    parse: impl FnOnce(&[u8], &Validator<'_>) -> Result<Parsed>,
) -> Result<(usize, Vec<Rejection>)> {
    let state = &shared.state;
    let config = &state.config;
    // Authenticate first: an unauthenticated request takes no budget and reads no body.
    let claims = authorize(state.auth.as_ref(), headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared
        && len > config.max_body_bytes
    {
        return Err(Error::TooLarge {
            limit: config.max_body_bytes,
        });
    }
    // Reserve before reading: the declared size, or the most a body may take.
    let reserve = declared
        .unwrap_or(config.max_body_bytes)
        .clamp(1, shared.budget_bytes);
    let permits = u32::try_from(reserve).unwrap_or(u32::MAX);
    let _permit = shared
        .budget
        .clone()
        .try_acquire_many_owned(permits)
        .map_err(|_| Error::Busy)?;
    state.metrics.in_flight_bytes.inc_by(reserve as i64);
    let _release = InFlight(&state.metrics, reserve as i64);

    let raw = read_limited(body, config.max_body_bytes).await?;
    let bytes = decode_content(headers, raw, config.max_body_bytes)?;
    state.metrics.bytes.inc_by(bytes.len() as u64);

    let validator = Validator {
        registry: &state.registry,
        received_at: Timestamp::now(),
        max_past: Some(config.max_ts_past).filter(|d| !d.is_zero()),
        max_future: Some(config.max_ts_future).filter(|d| !d.is_zero()),
    };
    let parsed = parse(&bytes, &validator)?;
    if let Some(claims) = &claims {
        // A device token may write only its own sensors: one foreign id refuses the request.
        for sample in &parsed.samples {
            claims.require_sensor(sample.sensor_id.as_str())?;
        }
    }
    if parsed.total > config.max_samples_per_request {
        return Err(Error::TooManySamples {
            count: parsed.total,
            limit: config.max_samples_per_request,
        });
    }
    if !parsed.rejected.is_empty() && (!partial || parsed.samples.is_empty()) {
        return Err(Error::InvalidSamples {
            total: parsed.total,
            rejected: parsed.rejected,
        });
    }

    let mut encoded = Vec::with_capacity(parsed.samples.len());
    for s in &parsed.samples {
        let bytes = state
            .codec
            .encode(s)
            .map_err(|e| Error::Internal(e.to_string()))?;
        encoded.push((s.sensor_id.as_str(), bytes));
    }
    // All sends are queued at once and awaited together: the answer waits for the
    // acknowledgement of every sample of the request.
    let started = Instant::now();
    let results = futures::future::join_all(
        encoded
            .iter()
            .map(|(key, bytes)| state.producer.send(&state.topic, key.as_bytes(), bytes)),
    )
    .await;
    state
        .metrics
        .produce_latency
        .observe(started.elapsed().as_secs_f64());
    if let Some(err) = results.into_iter().find_map(Result::err) {
        return Err(Error::Unavailable(err));
    }
    Ok((parsed.samples.len(), parsed.rejected))
}

/// Verifies the token of the request and its `samples:write` scope. Accepts
/// `Authorization: Bearer <jwt>` and, for InfluxDB clients and Telegraf,
/// `Authorization: Token <jwt>`.
fn authorize(verifier: Option<&Verifier>, headers: &HeaderMap) -> Result<Option<Claims>> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(labstream_schemas::auth::authorize(
        verifier,
        value,
        &[Scope::SamplesWrite],
    )?)
}

struct InFlight<'a>(&'a IngestMetrics, i64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight_bytes.dec_by(self.1);
    }
}

async fn read_limited(body: Body, limit: usize) -> Result<Bytes> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::TooLarge { limit }),
        Err(e) => Err(Error::BadBody(e.to_string())),
    }
}

fn decode_content(headers: &HeaderMap, raw: Bytes, limit: usize) -> Result<Bytes> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") | Some("") => Ok(raw),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(raw.len() * 4);
            let mut decoder = flate2::read::MultiGzDecoder::new(&raw[..]).take(limit as u64 + 1);
            decoder.read_to_end(&mut out).map_err(|e| {
                Error::BadBody(format!("the gzip body cannot be decompressed: {e}"))
            })?;
            if out.len() > limit {
                return Err(Error::TooLarge { limit });
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err(Error::UnsupportedEncoding(other.to_owned())),
    }
}
