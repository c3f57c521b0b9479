use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why one sample of a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the sample in the request (0-based; the line for NDJSON).
    pub index: usize,
    pub reason: String,
}

/// Ingest errors by kind: bad input (4xx, the sender must fix the request), retryable
/// (503 with Retry-After, the sender must send again) and internal (500).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{} of {total} samples are invalid; nothing was written", rejected.len())]
    InvalidSamples {
        total: usize,
        rejected: Vec<Rejection>,
    },
    #[error("unsupported Content-Type {0:?}: send application/json or application/x-ndjson")]
    UnsupportedMediaType(String),
    #[error("the request holds no sample")]
    Empty,
    #[error(
        "Kafka did not acknowledge every sample in time; retry the whole request (samples are deduplicated by sensor_id, ts and seq)"
    )]
    Unavailable(#[source] labstream_bus::Error),
    #[error("internal error; the request was not stored")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Seconds a sender should wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "5";

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<&'a [Rejection]>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Error::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            Error::InvalidSamples { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_sample"),
            Error::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::Empty => (StatusCode::BAD_REQUEST, "empty"),
            Error::Unavailable(e) => {
                tracing::warn!(error = %e, "produce failed; answering 503");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Error::Internal(detail) => {
                tracing::error!(%detail, "ingest internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let rejected = match &self {
            Error::InvalidSamples { rejected, .. } => Some(rejected.as_slice()),
            _ => None,
        };
        let body = Body {
            error: code,
            message: self.to_string(),
            rejected,
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}
