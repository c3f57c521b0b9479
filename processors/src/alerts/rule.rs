//! Alert rules as the processor runs them: an `AlertRule` from `alerts.rules`, checked
//! (names, bounds in order, hysteresis on the right side, a numeric field of the
//! sensor type) and compiled with its defaults filled in and its template parsed.

use crate::alerts::error::{Error, Result};
use crate::alerts::template::{self, Template};
use labstream_schemas::{
    AlertCondition, AlertRule, FieldType, FieldValue, Registry, RuleId, Sample, SensorId,
    SensorType, Severity,
};
use std::collections::{BTreeMap, BTreeSet};

/// Longest rule id, sensor id in a rule, and topic name (Kafka allows 249 characters
/// for the whole topic name, prefix included).
const MAX_ID_LEN: usize = 128;
const MAX_TOPIC_LEN: usize = 160;

/// A condition with its defaults applied. Every bound is finite; times are microseconds.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Above {
        threshold: f64,
        recovery: f64,
    },
    Below {
        threshold: f64,
        recovery: f64,
    },
    Outside {
        low: f64,
        high: f64,
        recovery_low: f64,
        recovery_high: f64,
    },
    Inside {
        low: f64,
        high: f64,
        recovery_low: f64,
        recovery_high: f64,
    },
    /// On the absolute change per second between consecutive samples.
    RateOfChange {
        threshold: f64,
        recovery: f64,
    },
    Absent {
        after_micros: i64,
    },
}

impl Condition {
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Above { .. } => "above",
            Condition::Below { .. } => "below",
            Condition::Outside { .. } => "outside",
            Condition::Inside { .. } => "inside",
            Condition::RateOfChange { .. } => "rate_of_change",
            Condition::Absent { .. } => "absent",
        }
    }

    /// Whether `v` makes the rule (start to) fire; with the bound that was crossed.
    pub(crate) fn violated_by(&self, v: f64) -> Option<f64> {
        match *self {
            Condition::Above { threshold, .. } | Condition::RateOfChange { threshold, .. } => {
                (v > threshold).then_some(threshold)
            }
            Condition::Below { threshold, .. } => (v < threshold).then_some(threshold),
            Condition::Outside { low, high, .. } => {
                if v < low {
                    Some(low)
                } else if v > high {
                    Some(high)
                } else {
                    None
                }
            }
            Condition::Inside { low, high, .. } => {
                (low..=high).contains(&v).then(|| nearest(v, low, high))
            }
            Condition::Absent { .. } => None,
        }
    }

    /// Whether `v` resolves a firing rule; with the recovery bound it is at or beyond.
    pub(crate) fn recovered_by(&self, v: f64) -> Option<f64> {
        match *self {
            Condition::Above { recovery, .. } | Condition::RateOfChange { recovery, .. } => {
                (v <= recovery).then_some(recovery)
            }
            Condition::Below { recovery, .. } => (v >= recovery).then_some(recovery),
            Condition::Outside {
                recovery_low,
                recovery_high,
                ..
            } => (recovery_low..=recovery_high)
                .contains(&v)
                .then(|| nearest(v, recovery_low, recovery_high)),
            Condition::Inside {
                recovery_low,
                recovery_high,
                ..
            } => {
                if v < recovery_low {
                    Some(recovery_low)
                } else if v > recovery_high {
                    Some(recovery_high)
                } else {
                    None
                }
            }
            Condition::Absent { .. } => None,
        }
    }
}

fn nearest(v: f64, low: f64, high: f64) -> f64 {
    if (v - low).abs() <= (high - v).abs() {
        low
    } else {
        high
    }
}

/// A rule ready to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub id: RuleId,
    pub name: String,
    /// The `<name>` of `alerts.<name>`.
    pub topic: String,
    pub enabled: bool,
    pub sensor_type: SensorType,
    /// Empty = every sensor of the type.
    pub sensor_ids: BTreeSet<SensorId>,
    pub field: Option<String>,
    pub condition: Condition,
    /// Pending period, microseconds of event time.
    pub for_micros: i64,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub message: Template,
    pub revision: i64,
}

impl Rule {
    /// Checks `wire` and compiles it. With a registry, the sensor type must exist and
    /// the field must be one of its numeric or boolean fields.
    pub fn compile(wire: &AlertRule, registry: Option<&Registry>) -> Result<Self> {
        let id = wire.rule_id.as_str();
        let bad = |problem: String| Error::invalid_rule(id, problem);
        check_id("rule_id", id).map_err(|p| Error::invalid_rule(id, p))?;
        if wire.name.trim().is_empty() {
            return Err(bad(
                "name is empty; give the rule a name people recognise".into()
            ));
        }
        check_topic(&wire.topic).map_err(bad)?;
        if wire.sensor_type.as_str().is_empty() {
            return Err(bad("sensor_type is empty".into()));
        }
        for sensor in &wire.sensor_ids {
            check_id("sensor id", sensor.as_str()).map_err(bad)?;
        }
        let absent = matches!(wire.condition, AlertCondition::Absent { .. });
        match (&wire.field, absent) {
            (Some(_), true) => {
                return Err(bad(
                    "an absent rule watches whole samples; leave field empty".into(),
                ));
            }
            (None, false) => {
                return Err(bad(format!(
                    "a {} rule needs the field it tests",
                    wire.condition.kind()
                )));
            }
            (Some(f), false) if f.is_empty() => return Err(bad("field is empty".into())),
            _ => {}
        }
        if let Some(registry) = registry {
            let spec = registry.get(wire.sensor_type.as_str()).ok_or_else(|| {
                bad(format!(
                    "sensor type {:?} is not in the registry (known: {})",
                    wire.sensor_type.as_str(),
                    registry
                        .types()
                        .map(|(t, _)| t)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if let Some(field) = &wire.field {
                let field_spec = spec.fields.get(field).ok_or_else(|| {
                    bad(format!(
                        "sensor type {} has no field {field:?} (fields: {})",
                        wire.sensor_type,
                        spec.fields.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                })?;
                if field_spec.field_type == FieldType::String {
                    return Err(bad(format!(
                        "field {field:?} holds text; a rule needs a number or a boolean"
                    )));
                }
            }
        }
        let condition = compile_condition(&wire.condition).map_err(bad)?;
        let for_micros = micros(wire.for_duration);
        if absent && for_micros > 0 {
            return Err(bad(
                "an absent rule already waits its `after` period; set `for` to 0".into(),
            ));
        }
        let message = if wire.message.trim().is_empty() {
            template::default_for(absent)
        } else {
            Template::parse(&wire.message).map_err(bad)?
        };
        Ok(Rule {
            id: wire.rule_id.clone(),
            name: wire.name.clone(),
            topic: wire.topic.clone(),
            enabled: wire.enabled,
            sensor_type: wire.sensor_type.clone(),
            sensor_ids: wire.sensor_ids.iter().cloned().collect(),
            field: wire.field.clone(),
            condition,
            for_micros,
            severity: wire.severity,
            labels: wire.labels.clone(),
            message,
            revision: wire.revision,
        })
    }

    pub fn is_absent(&self) -> bool {
        matches!(self.condition, Condition::Absent { .. })
    }

    /// Whether the rule watches this sensor.
    pub fn watches(&self, sensor_type: &SensorType, sensor_id: &SensorId) -> bool {
        self.enabled
            && self.sensor_type == *sensor_type
            && (self.sensor_ids.is_empty() || self.sensor_ids.contains(sensor_id))
    }

    /// The rule's field in `sample` as a number (booleans are 0/1); `None` when the
    /// sample lacks it or it is text or not finite.
    pub fn value_of(&self, sample: &Sample) -> Option<f64> {
        let v = match sample.values.get(self.field.as_deref()?)? {
            FieldValue::Double(v) => *v,
            FieldValue::Long(v) => *v as f64,
            FieldValue::Bool(b) => f64::from(u8::from(*b)),
            FieldValue::Str(_) => return None,
        };
        v.is_finite().then_some(v)
    }
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("{what} is longer than {MAX_ID_LEN} characters"));
    }
    if id.contains('/') || id.chars().any(char::is_control) {
        return Err(format!("{what} {id:?} contains '/' or a control character"));
    }
    Ok(())
}

fn check_topic(topic: &str) -> Result<(), String> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !topic.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "topic {topic:?} cannot name a Kafka topic alerts.<topic>: use 1 to {MAX_TOPIC_LEN} letters, digits, '.', '_' or '-'"
        ))
    }
}

fn finite(name: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{name} must be a finite number, not {v}"))
    }
}

fn compile_condition(c: &AlertCondition) -> Result<Condition, String> {
    Ok(match *c {
        AlertCondition::Above {
            threshold,
            recovery,
        } => {
            let threshold = finite("threshold", threshold)?;
            let recovery = finite("recovery", recovery.unwrap_or(threshold))?;
            if recovery > threshold {
                return Err(format!(
                    "recovery {recovery} is above the threshold {threshold}: an above rule recovers at or below its threshold"
                ));
            }
            Condition::Above {
                threshold,
                recovery,
            }
        }
        AlertCondition::Below {
            threshold,
            recovery,
        } => {
            let threshold = finite("threshold", threshold)?;
            let recovery = finite("recovery", recovery.unwrap_or(threshold))?;
            if recovery < threshold {
                return Err(format!(
                    "recovery {recovery} is below the threshold {threshold}: a below rule recovers at or above its threshold"
                ));
            }
            Condition::Below {
                threshold,
                recovery,
            }
        }
        AlertCondition::RateOfChange {
            threshold,
            recovery,
        } => {
            let threshold = finite("threshold", threshold)?;
            if threshold <= 0.0 {
                return Err(format!(
                    "threshold {threshold} of a rate_of_change rule must be above 0 (change per second, either direction)"
                ));
            }
            let recovery = finite("recovery", recovery.unwrap_or(threshold))?;
            if !(0.0..=threshold).contains(&recovery) {
                return Err(format!(
                    "recovery {recovery} must be between 0 and the threshold {threshold}"
                ));
            }
            Condition::RateOfChange {
                threshold,
                recovery,
            }
        }
        AlertCondition::Outside {
            low,
            high,
            recovery_low,
            recovery_high,
        } => {
            let (low, high) = range(low, high)?;
            let recovery_low = finite("recovery_low", recovery_low.unwrap_or(low))?;
            let recovery_high = finite("recovery_high", recovery_high.unwrap_or(high))?;
            if !(low <= recovery_low && recovery_low <= recovery_high && recovery_high <= high) {
                return Err(format!(
                    "the recovery range [{recovery_low}, {recovery_high}] must lie within [{low}, {high}]: an outside rule recovers back inside its range"
                ));
            }
            Condition::Outside {
                low,
                high,
                recovery_low,
                recovery_high,
            }
        }
        AlertCondition::Inside {
            low,
            high,
            recovery_low,
            recovery_high,
        } => {
            let (low, high) = range(low, high)?;
            let recovery_low = finite("recovery_low", recovery_low.unwrap_or(low))?;
            let recovery_high = finite("recovery_high", recovery_high.unwrap_or(high))?;
            if !(recovery_low <= low && high <= recovery_high) {
                return Err(format!(
                    "the recovery range [{recovery_low}, {recovery_high}] must contain [{low}, {high}]: an inside rule recovers once the value leaves the wider range"
                ));
            }
            Condition::Inside {
                low,
                high,
                recovery_low,
                recovery_high,
            }
        }
        AlertCondition::Absent { after } => {
            let after_micros = micros(after);
            if after_micros <= 0 {
                return Err("an absent rule needs an `after` period above 0".into());
            }
            Condition::Absent { after_micros }
        }
    })
}

fn range(low: f64, high: f64) -> Result<(f64, f64), String> {
    let low = finite("low", low)?;
    let high = finite("high", high)?;
    if low > high {
        return Err(format!("low {low} is above high {high}"));
    }
    Ok((low, high))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use labstream_schemas::Timestamp;
    use std::time::Duration;

    pub(crate) fn wire(condition: AlertCondition) -> AlertRule {
        let absent = matches!(condition, AlertCondition::Absent { .. });
        AlertRule {
            rule_id: RuleId::new("freezer-warm"),
            name: "Freezer too warm".into(),
            topic: "freezers".into(),
            enabled: true,
            sensor_type: SensorType::new("temperature"),
            sensor_ids: vec![],
            field: (!absent).then(|| "celsius".to_owned()),
            condition,
            for_duration: Duration::ZERO,
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            message: String::new(),
            revision: 1,
            updated_at: Timestamp::from_micros(0),
        }
    }

    fn above(threshold: f64, recovery: Option<f64>) -> AlertCondition {
        AlertCondition::Above {
            threshold,
            recovery,
        }
    }

    fn problem(wire: &AlertRule) -> String {
        Rule::compile(wire, Some(&Registry::default_lab()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_are_filled_in() {
        let rule =
            Rule::compile(&wire(above(-18.0, None)), Some(&Registry::default_lab())).unwrap();
        assert_eq!(
            rule.condition,
            Condition::Above {
                threshold: -18.0,
                recovery: -18.0
            }
        );
        let outside = AlertCondition::Outside {
            low: 18.0,
            high: 24.0,
            recovery_low: Some(19.0),
            recovery_high: None,
        };
        assert_eq!(
            Rule::compile(&wire(outside), None).unwrap().condition,
            Condition::Outside {
                low: 18.0,
                high: 24.0,
                recovery_low: 19.0,
                recovery_high: 24.0
            }
        );
    }

    #[test]
    fn hysteresis_on_the_wrong_side_is_refused() {
        let err = problem(&wire(above(-18.0, Some(-10.0))));
        assert!(
            err.contains("alert rule \"freezer-warm\" is invalid"),
            "{err}"
        );
        assert!(err.contains("recovers at or below its threshold"), "{err}");
        let err = problem(&wire(AlertCondition::Below {
            threshold: 5.0,
            recovery: Some(4.0),
        }));
        assert!(err.contains("recovers at or above"), "{err}");
        let err = problem(&wire(AlertCondition::Outside {
            low: 18.0,
            high: 24.0,
            recovery_low: Some(17.0),
            recovery_high: None,
        }));
        assert!(err.contains("must lie within [18, 24]"), "{err}");
        let err = problem(&wire(AlertCondition::Inside {
            low: 18.0,
            high: 24.0,
            recovery_low: Some(19.0),
            recovery_high: None,
        }));
        assert!(err.contains("must contain [18, 24]"), "{err}");
        let err = problem(&wire(AlertCondition::Inside {
            low: 24.0,
            high: 18.0,
            recovery_low: None,
            recovery_high: None,
        }));
        assert!(err.contains("low 24 is above high 18"), "{err}");
        let err = problem(&wire(AlertCondition::RateOfChange {
            threshold: 0.0,
            recovery: None,
        }));
        assert!(err.contains("must be above 0"), "{err}");
        let err = problem(&wire(above(f64::NAN, None)));
        assert!(err.contains("finite"), "{err}");
    }

    #[test]
    fn fields_and_types_are_checked_against_the_registry() {
        let mut w = wire(above(1.0, None));
        w.field = Some("fahrenheit".into());
        let err = problem(&w);
        assert!(
            err.contains("has no field \"fahrenheit\" (fields: celsius)"),
            "{err}"
        );
        w.sensor_type = SensorType::new("fridge");
        let err = problem(&w);
        assert!(err.contains("not in the registry"), "{err}");
        // Without a registry, the shape is still checked but any field goes.
        assert!(Rule::compile(&w, None).is_ok());
        let mut door = wire(above(0.5, None));
        door.sensor_type = SensorType::new("door");
        door.field = Some("open".into());
        assert!(Rule::compile(&door, Some(&Registry::default_lab())).is_ok());
    }

    #[test]
    fn names_ids_and_topics_are_checked() {
        let mut w = wire(above(1.0, None));
        w.topic = "freezers/lab 2".into();
        assert!(problem(&w).contains("cannot name a Kafka topic"));
        let mut w = wire(above(1.0, None));
        w.rule_id = RuleId::new("a/b");
        assert!(problem(&w).contains("contains '/'"));
        let mut w = wire(above(1.0, None));
        w.name = " ".into();
        assert!(problem(&w).contains("name is empty"));
        let mut w = wire(above(1.0, None));
        w.sensor_ids = vec![SensorId::new("")];
        assert!(problem(&w).contains("sensor id is empty"));
        let mut w = wire(above(1.0, None));
        w.message = "{{valu}}".into();
        assert!(problem(&w).contains("unknown variable {{valu}}"));
    }

    #[test]
    fn absent_rules_take_no_field_and_no_for() {
        let absent = AlertCondition::Absent {
            after: Duration::from_secs(300),
        };
        let mut w = wire(absent.clone());
        assert!(
            Rule::compile(&w, Some(&Registry::default_lab()))
                .unwrap()
                .is_absent()
        );
        w.for_duration = Duration::from_secs(1);
        assert!(problem(&w).contains("set `for` to 0"));
        let mut w = wire(absent);
        w.field = Some("celsius".into());
        assert!(problem(&w).contains("leave field empty"));
        let mut w = wire(above(1.0, None));
        w.field = None;
        assert!(problem(&w).contains("needs the field it tests"));
        let w = wire(AlertCondition::Absent {
            after: Duration::ZERO,
        });
        assert!(problem(&w).contains("above 0"));
    }

    #[test]
    fn values_are_read_as_numbers() {
        let mut door = wire(above(0.5, None));
        door.field = Some("open".into());
        let rule = Rule::compile(&door, None).unwrap();
        let mut sample = Sample {
            sensor_id: SensorId::new("door-3"),
            sensor_type: SensorType::new("door"),
            ts: Timestamp::from_micros(0),
            seq: None,
            values: BTreeMap::from([("open".to_owned(), FieldValue::Bool(true))]),
            tags: BTreeMap::new(),
            received_at: Timestamp::from_micros(0),
        };
        assert_eq!(rule.value_of(&sample), Some(1.0));
        sample.values.insert("open".into(), FieldValue::Long(7));
        assert_eq!(rule.value_of(&sample), Some(7.0));
        sample
            .values
            .insert("open".into(), FieldValue::Str("yes".into()));
        assert_eq!(rule.value_of(&sample), None);
        sample.values.clear();
        assert_eq!(rule.value_of(&sample), None);
    }

    #[test]
    fn a_rule_watches_its_type_and_listed_sensors() {
        let mut w = wire(above(1.0, None));
        let t = SensorType::new("temperature");
        let rule = Rule::compile(&w, None).unwrap();
        assert!(rule.watches(&t, &SensorId::new("any")));
        assert!(!rule.watches(&SensorType::new("co2"), &SensorId::new("any")));
        w.sensor_ids = vec![SensorId::new("freezer-1")];
        let rule = Rule::compile(&w, None).unwrap();
        assert!(rule.watches(&t, &SensorId::new("freezer-1")));
        assert!(!rule.watches(&t, &SensorId::new("freezer-2")));
        w.enabled = false;
        assert!(
            !Rule::compile(&w, None)
                .unwrap()
                .watches(&t, &SensorId::new("freezer-1"))
        );
    }
}
