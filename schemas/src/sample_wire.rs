//! The wire form of samples: how `Sample` and `EnrichedSample` are written and read as
//! Avro records (the generic path, through Avro values, for every schema version, and
//! the hand-written one, through `SampleView`, for the current version), and
//! `Codec::decode_view`, which borrows a current message without decoding it.

use crate::codec::{AvroRecord, Codec, HEADER_LEN, header_fingerprint};
use crate::error::{Error, Result};
use crate::experiment::{EnrichedSample, RecordingContext};
use crate::ids::{SensorId, SensorType};
use crate::sample::{FieldValue, Sample, Timestamp};
use crate::sample_view::SampleView;
use apache_avro::types::Value;
use std::collections::{BTreeMap, HashMap};

impl Codec {
    /// A borrowed view of a message written with the current `Sample` or
    /// `EnrichedSample` schema; `None` for any other writer schema (decode those with
    /// `decode`). Gives what `decode` gives, without allocating per string.
    pub fn decode_view<'a>(&self, bytes: &'a [u8]) -> Option<Result<SampleView<'a>>> {
        let fingerprint = header_fingerprint(bytes)?;
        let [sample, enriched] = self.inner.view_fingerprints;
        let body = &bytes[HEADER_LEN..];
        if sample.contains(&fingerprint) {
            Some(SampleView::read(body, false))
        } else if enriched.contains(&fingerprint) {
            Some(SampleView::read(body, true))
        } else {
            None
        }
    }
}

impl AvroRecord for Sample {
    const NAME: &'static str = "labstream.Sample";

    fn to_avro(&self) -> Value {
        let values: HashMap<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), field_to_avro(v)))
            .collect();
        let tags: HashMap<String, Value> = self
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::Record(vec![
            (
                "sensor_id".into(),
                Value::String(self.sensor_id.as_str().to_owned()),
            ),
            (
                "sensor_type".into(),
                Value::String(self.sensor_type.as_str().to_owned()),
            ),
            ("ts".into(), Value::TimestampMicros(self.ts.as_micros())),
            (
                "seq".into(),
                match self.seq {
                    None => Value::Union(0, Box::new(Value::Null)),
                    Some(s) => Value::Union(1, Box::new(Value::Long(s))),
                },
            ),
            ("values".into(), Value::Map(values)),
            ("tags".into(), Value::Map(tags)),
            (
                "received_at".into(),
                Value::TimestampMicros(self.received_at.as_micros()),
            ),
        ])
    }

    fn decode_current(body: &[u8]) -> Option<Result<Self>> {
        Some(SampleView::read(body, false).map(|v| v.to_owned_sample().sample))
    }

    fn from_avro(value: Value) -> Result<Self> {
        let Value::Record(fields) = value else {
            return Err(Error::shape("Sample", "not a record"));
        };
        let mut sensor_id = None;
        let mut sensor_type = None;
        let mut ts = None;
        let mut seq = None;
        let mut values = BTreeMap::new();
        let mut tags = BTreeMap::new();
        let mut received_at = None;
        for (name, v) in fields {
            match (name.as_str(), v) {
                ("sensor_id", Value::String(s)) => sensor_id = Some(SensorId::new(s)),
                ("sensor_type", Value::String(s)) => sensor_type = Some(SensorType::new(s)),
                ("ts", v) => ts = Some(timestamp(v)?),
                ("seq", Value::Union(_, inner)) => {
                    seq = match *inner {
                        Value::Null => None,
                        Value::Long(s) => Some(s),
                        Value::Int(s) => Some(i64::from(s)),
                        other => return Err(Error::shape("Sample", format!("seq {other:?}"))),
                    }
                }
                ("values", Value::Map(m)) => {
                    for (k, v) in m {
                        values.insert(k, field_from_avro(v)?);
                    }
                }
                ("tags", Value::Map(m)) => {
                    for (k, v) in m {
                        match v {
                            Value::String(s) => {
                                tags.insert(k, s);
                            }
                            other => {
                                return Err(Error::shape("Sample", format!("tag {k}: {other:?}")));
                            }
                        }
                    }
                }
                ("received_at", v) => received_at = Some(timestamp(v)?),
                // Fields added by newer schema versions are ignored by this reader.
                _ => {}
            }
        }
        Ok(Sample {
            sensor_id: sensor_id.ok_or_else(|| Error::shape("Sample", "missing sensor_id"))?,
            sensor_type: sensor_type
                .ok_or_else(|| Error::shape("Sample", "missing sensor_type"))?,
            ts: ts.ok_or_else(|| Error::shape("Sample", "missing ts"))?,
            seq,
            values,
            tags,
            received_at: received_at
                .ok_or_else(|| Error::shape("Sample", "missing received_at"))?,
        })
    }
}

fn timestamp(v: Value) -> Result<Timestamp> {
    match v {
        Value::TimestampMicros(t) | Value::Long(t) => Ok(Timestamp::from_micros(t)),
        Value::TimestampMillis(t) => Ok(Timestamp::from_micros(t.saturating_mul(1000))),
        other => Err(Error::shape("Sample", format!("timestamp {other:?}"))),
    }
}

fn field_to_avro(value: &FieldValue) -> Value {
    // Union branch order follows the schema: ["double", "long", "boolean", "string"].
    match value {
        FieldValue::Double(v) => Value::Union(0, Box::new(Value::Double(*v))),
        FieldValue::Long(v) => Value::Union(1, Box::new(Value::Long(*v))),
        FieldValue::Bool(v) => Value::Union(2, Box::new(Value::Boolean(*v))),
        FieldValue::Str(v) => Value::Union(3, Box::new(Value::String(v.clone()))),
    }
}

fn field_from_avro(value: Value) -> Result<FieldValue> {
    match value {
        Value::Union(_, inner) => field_from_avro(*inner),
        Value::Double(v) => Ok(FieldValue::Double(v)),
        Value::Float(v) => Ok(FieldValue::Double(f64::from(v))),
        Value::Long(v) => Ok(FieldValue::Long(v)),
        Value::Int(v) => Ok(FieldValue::Long(i64::from(v))),
        Value::Boolean(v) => Ok(FieldValue::Bool(v)),
        Value::String(v) => Ok(FieldValue::Str(v)),
        other => Err(Error::shape(
            "Sample",
            format!("unexpected value {other:?}"),
        )),
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
