//! The API `Router`: `POST /v1/query` (SQL -> JSON rows).

use crate::error::{Error, Result};
use crate::query::QueryEngine;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use labstream_schemas::auth::{Scope, Verifier, bearer_token};
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

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/query", post(post_query))
        .with_state(Arc::new(state))
}

#[tracing::instrument(skip_all)]
async fn post_query(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    request: std::result::Result<Json<QueryRequest>, JsonRejection>,
) -> Result<impl IntoResponse> {
    if let Some(verifier) = &state.auth {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let claims = verifier.verify(bearer_token(value)?)?;
        claims.require(Scope::Query)?;
    }
    let Json(request) = request.map_err(|e| Error::BadRequest(e.body_text()))?;
    tracing::debug!(sql = %request.sql, "query");
    let result = state.engine.query(&request.sql).await?;
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    let batches: Vec<&_> = result.batches.iter().collect();
    writer
        .write_batches(&batches)
        .map_err(|e| Error::Internal(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut body = writer.into_inner();
    if body.is_empty() {
        body = b"[]".to_vec();
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}
