//! The events of `experiments.events` (schemas/avro/experiment_event.v1.avsc).

use crate::codec::bridged_avro_record;
use crate::ids::{
    ExperimentId, ParticipantId, RecordingId, SensorConfigId, SensorId, SensorType, TaskId,
};
use crate::sample::Timestamp;
use serde::{Deserialize, Serialize};

/// One change to an experiment or a sensor configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentEvent {
    pub event_id: String,
    pub site_id: String,
    /// The experiment or sensor configuration the event changes.
    pub aggregate_id: String,
    /// Version of the aggregate after this event (1 for the creating event).
    pub version: i64,
    pub occurred_at: Timestamp,
    /// The token subject that issued the command.
    pub actor: String,
    pub payload: EventPayload,
}

bridged_avro_record!(ExperimentEvent, "labstream.ExperimentEvent");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventPayload {
    SensorConfigDefined {
        sensor_config_id: SensorConfigId,
        name: String,
        description: Option<String>,
        sensors: Vec<ConfiguredSensor>,
    },
    ExperimentCreated {
        experiment_id: ExperimentId,
        definition: ExperimentDefinition,
    },
    ExperimentRedefined {
        experiment_id: ExperimentId,
        definition: ExperimentDefinition,
    },
    ExperimentActivated {
        experiment_id: ExperimentId,
    },
    ExperimentDeactivated {
        experiment_id: ExperimentId,
    },
    RecordingStarted {
        experiment_id: ExperimentId,
        recording_id: RecordingId,
        participant_id: ParticipantId,
        task_id: TaskId,
        sensors: Vec<SensorId>,
        started_at: Timestamp,
    },
    RecordingStopped {
        experiment_id: ExperimentId,
        recording_id: RecordingId,
        stopped_at: Timestamp,
    },
    LogbookEntryAdded {
        experiment_id: ExperimentId,
        entry_id: String,
        at: Timestamp,
        author: String,
        text: String,
        recording_id: Option<RecordingId>,
    },
    ParticipantProgressRecorded {
        experiment_id: ExperimentId,
        participant_id: ParticipantId,
        task_id: TaskId,
        status: ProgressStatus,
        note: Option<String>,
    },
    ExperimentArchived {
        experiment_id: ExperimentId,
    },
}

impl EventPayload {
    /// Short name, as in the schema (`RecordingStarted`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            EventPayload::SensorConfigDefined { .. } => "SensorConfigDefined",
            EventPayload::ExperimentCreated { .. } => "ExperimentCreated",
            EventPayload::ExperimentRedefined { .. } => "ExperimentRedefined",
            EventPayload::ExperimentActivated { .. } => "ExperimentActivated",
            EventPayload::ExperimentDeactivated { .. } => "ExperimentDeactivated",
            EventPayload::RecordingStarted { .. } => "RecordingStarted",
            EventPayload::RecordingStopped { .. } => "RecordingStopped",
            EventPayload::LogbookEntryAdded { .. } => "LogbookEntryAdded",
            EventPayload::ParticipantProgressRecorded { .. } => "ParticipantProgressRecorded",
            EventPayload::ExperimentArchived { .. } => "ExperimentArchived",
        }
    }

    /// The aggregate the event belongs to.
    pub fn aggregate_id(&self) -> &str {
        match self {
            EventPayload::SensorConfigDefined {
                sensor_config_id, ..
            } => sensor_config_id.as_str(),
            EventPayload::ExperimentCreated { experiment_id, .. }
            | EventPayload::ExperimentRedefined { experiment_id, .. }
            | EventPayload::ExperimentActivated { experiment_id }
            | EventPayload::ExperimentDeactivated { experiment_id }
            | EventPayload::RecordingStarted { experiment_id, .. }
            | EventPayload::RecordingStopped { experiment_id, .. }
            | EventPayload::LogbookEntryAdded { experiment_id, .. }
            | EventPayload::ParticipantProgressRecorded { experiment_id, .. }
            | EventPayload::ExperimentArchived { experiment_id } => experiment_id.as_str(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfiguredSensor {
    pub sensor_id: SensorId,
    pub sensor_type: SensorType,
    #[serde(default)]
    pub label: Option<String>,
}

/// What an experiment is: its protocol and people. Replaced as a whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentDefinition {
    pub name: String,
    pub owner: String,
    #[serde(default)]
    pub description: Option<String>,
    pub sensor_config_id: SensorConfigId,
    #[serde(default)]
    pub tasks: Vec<ProtocolTask>,
    #[serde(default)]
    pub operators: Vec<String>,
    #[serde(default)]
    pub participants: Vec<ParticipantId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolTask {
    pub task_id: TaskId,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressStatus {
    Pending,
    InProgress,
    Done,
    Skipped,
}
