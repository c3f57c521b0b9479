//! The `Sample` record: one sensor reading as ingest accepted it.

use crate::error::Result;
use crate::ids::{SensorId, SensorType};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;
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
