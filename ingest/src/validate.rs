//! Validation of one sample against the sensor-type registry and the time window,
//! shared by every input format. Pure: a sample either becomes a typed `Sample` or a
//! reason the sender can act on.

use labstream_schemas::{FieldType, FieldValue, Registry, Sample, SensorId, SensorType, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Why one sample of a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the sample in the request (0-based: the array index, or the
    /// non-empty line for NDJSON and line protocol).
    pub index: usize,
    pub code: RejectKind,
    pub reason: String,
}

/// Unit of integer timestamps (`?precision=`), as in the InfluxDB write API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    S,
    #[default]
    Ms,
    Us,
    Ns,
}

impl Precision {
    pub fn to_micros(self, value: i64) -> Option<i64> {
        match self {
            Precision::S => value.checked_mul(1_000_000),
            Precision::Ms => value.checked_mul(1_000),
            Precision::Us => Some(value),
            Precision::Ns => Some(value.div_euclid(1_000)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::S => "s",
            Precision::Ms => "ms",
            Precision::Us => "us",
            Precision::Ns => "ns",
        }
    }
}

/// Why a sample was refused, as a stable code for clients and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// Not a sample at all: bad syntax, a missing or unknown envelope field.
    Malformed,
    UnknownSensorType,
    UnknownField,
    WrongType,
    NonFinite,
    /// Event time outside `ingest.max_ts_past` / `ingest.max_ts_future`.
    OutOfWindow,
    /// The token may not write this sensor id.
    SensorNotAllowed,
}

impl RejectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::Malformed => "malformed",
            RejectKind::UnknownSensorType => "unknown_sensor_type",
            RejectKind::UnknownField => "unknown_field",
            RejectKind::WrongType => "wrong_type",
            RejectKind::NonFinite => "non_finite",
            RejectKind::OutOfWindow => "out_of_window",
            RejectKind::SensorNotAllowed => "sensor_not_allowed",
        }
    }
}

/// A refused sample: the code and a reason the sender can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub kind: RejectKind,
    pub reason: String,
}

impl Invalid {
    pub fn new(kind: RejectKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    pub fn malformed(reason: impl Into<String>) -> Self {
        Self::new(RejectKind::Malformed, reason)
    }
}

/// A field value as the input format typed it, before the registry decides.
#[derive(Clone, Debug, PartialEq)]
pub enum RawValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
}

impl RawValue {
    fn kind(&self) -> &'static str {
        match self {
            RawValue::Float(_) => "a fractional number",
            RawValue::Int(_) | RawValue::UInt(_) => "an integer",
            RawValue::Bool(_) => "a boolean",
            RawValue::Str(_) => "a string",
        }
    }
}

/// The outcome of parsing one request body: the valid samples and, for every invalid
/// one, its index and reason. Whether the request is refused as a whole is the
/// caller's decision (all-or-nothing by default, `?partial=true` otherwise).
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub samples: Vec<Sample>,
    pub rejected: Vec<Rejection>,
    /// Samples (JSON documents, or lines of line protocol) in the request.
    pub total: usize,
}

/// Checks samples against the registry and the accepted event-time window.
#[derive(Clone, Debug)]
pub struct Validator<'a> {
    pub registry: &'a Registry,
    /// When ingest received the request; stamped on every sample.
    pub received_at: Timestamp,
    /// Oldest accepted event time, relative to `received_at`.
    pub max_past: Option<Duration>,
    /// Furthest accepted event time in the future (sensor clock skew).
    pub max_future: Option<Duration>,
}

impl<'a> Validator<'a> {
    /// No time window: any event time is accepted.
    pub fn new(registry: &'a Registry, received_at: Timestamp) -> Self {
        Self {
            registry,
            received_at,
            max_past: None,
            max_future: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        sensor_id: String,
        sensor_type: String,
        ts: Timestamp,
        seq: Option<i64>,
        values: impl IntoIterator<Item = (String, RawValue)>,
        tags: BTreeMap<String, String>,
    ) -> Result<Sample, Invalid> {
        if sensor_id.trim().is_empty() {
            return Err(Invalid::malformed("sensor_id must not be empty"));
        }
        if sensor_id.len() > 256 {
            return Err(Invalid::malformed("sensor_id is longer than 256 bytes"));
        }
        let Some(spec) = self.registry.get(&sensor_type) else {
            let known: Vec<&str> = self.registry.types().map(|(n, _)| n).collect();
            return Err(Invalid::new(
                RejectKind::UnknownSensorType,
                format!(
                    "unknown sensor_type {sensor_type:?}; the registry knows: {}",
                    known.join(", ")
                ),
            ));
        };
        self.check_time(ts)
            .map_err(|r| Invalid::new(RejectKind::OutOfWindow, r))?;
        let mut typed = BTreeMap::new();
        for (name, raw) in values {
            let Some(field) = spec.fields.get(&name) else {
                let known: Vec<&str> = spec.fields.keys().map(String::as_str).collect();
                return Err(Invalid::new(
                    RejectKind::UnknownField,
                    format!(
                        "unknown field {name:?} for sensor_type {sensor_type:?}; its fields are: {}",
                        known.join(", ")
                    ),
                ));
            };
            let value = match (field.field_type, &raw) {
                (FieldType::Double, RawValue::Float(v)) if !v.is_finite() => {
                    return Err(Invalid::new(
                        RejectKind::NonFinite,
                        format!("field {name:?} is {v}; only finite numbers are accepted"),
                    ));
                }
                (FieldType::Double, RawValue::Float(v)) => Some(FieldValue::Double(*v)),
                (FieldType::Double, RawValue::Int(v)) => Some(FieldValue::Double(*v as f64)),
                (FieldType::Double, RawValue::UInt(v)) => Some(FieldValue::Double(*v as f64)),
                (FieldType::Long, RawValue::Int(v)) => Some(FieldValue::Long(*v)),
                (FieldType::Long, RawValue::UInt(v)) => {
                    i64::try_from(*v).ok().map(FieldValue::Long)
                }
                (FieldType::Boolean, RawValue::Bool(v)) => Some(FieldValue::Bool(*v)),
                (FieldType::String, RawValue::Str(v)) => Some(FieldValue::Str(v.clone())),
                _ => None,
            };
            let Some(value) = value else {
                return Err(Invalid::new(
                    RejectKind::WrongType,
                    format!(
                        "field {name:?} must be a {}, got {}",
                        field.field_type.as_str(),
                        raw.kind()
                    ),
                ));
            };
            if typed.insert(name.clone(), value).is_some() {
                return Err(Invalid::malformed(format!("field {name:?} is given twice")));
            }
        }
        if typed.is_empty() {
            return Err(Invalid::malformed("values must hold at least one field"));
        }
        Ok(Sample {
            sensor_id: SensorId::new(sensor_id),
            sensor_type: SensorType::new(sensor_type),
            ts,
            seq,
            values: typed,
            tags,
            received_at: self.received_at,
        })
    }

    fn check_time(&self, ts: Timestamp) -> Result<(), String> {
        let now = self.received_at.as_micros();
        if let Some(past) = self.max_past {
            let oldest = now.saturating_sub(micros(past));
            if ts.as_micros() < oldest {
                return Err(format!(
                    "ts {ts} is more than {} in the past (ingest.max_ts_past); send old data with `labstream backfill`",
                    humantime::format_duration(past)
                ));
            }
        }
        if let Some(future) = self.max_future {
            let newest = now.saturating_add(micros(future));
            if ts.as_micros() > newest {
                return Err(format!(
                    "ts {ts} is more than {} in the future (ingest.max_ts_future); check the sensor's clock and the precision",
                    humantime::format_duration(future)
                ));
            }
        }
        Ok(())
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(registry: &Registry) -> Validator<'_> {
        Validator {
            registry,
            received_at: Timestamp::from_micros(1_795_428_000_000_000),
            max_past: Some(Duration::from_secs(3600)),
            max_future: Some(Duration::from_secs(60)),
        }
    }

    fn temp(validator: &Validator<'_>, ts: i64, raw: RawValue) -> Result<Sample, String> {
        validator
            .sample(
                "t1".into(),
                "temperature".into(),
                Timestamp::from_micros(ts),
                None,
                [("celsius".to_owned(), raw)],
                BTreeMap::new(),
            )
            .map_err(|e| format!("{}: {}", e.kind.as_str(), e.reason))
    }

    #[test]
    fn event_time_must_lie_in_the_window() {
        let r = Registry::default_lab();
        let v = v(&r);
        let now = 1_795_428_000_000_000;
        assert!(temp(&v, now - 3_599_000_000, RawValue::Float(1.0)).is_ok());
        assert!(temp(&v, now + 59_000_000, RawValue::Float(1.0)).is_ok());
        let err = temp(&v, now - 3_601_000_000, RawValue::Float(1.0)).unwrap_err();
        assert!(err.contains("in the past"), "{err}");
        let err = temp(&v, now + 61_000_000, RawValue::Float(1.0)).unwrap_err();
        assert!(err.contains("in the future"), "{err}");
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        let r = Registry::default_lab();
        let v = v(&r);
        let now = 1_795_428_000_000_000;
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = temp(&v, now, RawValue::Float(bad)).unwrap_err();
            assert!(err.contains("only finite numbers"), "{err}");
        }
    }
}
