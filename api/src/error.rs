use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;
use serde::Serialize;

/// API errors by kind: a bad query (400, the analyst fixes the SQL) or an internal one
/// (500, logged; the client gets a generic message).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadQuery(String),
    #[error("the request body must be JSON like {{\"sql\": \"SELECT ...\"}}: {0}")]
    BadRequest(String),
    #[error("{}", .0.reason())]
    Auth(#[from] labstream_schemas::auth::AuthError),
    #[error("internal error while running the query")]
    Internal(String),
}

impl Error {
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
fn clean(e: &DataFusionError) -> String {
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
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Auth(e) => (
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::UNAUTHORIZED),
                e.code(),
            ),
            Error::Internal(detail) => {
                tracing::error!(%detail, "query failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let challenge = match &self {
            Error::Auth(e) => e.www_authenticate(),
            _ => None,
        };
        let mut response = (
            status,
            Json(Body {
                error: code,
                message: self.to_string(),
            }),
        )
            .into_response();
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
