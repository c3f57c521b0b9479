//! `/v1/sensor-configs` and `/v1/experiments`: commands (POST/PUT, `experiments:write`)
//! and reads (GET, `experiments:write` or `query`). Each response of a single
//! aggregate carries its version as the `ETag`; sending it back as `If-Match` makes the
//! change conditional (412 when someone else changed it first). Replacing a definition
//! (PUT) requires `If-Match` so two operators cannot silently overwrite each other.

use super::store::ExperimentStore;
use crate::error::{Error, Result};
use crate::http::{BadIfMatch, with_etag};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use labstream_schemas::auth::{Scope, Verifier};
use labstream_schemas::experiment::{
    Command, ConfiguredSensor, ExperimentDefinition, ExperimentState, ProgressStatus, Rejection,
    SensorConfig, check_id,
};
use labstream_schemas::{
    ExperimentId, ParticipantId, RecordingId, Registry, SensorConfigId, SensorId, TaskId, Timestamp,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone)]
pub struct ExperimentsState {
    pub store: ExperimentStore,
    pub registry: Arc<Registry>,
    /// `None` only when auth is disabled (loopback only).
    pub auth: Option<Verifier>,
}

pub fn router(state: ExperimentsState) -> Router {
    Router::new()
        .route("/v1/sensor-configs", get(list_configs).post(create_config))
        .route(
            "/v1/sensor-configs/{id}",
            get(get_config).put(replace_config),
        )
        .route(
            "/v1/experiments",
            get(list_experiments).post(create_experiment),
        )
        .route(
            "/v1/experiments/{id}",
            get(get_experiment).put(redefine_experiment),
        )
        .route("/v1/experiments/{id}/activate", post(activate))
        .route("/v1/experiments/{id}/deactivate", post(deactivate))
        .route("/v1/experiments/{id}/archive", post(archive))
        .route(
            "/v1/experiments/{id}/recordings",
            get(list_recordings).post(start_recording),
        )
        .route(
            "/v1/experiments/{id}/recordings/{rid}/stop",
            post(stop_recording),
        )
        .route(
            "/v1/experiments/{id}/logbook",
            get(get_logbook).post(add_logbook_entry),
        )
        .route("/v1/experiments/{id}/progress", get(get_progress))
        .route(
            "/v1/experiments/{id}/progress/{participant}/{task}",
            put(record_progress),
        )
        .route("/v1/experiments/{id}/events", get(get_events))
        .with_state(Arc::new(state))
}

/// A body that is not the JSON the route takes.
fn bad_json(e: JsonRejection) -> Error {
    Error::BadRequest(e.body_text())
}

// ------------------------------------------------------------------- auth, versions

/// The token's subject, after checking it may use `scopes` (any of them).
fn authorize(state: &ExperimentsState, headers: &HeaderMap, scopes: &[Scope]) -> Result<String> {
    Ok(
        crate::http::authorize(state.auth.as_ref(), headers, scopes)?
            .map_or_else(|| "anonymous".to_owned(), |c| c.sub),
    )
}

const WRITE: &[Scope] = &[Scope::ExperimentsWrite];
const READ: &[Scope] = &[Scope::ExperimentsWrite, Scope::Query];

fn if_match(headers: &HeaderMap) -> Result<Option<i64>> {
    crate::http::if_match(headers).map_err(|e| match e {
        BadIfMatch::NotText => Error::BadRequest("If-Match is not text".into()),
        BadIfMatch::Unknown(text) => Error::BadRequest(format!(
            "If-Match {text:?} is not a version this API gave out (an ETag like \"3\")"
        )),
    })
}

fn experiment_response(
    store: &ExperimentStore,
    id: &ExperimentId,
    status: StatusCode,
) -> Result<Response> {
    experiment_part(store, id, status, |e| e)
}

/// A part of experiment `id` (all of it, its recordings, ...) with the experiment's
/// version as `ETag`; 404 when there is no such experiment.
fn experiment_part<T: Serialize + ?Sized>(
    store: &ExperimentStore,
    id: &ExperimentId,
    status: StatusCode,
    part: impl for<'a> FnOnce(&'a ExperimentState) -> &'a T,
) -> Result<Response> {
    store.read(|p| match p.site.experiments.get(id) {
        Some(e) => Ok(with_etag(status, e.version, part(e))),
        None => Err(Rejection::NotFound(format!("experiment {id} does not exist")).into()),
    })
}

fn config_response(
    store: &ExperimentStore,
    id: &SensorConfigId,
    status: StatusCode,
) -> Result<Response> {
    store.read(|p| match p.site.sensor_configs.get(id) {
        Some(c) => Ok(with_etag(status, c.version, c)),
        None => {
            Err(Rejection::NotFound(format!("sensor configuration {id} does not exist")).into())
        }
    })
}

// ------------------------------------------------------------------ sensor configs

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    #[serde(default)]
    sensor_config_id: Option<SensorConfigId>,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    sensors: Vec<ConfiguredSensor>,
}

fn check_sensor_types(registry: &Registry, sensors: &[ConfiguredSensor]) -> Result<()> {
    for s in sensors {
        if registry.get(s.sensor_type.as_str()).is_none() {
            return Err(Rejection::Invalid(format!(
                "sensor {} has type {}, which is not in the sensor-type registry",
                s.sensor_id, s.sensor_type
            ))
            .into());
        }
    }
    Ok(())
}

async fn list_configs(
    State(state): State<Arc<ExperimentsState>>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers, READ)?;
    let configs: Vec<SensorConfig> = state
        .store
        .read(|p| p.site.sensor_configs.values().cloned().collect());
    Ok(Json(configs).into_response())
}

async fn get_config(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers, READ)?;
    config_response(&state.store, &id.into(), StatusCode::OK)
}

async fn create_config(
    State(state): State<Arc<ExperimentsState>>,
    headers: HeaderMap,
    body: Result<Json<ConfigBody>, JsonRejection>,
) -> Result<Response> {
    let actor = authorize(&state, &headers, WRITE)?;
    let Json(body) = body.map_err(bad_json)?;
    let id = body
        .sensor_config_id
        .ok_or_else(|| Error::BadRequest("sensor_config_id is required".into()))?;
    check_sensor_types(&state.registry, &body.sensors)?;
    if state
        .store
        .read(|p| p.site.sensor_configs.contains_key(&id))
    {
        return Err(Rejection::Conflict(format!(
            "sensor configuration {id} already exists; replace it with PUT /v1/sensor-configs/{id} and If-Match"
        ))
        .into());
    }
    let command = Command::DefineSensorConfig {
        sensor_config_id: id.clone(),
        name: body.name,
        description: body.description,
        sensors: body.sensors,
    };
    state.store.execute(command, &actor, Some(0)).await?;
    config_response(&state.store, &id, StatusCode::CREATED)
}

async fn replace_config(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ConfigBody>, JsonRejection>,
) -> Result<Response> {
    let actor = authorize(&state, &headers, WRITE)?;
    let expected = if_match(&headers)?.ok_or_else(|| {
        Error::PreconditionRequired(
            "replacing a sensor configuration needs If-Match with the ETag you read (GET it first)"
                .into(),
        )
    })?;
    let Json(body) = body.map_err(bad_json)?;
    let id = SensorConfigId::from(id);
    if body.sensor_config_id.as_ref().is_some_and(|b| b != &id) {
        return Err(Error::BadRequest(
            "sensor_config_id in the body differs from the path".into(),
        ));
    }
    check_sensor_types(&state.registry, &body.sensors)?;
    let command = Command::DefineSensorConfig {
        sensor_config_id: id.clone(),
        name: body.name,
        description: body.description,
        sensors: body.sensors,
    };
    state.store.execute(command, &actor, Some(expected)).await?;
    config_response(&state.store, &id, StatusCode::OK)
}

// --------------------------------------------------------------------- experiments

#[derive(Deserialize)]
struct CreateBody {
    experiment_id: ExperimentId,
    #[serde(flatten)]
    definition: ExperimentDefinition,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
}

#[derive(Serialize)]
struct ExperimentSummary<'a> {
    experiment_id: &'a ExperimentId,
    name: &'a str,
    owner: &'a str,
    status: &'static str,
    version: i64,
    created_at: Timestamp,
    updated_at: Timestamp,
    participants: usize,
    recordings: usize,
    running_recordings: usize,
}

async fn list_experiments(
    State(state): State<Arc<ExperimentsState>>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers, READ)?;
    let body = state.store.read(|p| {
        let list: Vec<ExperimentSummary<'_>> = p
            .site
            .experiments
            .values()
            .filter(|e| q.status.as_deref().is_none_or(|s| s == e.status.as_str()))
            .map(|e| ExperimentSummary {
                experiment_id: &e.experiment_id,
                name: &e.definition.name,
                owner: &e.definition.owner,
                status: e.status.as_str(),
                version: e.version,
                created_at: e.created_at,
                updated_at: e.updated_at,
                participants: e.definition.participants.len(),
                recordings: e.recordings.len(),
                running_recordings: e.open_recordings().count(),
            })
            .collect();
        serde_json::to_vec(&list)
    });
    let body = body.map_err(|e| Error::BadRequest(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn get_experiment(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers, READ)?;
    experiment_response(&state.store, &id.into(), StatusCode::OK)
}

async fn create_experiment(
    State(state): State<Arc<ExperimentsState>>,
    headers: HeaderMap,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<Response> {
    let actor = authorize(&state, &headers, WRITE)?;
    let Json(body) = body.map_err(bad_json)?;
    let id = body.experiment_id.clone();
    let command = Command::CreateExperiment {
        experiment_id: body.experiment_id,
        definition: body.definition,
    };
    state.store.execute(command, &actor, None).await?;
    experiment_response(&state.store, &id, StatusCode::CREATED)
}

async fn redefine_experiment(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ExperimentDefinition>, JsonRejection>,
) -> Result<Response> {
    let actor = authorize(&state, &headers, WRITE)?;
    let expected = if_match(&headers)?.ok_or_else(|| {
        Error::PreconditionRequired(
            "replacing an experiment's definition needs If-Match with the ETag you read (GET it first)".into(),
        )
    })?;
    let Json(definition) = body.map_err(bad_json)?;
    let id = ExperimentId::from(id);
    let command = Command::RedefineExperiment {
        experiment_id: id.clone(),
        definition,
    };
    state.store.execute(command, &actor, Some(expected)).await?;
    experiment_response(&state.store, &id, StatusCode::OK)
}

async fn transition(
    state: &ExperimentsState,
    headers: &HeaderMap,
    id: String,
    make: fn(ExperimentId) -> Command,
) -> Result<Response> {
    let actor = authorize(state, headers, WRITE)?;
    let expected = if_match(headers)?;
    let id = ExperimentId::from(id);
    state
        .store
        .execute(make(id.clone()), &actor, expected)
        .await?;
    experiment_response(&state.store, &id, StatusCode::OK)
}

async fn activate(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    transition(&state, &headers, id, |experiment_id| Command::Activate {
        experiment_id,
    })
    .await
}

async fn deactivate(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    transition(&state, &headers, id, |experiment_id| Command::Deactivate {
        experiment_id,
    })
    .await
}

async fn archive(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    transition(&state, &headers, id, |experiment_id| Command::Archive {
        experiment_id,
    })
    .await
}

// ---------------------------------------------------------------------- recordings

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    participant_id: ParticipantId,
    task_id: TaskId,
    #[serde(default)]
    recording_id: Option<RecordingId>,
    #[serde(default)]
    sensors: Option<Vec<SensorId>>,
    #[serde(default)]
    started_at: Option<Timestamp>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StopBody {
    #[serde(default)]
    stopped_at: Option<Timestamp>,
}

fn recording_response(
    store: &ExperimentStore,
    id: &ExperimentId,
    rid: &RecordingId,
    status: StatusCode,
) -> Result<Response> {
    store.read(|p| {
        let e = p
            .site
            .experiments
            .get(id)
            .ok_or_else(|| Rejection::NotFound(format!("experiment {id} does not exist")))?;
        let r = e
            .recording(rid)
            .ok_or_else(|| Rejection::NotFound(format!("recording {rid} does not exist")))?;
        Ok(with_etag(status, e.version, r))
    })
}

async fn list_recordings(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers, READ)?;
    experiment_part(&state.store, &id.into(), StatusCode::OK, |e| &e.recordings)
}

async fn start_recording(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<StartBody>, JsonRejection>,
) -> Result<Response> {
    let actor = authorize(&state, &headers, WRITE)?;
    let expected = if_match(&headers)?;
    let Json(body) = body.map_err(bad_json)?;
    let id = ExperimentId::from(id);
    let rid = body
        .recording_id
        .unwrap_or_else(|| RecordingId::new(uuid::Uuid::new_v4().to_string()));
    check_id("recording_id", rid.as_str())?;
    let command = Command::StartRecording {
        experiment_id: id.clone(),
        recording_id: rid.clone(),
        participant_id: body.participant_id,
        task_id: body.task_id,
        sensors: body.sensors,
        started_at: body.started_at,
    };
    state.store.execute(command, &actor, expected).await?;
    recording_response(&state.store, &id, &rid, StatusCode::CREATED)
}

async fn stop_recording(
    State(state): State<Arc<ExperimentsState>>,
    Path((id, rid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<StopBody>>,
) -> Result<Response> {
    let actor = authorize(&state, &headers, WRITE)?;
    let expected = if_match(&headers)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let id = ExperimentId::from(id);
    let rid = RecordingId::from(rid);
    let command = Command::StopRecording {
        experiment_id: id.clone(),
        recording_id: rid.clone(),
        stopped_at: body.stopped_at,
    };
    state.store.execute(command, &actor, expected).await?;
    recording_response(&state.store, &id, &rid, StatusCode::OK)
}

// ------------------------------------------------------------ logbook and progress

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogbookBody {
    text: String,
    #[serde(default)]
    recording_id: Option<RecordingId>,
    #[serde(default)]
    at: Option<Timestamp>,
}

async fn get_logbook(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers, READ)?;
    experiment_part(&state.store, &id.into(), StatusCode::OK, |e| &e.logbook)
}

async fn add_logbook_entry(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<LogbookBody>, JsonRejection>,
) -> Result<Response> {
    let actor = authorize(&state, &headers, WRITE)?;
    let expected = if_match(&headers)?;
    let Json(body) = body.map_err(bad_json)?;
    let id = ExperimentId::from(id);
    let entry_id = uuid::Uuid::new_v4().to_string();
    let command = Command::AddLogbookEntry {
        experiment_id: id.clone(),
        entry_id: entry_id.clone(),
        text: body.text,
        recording_id: body.recording_id,
        at: body.at,
    };
    state.store.execute(command, &actor, expected).await?;
    state.store.read(|p| {
        let e = &p.site.experiments[&id];
        let entry = e.logbook.iter().find(|l| l.entry_id == entry_id);
        Ok(with_etag(StatusCode::CREATED, e.version, entry))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressBody {
    status: ProgressStatus,
    #[serde(default)]
    note: Option<String>,
}

async fn get_progress(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers, READ)?;
    experiment_part(&state.store, &id.into(), StatusCode::OK, |e| &e.progress)
}

async fn record_progress(
    State(state): State<Arc<ExperimentsState>>,
    Path((id, participant, task)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Json<ProgressBody>, JsonRejection>,
) -> Result<Response> {
    let actor = authorize(&state, &headers, WRITE)?;
    let expected = if_match(&headers)?;
    let Json(body) = body.map_err(bad_json)?;
    let id = ExperimentId::from(id);
    let command = Command::RecordProgress {
        experiment_id: id.clone(),
        participant_id: participant.into(),
        task_id: task.into(),
        status: body.status,
        note: body.note,
    };
    state.store.execute(command, &actor, expected).await?;
    experiment_part(&state.store, &id, StatusCode::OK, |e| &e.progress)
}

async fn get_events(
    State(state): State<Arc<ExperimentsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    authorize(&state, &headers, READ)?;
    state.store.read(|p| match p.history.get(&id) {
        Some(events)
            if p.site
                .experiments
                .contains_key(&ExperimentId::from(id.as_str())) =>
        {
            Ok(Json(events).into_response())
        }
        _ => Err(Rejection::NotFound(format!("experiment {id} does not exist")).into()),
    })
}
