use crate::validate::Rejection;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

/// Ingest errors by kind: bad input (4xx: the sender must fix the request), retryable
/// (429/503 with Retry-After: the sender must send again later) and internal (500).
/// Nothing of a request that gets an error is written, except with `?partial=true`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{} of {total} samples are invalid; nothing was written (send ?partial=true to store the valid ones)", rejected.len())]
    InvalidSamples {
        total: usize,
        rejected: Vec<Rejection>,
    },
    #[error("unsupported Content-Type {0:?}: send application/json or application/x-ndjson")]
    UnsupportedMediaType(String),
    #[error("unsupported Content-Encoding {0:?}: send gzip or an uncompressed body")]
    UnsupportedEncoding(String),
    #[error("invalid query parameter: {0}")]
    BadParameter(String),
    #[error("the body could not be read: {0}")]
    BadBody(String),
    #[error("the request holds no sample")]
    Empty,
    #[error(
        "the body is larger than {limit} bytes (ingest.max_body_bytes); split it into several requests"
    )]
    TooLarge { limit: usize },
    #[error(
        "the request holds {count} samples, more than {limit} (ingest.max_samples_per_request); split it into several requests"
    )]
    TooManySamples { count: usize, limit: usize },
    #[error("ingest is at its in-flight limit; retry after the Retry-After delay")]
    Busy,
    #[error(
        "Kafka did not acknowledge every sample in time; retry the whole request (samples are deduplicated by sensor_id, ts and seq)"
    )]
    Unavailable(#[source] labstream_bus::Error),
    #[error("{}", .0.reason())]
    Auth(#[from] labstream_schemas::auth::AuthError),
    #[error("internal error; the request was not stored")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    /// The same code, under the name InfluxDB clients read.
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<&'a [Rejection]>,
}

impl Error {
    /// Busy or Kafka not acknowledging: the sender should send the same request again
    /// later; what is wrong with the request or the token is the sender's to fix.
    pub fn kind(&self) -> labstream_schemas::ErrorKind {
        use labstream_schemas::ErrorKind;
        match self {
            Error::Busy | Error::Unavailable(_) => ErrorKind::Retryable,
            Error::Internal(_) => ErrorKind::Internal,
            Error::InvalidJson(_)
            | Error::InvalidSamples { .. }
            | Error::UnsupportedMediaType(_)
            | Error::UnsupportedEncoding(_)
            | Error::BadParameter(_)
            | Error::BadBody(_)
            | Error::Empty
            | Error::TooLarge { .. }
            | Error::TooManySamples { .. }
            | Error::Auth(_) => ErrorKind::BadInput,
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            Error::InvalidSamples { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_sample"),
            Error::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Error::UnsupportedEncoding(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
            }
            Error::BadParameter(_) => (StatusCode::BAD_REQUEST, "bad_parameter"),
            Error::BadBody(_) => (StatusCode::BAD_REQUEST, "bad_body"),
            Error::Empty => (StatusCode::BAD_REQUEST, "empty"),
            Error::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Error::TooManySamples { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_samples"),
            Error::Busy => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Error::Auth(e) => (
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::UNAUTHORIZED),
                e.code(),
            ),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The response, with Retry-After for the retryable kinds.
    pub fn into_response_with(self, unavailable_after: Duration, busy_after: Duration) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Error::Unavailable(e) => tracing::warn!(error = %e, "produce failed; answering 503"),
            Error::Internal(detail) => tracing::error!(%detail, "ingest internal error"),
            _ => {}
        }
        let rejected = match &self {
            Error::InvalidSamples { rejected, .. } => Some(rejected.as_slice()),
            _ => None,
        };
        let challenge = match &self {
            Error::Auth(e) => e.www_authenticate(),
            _ => None,
        };
        let body = Body {
            error: code,
            code,
            message: self.to_string(),
            rejected,
        };
        let mut response = (status, Json(body)).into_response();
        let retry_after = match status {
            StatusCode::SERVICE_UNAVAILABLE => Some(unavailable_after),
            StatusCode::TOO_MANY_REQUESTS => Some(busy_after),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(after) = retry_after {
            let secs = after.as_secs().max(1).to_string();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs).expect("digits are a valid header value"),
            );
        }
        response
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.into_response_with(Duration::from_secs(5), Duration::from_secs(1))
    }
}
