//! `EnrichedSample` (schemas/avro/enriched_sample.v1.avsc): a sample and the recording
//! it belongs to, if any. Same fields as `Sample` plus four nullable ones, so the lake
//! gets them as columns.

use crate::codec::AvroRecord;
use crate::error::{Error, Result};
use crate::ids::{ExperimentId, ParticipantId, RecordingId, TaskId};
use crate::sample::Sample;
use crate::sample_view::SampleView;
use apache_avro::types::Value;
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

fn optional(value: Option<&str>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(s) => Value::Union(1, Box::new(Value::String(s.to_owned()))),
    }
}

impl AvroRecord for EnrichedSample {
    const NAME: &'static str = "labstream.EnrichedSample";

    fn to_avro(&self) -> Value {
        let Value::Record(mut fields) = self.sample.to_avro() else {
            unreachable!("a Sample is an Avro record")
        };
        let c = self.context.as_ref();
        fields.push((
            "experiment_id".into(),
            optional(c.map(|c| c.experiment_id.as_str())),
        ));
        fields.push((
            "recording_id".into(),
            optional(c.map(|c| c.recording_id.as_str())),
        ));
        fields.push((
            "participant_id".into(),
            optional(c.map(|c| c.participant_id.as_str())),
        ));
        fields.push(("task_id".into(), optional(c.map(|c| c.task_id.as_str()))));
        Value::Record(fields)
    }

    fn decode_current(body: &[u8]) -> Option<Result<Self>> {
        Some(SampleView::read(body, true).map(|v| v.to_owned_sample()))
    }

    fn from_avro(value: Value) -> Result<Self> {
        let Value::Record(fields) = value else {
            return Err(Error::shape("EnrichedSample", "not a record"));
        };
        let mut context: [Option<String>; 4] = Default::default();
        let mut rest = Vec::with_capacity(fields.len());
        for (name, v) in fields {
            let slot = match name.as_str() {
                "experiment_id" => 0,
                "recording_id" => 1,
                "participant_id" => 2,
                "task_id" => 3,
                _ => {
                    rest.push((name, v));
                    continue;
                }
            };
            context[slot] = match v {
                Value::Union(_, inner) => match *inner {
                    Value::Null => None,
                    Value::String(s) => Some(s),
                    other => {
                        return Err(Error::shape("EnrichedSample", format!("{name}: {other:?}")));
                    }
                },
                Value::Null => None,
                Value::String(s) => Some(s),
                other => return Err(Error::shape("EnrichedSample", format!("{name}: {other:?}"))),
            };
        }
        let sample = Sample::from_avro(Value::Record(rest))?;
        let [e, r, p, t] = context;
        Ok(EnrichedSample {
            sample,
            context: recording_context(e, r, p, t)?,
        })
    }
}

fn recording_context(
    e: Option<String>,
    r: Option<String>,
    p: Option<String>,
    t: Option<String>,
) -> Result<Option<RecordingContext>> {
    match (e, r, p, t) {
        (Some(e), Some(r), Some(p), Some(t)) => Ok(Some(RecordingContext {
            experiment_id: e.into(),
            recording_id: r.into(),
            participant_id: p.into(),
            task_id: t.into(),
        })),
        (None, None, None, None) => Ok(None),
        _ => Err(Error::shape(
            "EnrichedSample",
            "experiment_id, recording_id, participant_id and task_id must be all set or all null",
        )),
    }
}
