//! Message templates of alert rules: text with `{{ variable }}` placeholders, parsed
//! when the rule is loaded (so a typo is refused with the rule, not discovered when it
//! fires) and rendered from the alert event.

use crate::AlertEvent;
use std::fmt::Write as _;

/// The variables a template may use; `labels.<name>` reads one label.
pub const VARIABLES: &[&str] = &[
    "rule",
    "rule_id",
    "sensor_id",
    "sensor_type",
    "field",
    "condition",
    "status",
    "value",
    "threshold",
    "severity",
    "ts",
    "since",
];

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Var(Var),
}

#[derive(Clone, Debug, PartialEq)]
enum Var {
    Named(&'static str),
    Label(String),
}

/// A parsed message template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; the error says which placeholder is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "message template: '{{{{' at byte {} is not closed by '}}}}'",
                    text.len() - rest.len() + open
                )
            })?;
            let name = after[..close].trim();
            let var = if let Some(label) = name.strip_prefix("labels.") {
                if label.is_empty() {
                    return Err("message template: {{labels.}} needs a label name".into());
                }
                Var::Label(label.to_owned())
            } else if let Some(known) = VARIABLES.iter().find(|v| **v == name) {
                Var::Named(known)
            } else {
                return Err(format!(
                    "message template: unknown variable {{{{{name}}}}}; use one of {}, or labels.<name>",
                    VARIABLES.join(", ")
                ));
            };
            parts.push(Part::Var(var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Renders the template from `event` (its `message` is not read). A missing value
    /// (an absent rule has none) renders as `n/a`, an unknown label as empty text.
    pub fn render(&self, event: &AlertEvent) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(Var::Label(name)) => {
                    out.push_str(event.labels.get(name).map_or("", String::as_str));
                }
                Part::Var(Var::Named(name)) => {
                    let _ = match *name {
                        "rule" => write!(out, "{}", event.rule_name),
                        "rule_id" => write!(out, "{}", event.rule_id),
                        "sensor_id" => write!(out, "{}", event.sensor_id),
                        "sensor_type" => write!(out, "{}", event.sensor_type),
                        "field" => write!(out, "{}", event.field.as_deref().unwrap_or("n/a")),
                        "condition" => write!(out, "{}", event.condition),
                        "status" => write!(out, "{}", event.status),
                        "value" => write!(out, "{}", number(event.value)),
                        "threshold" => write!(out, "{}", number(event.threshold)),
                        "severity" => write!(out, "{}", event.severity),
                        "ts" => write!(out, "{}", event.ts),
                        "since" => write!(out, "{}", event.since),
                        _ => Ok(()),
                    };
                }
            }
        }
        out
    }
}

/// A number as people read it: at most 6 decimals, no trailing zeros.
fn number(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_owned(),
        Some(v) => {
            let rounded = (v * 1e6).round() / 1e6;
            if rounded.is_finite() {
                format!("{rounded}")
            } else {
                format!("{v}")
            }
        }
    }
}

/// The message of a rule without a template.
pub fn default_for(absent: bool) -> Template {
    let text = if absent {
        "{{rule}} {{status}}: {{sensor_id}} sent nothing since {{since}}"
    } else {
        "{{rule}} {{status}}: {{sensor_id}} {{field}} = {{value}} ({{condition}} {{threshold}})"
    };
    Template::parse(text).expect("the default templates are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlertStatus, RuleId, SensorId, SensorType, Severity, Timestamp};
    use std::collections::BTreeMap;

    fn event() -> AlertEvent {
        AlertEvent {
            event_id: "r/s/1".into(),
            sequence: 1,
            status: AlertStatus::Firing,
            rule_id: RuleId::new("freezer-warm"),
            rule_name: "Freezer too warm".into(),
            rule_revision: 1,
            sensor_id: SensorId::new("freezer-1"),
            sensor_type: SensorType::new("temperature"),
            field: Some("celsius".into()),
            condition: "above".into(),
            value: Some(-12.3 - 1e-12),
            threshold: Some(-18.0),
            severity: Severity::Critical,
            labels: BTreeMap::from([("room".to_owned(), "lab-2".to_owned())]),
            message: String::new(),
            ts: Timestamp::from_micros(1_795_428_060_000_000),
            since: Timestamp::from_micros(1_795_428_000_000_000),
            emitted_at: Timestamp::from_micros(0),
        }
    }

    #[test]
    fn renders_variables_labels_and_numbers_for_people() {
        let t = Template::parse(
            "[{{severity}}] {{ sensor_id }} in {{labels.room}} is {{value}}°C (limit {{threshold}}) since {{since}}{{labels.none}}",
        )
        .unwrap();
        assert_eq!(
            t.render(&event()),
            "[critical] freezer-1 in lab-2 is -12.3°C (limit -18) since 2026-11-23T10:00:00Z"
        );
    }

    #[test]
    fn default_messages_read_well() {
        assert_eq!(
            default_for(false).render(&event()),
            "Freezer too warm firing: freezer-1 celsius = -12.3 (above -18)"
        );
        let absent = AlertEvent {
            field: None,
            value: None,
            threshold: None,
            condition: "absent".into(),
            ..event()
        };
        assert_eq!(
            default_for(true).render(&absent),
            "Freezer too warm firing: freezer-1 sent nothing since 2026-11-23T10:00:00Z"
        );
    }

    #[test]
    fn text_without_placeholders_is_kept_as_is() {
        assert_eq!(
            Template::parse("plain {text}").unwrap().render(&event()),
            "plain {text}"
        );
        assert_eq!(Template::parse("").unwrap().render(&event()), "");
    }

    #[test]
    fn mistakes_are_refused_with_what_to_do() {
        let err = Template::parse("{{sensor}} is hot").unwrap_err();
        assert!(err.contains("unknown variable {{sensor}}"), "{err}");
        assert!(err.contains("sensor_id"), "{err}");
        let err = Template::parse("value {{value").unwrap_err();
        assert!(err.contains("not closed"), "{err}");
        assert!(Template::parse("{{labels.}}").is_err());
    }
}
