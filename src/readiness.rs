//! `GET /readyz`: ready when the services this process depends on answer now: Kafka
//! always, MongoDB when this process runs the MongoDB sink. 503 names what is not
//! reachable, so a load balancer stops sending and an operator knows where to look.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use labstream_bus::KafkaConfig;
use std::sync::Arc;
use std::time::Duration;

/// How long each dependency may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub(crate) struct Readiness {
    kafka: KafkaConfig,
    mongo: Option<mongodb::Database>,
}

impl Readiness {
    pub(crate) fn new(kafka: KafkaConfig, mongo: Option<mongodb::Database>) -> Arc<Self> {
        Arc::new(Self { kafka, mongo })
    }

    pub(crate) async fn check(&self) -> Response {
        let kafka = async {
            match labstream_bus::probe(&self.kafka, CHECK_TIMEOUT).await {
                Ok(()) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        };
        let mongo = async {
            let db = self.mongo.as_ref()?;
            let ping = db.run_command(mongodb::bson::doc! { "ping": 1 });
            Some(match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("MongoDB is not reachable: {e}")),
                Err(_) => Err(format!(
                    "MongoDB did not answer within {}",
                    humantime::format_duration(CHECK_TIMEOUT)
                )),
            })
        };
        let (kafka, mongo) = tokio::join!(kafka, mongo);
        let mut checks = serde_json::Map::new();
        let mut failing = Vec::new();
        for (name, outcome) in [("kafka", Some(kafka)), ("mongo", mongo)] {
            let Some(outcome) = outcome else { continue };
            checks.insert(
                name.to_owned(),
                match outcome {
                    Ok(()) => serde_json::json!({ "status": "ok" }),
                    Err(e) => {
                        failing.push(name);
                        tracing::warn!(dependency = name, error = %e, "not ready");
                        serde_json::json!({ "status": "unreachable", "error": e })
                    }
                },
            );
        }
        if failing.is_empty() {
            (
                StatusCode::OK,
                Json(serde_json::json!({ "status": "ready", "checks": checks })),
            )
                .into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "status": "not_ready",
                    "unreachable": failing,
                    "checks": checks,
                })),
            )
                .into_response()
        }
    }
}
