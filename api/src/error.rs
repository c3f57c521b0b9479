use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use serde::Serialize;

/// API errors by kind, which decides the status: the analyst fixes the request (400,
/// 406), narrows the query (400 `memory_limit`, 504 `timeout`), retries later (429), or
/// it is ours (500, logged; the client gets a generic message).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadQuery(String),
    /// A statement that is not a read-only query (DDL, DML, COPY, SET, ...).
    #[error("{0}")]
    NotAllowed(String),
    #[error("the request body must be JSON like {{\"sql\": \"SELECT ...\"}}: {0}")]
    BadRequest(String),
    /// No output format the client accepts.
    #[error("{0}")]
    NotAcceptable(String),
    #[error(
        "the query needs more than {limit} of memory (query.max_memory_bytes): narrow it (filter on date, experiment or sensor_id, aggregate, add a LIMIT) or raise query.max_memory_bytes"
    )]
    MemoryLimit { limit: String },
    #[error(
        "the query ran longer than {limit} (query.timeout) and was stopped: narrow it (filter on date, experiment or sensor_id) or raise query.timeout"
    )]
    Timeout { limit: String },
    #[error("{running} queries are already running (query.max_concurrent); retry in a moment")]
    Busy { running: usize },
    #[error("{}", .0.reason())]
    Auth(#[from] labstream_schemas::auth::AuthError),
    /// A request parameter that is not valid (other than the SQL).
    #[error("{0}")]
    BadParameter(String),
    #[error("{0}")]
    NotFound(String),
    /// The consumer went away (a client hung up during an export).
    #[error("the client went away")]
    Cancelled,
    #[error("invalid query settings: {0}")]
    Config(String),
    #[error("internal error while running the query")]
    Internal(String),
}

impl Error {
    /// Errors of planning and running a query; resource limits are told apart by the
    /// engine, which knows them ([`crate::QueryEngine`]).
    pub(crate) fn from_datafusion(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => Error::BadQuery(clean(&e)),
            DataFusionError::Execution(msg) => Error::BadQuery(msg.clone()),
            _ => Error::Internal(e.to_string()),
        }
    }
}

/// DataFusion prefixes messages with its error kind; keep what the analyst needs.
pub(crate) fn clean(e: &DataFusionError) -> String {
    e.find_root()
        .to_string()
        .replace("Error during planning: ", "")
        .replace("SQL error: ", "")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Error::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_query"),
            Error::NotAllowed(_) => (StatusCode::BAD_REQUEST, "not_allowed"),
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
            Error::MemoryLimit { .. } => (StatusCode::BAD_REQUEST, "memory_limit"),
            Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Error::Busy { .. } => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            Error::BadParameter(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Cancelled => (StatusCode::BAD_REQUEST, "cancelled"),
            Error::Auth(e) => (
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::UNAUTHORIZED),
                e.code(),
            ),
            Error::Config(detail) | Error::Internal(detail) => {
                tracing::error!(%detail, "query failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let mut response = (
            status,
            Json(Body {
                error: code,
                message: self.to_string(),
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        match &self {
            Error::Auth(e) => {
                if let Some(challenge) = e.www_authenticate() {
                    headers.insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(challenge),
                    );
                }
            }
            Error::Busy { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
