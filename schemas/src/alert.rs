//! The alert records: `AlertRule` (alerts.rules), `AlertEvent` (alerts.<name>) and
//! `AlertState` (alerts.state). These are the wire shapes only; what makes a rule valid
//! (bounds in order, a known field) is decided by the alerts processor that runs it.

use crate::codec::AvroRecord;
use crate::error::{Error, Result};
use crate::ids::{SensorId, SensorType};
use crate::sample::Timestamp;
use apache_avro::types::Value;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// Stable identifier of an alert rule; the Kafka key of `alerts.rules`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(String);

impl RuleId {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RuleId {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// The Kafka key of a (rule, sensor) pair in `alerts.state` and `alerts.<name>`.
pub fn alert_key(rule_id: &RuleId, sensor_id: &SensorId) -> String {
    format!("{rule_id}/{sensor_id}")
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What makes a rule fire, with its hysteresis. `recovery*` default to the firing bounds.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertCondition {
    /// Fires when value > threshold; resolves when value <= recovery.
    Above {
        threshold: f64,
        recovery: Option<f64>,
    },
    /// Fires when value < threshold; resolves when value >= recovery.
    Below {
        threshold: f64,
        recovery: Option<f64>,
    },
    /// Fires when value < low or > high; resolves inside [recovery_low, recovery_high].
    Outside {
        low: f64,
        high: f64,
        recovery_low: Option<f64>,
        recovery_high: Option<f64>,
    },
    /// Fires when low <= value <= high; resolves below recovery_low or above recovery_high.
    Inside {
        low: f64,
        high: f64,
        recovery_low: Option<f64>,
        recovery_high: Option<f64>,
    },
    /// Fires when |change per second| > threshold; resolves when it is <= recovery.
    RateOfChange {
        threshold: f64,
        recovery: Option<f64>,
    },
    /// Fires when the sensor sent nothing for `after`; resolves on its next sample.
    Absent { after: Duration },
}

impl AlertCondition {
    /// The `kind` string on the wire and in alert events.
    pub fn kind(&self) -> &'static str {
        match self {
            AlertCondition::Above { .. } => "above",
            AlertCondition::Below { .. } => "below",
            AlertCondition::Outside { .. } => "outside",
            AlertCondition::Inside { .. } => "inside",
            AlertCondition::RateOfChange { .. } => "rate_of_change",
            AlertCondition::Absent { .. } => "absent",
        }
    }

    fn to_avro(&self) -> Value {
        let mut threshold = None;
        let mut recovery = None;
        let mut bounds = [None; 4];
        let mut after = None;
        match self {
            AlertCondition::Above {
                threshold: t,
                recovery: r,
            }
            | AlertCondition::Below {
                threshold: t,
                recovery: r,
            }
            | AlertCondition::RateOfChange {
                threshold: t,
                recovery: r,
            } => {
                threshold = Some(*t);
                recovery = *r;
            }
            AlertCondition::Outside {
                low,
                high,
                recovery_low,
                recovery_high,
            }
            | AlertCondition::Inside {
                low,
                high,
                recovery_low,
                recovery_high,
            } => bounds = [Some(*low), Some(*high), *recovery_low, *recovery_high],
            AlertCondition::Absent { after: a } => after = Some(duration_micros(*a)),
        }
        Value::Record(vec![
            ("kind".into(), Value::String(self.kind().to_owned())),
            ("threshold".into(), opt_double(threshold)),
            ("recovery".into(), opt_double(recovery)),
            ("low".into(), opt_double(bounds[0])),
            ("high".into(), opt_double(bounds[1])),
            ("recovery_low".into(), opt_double(bounds[2])),
            ("recovery_high".into(), opt_double(bounds[3])),
            (
                "after_micros".into(),
                match after {
                    None => null(),
                    Some(v) => Value::Union(1, Box::new(Value::Long(v))),
                },
            ),
        ])
    }

    fn from_avro(value: Value) -> Result<Self> {
        const R: &str = "AlertCondition";
        let mut f = Fields::new(R, value)?;
        let kind = f.string("kind")?;
        let threshold = f.opt_double("threshold")?;
        let recovery = f.opt_double("recovery")?;
        let low = f.opt_double("low")?;
        let high = f.opt_double("high")?;
        let recovery_low = f.opt_double("recovery_low")?;
        let recovery_high = f.opt_double("recovery_high")?;
        let after = f.opt_long("after_micros")?;
        let need = |v: Option<f64>, name: &str| {
            v.ok_or_else(|| Error::shape(R, format!("a {kind} condition needs {name}")))
        };
        Ok(match kind.as_str() {
            "above" => AlertCondition::Above {
                threshold: need(threshold, "threshold")?,
                recovery,
            },
            "below" => AlertCondition::Below {
                threshold: need(threshold, "threshold")?,
                recovery,
            },
            "rate_of_change" => AlertCondition::RateOfChange {
                threshold: need(threshold, "threshold")?,
                recovery,
            },
            "outside" => AlertCondition::Outside {
                low: need(low, "low")?,
                high: need(high, "high")?,
                recovery_low,
                recovery_high,
            },
            "inside" => AlertCondition::Inside {
                low: need(low, "low")?,
                high: need(high, "high")?,
                recovery_low,
                recovery_high,
            },
            "absent" => {
                let micros = after
                    .ok_or_else(|| Error::shape(R, "an absent condition needs after_micros"))?;
                let micros = u64::try_from(micros)
                    .map_err(|_| Error::shape(R, format!("after_micros {micros} is negative")))?;
                AlertCondition::Absent {
                    after: Duration::from_micros(micros),
                }
            }
            other => {
                return Err(Error::shape(
                    R,
                    format!(
                        "unknown condition kind {other:?}: the rule was written by a newer labstream; upgrade this reader"
                    ),
                ));
            }
        })
    }
}

/// One alert rule (`alerts.rules`, key `rule_id`).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRule {
    pub rule_id: RuleId,
    pub name: String,
    /// The `<name>` of the `alerts.<name>` topic.
    pub topic: String,
    pub enabled: bool,
    pub sensor_type: SensorType,
    /// Empty = every sensor of `sensor_type`; for absent rules, the sensors expected to report.
    pub sensor_ids: Vec<SensorId>,
    /// `None` only for absent rules.
    pub field: Option<String>,
    pub condition: AlertCondition,
    /// Pending period (`for`).
    pub for_duration: Duration,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    /// Message template; empty = the default message.
    pub message: String,
    pub revision: i64,
    pub updated_at: Timestamp,
}

impl AvroRecord for AlertRule {
    const NAME: &'static str = "labstream.AlertRule";

    fn to_avro(&self) -> Value {
        Value::Record(vec![
            ("rule_id".into(), string(self.rule_id.as_str())),
            ("name".into(), string(&self.name)),
            ("topic".into(), string(&self.topic)),
            ("enabled".into(), Value::Boolean(self.enabled)),
            ("sensor_type".into(), string(self.sensor_type.as_str())),
            (
                "sensor_ids".into(),
                Value::Array(self.sensor_ids.iter().map(|s| string(s.as_str())).collect()),
            ),
            ("field".into(), opt_string(self.field.as_deref())),
            ("condition".into(), self.condition.to_avro()),
            (
                "for_micros".into(),
                Value::Long(duration_micros(self.for_duration)),
            ),
            ("severity".into(), string(self.severity.as_str())),
            ("labels".into(), string_map(&self.labels)),
            ("message".into(), string(&self.message)),
            ("revision".into(), Value::Long(self.revision)),
            (
                "updated_at".into(),
                Value::TimestampMicros(self.updated_at.as_micros()),
            ),
        ])
    }

    fn from_avro(value: Value) -> Result<Self> {
        const R: &str = "AlertRule";
        let mut f = Fields::new(R, value)?;
        let severity = f.string("severity")?;
        let for_micros = f.long("for_micros")?;
        Ok(AlertRule {
            rule_id: RuleId::new(f.string("rule_id")?),
            name: f.string("name")?,
            topic: f.string("topic")?,
            enabled: f.boolean("enabled")?,
            sensor_type: SensorType::new(f.string("sensor_type")?),
            sensor_ids: f
                .string_array("sensor_ids")?
                .into_iter()
                .map(SensorId::new)
                .collect(),
            field: f.opt_string("field")?,
            condition: AlertCondition::from_avro(f.take("condition")?)?,
            for_duration: Duration::from_micros(
                u64::try_from(for_micros)
                    .map_err(|_| Error::shape(R, format!("for_micros {for_micros} is negative")))?,
            ),
            severity: Severity::parse(&severity).ok_or_else(|| {
                Error::shape(
                    R,
                    format!("unknown severity {severity:?}: expected info, warning or critical"),
                )
            })?,
            labels: f.string_map("labels")?,
            message: f.string("message")?,
            revision: f.long("revision")?,
            updated_at: f.timestamp("updated_at")?,
        })
    }
}

/// Whether an alert event opens or closes an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transition of a (rule, sensor) state machine (`alerts.<name>`, key `rule_id/sensor_id`).
/// Its JSON (serde) is what SSE, WebSocket and webhook subscribers receive.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertEvent {
    /// `rule_id/sensor_id/sequence`: the dedupe key and SSE event id.
    pub event_id: String,
    /// 1-based number of the transition in its pair; odd = firing, even = resolved.
    pub sequence: i64,
    pub status: AlertStatus,
    pub rule_id: RuleId,
    pub rule_name: String,
    pub rule_revision: i64,
    pub sensor_id: SensorId,
    pub sensor_type: SensorType,
    pub field: Option<String>,
    /// The condition kind (`above`, `absent`, ...).
    pub condition: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub message: String,
    /// Event time of the transition.
    pub ts: Timestamp,
    /// When the condition began to hold.
    pub since: Timestamp,
    /// Wall-clock time the processor decided the transition.
    pub emitted_at: Timestamp,
}

impl AlertEvent {
    /// The event id of transition `sequence` of (rule, sensor).
    pub fn event_id_of(rule_id: &RuleId, sensor_id: &SensorId, sequence: i64) -> String {
        format!("{rule_id}/{sensor_id}/{sequence}")
    }
}

impl AvroRecord for AlertEvent {
    const NAME: &'static str = "labstream.AlertEvent";

    fn to_avro(&self) -> Value {
        Value::Record(vec![
            ("event_id".into(), string(&self.event_id)),
            ("sequence".into(), Value::Long(self.sequence)),
            (
                "status".into(),
                match self.status {
                    AlertStatus::Firing => Value::Enum(0, "FIRING".into()),
                    AlertStatus::Resolved => Value::Enum(1, "RESOLVED".into()),
                },
            ),
            ("rule_id".into(), string(self.rule_id.as_str())),
            ("rule_name".into(), string(&self.rule_name)),
            ("rule_revision".into(), Value::Long(self.rule_revision)),
            ("sensor_id".into(), string(self.sensor_id.as_str())),
            ("sensor_type".into(), string(self.sensor_type.as_str())),
            ("field".into(), opt_string(self.field.as_deref())),
            ("condition".into(), string(&self.condition)),
            ("value".into(), opt_double(self.value)),
            ("threshold".into(), opt_double(self.threshold)),
            ("severity".into(), string(self.severity.as_str())),
            ("labels".into(), string_map(&self.labels)),
            ("message".into(), string(&self.message)),
            ("ts".into(), Value::TimestampMicros(self.ts.as_micros())),
            (
                "since".into(),
                Value::TimestampMicros(self.since.as_micros()),
            ),
            (
                "emitted_at".into(),
                Value::TimestampMicros(self.emitted_at.as_micros()),
            ),
        ])
    }

    fn from_avro(value: Value) -> Result<Self> {
        const R: &str = "AlertEvent";
        let mut f = Fields::new(R, value)?;
        let status = match f.symbol("status")?.as_str() {
            "FIRING" => AlertStatus::Firing,
            "RESOLVED" => AlertStatus::Resolved,
            other => return Err(Error::shape(R, format!("status {other:?}"))),
        };
        let severity = f.string("severity")?;
        Ok(AlertEvent {
            event_id: f.string("event_id")?,
            sequence: f.long("sequence")?,
            status,
            rule_id: RuleId::new(f.string("rule_id")?),
            rule_name: f.string("rule_name")?,
            rule_revision: f.long("rule_revision")?,
            sensor_id: SensorId::new(f.string("sensor_id")?),
            sensor_type: SensorType::new(f.string("sensor_type")?),
            field: f.opt_string("field")?,
            condition: f.string("condition")?,
            value: f.opt_double("value")?,
            threshold: f.opt_double("threshold")?,
            severity: Severity::parse(&severity)
                .ok_or_else(|| Error::shape(R, format!("unknown severity {severity:?}")))?,
            labels: f.string_map("labels")?,
            message: f.string("message")?,
            ts: f.timestamp("ts")?,
            since: f.timestamp("since")?,
            emitted_at: f.timestamp("emitted_at")?,
        })
    }
}

/// Where a (rule, sensor) state machine stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertPhase {
    Ok,
    Pending,
    Firing,
}

/// State of one (rule, sensor) state machine (`alerts.state`, key `rule_id/sensor_id`).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertState {
    pub rule_id: RuleId,
    pub sensor_id: SensorId,
    pub sensor_type: SensorType,
    pub phase: AlertPhase,
    /// Pending and firing: when the condition began to hold.
    pub since: Option<Timestamp>,
    /// Firing: event time of the firing transition.
    pub fired_at: Option<Timestamp>,
    /// Sequence of the last transition emitted; 0 = none.
    pub sequence: i64,
    pub last_seen: Option<Timestamp>,
    pub last_value: Option<f64>,
    pub last_value_at: Option<Timestamp>,
    /// What the condition tested at the newest sample (the rate for rate_of_change).
    pub last_metric: Option<f64>,
    /// Event time the machine has advanced to; older samples are late.
    pub clock: Timestamp,
    pub watched_since: Timestamp,
}

impl AvroRecord for AlertState {
    const NAME: &'static str = "labstream.AlertState";

    fn to_avro(&self) -> Value {
        let phase = match self.phase {
            AlertPhase::Ok => Value::Enum(0, "OK".into()),
            AlertPhase::Pending => Value::Enum(1, "PENDING".into()),
            AlertPhase::Firing => Value::Enum(2, "FIRING".into()),
        };
        Value::Record(vec![
            ("rule_id".into(), string(self.rule_id.as_str())),
            ("sensor_id".into(), string(self.sensor_id.as_str())),
            ("sensor_type".into(), string(self.sensor_type.as_str())),
            ("phase".into(), phase),
            ("since".into(), opt_timestamp(self.since)),
            ("fired_at".into(), opt_timestamp(self.fired_at)),
            ("sequence".into(), Value::Long(self.sequence)),
            ("last_seen".into(), opt_timestamp(self.last_seen)),
            ("last_value".into(), opt_double(self.last_value)),
            ("last_value_at".into(), opt_timestamp(self.last_value_at)),
            ("last_metric".into(), opt_double(self.last_metric)),
            (
                "clock".into(),
                Value::TimestampMicros(self.clock.as_micros()),
            ),
            (
                "watched_since".into(),
                Value::TimestampMicros(self.watched_since.as_micros()),
            ),
        ])
    }

    fn from_avro(value: Value) -> Result<Self> {
        const R: &str = "AlertState";
        let mut f = Fields::new(R, value)?;
        let phase = match f.symbol("phase")?.as_str() {
            "OK" => AlertPhase::Ok,
            "PENDING" => AlertPhase::Pending,
            "FIRING" => AlertPhase::Firing,
            other => return Err(Error::shape(R, format!("phase {other:?}"))),
        };
        Ok(AlertState {
            rule_id: RuleId::new(f.string("rule_id")?),
            sensor_id: SensorId::new(f.string("sensor_id")?),
            sensor_type: SensorType::new(f.string("sensor_type")?),
            phase,
            since: f.opt_timestamp("since")?,
            fired_at: f.opt_timestamp("fired_at")?,
            sequence: f.long("sequence")?,
            last_seen: f.opt_timestamp("last_seen")?,
            last_value: f.opt_double("last_value")?,
            last_value_at: f.opt_timestamp("last_value_at")?,
            last_metric: f.opt_double("last_metric")?,
            clock: f.timestamp("clock")?,
            watched_since: f.timestamp("watched_since")?,
        })
    }
}

fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn null() -> Value {
    Value::Union(0, Box::new(Value::Null))
}

fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn opt_string(v: Option<&str>) -> Value {
    match v {
        None => null(),
        Some(s) => Value::Union(1, Box::new(string(s))),
    }
}

fn opt_double(v: Option<f64>) -> Value {
    match v {
        None => null(),
        Some(d) => Value::Union(1, Box::new(Value::Double(d))),
    }
}

fn opt_timestamp(v: Option<Timestamp>) -> Value {
    match v {
        None => null(),
        Some(t) => Value::Union(1, Box::new(Value::TimestampMicros(t.as_micros()))),
    }
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Map(
        m.iter()
            .map(|(k, v)| (k.clone(), string(v)))
            .collect::<HashMap<_, _>>(),
    )
}

/// The fields of a decoded record by name; fields a newer writer added are ignored.
struct Fields {
    record: &'static str,
    fields: HashMap<String, Value>,
}

impl Fields {
    fn new(record: &'static str, value: Value) -> Result<Self> {
        let Value::Record(fields) = value else {
            return Err(Error::shape(record, "not a record"));
        };
        Ok(Self {
            record,
            fields: fields.into_iter().collect(),
        })
    }

    fn take(&mut self, name: &str) -> Result<Value> {
        let value = self
            .fields
            .remove(name)
            .ok_or_else(|| Error::shape(self.record, format!("missing {name}")))?;
        // A nullable field arrives as a union; everything else as itself.
        Ok(match value {
            Value::Union(_, inner) => *inner,
            v => v,
        })
    }

    fn wrong(&self, name: &str, value: &Value) -> Error {
        Error::shape(self.record, format!("{name}: unexpected {value:?}"))
    }

    fn string(&mut self, name: &str) -> Result<String> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            v => Err(self.wrong(name, &v)),
        }
    }

    fn symbol(&mut self, name: &str) -> Result<String> {
        match self.take(name)? {
            Value::Enum(_, s) | Value::String(s) => Ok(s),
            v => Err(self.wrong(name, &v)),
        }
    }

    fn boolean(&mut self, name: &str) -> Result<bool> {
        match self.take(name)? {
            Value::Boolean(b) => Ok(b),
            v => Err(self.wrong(name, &v)),
        }
    }

    fn long(&mut self, name: &str) -> Result<i64> {
        match self.take(name)? {
            Value::Long(n) => Ok(n),
            Value::Int(n) => Ok(i64::from(n)),
            v => Err(self.wrong(name, &v)),
        }
    }

    fn timestamp(&mut self, name: &str) -> Result<Timestamp> {
        match self.take(name)? {
            Value::TimestampMicros(t) | Value::Long(t) => Ok(Timestamp::from_micros(t)),
            Value::TimestampMillis(t) => Ok(Timestamp::from_micros(t.saturating_mul(1000))),
            v => Err(self.wrong(name, &v)),
        }
    }

    fn opt_string(&mut self, name: &str) -> Result<Option<String>> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            v => Err(self.wrong(name, &v)),
        }
    }

    fn opt_double(&mut self, name: &str) -> Result<Option<f64>> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::Double(d) => Ok(Some(d)),
            Value::Float(d) => Ok(Some(f64::from(d))),
            v => Err(self.wrong(name, &v)),
        }
    }

    fn opt_long(&mut self, name: &str) -> Result<Option<i64>> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::Long(n) => Ok(Some(n)),
            Value::Int(n) => Ok(Some(i64::from(n))),
            v => Err(self.wrong(name, &v)),
        }
    }

    fn opt_timestamp(&mut self, name: &str) -> Result<Option<Timestamp>> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::TimestampMicros(t) | Value::Long(t) => Ok(Some(Timestamp::from_micros(t))),
            Value::TimestampMillis(t) => Ok(Some(Timestamp::from_micros(t.saturating_mul(1000)))),
            v => Err(self.wrong(name, &v)),
        }
    }

    fn string_array(&mut self, name: &str) -> Result<Vec<String>> {
        match self.take(name)? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    v => Err(self.wrong(name, &v)),
                })
                .collect(),
            v => Err(self.wrong(name, &v)),
        }
    }

    fn string_map(&mut self, name: &str) -> Result<BTreeMap<String, String>> {
        match self.take(name)? {
            Value::Map(m) => m
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    v => Err(self.wrong(name, &v)),
                })
                .collect(),
            v => Err(self.wrong(name, &v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use proptest::prelude::*;

    fn rule(condition: AlertCondition) -> AlertRule {
        AlertRule {
            rule_id: RuleId::new("freezer-warm"),
            name: "Freezer too warm".into(),
            topic: "freezers".into(),
            enabled: true,
            sensor_type: SensorType::new("temperature"),
            sensor_ids: vec![SensorId::new("freezer-1"), SensorId::new("freezer-2")],
            field: Some("celsius".into()),
            condition,
            for_duration: Duration::from_secs(60),
            severity: Severity::Critical,
            labels: BTreeMap::from([("room".to_owned(), "lab-2".to_owned())]),
            message: "{{sensor_id}} at {{value}}".into(),
            revision: 3,
            updated_at: Timestamp::from_micros(1_795_428_000_000_000),
        }
    }

    fn every_condition() -> Vec<AlertCondition> {
        vec![
            AlertCondition::Above {
                threshold: -18.0,
                recovery: Some(-20.0),
            },
            AlertCondition::Below {
                threshold: 2.0,
                recovery: None,
            },
            AlertCondition::Outside {
                low: 18.0,
                high: 24.0,
                recovery_low: Some(18.5),
                recovery_high: None,
            },
            AlertCondition::Inside {
                low: 0.0,
                high: 1.0,
                recovery_low: None,
                recovery_high: Some(1.5),
            },
            AlertCondition::RateOfChange {
                threshold: 0.5,
                recovery: Some(0.1),
            },
            AlertCondition::Absent {
                after: Duration::from_secs(300),
            },
        ]
    }

    #[test]
    fn rules_of_every_condition_round_trip() {
        let codec = Codec::new();
        for condition in every_condition() {
            let mut r = rule(condition);
            if matches!(r.condition, AlertCondition::Absent { .. }) {
                r.field = None;
            }
            let bytes = codec.encode(&r).unwrap();
            assert_eq!(codec.decode::<AlertRule>(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn a_rule_of_an_unknown_kind_is_refused_with_a_clear_error() {
        let codec = Codec::new();
        let writer = codec.writer_schema(AlertRule::NAME).unwrap();
        let mut value = rule(every_condition().remove(0)).to_avro();
        if let Value::Record(fields) = &mut value {
            for (name, v) in fields.iter_mut() {
                if name == "condition"
                    && let Value::Record(c) = v
                {
                    c[0].1 = Value::String("changes".into());
                }
            }
        }
        let body = apache_avro::to_avro_datum(&writer.schema, value).unwrap();
        let mut bytes = vec![0xC3, 0x01];
        bytes.extend_from_slice(&writer.fingerprint.to_le_bytes());
        bytes.extend_from_slice(&body);
        let err = codec.decode::<AlertRule>(&bytes).unwrap_err();
        assert!(err.to_string().contains("newer labstream"), "{err}");
    }

    fn event(status: AlertStatus) -> AlertEvent {
        AlertEvent {
            event_id: "freezer-warm/freezer-1/1".into(),
            sequence: 1,
            status,
            rule_id: RuleId::new("freezer-warm"),
            rule_name: "Freezer too warm".into(),
            rule_revision: 3,
            sensor_id: SensorId::new("freezer-1"),
            sensor_type: SensorType::new("temperature"),
            field: Some("celsius".into()),
            condition: "above".into(),
            value: Some(-12.5),
            threshold: Some(-18.0),
            severity: Severity::Warning,
            labels: BTreeMap::from([("room".to_owned(), "lab-2".to_owned())]),
            message: "freezer-1 at -12.5".into(),
            ts: Timestamp::from_micros(1_795_428_060_000_000),
            since: Timestamp::from_micros(1_795_428_000_000_000),
            emitted_at: Timestamp::from_micros(1_795_428_060_010_000),
        }
    }

    #[test]
    fn events_round_trip() {
        let codec = Codec::new();
        for status in [AlertStatus::Firing, AlertStatus::Resolved] {
            let e = event(status);
            assert_eq!(
                codec
                    .decode::<AlertEvent>(&codec.encode(&e).unwrap())
                    .unwrap(),
                e
            );
        }
        let absent = AlertEvent {
            field: None,
            value: None,
            threshold: None,
            condition: "absent".into(),
            ..event(AlertStatus::Firing)
        };
        assert_eq!(
            codec
                .decode::<AlertEvent>(&codec.encode(&absent).unwrap())
                .unwrap(),
            absent
        );
    }

    #[test]
    fn a_record_of_another_type_is_not_decoded_as_an_alert() {
        let codec = Codec::new();
        let bytes = codec.encode(&event(AlertStatus::Firing)).unwrap();
        let err = codec.decode::<AlertState>(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("not a labstream.AlertState"),
            "{err}"
        );
    }

    fn opt_ts() -> impl Strategy<Value = Option<Timestamp>> {
        proptest::option::of(any::<i64>().prop_map(Timestamp::from_micros))
    }

    proptest! {
        #[test]
        fn any_state_round_trips(
            phase in prop_oneof![Just(AlertPhase::Ok), Just(AlertPhase::Pending), Just(AlertPhase::Firing)],
            since in opt_ts(),
            fired_at in opt_ts(),
            sequence in 0i64..1_000_000,
            last_seen in opt_ts(),
            last_value in proptest::option::of(-1e12f64..1e12),
            last_value_at in opt_ts(),
            last_metric in proptest::option::of(-1e12f64..1e12),
            clock in any::<i64>(),
            watched_since in any::<i64>(),
        ) {
            let codec = Codec::new();
            let s = AlertState {
                rule_id: RuleId::new("r"),
                sensor_id: SensorId::new("s-1"),
                sensor_type: SensorType::new("temperature"),
                phase, since, fired_at, sequence, last_seen, last_value, last_value_at, last_metric,
                clock: Timestamp::from_micros(clock),
                watched_since: Timestamp::from_micros(watched_since),
            };
            prop_assert_eq!(codec.decode::<AlertState>(&codec.encode(&s).unwrap()).unwrap(), s);
        }
    }
}
