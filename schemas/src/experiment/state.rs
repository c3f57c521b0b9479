//! State as a fold over events: `SiteState::apply` is total (an event that does not fit
//! is skipped with a warning, never a panic), so rebuilding from the log always ends in
//! the same state as applying the events one by one.

use super::events::{
    ConfiguredSensor, EventPayload, ExperimentDefinition, ExperimentEvent, ProgressStatus,
};
use crate::codec::bridged_avro_record;
use crate::ids::{ExperimentId, ParticipantId, RecordingId, SensorConfigId, SensorId, TaskId};
use crate::sample::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentStatus {
    Draft,
    Active,
    Inactive,
    Archived,
}

impl ExperimentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentStatus::Draft => "draft",
            ExperimentStatus::Active => "active",
            ExperimentStatus::Inactive => "inactive",
            ExperimentStatus::Archived => "archived",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    pub recording_id: RecordingId,
    pub participant_id: ParticipantId,
    pub task_id: TaskId,
    /// Empty: every sensor.
    pub sensors: Vec<SensorId>,
    pub started_at: Timestamp,
    pub stopped_at: Option<Timestamp>,
}

impl Recording {
    pub fn is_open(&self) -> bool {
        self.stopped_at.is_none()
    }

    /// Whether this recording and a recording of `sensors` would record a common sensor.
    pub fn shares_sensor_with(&self, sensors: &[SensorId]) -> bool {
        self.sensors.is_empty()
            || sensors.is_empty()
            || self.sensors.iter().any(|s| sensors.contains(s))
    }

    pub fn records(&self, sensor: &SensorId) -> bool {
        self.sensors.is_empty() || self.sensors.contains(sensor)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogbookEntry {
    pub entry_id: String,
    pub at: Timestamp,
    pub author: String,
    pub text: String,
    pub recording_id: Option<RecordingId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub participant_id: ParticipantId,
    pub task_id: TaskId,
    pub status: ProgressStatus,
    pub note: Option<String>,
    pub at: Timestamp,
}

/// One experiment as derived from its events; also the snapshot in `experiments.state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentState {
    pub experiment_id: ExperimentId,
    pub site_id: String,
    pub version: i64,
    pub status: ExperimentStatus,
    pub definition: ExperimentDefinition,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub recordings: Vec<Recording>,
    pub logbook: Vec<LogbookEntry>,
    pub progress: Vec<Progress>,
}

bridged_avro_record!(ExperimentState, "labstream.state.ExperimentState");

impl ExperimentState {
    pub fn recording(&self, id: &RecordingId) -> Option<&Recording> {
        self.recordings.iter().find(|r| &r.recording_id == id)
    }

    pub fn open_recordings(&self) -> impl Iterator<Item = &Recording> {
        self.recordings.iter().filter(|r| r.is_open())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorConfig {
    pub sensor_config_id: SensorConfigId,
    pub name: String,
    pub description: Option<String>,
    pub sensors: Vec<ConfiguredSensor>,
    pub version: i64,
    pub updated_at: Timestamp,
}

/// Everything of one site: its sensor configurations and experiments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteState {
    pub sensor_configs: BTreeMap<SensorConfigId, SensorConfig>,
    pub experiments: BTreeMap<ExperimentId, ExperimentState>,
    /// Events folded so far (skipped ones included).
    pub events: u64,
}

impl SiteState {
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a ExperimentEvent>) -> Self {
        let mut state = Self::default();
        for e in events {
            state.apply(e);
        }
        state
    }

    /// The experiment that is active, if any (at most one by construction).
    pub fn active(&self) -> Option<&ExperimentState> {
        self.experiments
            .values()
            .find(|e| e.status == ExperimentStatus::Active)
    }

    /// Version of an aggregate (experiment or sensor configuration), 0 if it does not exist.
    pub fn version_of(&self, aggregate_id: &str) -> i64 {
        if let Some(e) = self.experiments.get(&ExperimentId::from(aggregate_id)) {
            return e.version;
        }
        self.sensor_configs
            .get(&SensorConfigId::from(aggregate_id))
            .map_or(0, |c| c.version)
    }

    /// Folds one event into the state; returns the experiment it changed, if any.
    pub fn apply(&mut self, event: &ExperimentEvent) -> Option<ExperimentId> {
        self.events += 1;
        let at = event.occurred_at;
        let skip = |why: &str| {
            tracing_skip(event, why);
            None
        };
        match &event.payload {
            EventPayload::SensorConfigDefined {
                sensor_config_id,
                name,
                description,
                sensors,
            } => {
                self.sensor_configs.insert(
                    sensor_config_id.clone(),
                    SensorConfig {
                        sensor_config_id: sensor_config_id.clone(),
                        name: name.clone(),
                        description: description.clone(),
                        sensors: sensors.clone(),
                        version: event.version,
                        updated_at: at,
                    },
                );
                None
            }
            EventPayload::ExperimentCreated {
                experiment_id,
                definition,
            } => {
                if self.experiments.contains_key(experiment_id) {
                    return skip("the experiment already exists");
                }
                self.experiments.insert(
                    experiment_id.clone(),
                    ExperimentState {
                        experiment_id: experiment_id.clone(),
                        site_id: event.site_id.clone(),
                        version: event.version,
                        status: ExperimentStatus::Draft,
                        definition: definition.clone(),
                        created_at: at,
                        updated_at: at,
                        recordings: Vec::new(),
                        logbook: Vec::new(),
                        progress: Vec::new(),
                    },
                );
                Some(experiment_id.clone())
            }
            payload => {
                let id = ExperimentId::from(payload.aggregate_id());
                let Some(exp) = self.experiments.get_mut(&id) else {
                    return skip("unknown experiment");
                };
                match payload {
                    EventPayload::ExperimentRedefined { definition, .. } => {
                        exp.definition = definition.clone();
                    }
                    EventPayload::ExperimentActivated { .. } => {
                        exp.status = ExperimentStatus::Active;
                    }
                    EventPayload::ExperimentDeactivated { .. } => {
                        exp.status = ExperimentStatus::Inactive;
                    }
                    EventPayload::ExperimentArchived { .. } => {
                        exp.status = ExperimentStatus::Archived;
                    }
                    EventPayload::RecordingStarted {
                        recording_id,
                        participant_id,
                        task_id,
                        sensors,
                        started_at,
                        ..
                    } => exp.recordings.push(Recording {
                        recording_id: recording_id.clone(),
                        participant_id: participant_id.clone(),
                        task_id: task_id.clone(),
                        sensors: sensors.clone(),
                        started_at: *started_at,
                        stopped_at: None,
                    }),
                    EventPayload::RecordingStopped {
                        recording_id,
                        stopped_at,
                        ..
                    } => match exp
                        .recordings
                        .iter_mut()
                        .find(|r| &r.recording_id == recording_id)
                    {
                        Some(r) if r.stopped_at.is_none() => r.stopped_at = Some(*stopped_at),
                        _ => return skip("no open recording with this id"),
                    },
                    EventPayload::LogbookEntryAdded {
                        entry_id,
                        at,
                        author,
                        text,
                        recording_id,
                        ..
                    } => exp.logbook.push(LogbookEntry {
                        entry_id: entry_id.clone(),
                        at: *at,
                        author: author.clone(),
                        text: text.clone(),
                        recording_id: recording_id.clone(),
                    }),
                    EventPayload::ParticipantProgressRecorded {
                        participant_id,
                        task_id,
                        status,
                        note,
                        ..
                    } => {
                        let entry = Progress {
                            participant_id: participant_id.clone(),
                            task_id: task_id.clone(),
                            status: *status,
                            note: note.clone(),
                            at: event.occurred_at,
                        };
                        match exp
                            .progress
                            .iter_mut()
                            .find(|p| &p.participant_id == participant_id && &p.task_id == task_id)
                        {
                            Some(p) => *p = entry,
                            None => exp.progress.push(entry),
                        }
                    }
                    EventPayload::SensorConfigDefined { .. }
                    | EventPayload::ExperimentCreated { .. } => unreachable!("handled above"),
                }
                exp.version = event.version;
                exp.updated_at = at;
                Some(id)
            }
        }
    }
}

fn tracing_skip(event: &ExperimentEvent, why: &str) {
    // Commands are validated before their event is written, so this only happens when
    // two writers raced past the fencing or the log was edited by hand.
    tracing::warn!(event_id = %event.event_id, kind = event.payload.kind(), aggregate = %event.aggregate_id, why, "event skipped by the fold");
}
