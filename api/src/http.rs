//! HTTP plumbing the API's routers share: token checks, `If-Match` and `ETag`.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use labstream_schemas::auth::{AuthError, Claims, Scope, Verifier};
use serde::Serialize;

/// The token's claims (`Bearer` or `Token`) once it grants one of `scopes`; `None` when auth is
/// disabled (allowed on a loopback address only).
pub(crate) fn authorize(
    auth: Option<&Verifier>,
    headers: &HeaderMap,
    scopes: &[Scope],
) -> Result<Option<Claims>, AuthError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    labstream_schemas::auth::authorize(auth, value, scopes)
}

/// Why an `If-Match` header is not one this API understands.
#[derive(Debug)]
pub(crate) enum BadIfMatch {
    NotText,
    /// Not an ETag this API gave out (the header's text).
    Unknown(String),
}

/// `If-Match: "3"` (or `W/"3"`) -> `Some(3)`; `*` ("whatever version") or none -> `None`.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, BadIfMatch> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| BadIfMatch::NotText)?.trim();
    if text == "*" {
        return Ok(None);
    }
    let digits = text.trim_start_matches("W/").trim_matches('"');
    digits
        .parse()
        .map(Some)
        .map_err(|_| BadIfMatch::Unknown(text.to_owned()))
}

/// `body` as JSON with `version` as its strong `ETag` (`"3"`).
pub(crate) fn with_etag(status: StatusCode, version: i64, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header"),
    );
    response
}
