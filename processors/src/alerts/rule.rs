//! Alert rules as the processor runs them: an `AlertRule` from `alerts.rules`, checked
//! by the rules shared with the API (`labstream_schemas::alert_rule`) and compiled with
//! its defaults filled in and its template parsed.

use crate::error::{Error, Result};
use labstream_schemas::alert_rule::{self, Template};
use labstream_schemas::{
    AlertRule, FieldValue, Registry, RuleId, Sample, SensorId, SensorType, Severity,
};
use std::collections::{BTreeMap, BTreeSet};

pub use labstream_schemas::alert_rule::Condition;

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
        let checked = alert_rule::check(wire, registry)
            .map_err(|e| Error::invalid_rule(&e.rule_id, e.problem))?;
        Ok(Rule {
            id: wire.rule_id.clone(),
            name: wire.name.clone(),
            topic: wire.topic.clone(),
            enabled: wire.enabled,
            sensor_type: wire.sensor_type.clone(),
            sensor_ids: wire.sensor_ids.iter().cloned().collect(),
            field: wire.field.clone(),
            condition: checked.condition,
            for_micros: checked.for_micros,
            severity: wire.severity,
            labels: wire.labels.clone(),
            message: checked.message,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use labstream_schemas::AlertCondition;
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
