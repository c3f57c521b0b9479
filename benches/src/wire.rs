//! Request bodies as senders write them: the JSON sample of DESIGN.md (ts in RFC 3339,
//! as `labstream simulate` and the README send it) and InfluxDB v2 line protocol as
//! Telegraf writes it (nanosecond timestamps, `seq` as an integer field).

use chrono::SecondsFormat;
use labstream_schemas::{FieldValue, Sample};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which wire format a load scenario sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `POST /v1/samples`, `application/json`.
    Json,
    /// `POST /api/v2/write?precision=ns`, InfluxDB v2 line protocol.
    Lp,
}

impl Format {
    pub fn path(self) -> &'static str {
        match self {
            Format::Json => "/v1/samples",
            Format::Lp => "/api/v2/write?precision=ns",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Lp => "text/plain; charset=utf-8",
        }
    }

    /// A single-sample request sends the object itself; a batch sends an array (JSON)
    /// or one line per sample (line protocol).
    pub fn body(self, samples: &[Sample]) -> Vec<u8> {
        match self {
            Format::Json => json_body(samples),
            Format::Lp => line_protocol_body(samples),
        }
    }
}

struct Values<'a>(&'a BTreeMap<String, FieldValue>);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            match v {
                FieldValue::Double(d) => map.serialize_entry(k, d)?,
                FieldValue::Long(l) => map.serialize_entry(k, l)?,
                FieldValue::Bool(b) => map.serialize_entry(k, b)?,
                FieldValue::Str(s) => map.serialize_entry(k, s)?,
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct SampleJson<'a> {
    sensor_id: &'a str,
    sensor_type: &'a str,
    ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<i64>,
    values: Values<'a>,
    tags: &'a BTreeMap<String, String>,
}

fn sample_json(s: &Sample) -> SampleJson<'_> {
    SampleJson {
        sensor_id: s.sensor_id.as_str(),
        sensor_type: s.sensor_type.as_str(),
        ts: s
            .ts
            .to_datetime()
            .map(|dt| dt.to_rfc3339_opts(SecondsFormat::Micros, true))
            .unwrap_or_default(),
        seq: s.seq,
        values: Values(&s.values),
        tags: &s.tags,
    }
}

/// One sample as a JSON object, several as a JSON array.
pub fn json_body(samples: &[Sample]) -> Vec<u8> {
    let result = if let [one] = samples {
        serde_json::to_vec(&sample_json(one))
    } else {
        serde_json::to_vec(&samples.iter().map(sample_json).collect::<Vec<_>>())
    };
    result.expect("a sample always serializes")
}

/// Line protocol, one line per sample: the measurement is the sensor type, the
/// `sensor_id` tag the sensor id (ingest's default `sensor_id_tag`).
pub fn line_protocol_body(samples: &[Sample]) -> Vec<u8> {
    let mut out = String::with_capacity(samples.len() * 120);
    for s in samples {
        escape(&mut out, s.sensor_type.as_str(), &[',', ' ']);
        out.push_str(",sensor_id=");
        escape(&mut out, s.sensor_id.as_str(), &[',', ' ', '=']);
        for (k, v) in &s.tags {
            out.push(',');
            escape(&mut out, k, &[',', ' ', '=']);
            out.push('=');
            escape(&mut out, v, &[',', ' ', '=']);
        }
        let mut sep = ' ';
        for (k, v) in &s.values {
            out.push(sep);
            sep = ',';
            escape(&mut out, k, &[',', ' ', '=']);
            out.push('=');
            match v {
                FieldValue::Double(d) => write!(out, "{d}").expect("writing to a String"),
                FieldValue::Long(l) => write!(out, "{l}i").expect("writing to a String"),
                FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                FieldValue::Str(text) => {
                    out.push('"');
                    escape(&mut out, text, &['"', '\\']);
                    out.push('"');
                }
            }
        }
        if let Some(seq) = s.seq {
            write!(out, ",seq={seq}i").expect("writing to a String");
        }
        writeln!(out, " {}", s.ts.as_micros() * 1000).expect("writing to a String");
    }
    out.into_bytes()
}

fn escape(out: &mut String, text: &str, special: &[char]) {
    for c in text.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labstream_schemas::{SensorId, SensorType, Timestamp};

    fn sample() -> Sample {
        Sample {
            sensor_id: SensorId::new("door-0-3"),
            sensor_type: SensorType::new("door"),
            ts: Timestamp::from_micros(1_795_428_000_123_456),
            seq: Some(7),
            values: BTreeMap::from([("open".to_owned(), FieldValue::Bool(true))]),
            tags: BTreeMap::from([("room".to_owned(), "lab 2".to_owned())]),
            received_at: Timestamp::from_micros(0),
        }
    }

    #[test]
    fn json_is_the_documented_sample() {
        let body: serde_json::Value = serde_json::from_slice(&json_body(&[sample()])).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"sensor_id": "door-0-3", "sensor_type": "door",
                "ts": "2026-11-23T10:00:00.123456Z", "seq": 7,
                "values": {"open": true}, "tags": {"room": "lab 2"}})
        );
        let two: serde_json::Value =
            serde_json::from_slice(&json_body(&[sample(), sample()])).unwrap();
        assert_eq!(two.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn line_protocol_escapes_and_carries_seq() {
        let body = String::from_utf8(line_protocol_body(&[sample()])).unwrap();
        assert_eq!(
            body,
            "door,sensor_id=door-0-3,room=lab\\ 2 open=true,seq=7i 1795428000123456000\n"
        );
    }
}
