//! `EnrichedSample` (schemas/avro/enriched_sample.v1.avsc): a sample and the recording
//! it belongs to, if any. Same fields as `Sample` plus four nullable ones, so the lake
//! gets them as columns.

use crate::ids::{ExperimentId, ParticipantId, RecordingId, TaskId};
use crate::sample::Sample;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordingContext {
    pub experiment_id: ExperimentId,
    pub recording_id: RecordingId,
    pub participant_id: ParticipantId,
    pub task_id: TaskId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EnrichedSample {
    pub sample: Sample,
    /// `None` for a sample outside any recording.
    pub context: Option<RecordingContext>,
}

impl From<Sample> for EnrichedSample {
    /// A sample outside any recording.
    fn from(sample: Sample) -> Self {
        Self {
            sample,
            context: None,
        }
    }
}
