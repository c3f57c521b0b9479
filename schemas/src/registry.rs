//! The sensor-type registry: which sensor types exist and which typed fields each one
//! reports. Ingest validates against it, the lake derives one typed table per sensor
//! type from it, and MongoDB gets one collection per type.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

const DEFAULT_REGISTRY: &str = include_str!("../registry/default.sensors.json");

/// Column names the lake and MongoDB use for the sample envelope; a field may not take one.
pub(crate) const RESERVED_NAMES: &[&str] = &[
    "sensor_id",
    "sensor_type",
    "ts",
    "seq",
    "tags",
    "received_at",
    "values",
    "date",
    "experiment",
    "experiment_id",
    "recording_id",
    "participant",
    "task",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    sensor_types: BTreeMap<String, SensorTypeSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorTypeSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub fields: BTreeMap<String, FieldSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Double,
    Long,
    Boolean,
    String,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Double => "double",
            FieldType::Long => "long",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
        }
    }
}

impl Registry {
    /// The registry shipped with labstream: a typical lab (temperature, humidity, co2,
    /// door, power, accelerometer, thermocouple). Used when none is configured.
    pub fn default_lab() -> Self {
        Self::from_json_str("built-in default.sensors.json", DEFAULT_REGISTRY)
            .expect("the built-in registry is valid")
    }

    pub fn load(path: &Path) -> Result<Self> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Registry {
            origin: origin.clone(),
            detail: format!("cannot read the file: {e}"),
        })?;
        Self::from_json_str(&origin, &text)
    }

    pub fn from_json_str(origin: &str, text: &str) -> Result<Self> {
        let registry: Registry = serde_json::from_str(text).map_err(|e| Error::Registry {
            origin: origin.to_owned(),
            detail: e.to_string(),
        })?;
        registry.validate(origin)?;
        Ok(registry)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let fail = |detail: String| {
            Err(Error::Registry {
                origin: origin.to_owned(),
                detail,
            })
        };
        if self.sensor_types.is_empty() {
            return fail("no sensor types are defined".into());
        }
        for (name, spec) in &self.sensor_types {
            if !is_identifier(name) || name.chars().any(|c| c.is_ascii_uppercase()) {
                return fail(format!(
                    "sensor type {name:?} must be lower-case letters, digits and '_' and start with a letter (it names a table and a collection)"
                ));
            }
            if spec.fields.is_empty() {
                return fail(format!("sensor type {name:?} has no fields"));
            }
            for field in spec.fields.keys() {
                if !is_identifier(field) {
                    return fail(format!(
                        "field {field:?} of {name:?} must be letters, digits and '_' and start with a letter"
                    ));
                }
                if RESERVED_NAMES.contains(&field.as_str()) {
                    return fail(format!(
                        "field {field:?} of {name:?} is reserved for the sample envelope; rename it"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, sensor_type: &str) -> Option<&SensorTypeSpec> {
        self.sensor_types.get(sensor_type)
    }

    /// Sensor types in name order.
    pub fn types(&self) -> impl Iterator<Item = (&str, &SensorTypeSpec)> {
        self.sensor_types.iter().map(|(k, v)| (k.as_str(), v))
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_registry_describes_a_typical_lab() {
        let r = Registry::default_lab();
        let names: Vec<_> = r.types().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "accelerometer",
                "co2",
                "door",
                "humidity",
                "power",
                "temperature",
                "thermocouple"
            ]
        );
        assert_eq!(
            r.get("door").unwrap().fields["open"].field_type,
            FieldType::Boolean
        );
        assert_eq!(r.get("accelerometer").unwrap().fields.len(), 3);
        assert_eq!(
            r.get("temperature").unwrap().fields["celsius"]
                .unit
                .as_deref(),
            Some("°C")
        );
    }

    #[test]
    fn invalid_registries_are_refused_with_the_reason() {
        let err = Registry::from_json_str(
            "t",
            r#"{"sensor_types": {"Bad Name": {"fields": {"x": {"type": "double"}}}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("Bad Name"), "{err}");
        let err = Registry::from_json_str(
            "t",
            r#"{"sensor_types": {"t": {"fields": {"ts": {"type": "double"}}}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        let err = Registry::from_json_str(
            "t",
            r#"{"sensor_types": {"t": {"fields": {"x": {"type": "float"}}}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
        let err = Registry::from_json_str("t", r#"{"sensor_types": {}, "extra": 1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
