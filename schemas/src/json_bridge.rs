//! Records with many variants (experiment events and state) are plain serde types;
//! this bridge turns their JSON form into an Avro value of their schema and back, led
//! by the schema, so the `.avsc` file stays the contract. A union of records is an
//! object whose `"type"` names the record (serde's `#[serde(tag = "type")]`).

use crate::error::{Error, Result};
use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema, ResolvedSchema, UnionSchema};
use apache_avro::types::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, HashMap};

/// Serializes `record` with serde and converts it to an Avro value of `schema`.
pub(crate) fn to_avro<T: Serialize>(
    record_name: &'static str,
    schema: &Schema,
    record: &T,
) -> Value {
    let json = serde_json::to_value(record)
        .unwrap_or_else(|e| panic!("{record_name} does not serialize to JSON: {e}"));
    let names = names(schema);
    convert_to(&json, schema, &names, record_name)
        .unwrap_or_else(|e| panic!("{record_name} does not fit its Avro schema: {e}"))
}

/// Converts an Avro value of `schema` (the reader's) to JSON and deserializes it.
pub(crate) fn from_avro<T: DeserializeOwned>(
    record_name: &'static str,
    schema: &Schema,
    value: Value,
) -> Result<T> {
    let names = names(schema);
    let json = convert_from(value, schema, &names).map_err(|e| Error::shape(record_name, e))?;
    serde_json::from_value(json).map_err(|e| Error::shape(record_name, e))
}

fn names(schema: &Schema) -> HashMap<Name, Schema> {
    ResolvedSchema::try_from(schema)
        .map(|r| {
            r.get_names()
                .iter()
                .map(|(n, s)| (n.clone(), (*s).clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn resolve<'a>(schema: &'a Schema, names: &'a HashMap<Name, Schema>) -> &'a Schema {
    match schema {
        Schema::Ref { name } => names.get(name).unwrap_or(schema),
        other => other,
    }
}

fn convert_to(
    json: &Json,
    schema: &Schema,
    names: &HashMap<Name, Schema>,
    at: &str,
) -> Result<Value, String> {
    let schema = resolve(schema, names);
    let wrong = || format!("{at}: {json} does not fit {schema:?}");
    Ok(match schema {
        Schema::Null => match json {
            Json::Null => Value::Null,
            _ => return Err(wrong()),
        },
        Schema::Boolean => Value::Boolean(json.as_bool().ok_or_else(wrong)?),
        Schema::Int => Value::Int(
            json.as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(wrong)?,
        ),
        Schema::Long => Value::Long(json.as_i64().ok_or_else(wrong)?),
        Schema::TimestampMicros => Value::TimestampMicros(
            json.as_i64()
                .or_else(|| {
                    json.as_str()
                        .and_then(crate::sample::Timestamp::parse_rfc3339)
                        .map(crate::sample::Timestamp::as_micros)
                })
                .ok_or_else(wrong)?,
        ),
        Schema::TimestampMillis => Value::TimestampMillis(json.as_i64().ok_or_else(wrong)?),
        Schema::Double => Value::Double(json.as_f64().ok_or_else(wrong)?),
        Schema::String => Value::String(json.as_str().ok_or_else(wrong)?.to_owned()),
        Schema::Enum(e) => {
            let symbol = json.as_str().ok_or_else(wrong)?;
            let index = e
                .symbols
                .iter()
                .position(|s| s == symbol)
                .ok_or_else(wrong)?;
            Value::Enum(index as u32, symbol.to_owned())
        }
        Schema::Array(a) => Value::Array(
            json.as_array()
                .ok_or_else(wrong)?
                .iter()
                .map(|item| convert_to(item, &a.items, names, at))
                .collect::<Result<_, _>>()?,
        ),
        Schema::Map(m) => Value::Map(
            json.as_object()
                .ok_or_else(wrong)?
                .iter()
                .map(|(k, v)| Ok((k.clone(), convert_to(v, &m.types, names, at)?)))
                .collect::<Result<_, String>>()?,
        ),
        Schema::Union(u) => union_to(json, u, names, at)?,
        Schema::Record(r) => record_to(json, r, names)?,
        other => {
            return Err(format!(
                "{at}: schema {other:?} is not supported by the bridge"
            ));
        }
    })
}

fn union_to(
    json: &Json,
    union: &UnionSchema,
    names: &HashMap<Name, Schema>,
    at: &str,
) -> Result<Value, String> {
    let variants = union.variants();
    if let Some(tag) = json.get("type").and_then(Json::as_str) {
        for (i, v) in variants.iter().enumerate() {
            if let Schema::Record(r) = resolve(v, names)
                && r.name.name == tag
            {
                return Ok(Value::Union(i as u32, Box::new(record_to(json, r, names)?)));
            }
        }
    }
    let mut last = String::new();
    for (i, v) in variants.iter().enumerate() {
        match convert_to(json, v, names, at) {
            Ok(value) => return Ok(Value::Union(i as u32, Box::new(value))),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn record_to(
    json: &Json,
    record: &RecordSchema,
    names: &HashMap<Name, Schema>,
) -> Result<Value, String> {
    let object = json
        .as_object()
        .ok_or_else(|| format!("{}: expected an object, got {json}", record.name.name))?;
    let mut fields = Vec::with_capacity(record.fields.len());
    for field in &record.fields {
        let at = format!("{}.{}", record.name.name, field.name);
        let value = match object.get(&field.name) {
            Some(v) => convert_to(v, &field.schema, names, &at)?,
            None => match &field.default {
                Some(default) => convert_to(default, &field.schema, names, &at)?,
                None => convert_to(&Json::Null, &field.schema, names, &at)
                    .map_err(|_| format!("{at} is missing"))?,
            },
        };
        fields.push((field.name.clone(), value));
    }
    Ok(Value::Record(fields))
}

fn convert_from(
    value: Value,
    schema: &Schema,
    names: &HashMap<Name, Schema>,
) -> Result<Json, String> {
    let schema = resolve(schema, names);
    Ok(match (value, schema) {
        (Value::Union(i, inner), Schema::Union(u)) => {
            let branch = u
                .variants()
                .get(i as usize)
                .ok_or_else(|| format!("union branch {i} out of range"))?;
            let mut json = convert_from(*inner, branch, names)?;
            if let (Json::Object(o), Schema::Record(r)) = (&mut json, resolve(branch, names)) {
                o.insert("type".into(), Json::String(r.name.name.clone()));
            }
            json
        }
        (Value::Record(fields), Schema::Record(r)) => {
            let by_name: BTreeMap<&str, &Schema> = r
                .fields
                .iter()
                .map(|f| (f.name.as_str(), &f.schema))
                .collect();
            let mut object = Map::new();
            for (name, v) in fields {
                let field_schema = by_name
                    .get(name.as_str())
                    .ok_or_else(|| format!("unexpected field {name}"))?;
                object.insert(name, convert_from(v, field_schema, names)?);
            }
            Json::Object(object)
        }
        (Value::Array(items), Schema::Array(a)) => Json::Array(
            items
                .into_iter()
                .map(|v| convert_from(v, &a.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (Value::Map(entries), Schema::Map(m)) => Json::Object(
            entries
                .into_iter()
                .map(|(k, v)| Ok((k, convert_from(v, &m.types, names)?)))
                .collect::<Result<_, String>>()?,
        ),
        (Value::Null, _) => Json::Null,
        (Value::Boolean(b), _) => Json::Bool(b),
        (Value::Int(v), _) => Json::from(v),
        (Value::Long(v) | Value::TimestampMicros(v) | Value::TimestampMillis(v), _) => {
            Json::from(v)
        }
        (Value::Float(v), _) => Json::from(f64::from(v)),
        (Value::Double(v), _) => Json::from(v),
        (Value::String(s) | Value::Enum(_, s), _) => Json::String(s),
        (other, schema) => return Err(format!("value {other:?} does not fit {schema:?}")),
    })
}
