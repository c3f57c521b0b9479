//! A sample borrowed from its Avro body, for hot readers that copy the values on into
//! their own storage (the lake's column buffers): decoding it allocates no string and no
//! map node. Only the current `Sample` and `EnrichedSample` versions are read this way;
//! `Codec::decode_view` says `None` for any other, and the reader decodes an owned
//! `EnrichedSample` and looks at it through `SampleView::of`.

use crate::avro_body::BodyReader;
use crate::error::{Error, Result};
use crate::experiment::{EnrichedSample, RecordingContext};
use crate::ids::{SensorId, SensorType};
use crate::sample::{FieldValue, Sample, Timestamp};

/// One value of a sample's `values` map, borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValueRef<'a> {
    Double(f64),
    Long(i64),
    Bool(bool),
    Str(&'a str),
}

impl<'a> From<&'a FieldValue> for FieldValueRef<'a> {
    fn from(v: &'a FieldValue) -> Self {
        match v {
            FieldValue::Double(d) => Self::Double(*d),
            FieldValue::Long(l) => Self::Long(*l),
            FieldValue::Bool(b) => Self::Bool(*b),
            FieldValue::Str(s) => Self::Str(s),
        }
    }
}

impl FieldValueRef<'_> {
    fn to_owned_value(self) -> FieldValue {
        match self {
            Self::Double(d) => FieldValue::Double(d),
            Self::Long(l) => FieldValue::Long(l),
            Self::Bool(b) => FieldValue::Bool(b),
            Self::Str(s) => FieldValue::Str(s.to_owned()),
        }
    }
}

/// The recording a sample belongs to, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextRef<'a> {
    pub experiment_id: &'a str,
    pub recording_id: &'a str,
    pub participant_id: &'a str,
    pub task_id: &'a str,
}

/// A sample (with its recording, when enriched), borrowed. `values` and `tags` are
/// sorted by key, as the owned maps iterate.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleView<'a> {
    pub sensor_id: &'a str,
    pub sensor_type: &'a str,
    pub ts: Timestamp,
    pub seq: Option<i64>,
    pub values: Vec<(&'a str, FieldValueRef<'a>)>,
    pub tags: Vec<(&'a str, &'a str)>,
    pub received_at: Timestamp,
    pub context: Option<ContextRef<'a>>,
}

impl<'a> SampleView<'a> {
    /// A view of an owned sample.
    pub fn of(e: &'a EnrichedSample) -> Self {
        let s = &e.sample;
        SampleView {
            sensor_id: s.sensor_id.as_str(),
            sensor_type: s.sensor_type.as_str(),
            ts: s.ts,
            seq: s.seq,
            values: s
                .values
                .iter()
                .map(|(k, v)| (k.as_str(), v.into()))
                .collect(),
            tags: s
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            received_at: s.received_at,
            context: e.context.as_ref().map(|c| ContextRef {
                experiment_id: c.experiment_id.as_str(),
                recording_id: c.recording_id.as_str(),
                participant_id: c.participant_id.as_str(),
                task_id: c.task_id.as_str(),
            }),
        }
    }

    /// The owned sample: what the owned decoders give for the current schemas.
    pub fn to_owned_sample(&self) -> EnrichedSample {
        EnrichedSample {
            sample: Sample {
                sensor_id: SensorId::new(self.sensor_id),
                sensor_type: SensorType::new(self.sensor_type),
                ts: self.ts,
                seq: self.seq,
                values: self
                    .values
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.to_owned_value()))
                    .collect(),
                tags: self
                    .tags
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                received_at: self.received_at,
            },
            context: self.context.map(|c| RecordingContext {
                experiment_id: c.experiment_id.into(),
                recording_id: c.recording_id.into(),
                participant_id: c.participant_id.into(),
                task_id: c.task_id.into(),
            }),
        }
    }

    /// The value of field `name`, if the sample has it.
    pub fn value(&self, name: &str) -> Option<FieldValueRef<'a>> {
        self.values
            .binary_search_by(|(k, _)| (*k).cmp(name))
            .ok()
            .map(|i| self.values[i].1)
    }

    /// Reads a body of the current `Sample` schema (`enriched` false) or the current
    /// `EnrichedSample` schema (true), in schema order, as the owned decoders do.
    pub(crate) fn read(body: &'a [u8], enriched: bool) -> Result<Self> {
        let record = if enriched { "EnrichedSample" } else { "Sample" };
        let mut r = BodyReader::new(body, record);
        let sensor_id = r.str()?;
        let sensor_type = r.str()?;
        let ts = Timestamp::from_micros(r.long()?);
        let seq = match r.union_index(2)? {
            0 => None,
            _ => Some(r.long()?),
        };
        let mut values = Vec::with_capacity(4);
        r.map(|key, r| {
            // ["double", "long", "boolean", "string"]
            let value = match r.union_index(4)? {
                0 => FieldValueRef::Double(r.double()?),
                1 => FieldValueRef::Long(r.long()?),
                2 => FieldValueRef::Bool(r.boolean()?),
                _ => FieldValueRef::Str(r.str()?),
            };
            values.push((key, value));
            Ok(())
        })?;
        let mut tags = Vec::with_capacity(2);
        r.map(|key, r| {
            tags.push((key, r.str()?));
            Ok(())
        })?;
        let received_at = Timestamp::from_micros(r.long()?);
        let context = if enriched {
            let mut part = || -> Result<Option<&'a str>> {
                Ok(match r.union_index(2)? {
                    0 => None,
                    _ => Some(r.str()?),
                })
            };
            match (part()?, part()?, part()?, part()?) {
                (Some(e), Some(rec), Some(p), Some(t)) => Some(ContextRef {
                    experiment_id: e,
                    recording_id: rec,
                    participant_id: p,
                    task_id: t,
                }),
                (None, None, None, None) => None,
                _ => {
                    return Err(Error::shape(
                        "EnrichedSample",
                        "experiment_id, recording_id, participant_id and task_id must be all set or all null",
                    ));
                }
            }
        } else {
            None
        };
        Ok(SampleView {
            sensor_id,
            sensor_type,
            ts,
            seq,
            values: sorted_last_wins(values),
            tags: sorted_last_wins(tags),
            received_at,
            context,
        })
    }
}

/// Sorted by key; of a key written twice the last value counts, as in a map.
fn sorted_last_wins<T>(mut entries: Vec<(&str, T)>) -> Vec<(&str, T)> {
    if entries.windows(2).all(|w| w[0].0 < w[1].0) {
        return entries;
    }
    // Stable: equal keys keep their order, so the last of each run is the last written.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<(&str, T)> = Vec::with_capacity(entries.len());
    for e in entries {
        match out.last_mut() {
            Some(last) if last.0 == e.0 => *last = e,
            _ => out.push(e),
        }
    }
    out
}
