//! CSV samples, as gateways and spreadsheets export them (read by `labstream backfill`).
//! The header names the columns: `sensor_id`, `sensor_type`, `ts` (required), `seq`
//! (optional), `tag.<name>` for tags and any other name for a field. An empty cell is
//! an absent value, so one file can hold several sensor types side by side. Cells are
//! typed by the registry's field type; the validator shared with ingest decides the rest.

use crate::validate::{Invalid, Precision, RawValue, RejectKind, Validator};
use labstream_schemas::{FieldType, Sample, Timestamp};
use std::collections::BTreeMap;

/// Which column holds what, from the header row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvColumns {
    sensor_id: usize,
    sensor_type: usize,
    ts: usize,
    seq: Option<usize>,
    fields: Vec<(usize, String)>,
    tags: Vec<(usize, String)>,
}

impl CsvColumns {
    /// Reads the header row; fails when a required column is missing or a name repeats.
    pub fn from_header<'a>(header: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let (mut sensor_id, mut sensor_type, mut ts, mut seq) = (None, None, None, None);
        let (mut fields, mut tags) = (Vec::new(), Vec::new());
        let mut seen = std::collections::BTreeSet::new();
        for (i, name) in header.into_iter().enumerate() {
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("column {} has no name in the header", i + 1));
            }
            if !seen.insert(name.to_owned()) {
                return Err(format!("column {name:?} appears twice in the header"));
            }
            match name {
                "sensor_id" => sensor_id = Some(i),
                "sensor_type" => sensor_type = Some(i),
                "ts" => ts = Some(i),
                "seq" => seq = Some(i),
                _ => match name.strip_prefix("tag.") {
                    Some("") => {
                        return Err(format!("column {} is \"tag.\" without a tag name", i + 1));
                    }
                    Some(tag) => tags.push((i, tag.to_owned())),
                    None => fields.push((i, name.to_owned())),
                },
            }
        }
        let missing: Vec<&str> = [
            ("sensor_id", sensor_id),
            ("sensor_type", sensor_type),
            ("ts", ts),
        ]
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(n, _)| *n)
        .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the header lacks the column(s) {}; expected sensor_id,sensor_type,ts[,seq],<field>...[,tag.<name>...]",
                missing.join(", ")
            ));
        }
        if fields.is_empty() {
            return Err("the header names no field column".into());
        }
        Ok(Self {
            sensor_id: sensor_id.unwrap_or_default(),
            sensor_type: sensor_type.unwrap_or_default(),
            ts: ts.unwrap_or_default(),
            seq,
            fields,
            tags,
        })
    }

    /// One data row as a validated sample.
    pub fn sample(
        &self,
        row: &csv::StringRecord,
        precision: Precision,
        validator: &Validator<'_>,
    ) -> Result<Sample, Invalid> {
        let cell = |i: usize| row.get(i).map(str::trim).unwrap_or_default();
        let sensor_type = cell(self.sensor_type);
        let ts = parse_ts(cell(self.ts), precision)?;
        let seq = match cell_opt(cell, self.seq) {
            None => None,
            Some(s) => Some(
                s.parse::<i64>()
                    .map_err(|_| Invalid::malformed(format!("seq {s:?} is not an integer")))?,
            ),
        };
        let spec = validator.registry.get(sensor_type);
        let mut values = Vec::new();
        for (i, name) in &self.fields {
            let text = cell(*i);
            if text.is_empty() {
                continue;
            }
            // The registry says how to read the cell; unknown types and fields are left
            // as text for the validator to refuse with its usual reason.
            let field_type = spec.and_then(|s| s.fields.get(name)).map(|f| f.field_type);
            values.push((name.clone(), typed(name, text, field_type)?));
        }
        let tags: BTreeMap<String, String> = self
            .tags
            .iter()
            .filter(|(i, _)| !cell(*i).is_empty())
            .map(|(i, name)| (name.clone(), cell(*i).to_owned()))
            .collect();
        validator.sample(
            cell(self.sensor_id).to_owned(),
            sensor_type.to_owned(),
            ts,
            seq,
            values,
            tags,
        )
    }
}

fn cell_opt<'r>(cell: impl Fn(usize) -> &'r str, column: Option<usize>) -> Option<&'r str> {
    column.map(cell).filter(|s| !s.is_empty())
}

fn typed(name: &str, text: &str, field_type: Option<FieldType>) -> Result<RawValue, Invalid> {
    let wrong = |what: &str| {
        Invalid::new(
            RejectKind::WrongType,
            format!("field {name:?} must be {what}, got {text:?}"),
        )
    };
    Ok(match field_type {
        Some(FieldType::Double) => RawValue::Float(text.parse().map_err(|_| wrong("a number"))?),
        Some(FieldType::Long) => RawValue::Int(text.parse().map_err(|_| wrong("an integer"))?),
        Some(FieldType::Boolean) => match text.to_ascii_lowercase().as_str() {
            "true" => RawValue::Bool(true),
            "false" => RawValue::Bool(false),
            _ => return Err(wrong("true or false")),
        },
        Some(FieldType::String) | None => RawValue::Str(text.to_owned()),
    })
}

fn parse_ts(text: &str, precision: Precision) -> Result<Timestamp, Invalid> {
    if text.is_empty() {
        return Err(Invalid::malformed("ts is empty"));
    }
    if let Ok(n) = text.parse::<i64>() {
        return precision
            .to_micros(n)
            .map(Timestamp::from_micros)
            .ok_or_else(|| {
                Invalid::malformed(format!(
                    "ts {n} is not an integer timestamp in {}",
                    precision.as_str()
                ))
            });
    }
    Timestamp::parse_rfc3339(text).ok_or_else(|| {
        Invalid::malformed(format!(
            "ts {text:?} is neither an RFC 3339 timestamp nor an integer in {}",
            precision.as_str()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use labstream_schemas::{FieldValue, Registry};

    fn row(cells: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(cells.to_vec())
    }

    #[test]
    fn cells_are_typed_by_the_registry_and_empty_cells_are_absent() {
        let registry = Registry::default_lab();
        let v = Validator::new(&registry, Timestamp::from_micros(0));
        let cols = CsvColumns::from_header(
            "sensor_id,sensor_type,ts,seq,celsius,open,tag.room"
                .split(',')
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let s = cols
            .sample(
                &row(&[
                    "t1",
                    "temperature",
                    "2026-11-23T10:00:00Z",
                    "7",
                    "21",
                    "",
                    "lab-2",
                ]),
                Precision::Ms,
                &v,
            )
            .unwrap();
        assert_eq!(s.values["celsius"], FieldValue::Double(21.0));
        assert_eq!(s.values.len(), 1);
        assert_eq!((s.seq, s.tags["room"].as_str()), (Some(7), "lab-2"));
        let s = cols
            .sample(
                &row(&["d1", "door", "1795428000000", "", "", "true", ""]),
                Precision::Ms,
                &v,
            )
            .unwrap();
        assert_eq!(s.values["open"], FieldValue::Bool(true));
        assert_eq!(s.ts.as_micros(), 1_795_428_000_000_000);
        assert!(s.tags.is_empty() && s.seq.is_none());
        let err = cols
            .sample(
                &row(&["d1", "door", "1", "", "", "maybe", ""]),
                Precision::Ms,
                &v,
            )
            .unwrap_err();
        assert_eq!(err.kind, RejectKind::WrongType);
        let err = cols
            .sample(
                &row(&["d1", "door", "1", "", "3", "true", ""]),
                Precision::Ms,
                &v,
            )
            .unwrap_err();
        assert_eq!(err.kind, RejectKind::UnknownField, "{}", err.reason);
    }

    #[test]
    fn a_header_without_the_required_columns_is_refused() {
        let err = CsvColumns::from_header(["sensor_id", "celsius"]).unwrap_err();
        assert!(err.contains("sensor_type, ts"), "{err}");
        let err =
            CsvColumns::from_header(["sensor_id", "sensor_type", "ts", "x", "x"]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
