//! JSON bodies: one sample object, an array of them, or NDJSON (one per line).

use crate::error::{Error, Result};
use crate::validate::Rejection;
use crate::validate::{Invalid, Parsed, Precision, RawValue, Validator};
use chrono::DateTime;
use labstream_schemas::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

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

/// Parses the body and validates every sample. Fails as a whole only when the body
/// itself is unusable (not JSON, no sample); invalid samples are reported in `Parsed`.
pub fn parse_json(
    body: &[u8],
    ndjson: bool,
    precision: Precision,
    validator: &Validator<'_>,
) -> Result<Parsed> {
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
    let mut parsed = Parsed {
        total: documents.len(),
        ..Parsed::default()
    };
    for (index, doc) in documents.into_iter().enumerate() {
        match to_sample(doc, precision, validator) {
            Ok(s) => parsed.samples.push(s),
            Err(e) => parsed.rejected.push(Rejection {
                index,
                code: e.kind,
                reason: e.reason,
            }),
        }
    }
    Ok(parsed)
}

/// One NDJSON line as a sample, for readers of files that report bad lines
/// themselves (`labstream backfill`).
pub(crate) fn parse_json_line(
    line: &[u8],
    precision: Precision,
    validator: &Validator<'_>,
) -> std::result::Result<labstream_schemas::Sample, Invalid> {
    let doc = serde_json::from_slice(line)
        .map_err(|e| Invalid::malformed(format!("not valid JSON: {e}")))?;
    to_sample(doc, precision, validator)
}

fn to_sample(
    doc: serde_json::Value,
    precision: Precision,
    validator: &Validator<'_>,
) -> std::result::Result<labstream_schemas::Sample, Invalid> {
    if !doc.is_object() {
        return Err(Invalid::malformed(format!(
            "a sample must be a JSON object, got {}",
            json_kind(&doc)
        )));
    }
    let input: SampleJson =
        serde_json::from_value(doc).map_err(|e| Invalid::malformed(e.to_string()))?;
    let ts = parse_ts(&input.ts, precision).map_err(Invalid::malformed)?;
    let mut values = Vec::with_capacity(input.values.len());
    for (name, value) in input.values {
        let raw = match value {
            serde_json::Value::Bool(b) => RawValue::Bool(b),
            serde_json::Value::String(s) => RawValue::Str(s),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => RawValue::Int(i),
                (None, Some(u), _) => RawValue::UInt(u),
                (None, None, Some(f)) => RawValue::Float(f),
                _ => {
                    return Err(Invalid::malformed(format!(
                        "field {name:?} is not a representable number"
                    )));
                }
            },
            other => {
                return Err(Invalid::new(
                    crate::validate::RejectKind::WrongType,
                    format!(
                        "field {name:?} must be a number, boolean or string, got {}",
                        json_kind(&other)
                    ),
                ));
            }
        };
        values.push((name, raw));
    }
    validator.sample(
        input.sensor_id,
        input.sensor_type,
        ts,
        input.seq,
        values,
        input.tags,
    )
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
            .ok_or_else(|| {
                format!(
                    "ts {n} is not an integer timestamp in {}",
                    precision.as_str()
                )
            }),
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
    use labstream_schemas::{FieldValue, Registry, Sample};

    const NOW: Timestamp = Timestamp::from_micros(1_795_428_000_000_000);

    fn parse_with(
        body: &str,
        ndjson: bool,
        precision: Precision,
        registry: &Registry,
    ) -> Result<Vec<Sample>> {
        let parsed = parse_json(
            body.as_bytes(),
            ndjson,
            precision,
            &Validator::new(registry, NOW),
        )?;
        if parsed.rejected.is_empty() {
            Ok(parsed.samples)
        } else {
            Err(Error::InvalidSamples {
                total: parsed.total,
                rejected: parsed.rejected,
            })
        }
    }

    fn parse(body: &str) -> Result<Vec<Sample>> {
        parse_with(body, false, Precision::Ms, &Registry::default_lab())
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
        let s = parse_with(body, false, Precision::S, &Registry::default_lab()).unwrap();
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
        let s = parse_with(&nd, true, Precision::Ms, &Registry::default_lab()).unwrap();
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
        let err = parse_with(body, false, Precision::Ms, &registry).unwrap_err();
        assert!(
            reasons(err)[0]
                .1
                .contains("must be a long, got a fractional number")
        );
    }
}
