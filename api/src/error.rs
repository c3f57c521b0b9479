use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use labstream_schemas::ErrorKind;
use serde::Serialize;

/// The one HTTP error of the API (queries, exports, experiments, alert rules). Its kind
/// decides the status family: the client fixes the request (4xx), narrows the query
/// (400 `memory_limit`, 504 `timeout`), retries later (429, 503 with `Retry-After`), or
/// it is ours (500, logged; the client gets a generic message).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadQuery(String),
    /// A statement that is not a read-only query (DDL, DML, COPY, SET, ...).
    #[error("{0}")]
    NotAllowed(String),
    /// A query request that is not `{"sql": ...}`.
    #[error("the request body must be JSON like {{\"sql\": \"SELECT ...\"}}: {0}")]
    BadBody(String),
    /// A request that cannot be read (a body or header that is not what the route takes).
    #[error("{0}")]
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
    /// A command that is well-formed but not valid (422).
    #[error("{0}")]
    Invalid(String),
    /// A command that is not allowed in the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named a version that is not the current one (412).
    #[error("{0}")]
    VersionMismatch(String),
    /// A replace without `If-Match` (428).
    #[error("{0}")]
    PreconditionRequired(String),
    /// The log behind a store (Kafka) cannot be read or written now: `public` is what the
    /// client is told, `detail` is logged.
    #[error("{public}")]
    Unavailable {
        public: &'static str,
        detail: String,
    },
    /// The consumer went away (a client hung up during an export).
    #[error("the client went away")]
    Cancelled,
    #[error("invalid query settings: {0}")]
    Config(String),
    #[error("internal error while running the query")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadQuery(_)
            | Error::NotAllowed(_)
            | Error::BadBody(_)
            | Error::BadRequest(_)
            | Error::NotAcceptable(_)
            | Error::MemoryLimit { .. }
            | Error::Auth(_)
            | Error::BadParameter(_)
            | Error::Invalid(_)
            | Error::PreconditionRequired(_)
            | Error::Cancelled => ErrorKind::BadInput,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) | Error::VersionMismatch(_) => ErrorKind::Conflict,
            Error::Timeout { .. } | Error::Busy { .. } | Error::Unavailable { .. } => {
                ErrorKind::Retryable
            }
            Error::Config(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

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
            Error::BadBody(_) | Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "not_acceptable"),
            Error::MemoryLimit { .. } => (StatusCode::BAD_REQUEST, "memory_limit"),
            Error::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Error::Busy { .. } => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            Error::BadParameter(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::VersionMismatch(_) => (StatusCode::PRECONDITION_FAILED, "version_mismatch"),
            Error::PreconditionRequired(_) => {
                (StatusCode::PRECONDITION_REQUIRED, "if_match_required")
            }
            Error::Unavailable { public, detail } => {
                tracing::warn!(%detail, "{public}");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
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
            Error::Busy { .. } | Error::Unavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl From<crate::experiments::StoreError> for Error {
    fn from(e: crate::experiments::StoreError) -> Self {
        use crate::experiments::StoreError;
        use labstream_schemas::experiment::Rejection;
        match e {
            StoreError::Rejected(r) => {
                let message = r.to_string();
                match r {
                    Rejection::NotFound(_) => Error::NotFound(message),
                    Rejection::Conflict(_) => Error::Conflict(message),
                    Rejection::Invalid(_) => Error::Invalid(message),
                    Rejection::VersionMismatch { .. } => Error::VersionMismatch(message),
                }
            }
            StoreError::Unavailable(detail) => Error::Unavailable {
                public: "the event log (Kafka) is unavailable; nothing was changed, retry in a moment",
                detail,
            },
        }
    }
}

impl From<labstream_schemas::experiment::Rejection> for Error {
    fn from(e: labstream_schemas::experiment::Rejection) -> Self {
        crate::experiments::StoreError::Rejected(e).into()
    }
}

impl From<crate::alerts::RuleError> for Error {
    fn from(e: crate::alerts::RuleError) -> Self {
        use crate::alerts::RuleError;
        let message = e.to_string();
        match e {
            RuleError::Invalid(_) | RuleError::BadRequest(_) => Error::Invalid(message),
            RuleError::NotFound(_) => Error::NotFound(message),
            RuleError::Conflict(_) => Error::Conflict(message),
            RuleError::VersionMismatch { .. } => Error::VersionMismatch(message),
            RuleError::Unavailable(detail) => Error::Unavailable {
                public: "the rule log (Kafka) is unavailable; nothing was changed, retry in a moment",
                detail,
            },
        }
    }
}
