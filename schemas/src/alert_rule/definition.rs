//! The JSON (and TOML) form of an alert rule as people write it: in API requests and
//! rule files. Durations are humantime (`"5m"`), the condition is tagged by `kind`.
//! The server adds `revision` and `updated_at` when it stores the rule.

use crate::{AlertCondition, AlertRule, RuleId, SensorId, SensorType, Severity, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A rule as written by a person, e.g.
/// `{"rule_id": "freezer-warm", "name": "Freezer too warm", "topic": "freezers",
/// "sensor_type": "temperature", "field": "celsius",
/// "condition": {"kind": "above", "threshold": -18, "recovery": -20}, "for": "1m",
/// "severity": "critical"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDefinition {
    /// Required on create; a replace (`PUT .../{id}`) takes it from the path.
    #[serde(default)]
    pub rule_id: String,
    pub name: String,
    /// `<name>` of the `alerts.<name>` topic the events go to.
    pub topic: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
    pub sensor_type: String,
    /// Empty: every sensor of the type. For absent rules, the sensors expected to report.
    #[serde(default)]
    pub sensor_ids: Vec<String>,
    /// The field tested; none for absent rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub condition: ConditionDefinition,
    /// Pending period: the condition must hold this long before the rule fires.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_duration: Duration,
    #[serde(default = "warning")]
    pub severity: Severity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Message template (`{{sensor_id}}`, `{{value}}`, `{{labels.room}}`, ...); empty = default.
    #[serde(default)]
    pub message: String,
}

fn enabled() -> bool {
    true
}

fn warning() -> Severity {
    Severity::Warning
}

/// The condition of a rule, tagged by `kind`; `recovery*` default to the firing bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConditionDefinition {
    Above {
        threshold: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovery: Option<f64>,
    },
    Below {
        threshold: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovery: Option<f64>,
    },
    Outside {
        low: f64,
        high: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovery_low: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovery_high: Option<f64>,
    },
    Inside {
        low: f64,
        high: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovery_low: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovery_high: Option<f64>,
    },
    RateOfChange {
        threshold: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovery: Option<f64>,
    },
    Absent {
        #[serde(with = "humantime_serde")]
        after: Duration,
    },
}

impl From<&ConditionDefinition> for AlertCondition {
    fn from(c: &ConditionDefinition) -> Self {
        match *c {
            ConditionDefinition::Above {
                threshold,
                recovery,
            } => AlertCondition::Above {
                threshold,
                recovery,
            },
            ConditionDefinition::Below {
                threshold,
                recovery,
            } => AlertCondition::Below {
                threshold,
                recovery,
            },
            ConditionDefinition::Outside {
                low,
                high,
                recovery_low,
                recovery_high,
            } => AlertCondition::Outside {
                low,
                high,
                recovery_low,
                recovery_high,
            },
            ConditionDefinition::Inside {
                low,
                high,
                recovery_low,
                recovery_high,
            } => AlertCondition::Inside {
                low,
                high,
                recovery_low,
                recovery_high,
            },
            ConditionDefinition::RateOfChange {
                threshold,
                recovery,
            } => AlertCondition::RateOfChange {
                threshold,
                recovery,
            },
            ConditionDefinition::Absent { after } => AlertCondition::Absent { after },
        }
    }
}

impl From<&AlertCondition> for ConditionDefinition {
    fn from(c: &AlertCondition) -> Self {
        match *c {
            AlertCondition::Above {
                threshold,
                recovery,
            } => ConditionDefinition::Above {
                threshold,
                recovery,
            },
            AlertCondition::Below {
                threshold,
                recovery,
            } => ConditionDefinition::Below {
                threshold,
                recovery,
            },
            AlertCondition::Outside {
                low,
                high,
                recovery_low,
                recovery_high,
            } => ConditionDefinition::Outside {
                low,
                high,
                recovery_low,
                recovery_high,
            },
            AlertCondition::Inside {
                low,
                high,
                recovery_low,
                recovery_high,
            } => ConditionDefinition::Inside {
                low,
                high,
                recovery_low,
                recovery_high,
            },
            AlertCondition::RateOfChange {
                threshold,
                recovery,
            } => ConditionDefinition::RateOfChange {
                threshold,
                recovery,
            },
            AlertCondition::Absent { after } => ConditionDefinition::Absent { after },
        }
    }
}

impl RuleDefinition {
    /// The stored record of this definition at `revision`.
    pub fn to_wire(&self, revision: i64, updated_at: Timestamp) -> AlertRule {
        AlertRule {
            rule_id: RuleId::new(self.rule_id.clone()),
            name: self.name.clone(),
            topic: self.topic.clone(),
            enabled: self.enabled,
            sensor_type: SensorType::new(self.sensor_type.clone()),
            sensor_ids: self.sensor_ids.iter().cloned().map(SensorId::new).collect(),
            field: self.field.clone(),
            condition: AlertCondition::from(&self.condition),
            for_duration: self.for_duration,
            severity: self.severity,
            labels: self.labels.clone(),
            message: self.message.clone(),
            revision,
            updated_at,
        }
    }

    pub fn from_wire(rule: &AlertRule) -> Self {
        Self {
            rule_id: rule.rule_id.as_str().to_owned(),
            name: rule.name.clone(),
            topic: rule.topic.clone(),
            enabled: rule.enabled,
            sensor_type: rule.sensor_type.as_str().to_owned(),
            sensor_ids: rule
                .sensor_ids
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            field: rule.field.clone(),
            condition: ConditionDefinition::from(&rule.condition),
            for_duration: rule.for_duration,
            severity: rule.severity,
            labels: rule.labels.clone(),
            message: rule.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_as_people_write_it_reads_with_defaults() {
        let def: RuleDefinition = serde_json::from_str(
            r#"{"rule_id": "freezer-warm", "name": "Freezer too warm", "topic": "freezers",
                "sensor_type": "temperature", "field": "celsius",
                "condition": {"kind": "above", "threshold": -18, "recovery": -20}, "for": "1m"}"#,
        )
        .unwrap();
        assert!(def.enabled);
        assert_eq!(def.severity, Severity::Warning);
        assert_eq!(def.for_duration, Duration::from_secs(60));
        let wire = def.to_wire(2, Timestamp::from_micros(0));
        assert_eq!(
            wire.condition,
            AlertCondition::Above {
                threshold: -18.0,
                recovery: Some(-20.0)
            }
        );
        assert_eq!(RuleDefinition::from_wire(&wire), def);
        let json = serde_json::to_value(&def).unwrap();
        assert_eq!(json["for"], "1m");
        assert_eq!(json["condition"]["kind"], "above");
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        let err = serde_json::from_str::<RuleDefinition>(
            r#"{"name": "x", "topic": "t", "sensor_type": "door", "condition": {"kind": "changes"}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `changes`"),
            "{err}"
        );
        let err = serde_json::from_str::<RuleDefinition>(
            r#"{"name": "x", "topic": "t", "sensor_type": "door", "treshold": 1,
                "condition": {"kind": "absent", "after": "5m"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("treshold"), "{err}");
    }
}
