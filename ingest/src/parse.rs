//! JSON sample parsing and validation against the sensor-type registry. Pure: no I/O,
//! so every rule has a unit test.

use crate::error::{Error, Rejection, Result};
use chrono::DateTime;
use labstream_schemas::{FieldType, FieldValue, Registry, Sample, SensorId, SensorType, Timestamp};
use serde::Deserialize;
use std::collections::BTreeMap;

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
    fn to_micros(self, value: i64) -> Option<i64> {
        match self {
            Precision::S => value.checked_mul(1_000_000),
            Precision::Ms => value.checked_mul(1_000),
            Precision::Us => Some(value),
            Precision::Ns => Some(value.div_euclid(1_000)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleJson {
    sensor_id: String,
    sensor_type: String,
    ts: serde_json::Value,
    #[serde(default)]
    seq: Option<i64>,
    values: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// Parses a body of one JSON sample, a JSON array of samples, or NDJSON (`ndjson`),
/// validates each against `registry`, and stamps `received_at`. Any invalid sample
/// fails the whole request with the index and reason of every rejected one.
pub fn parse_json_samples(
    body: &[u8],
    ndjson: bool,
    precision: Precision,
    registry: &Registry,
    received_at: Timestamp,
) -> Result<Vec<Sample>> {
    let documents: Vec<serde_json::Value> = if ndjson {
        let mut docs = Vec::new();
        for (line_no, line) in body.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            docs.push(
                serde_json::from_slice(line)
                    .map_err(|e| Error::InvalidJson(format!("line {}: {e}", line_no + 1)))?,
            );
        }
        docs
    } else {
        match serde_json::from_slice(body).map_err(|e| Error::InvalidJson(e.to_string()))? {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        }
    };
    if documents.is_empty() {
        return Err(Error::Empty);
    }
    let total = documents.len();
    let mut samples = Vec::with_capacity(total);
    let mut rejected = Vec::new();
    for (index, doc) in documents.into_iter().enumerate() {
        match to_sample(doc, precision, registry, received_at) {
            Ok(s) => samples.push(s),
            Err(reason) => rejected.push(Rejection { index, reason }),
        }
    }
    if rejected.is_empty() {
        Ok(samples)
    } else {
        Err(Error::InvalidSamples { total, rejected })
    }
}

fn to_sample(
    doc: serde_json::Value,
    precision: Precision,
    registry: &Registry,
    received_at: Timestamp,
) -> std::result::Result<Sample, String> {
    if !doc.is_object() {
        return Err(format!(
            "a sample must be a JSON object, got {}",
            json_kind(&doc)
        ));
    }
    let input: SampleJson = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    if input.sensor_id.trim().is_empty() {
        return Err("sensor_id must not be empty".into());
    }
    if input.sensor_id.len() > 256 {
        return Err("sensor_id is longer than 256 bytes".into());
    }
    let Some(spec) = registry.get(&input.sensor_type) else {
        let known: Vec<&str> = registry.types().map(|(n, _)| n).collect();
        return Err(format!(
            "unknown sensor_type {:?}; the registry knows: {}",
            input.sensor_type,
            known.join(", ")
        ));
    };
    let ts = parse_ts(&input.ts, precision)?;
    if input.values.is_empty() {
        return Err("values must hold at least one field".into());
    }
    let mut values = BTreeMap::new();
    for (name, value) in input.values {
        let Some(field) = spec.fields.get(&name) else {
            let known: Vec<&str> = spec.fields.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown field {name:?} for sensor_type {:?}; its fields are: {}",
                input.sensor_type,
                known.join(", ")
            ));
        };
        let typed = match (field.field_type, &value) {
            (FieldType::Double, serde_json::Value::Number(n)) => {
                n.as_f64().filter(|v| v.is_finite()).map(FieldValue::Double)
            }
            (FieldType::Long, serde_json::Value::Number(n)) => n.as_i64().map(FieldValue::Long),
            (FieldType::Boolean, serde_json::Value::Bool(b)) => Some(FieldValue::Bool(*b)),
            (FieldType::String, serde_json::Value::String(s)) => Some(FieldValue::Str(s.clone())),
            _ => None,
        };
        let Some(typed) = typed else {
            return Err(format!(
                "field {name:?} must be a {}, got {}",
                field.field_type.as_str(),
                json_kind(&value)
            ));
        };
        values.insert(name, typed);
    }
    Ok(Sample {
        sensor_id: SensorId::new(input.sensor_id),
        sensor_type: SensorType::new(input.sensor_type),
        ts,
        seq: input.seq,
        values,
        tags: input.tags,
        received_at,
    })
}

fn parse_ts(
    value: &serde_json::Value,
    precision: Precision,
) -> std::result::Result<Timestamp, String> {
    match value {
        serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|dt| Timestamp::from_micros(dt.timestamp_micros()))
            .map_err(|e| format!("ts {s:?} is not an RFC 3339 timestamp: {e}")),
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|v| precision.to_micros(v))
            .map(Timestamp::from_micros)
            .ok_or_else(|| format!("ts {n} is not an integer timestamp in {precision:?}")),
        other => Err(format!(
            "ts must be an RFC 3339 string or an integer, got {}",
            json_kind(other)
        )),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) if n.is_f64() => "a fractional number",
        serde_json::Value::Number(_) => "an integer",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_micros(1_795_428_000_000_000);

    fn parse(body: &str) -> Result<Vec<Sample>> {
        parse_json_samples(
            body.as_bytes(),
            false,
            Precision::Ms,
            &Registry::default_lab(),
            NOW,
        )
    }

    fn reasons(err: Error) -> Vec<(usize, String)> {
        match err {
            Error::InvalidSamples { rejected, .. } => {
                rejected.into_iter().map(|r| (r.index, r.reason)).collect()
            }
            other => panic!("expected InvalidSamples, got {other:?}"),
        }
    }

    #[test]
    fn the_design_example_parses_exactly() {
        let s = parse(
            r#"{"sensor_id": "door-3", "sensor_type": "door", "ts": "2026-11-23T10:00:00.123Z", "seq": 7, "values": {"open": true}, "tags": {"room": "lab-2"}}"#,
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(s.sensor_id.as_str(), "door-3");
        assert_eq!(s.ts.to_string(), "2026-11-23T10:00:00.123Z");
        assert_eq!(s.seq, Some(7));
        assert_eq!(s.values["open"], FieldValue::Bool(true));
        assert_eq!(s.tags["room"], "lab-2");
        assert_eq!(s.received_at, NOW);
    }

    #[test]
    fn integer_timestamps_follow_the_precision() {
        let body = r#"{"sensor_id": "t1", "sensor_type": "temperature", "ts": 1795428000, "values": {"celsius": 21}}"#;
        let s = parse_json_samples(
            body.as_bytes(),
            false,
            Precision::S,
            &Registry::default_lab(),
            NOW,
        )
        .unwrap();
        assert_eq!(s[0].ts.as_micros(), 1_795_428_000_000_000);
        // An integer is accepted for a double field and stored as a double.
        assert_eq!(s[0].values["celsius"], FieldValue::Double(21.0));
        let s = parse(&body.replace("1795428000", "1795428000123")).unwrap();
        assert_eq!(s[0].ts.as_micros(), 1_795_428_000_123_000);
    }

    #[test]
    fn arrays_and_ndjson_carry_several_samples() {
        let one = r#"{"sensor_id": "c1", "sensor_type": "co2", "ts": 1, "values": {"ppm": 415.5}}"#;
        assert_eq!(parse(&format!("[{one},{one}]")).unwrap().len(), 2);
        let nd = format!("{one}\n\n{one}\n{one}\n");
        let s = parse_json_samples(
            nd.as_bytes(),
            true,
            Precision::Ms,
            &Registry::default_lab(),
            NOW,
        )
        .unwrap();
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        assert!(matches!(
            parse("{\"sensor_id\": "),
            Err(Error::InvalidJson(_))
        ));
        assert!(matches!(parse("[]"), Err(Error::Empty)));
    }

    #[test]
    fn each_bad_sample_is_reported_with_its_index_and_reason() {
        let body = r#"[
            {"sensor_id": "d1", "sensor_type": "door", "ts": 1, "values": {"open": true}},
            {"sensor_type": "door", "ts": 1, "values": {"open": true}},
            {"sensor_id": "d1", "sensor_type": "fridge", "ts": 1, "values": {"open": true}},
            {"sensor_id": "d1", "sensor_type": "door", "ts": 1, "values": {"open": "yes"}},
            {"sensor_id": "d1", "sensor_type": "door", "ts": 1, "values": {"closed": true}},
            {"sensor_id": "d1", "sensor_type": "door", "ts": "yesterday", "values": {"open": true}},
            {"sensor_id": "d1", "sensor_type": "door", "ts": 1, "values": {}},
            {"sensor_id": "", "sensor_type": "door", "ts": 1, "values": {"open": true}},
            {"sensor_id": "d1", "sensor_type": "door", "ts": 1, "values": {"open": true}, "colour": "red"},
            42
        ]"#;
        let r = reasons(parse(body).unwrap_err());
        let indexes: Vec<usize> = r.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert!(r[0].1.contains("missing field `sensor_id`"), "{}", r[0].1);
        assert!(
            r[1].1.contains("unknown sensor_type \"fridge\""),
            "{}",
            r[1].1
        );
        assert!(
            r[2].1.contains("must be a boolean, got a string"),
            "{}",
            r[2].1
        );
        assert!(r[3].1.contains("unknown field \"closed\""), "{}", r[3].1);
        assert!(r[4].1.contains("not an RFC 3339"), "{}", r[4].1);
        assert!(r[5].1.contains("at least one field"), "{}", r[5].1);
        assert!(r[6].1.contains("must not be empty"), "{}", r[6].1);
        assert!(r[7].1.contains("unknown field `colour`"), "{}", r[7].1);
        assert!(r[8].1.contains("JSON object"), "{}", r[8].1);
    }

    #[test]
    fn long_fields_refuse_fractions() {
        let registry = Registry::from_json_str(
            "t",
            r#"{"sensor_types": {"counter": {"fields": {"n": {"type": "long"}}}}}"#,
        )
        .unwrap();
        let body = r#"{"sensor_id": "c", "sensor_type": "counter", "ts": 1, "values": {"n": 1.5}}"#;
        let err =
            parse_json_samples(body.as_bytes(), false, Precision::Ms, &registry, NOW).unwrap_err();
        assert!(
            reasons(err)[0]
                .1
                .contains("must be a long, got a fractional number")
        );
    }
}
