//! Commands and the decision: a command is checked against the current state of its
//! aggregate and either becomes exactly one event or is rejected with the reason.
//! Pure: the API appends the event; nothing here does I/O.

use super::events::{
    ConfiguredSensor, EventPayload, ExperimentDefinition, ExperimentEvent, ProgressStatus,
};
use super::state::{ExperimentState, ExperimentStatus, SiteState};
use crate::ids::{ExperimentId, ParticipantId, RecordingId, SensorConfigId, SensorId, TaskId};
use crate::sample::Timestamp;
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    DefineSensorConfig {
        sensor_config_id: SensorConfigId,
        name: String,
        description: Option<String>,
        sensors: Vec<ConfiguredSensor>,
    },
    CreateExperiment {
        experiment_id: ExperimentId,
        definition: ExperimentDefinition,
    },
    RedefineExperiment {
        experiment_id: ExperimentId,
        definition: ExperimentDefinition,
    },
    Activate {
        experiment_id: ExperimentId,
    },
    Deactivate {
        experiment_id: ExperimentId,
    },
    StartRecording {
        experiment_id: ExperimentId,
        recording_id: RecordingId,
        participant_id: ParticipantId,
        task_id: TaskId,
        /// `None`: the sensors of the experiment's sensor configuration.
        sensors: Option<Vec<SensorId>>,
        /// `None`: now.
        started_at: Option<Timestamp>,
    },
    StopRecording {
        experiment_id: ExperimentId,
        recording_id: RecordingId,
        stopped_at: Option<Timestamp>,
    },
    AddLogbookEntry {
        experiment_id: ExperimentId,
        entry_id: String,
        text: String,
        recording_id: Option<RecordingId>,
        at: Option<Timestamp>,
    },
    RecordProgress {
        experiment_id: ExperimentId,
        participant_id: ParticipantId,
        task_id: TaskId,
        status: ProgressStatus,
        note: Option<String>,
    },
    Archive {
        experiment_id: ExperimentId,
    },
}

impl Command {
    pub fn aggregate_id(&self) -> &str {
        match self {
            Command::DefineSensorConfig {
                sensor_config_id, ..
            } => sensor_config_id.as_str(),
            Command::CreateExperiment { experiment_id, .. }
            | Command::RedefineExperiment { experiment_id, .. }
            | Command::Activate { experiment_id }
            | Command::Deactivate { experiment_id }
            | Command::StartRecording { experiment_id, .. }
            | Command::StopRecording { experiment_id, .. }
            | Command::AddLogbookEntry { experiment_id, .. }
            | Command::RecordProgress { experiment_id, .. }
            | Command::Archive { experiment_id } => experiment_id.as_str(),
        }
    }
}

/// Who, when, and under which expectations a command is decided.
#[derive(Clone, Debug)]
pub struct CommandContext {
    pub site_id: String,
    pub actor: String,
    pub now: Timestamp,
    pub event_id: String,
    /// The aggregate version the client based its change on (HTTP `If-Match`).
    pub expected_version: Option<i64>,
    /// How far in the past a recording may be started or stopped: samples older than
    /// this may already be enriched without it (the enrichment lateness bound).
    pub max_backdate: Duration,
}

/// Why a command was refused; each maps to one HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409: not allowed in the current state.
    #[error("{0}")]
    Conflict(String),
    /// 422: the command itself is invalid.
    #[error("{0}")]
    Invalid(String),
    /// 412: the aggregate changed since the client read it.
    #[error(
        "{aggregate} is at version {actual}, not {expected} as If-Match says: someone else changed it; reload and try again"
    )]
    VersionMismatch {
        aggregate: String,
        expected: i64,
        actual: i64,
    },
}

/// Ids users choose: 1-64 characters of letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit (they name lake directories, `experiment=<id>`).
pub fn check_id(kind: &str, id: &str) -> Result<(), Rejection> {
    let ok = id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Rejection::Invalid(format!(
            "{kind} {id:?} is not a valid id: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Checks `command` against `state` and returns the one event that records it.
pub fn decide(
    state: &SiteState,
    command: Command,
    ctx: &CommandContext,
) -> Result<ExperimentEvent, Rejection> {
    let aggregate_id = command.aggregate_id().to_owned();
    let current = state.version_of(&aggregate_id);
    if let Some(expected) = ctx.expected_version
        && expected != current
    {
        return Err(Rejection::VersionMismatch {
            aggregate: aggregate_id,
            expected,
            actual: current,
        });
    }
    let payload = decide_payload(state, command, ctx)?;
    Ok(ExperimentEvent {
        event_id: ctx.event_id.clone(),
        site_id: ctx.site_id.clone(),
        aggregate_id,
        version: current + 1,
        occurred_at: ctx.now,
        actor: ctx.actor.clone(),
        payload,
    })
}

fn experiment<'a>(
    state: &'a SiteState,
    id: &ExperimentId,
) -> Result<&'a ExperimentState, Rejection> {
    state
        .experiments
        .get(id)
        .ok_or_else(|| Rejection::NotFound(format!("experiment {id} does not exist")))
}

fn not_archived(exp: &ExperimentState) -> Result<(), Rejection> {
    if exp.status == ExperimentStatus::Archived {
        return Err(Rejection::Conflict(format!(
            "experiment {} is archived and cannot change",
            exp.experiment_id
        )));
    }
    Ok(())
}

fn check_time(what: &str, at: Timestamp, ctx: &CommandContext) -> Result<(), Rejection> {
    let slack = 1_000_000; // clocks of operators' machines may be a second ahead
    if at.as_micros() > ctx.now.as_micros() + slack {
        return Err(Rejection::Invalid(format!(
            "{what} {at} is in the future (now is {})",
            ctx.now
        )));
    }
    let limit = i64::try_from(ctx.max_backdate.as_micros()).unwrap_or(i64::MAX);
    if at.as_micros() < ctx.now.as_micros().saturating_sub(limit) {
        return Err(Rejection::Invalid(format!(
            "{what} {at} is more than {} in the past: samples before then may already be enriched (raise processors.enrichment.lateness, or replay the enrichment after the change)",
            humanize(ctx.max_backdate)
        )));
    }
    Ok(())
}

fn humanize(d: Duration) -> String {
    if d.as_secs() >= 1 && d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn check_definition(state: &SiteState, d: &ExperimentDefinition) -> Result<(), Rejection> {
    if d.name.trim().is_empty() {
        return Err(Rejection::Invalid(
            "definition.name must not be empty".into(),
        ));
    }
    if d.owner.trim().is_empty() {
        return Err(Rejection::Invalid(
            "definition.owner must not be empty".into(),
        ));
    }
    if !state.sensor_configs.contains_key(&d.sensor_config_id) {
        return Err(Rejection::Invalid(format!(
            "sensor configuration {} does not exist; create it first (POST /v1/sensor-configs)",
            d.sensor_config_id
        )));
    }
    let mut tasks = BTreeSet::new();
    for t in &d.tasks {
        check_id("task_id", t.task_id.as_str())?;
        if !tasks.insert(&t.task_id) {
            return Err(Rejection::Invalid(format!(
                "task {} is listed twice",
                t.task_id
            )));
        }
    }
    let mut participants = BTreeSet::new();
    for p in &d.participants {
        check_id("participant", p.as_str())?;
        if !participants.insert(p) {
            return Err(Rejection::Invalid(format!(
                "participant {p} is listed twice"
            )));
        }
    }
    Ok(())
}

fn decide_payload(
    state: &SiteState,
    command: Command,
    ctx: &CommandContext,
) -> Result<EventPayload, Rejection> {
    match command {
        Command::DefineSensorConfig {
            sensor_config_id,
            name,
            description,
            sensors,
        } => {
            check_id("sensor_config_id", sensor_config_id.as_str())?;
            if name.trim().is_empty() {
                return Err(Rejection::Invalid("name must not be empty".into()));
            }
            let mut seen = BTreeSet::new();
            for s in &sensors {
                if s.sensor_id.as_str().is_empty() || s.sensor_type.as_str().is_empty() {
                    return Err(Rejection::Invalid(
                        "every sensor needs a sensor_id and a sensor_type".into(),
                    ));
                }
                if !seen.insert(&s.sensor_id) {
                    return Err(Rejection::Invalid(format!(
                        "sensor {} is listed twice",
                        s.sensor_id
                    )));
                }
            }
            Ok(EventPayload::SensorConfigDefined {
                sensor_config_id,
                name,
                description,
                sensors,
            })
        }
        Command::CreateExperiment {
            experiment_id,
            definition,
        } => {
            check_id("experiment_id", experiment_id.as_str())?;
            if state.experiments.contains_key(&experiment_id) {
                return Err(Rejection::Conflict(format!(
                    "experiment {experiment_id} already exists"
                )));
            }
            if state
                .sensor_configs
                .contains_key(&SensorConfigId::from(experiment_id.as_str()))
            {
                return Err(Rejection::Conflict(format!(
                    "{experiment_id} is already the id of a sensor configuration; pick another id"
                )));
            }
            check_definition(state, &definition)?;
            Ok(EventPayload::ExperimentCreated {
                experiment_id,
                definition,
            })
        }
        Command::RedefineExperiment {
            experiment_id,
            definition,
        } => {
            let exp = experiment(state, &experiment_id)?;
            not_archived(exp)?;
            check_definition(state, &definition)?;
            for r in exp.open_recordings() {
                if !definition.participants.contains(&r.participant_id)
                    || !definition.tasks.iter().any(|t| t.task_id == r.task_id)
                {
                    return Err(Rejection::Conflict(format!(
                        "recording {} of participant {} on task {} is running; stop it before removing them",
                        r.recording_id, r.participant_id, r.task_id
                    )));
                }
            }
            Ok(EventPayload::ExperimentRedefined {
                experiment_id,
                definition,
            })
        }
        Command::Activate { experiment_id } => {
            let exp = experiment(state, &experiment_id)?;
            not_archived(exp)?;
            if exp.status == ExperimentStatus::Active {
                return Err(Rejection::Conflict(format!(
                    "experiment {experiment_id} is already active"
                )));
            }
            if let Some(active) = state.active() {
                return Err(Rejection::Conflict(format!(
                    "experiment {} is active; only one experiment can be active at a time: deactivate it first",
                    active.experiment_id
                )));
            }
            Ok(EventPayload::ExperimentActivated { experiment_id })
        }
        Command::Deactivate { experiment_id } => {
            let exp = experiment(state, &experiment_id)?;
            if exp.status != ExperimentStatus::Active {
                return Err(Rejection::Conflict(format!(
                    "experiment {experiment_id} is not active (it is {})",
                    exp.status.as_str()
                )));
            }
            if let Some(r) = exp.open_recordings().next() {
                return Err(Rejection::Conflict(format!(
                    "recording {} is running; stop it before deactivating the experiment",
                    r.recording_id
                )));
            }
            Ok(EventPayload::ExperimentDeactivated { experiment_id })
        }
        Command::StartRecording {
            experiment_id,
            recording_id,
            participant_id,
            task_id,
            sensors,
            started_at,
        } => {
            let exp = experiment(state, &experiment_id)?;
            if exp.status != ExperimentStatus::Active {
                return Err(Rejection::Conflict(format!(
                    "experiment {experiment_id} is not active (it is {}); activate it before recording",
                    exp.status.as_str()
                )));
            }
            check_id("recording_id", recording_id.as_str())?;
            if state
                .experiments
                .values()
                .any(|e| e.recording(&recording_id).is_some())
            {
                return Err(Rejection::Conflict(format!(
                    "recording {recording_id} already exists"
                )));
            }
            if !exp.definition.participants.contains(&participant_id) {
                return Err(Rejection::Invalid(format!(
                    "participant {participant_id} is not a participant of experiment {experiment_id}"
                )));
            }
            if !exp.definition.tasks.iter().any(|t| t.task_id == task_id) {
                return Err(Rejection::Invalid(format!(
                    "task {task_id} is not in the protocol of experiment {experiment_id}"
                )));
            }
            let config = state.sensor_configs.get(&exp.definition.sensor_config_id);
            let configured: Vec<SensorId> = config
                .map(|c| c.sensors.iter().map(|s| s.sensor_id.clone()).collect())
                .unwrap_or_default();
            let sensors = match sensors {
                None => configured,
                Some(list) => {
                    if !configured.is_empty()
                        && let Some(s) = list.iter().find(|s| !configured.contains(s))
                    {
                        return Err(Rejection::Invalid(format!(
                            "sensor {s} is not in sensor configuration {}",
                            exp.definition.sensor_config_id
                        )));
                    }
                    list
                }
            };
            let started_at = started_at.unwrap_or(ctx.now);
            check_time("started_at", started_at, ctx)?;
            for r in exp.open_recordings() {
                if r.participant_id == participant_id {
                    return Err(Rejection::Conflict(format!(
                        "participant {participant_id} is already being recorded (recording {}); stop it first",
                        r.recording_id
                    )));
                }
                if r.shares_sensor_with(&sensors) {
                    return Err(Rejection::Conflict(format!(
                        "recording {} (participant {}) is already recording these sensors; stop it first",
                        r.recording_id, r.participant_id
                    )));
                }
            }
            if let Some(r) = exp
                .recordings
                .iter()
                .filter(|r| r.shares_sensor_with(&sensors))
                .find(|r| r.stopped_at.is_some_and(|stop| stop > started_at))
            {
                return Err(Rejection::Invalid(format!(
                    "started_at {started_at} is before recording {} of the same sensors stopped",
                    r.recording_id
                )));
            }
            Ok(EventPayload::RecordingStarted {
                experiment_id,
                recording_id,
                participant_id,
                task_id,
                sensors,
                started_at,
            })
        }
        Command::StopRecording {
            experiment_id,
            recording_id,
            stopped_at,
        } => {
            let exp = experiment(state, &experiment_id)?;
            let recording = exp.recording(&recording_id).ok_or_else(|| {
                Rejection::NotFound(format!(
                    "recording {recording_id} does not exist in experiment {experiment_id}"
                ))
            })?;
            if let Some(stop) = recording.stopped_at {
                return Err(Rejection::Conflict(format!(
                    "recording {recording_id} was already stopped at {stop}"
                )));
            }
            let stopped_at = stopped_at.unwrap_or(ctx.now);
            check_time("stopped_at", stopped_at, ctx)?;
            if stopped_at < recording.started_at {
                return Err(Rejection::Invalid(format!(
                    "stopped_at {stopped_at} is before the recording started ({})",
                    recording.started_at
                )));
            }
            Ok(EventPayload::RecordingStopped {
                experiment_id,
                recording_id,
                stopped_at,
            })
        }
        Command::AddLogbookEntry {
            experiment_id,
            entry_id,
            text,
            recording_id,
            at,
        } => {
            let exp = experiment(state, &experiment_id)?;
            not_archived(exp)?;
            if text.trim().is_empty() {
                return Err(Rejection::Invalid("text must not be empty".into()));
            }
            if text.len() > 16 * 1024 {
                return Err(Rejection::Invalid(
                    "text is longer than 16 KiB; attach long documents elsewhere and link them"
                        .into(),
                ));
            }
            if let Some(r) = &recording_id
                && exp.recording(r).is_none()
            {
                return Err(Rejection::Invalid(format!(
                    "recording {r} does not exist in experiment {experiment_id}"
                )));
            }
            Ok(EventPayload::LogbookEntryAdded {
                experiment_id,
                entry_id,
                at: at.unwrap_or(ctx.now),
                author: ctx.actor.clone(),
                text,
                recording_id,
            })
        }
        Command::RecordProgress {
            experiment_id,
            participant_id,
            task_id,
            status,
            note,
        } => {
            let exp = experiment(state, &experiment_id)?;
            not_archived(exp)?;
            if !exp.definition.participants.contains(&participant_id) {
                return Err(Rejection::Invalid(format!(
                    "participant {participant_id} is not a participant of experiment {experiment_id}"
                )));
            }
            if !exp.definition.tasks.iter().any(|t| t.task_id == task_id) {
                return Err(Rejection::Invalid(format!(
                    "task {task_id} is not in the protocol of experiment {experiment_id}"
                )));
            }
            Ok(EventPayload::ParticipantProgressRecorded {
                experiment_id,
                participant_id,
                task_id,
                status,
                note,
            })
        }
        Command::Archive { experiment_id } => {
            let exp = experiment(state, &experiment_id)?;
            match exp.status {
                ExperimentStatus::Archived => Err(Rejection::Conflict(format!(
                    "experiment {experiment_id} is already archived"
                ))),
                ExperimentStatus::Active => Err(Rejection::Conflict(format!(
                    "experiment {experiment_id} is active; deactivate it before archiving"
                ))),
                _ => Ok(EventPayload::ExperimentArchived { experiment_id }),
            }
        }
    }
}
