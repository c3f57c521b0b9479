//! What makes an alert rule valid, shared by the API (which refuses an invalid rule
//! with 422 before it is stored) and the alerts processor (which compiles what it
//! reads from `alerts.rules`): names, bounds in order, hysteresis on the right side, a
//! numeric field of the sensor type, a message template that parses. Also the JSON
//! form of a rule used by the API and by rule files.

mod condition;
mod definition;
pub mod template;

pub use condition::Condition;
pub use definition::{ConditionDefinition, RuleDefinition};
pub use template::Template;

use crate::{AlertCondition, AlertRule, FieldType, Registry};

/// Longest rule id, sensor id in a rule, and topic name (Kafka allows 249 characters
/// for the whole topic name, prefix included).
const MAX_ID_LEN: usize = 128;
const MAX_TOPIC_LEN: usize = 160;

/// Topic names of `alerts.*` that labstream itself uses.
const RESERVED_TOPICS: &[&str] = &["rules", "state", "deliveries"];

/// Why a rule was refused, in words the person who wrote it understands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("alert rule {rule_id:?} is invalid: {problem}")]
pub struct InvalidRule {
    pub rule_id: String,
    pub problem: String,
}

/// The parts of a valid rule the evaluator needs, with defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedRule {
    pub condition: Condition,
    /// Pending period, microseconds of event time.
    pub for_micros: i64,
    /// The rule's template, or the default message when it has none.
    pub message: Template,
}

/// Checks `wire`. With a registry, the sensor type must exist and the field must be
/// one of its numeric or boolean fields.
pub fn check(wire: &AlertRule, registry: Option<&Registry>) -> Result<CheckedRule, InvalidRule> {
    let id = wire.rule_id.as_str();
    let bad = |problem: String| InvalidRule {
        rule_id: id.to_owned(),
        problem,
    };
    check_id("rule_id", id).map_err(bad)?;
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
    let condition = condition::compile_condition(&wire.condition).map_err(bad)?;
    let for_micros = i64::try_from(wire.for_duration.as_micros()).unwrap_or(i64::MAX);
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
    Ok(CheckedRule {
        condition,
        for_micros,
        message,
    })
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
    if RESERVED_TOPICS.contains(&topic) {
        return Err(format!(
            "topic {topic:?} is taken: alerts.{topic} is labstream's own; choose another name"
        ));
    }
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

/// Whether `topic` (without prefix) is an `alerts.<name>` topic of rules, not
/// `alerts.rules`, `alerts.state` or `alerts.deliveries` (webhook deliveries).
pub fn is_rule_topic(name: &str) -> bool {
    !RESERVED_TOPICS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RuleId, SensorType, Severity, Timestamp};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn wire(topic: &str) -> AlertRule {
        AlertRule {
            rule_id: RuleId::new("r"),
            name: "R".into(),
            topic: topic.into(),
            enabled: true,
            sensor_type: SensorType::new("temperature"),
            sensor_ids: vec![],
            field: Some("celsius".into()),
            condition: AlertCondition::Above {
                threshold: 1.0,
                recovery: None,
            },
            for_duration: Duration::ZERO,
            severity: Severity::Info,
            labels: BTreeMap::new(),
            message: String::new(),
            revision: 1,
            updated_at: Timestamp::from_micros(0),
        }
    }

    #[test]
    fn labstreams_own_topics_cannot_be_a_rule_topic() {
        for topic in ["rules", "state", "deliveries"] {
            let err = check(&wire(topic), None).unwrap_err().to_string();
            assert!(err.contains("is taken"), "{err}");
        }
        assert!(check(&wire("freezers"), Some(&Registry::default_lab())).is_ok());
    }
}
