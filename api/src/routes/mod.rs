//! The API `Router`: `POST /v1/query` {"sql"} -> the result streamed in the format the
//! client asks for (`?format=` or `Accept`; JSON by default).
//!
//! The status is sent once the query has produced its first batch, so refusals, bad
//! SQL and most limit failures get a proper 4xx/5xx with a JSON error. An error after
//! that (the deadline passing mid-stream, a failing file read) cannot change the status
//! any more: the server logs it and aborts the response, so the client sees a broken
//! transfer (a missing end of chunked encoding), never a silently truncated result.
//!
//! `GET /v1/experiments/{id}/export?participant=&day=` streams an experiment's export
//! archive (`crate::export`) the same way: errors before the first byte get a status,
//! later ones abort the transfer.

use crate::error::{Error, Result};
use crate::export::ExportRequest;
use crate::format::Format;
use crate::query::QueryEngine;
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use labstream_schemas::auth::{Scope, Verifier};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    pub engine: QueryEngine,
    /// `None` only when `auth.disabled` (allowed on a loopback address only).
    pub auth: Option<Verifier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
}

#[derive(Deserialize)]
struct QueryParams {
    format: Option<String>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/query", post(post_query))
        .route("/v1/experiments/{id}/export", get(get_export))
        .with_state(Arc::new(state))
}

fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<()> {
    crate::http::authorize(state.auth.as_ref(), headers, &[Scope::Query])?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    participant: Option<String>,
    day: Option<String>,
}

#[tracing::instrument(skip_all, fields(experiment = %id))]
async fn get_export(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    params: std::result::Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers)?;
    let Query(params) = params.map_err(|e| Error::BadParameter(e.body_text()))?;
    let day = match params.day.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => Some(
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                Error::BadParameter(format!("day={d:?} is not a date like 2026-11-23"))
            })?,
        ),
        None => None,
    };
    let request = ExportRequest {
        experiment_id: id.as_str().into(),
        participant: params.participant.filter(|p| !p.is_empty()).map(Into::into),
        day,
    };
    let export = state.engine.export(request).await?;
    let body = export
        .into_stream(|_| {})
        .map(|chunk| chunk.map_err(aborted));
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.tar\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[tracing::instrument(skip_all)]
async fn post_query(
    State(state): State<Arc<ApiState>>,
    params: std::result::Result<Query<QueryParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    request: std::result::Result<Json<QueryRequest>, JsonRejection>,
) -> Result<Response> {
    authorize(&state, &headers)?;
    let Query(params) = params.map_err(|e| Error::BadBody(e.body_text()))?;
    let format = match params.format.as_deref() {
        Some(name) => Format::from_name(name).ok_or_else(|| {
            Error::BadRequest(format!(
                "unknown format {name:?}; use one of {}",
                Format::NAMES
            ))
        })?,
        None => Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))?,
    };
    let Json(request) = request.map_err(|e| Error::BadBody(e.body_text()))?;
    tracing::debug!(sql = %request.sql, ?format, "query");
    let stream = state.engine.query_stream(&request.sql).await?;
    let encoder = format.encoder(&stream.schema())?;

    // Batches -> encoded chunks; after the last batch, the closing bytes.
    let body = futures::stream::unfold(Some((stream, encoder)), |state| async move {
        let (mut stream, mut encoder) = state?;
        loop {
            return match stream.next().await {
                Some(Ok(batch)) => match encoder.write(&batch) {
                    Ok(bytes) if bytes.is_empty() => continue,
                    Ok(bytes) => Some((Ok(bytes), Some((stream, encoder)))),
                    Err(e) => Some((Err(aborted(e)), None)),
                },
                Some(Err(e)) => Some((Err(aborted(e)), None)),
                None => match encoder.finish() {
                    Ok(bytes) => Some((Ok(bytes), None)),
                    Err(e) => Some((Err(aborted(e)), None)),
                },
            };
        }
    });
    let mut response = Body::from_stream(body.filter(|chunk: &std::io::Result<Bytes>| {
        futures::future::ready(chunk.as_ref().map_or(true, |b| !b.is_empty()))
    }))
    .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(response)
}

/// An error after the status was sent: logged, and the response is cut off.
fn aborted(e: Error) -> std::io::Error {
    tracing::warn!(error = %e, detail = ?e, "failed while streaming the response; response aborted");
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod tests;
