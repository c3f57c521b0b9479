//! The HTTP server of a process: the routes every HTTP role shares (`/healthz`,
//! `/readyz`, `/openapi.json`, `/metrics`) with the routes of the roles it runs, traced
//! with the matched path, stopped gracefully when the process is cancelled.

use crate::wiring::Wiring;
use anyhow::Context;
use axum::Router;
use axum::routing::get;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

/// Binds `http.listen` and serves `routes` with the shared ones until the process is
/// cancelled.
pub(crate) async fn serve(
    w: &Wiring,
    routes: Router,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let roles = w.roles;
    let metrics = w.metrics.registry.clone();
    let readiness = crate::readiness::Readiness::new(w.settings.kafka.clone(), w.mongo.clone());
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move { readiness.check().await }
            }),
        )
        .route("/openapi.json", get(move || crate::openapi::handler(roles)))
        .route("/metrics", get(move || prometheus_text(metrics.clone())))
        .merge(routes)
        .layer(TraceLayer::new_for_http());
    let listen = w.settings.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, roles = ?roles, "HTTP server listening");
    let stop = w.http_stop.clone();
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .context("HTTP server failed")
    }))
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn prometheus_text(
    registry: Arc<prometheus_client::registry::Registry>,
) -> impl axum::response::IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (
            axum::http::StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            format!("encoding metrics failed: {e}"),
        ),
    }
}
