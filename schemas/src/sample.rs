//! The `Sample` record: one sensor reading as ingest accepted it.

use crate::codec::AvroRecord;
use crate::error::{Error, Result};
use crate::ids::{SensorId, SensorType};
use crate::sample_view::SampleView;
use apache_avro::types::Value;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A point in time as microseconds since the Unix epoch, UTC (Avro `timestamp-micros`).
///
/// In JSON it is an RFC 3339 string (`2026-11-23T10:00:00.123456Z`); integers are read
/// as microseconds, so the Avro form (`timestamp-micros`) converts directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or microseconds since the Unix epoch")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).ok_or_else(|| {
                    E::custom(format!(
                        "{v:?} is not an RFC 3339 timestamp like 2026-11-23T10:00:00.123Z"
                    ))
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub fn now() -> Self {
        Self(Utc::now().timestamp_micros())
    }

    /// `None` when out of chrono's range (about ±262,000 years).
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.0)
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        Self(dt.timestamp_micros())
    }

    /// `2026-11-23T10:00:00.123Z` (any offset) to a timestamp; `None` if it is not RFC 3339.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|dt| Self(dt.with_timezone(&Utc).timestamp_micros()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(dt) => f.write_str(&dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => write!(f, "{}us", self.0),
        }
    }
}

/// One value of a sample field; the registry says which variant a field takes.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    Double(f64),
    Long(i64),
    Bool(bool),
    Str(String),
}

impl FieldValue {
    fn to_avro(&self) -> Value {
        // Union branch order follows the schema: ["double", "long", "boolean", "string"].
        match self {
            FieldValue::Double(v) => Value::Union(0, Box::new(Value::Double(*v))),
            FieldValue::Long(v) => Value::Union(1, Box::new(Value::Long(*v))),
            FieldValue::Bool(v) => Value::Union(2, Box::new(Value::Boolean(*v))),
            FieldValue::Str(v) => Value::Union(3, Box::new(Value::String(v.clone()))),
        }
    }

    fn from_avro(value: Value) -> Result<Self> {
        match value {
            Value::Union(_, inner) => Self::from_avro(*inner),
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
}

/// One sensor reading. The dedupe key is `(sensor_id, ts, seq)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub sensor_id: SensorId,
    pub sensor_type: SensorType,
    /// Event time.
    pub ts: Timestamp,
    pub seq: Option<i64>,
    pub values: BTreeMap<String, FieldValue>,
    pub tags: BTreeMap<String, String>,
    /// When ingest accepted it.
    pub received_at: Timestamp,
}

impl AvroRecord for Sample {
    const NAME: &'static str = "labstream.Sample";

    fn to_avro(&self) -> Value {
        let values: HashMap<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.to_avro()))
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
                        values.insert(k, FieldValue::from_avro(v)?);
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
