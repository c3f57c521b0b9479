//! Avro single-object encoding (`C3 01`, the 8-byte little-endian CRC-64-AVRO
//! fingerprint of the writer schema, then the body). Every message names its writer
//! schema, so readers need no registry server: they look the fingerprint up among all
//! schema versions kept in `schemas/avro/` and resolve to their own version.

use crate::error::{Error, Result};
use apache_avro::Schema;
use apache_avro::types::Value;
use std::collections::HashMap;
use std::sync::Arc;

const MAGIC: [u8; 2] = [0xC3, 0x01];
pub(crate) const HEADER_LEN: usize = 10;

/// Every schema version this build knows, oldest first per record. Add a new file here
/// when a schema evolves; the compatibility test checks each against its predecessor.
const SCHEMA_FILES: &[(&str, u32, &str)] = &[
    (
        "labstream.Sample",
        1,
        include_str!("../../avro/sample.v1.avsc"),
    ),
    (
        "labstream.AlertRule",
        1,
        include_str!("../../avro/alert_rule.v1.avsc"),
    ),
    (
        "labstream.AlertEvent",
        1,
        include_str!("../../avro/alert_event.v1.avsc"),
    ),
    (
        "labstream.AlertState",
        1,
        include_str!("../../avro/alert_state.v1.avsc"),
    ),
    (
        "labstream.EnrichedSample",
        1,
        include_str!("../../avro/enriched_sample.v1.avsc"),
    ),
    (
        "labstream.ExperimentEvent",
        1,
        include_str!("../../avro/experiment_event.v1.avsc"),
    ),
    (
        "labstream.state.ExperimentState",
        1,
        include_str!("../../avro/experiment_state.v1.avsc"),
    ),
];

/// The embedded schemas, parsed once, for records whose Rust type converts through
/// the JSON bridge and needs its schema outside a `Codec`.
static EMBEDDED: std::sync::LazyLock<Codec> = std::sync::LazyLock::new(Codec::new);

pub(crate) fn embedded_schema(name: &'static str) -> &'static Schema {
    &EMBEDDED.latest(name).schema
}

/// Implements [`AvroRecord`] for a serde type through the JSON bridge.
macro_rules! bridged_avro_record {
    ($ty:ty, $name:literal) => {
        impl $crate::codec::AvroRecord for $ty {
            const NAME: &'static str = $name;
            fn to_avro(&self) -> apache_avro::types::Value {
                $crate::json_bridge::to_avro($name, $crate::codec::embedded_schema($name), self)
            }
            fn from_avro(value: apache_avro::types::Value) -> $crate::error::Result<Self> {
                $crate::json_bridge::from_avro($name, $crate::codec::embedded_schema($name), value)
            }
        }
    };
}
pub(crate) use bridged_avro_record;

/// A Rust type with exactly one Avro record in `schemas/avro/`.
pub trait AvroRecord: Sized {
    /// Full name of the record (`namespace.name`), the same across versions.
    const NAME: &'static str;
    fn to_avro(&self) -> Value;
    fn from_avro(value: Value) -> Result<Self>;
    /// A hand-written decoder of a body written with the *current* schema version,
    /// for hot paths; `None` (the default) means "use the generic resolver". Must give
    /// exactly what `from_avro` of the generic decoding gives.
    fn decode_current(_body: &[u8]) -> Option<Result<Self>> {
        None
    }
}

/// The writer schema's fingerprint from a single-object header; `None` without one.
pub(crate) fn header_fingerprint(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
        return None;
    }
    let fp: [u8; 8] = bytes[2..HEADER_LEN].try_into().expect("8 bytes");
    Some(u64::from_le_bytes(fp))
}

/// One version of one record schema.
#[derive(Debug)]
pub struct SchemaVersion {
    pub name: &'static str,
    pub version: u32,
    pub schema: Schema,
    /// What `encode` writes: the CRC-64-AVRO fingerprint other Avro libraries compute.
    pub fingerprint: u64,
    /// What labstream wrote before it followed the specification's canonical form for
    /// primitives with a logical type; still read.
    pub legacy_fingerprint: u64,
}

/// Encodes with the newest version of each record; decodes any known version.
#[derive(Clone, Debug)]
pub struct Codec {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    versions: Vec<SchemaVersion>,
    by_fingerprint: HashMap<u64, usize>,
    latest: HashMap<&'static str, usize>,
    /// Fingerprints (current and legacy) of the current Sample and EnrichedSample,
    /// read by `decode_view`.
    pub(crate) view_fingerprints: [[u64; 2]; 2],
}

impl Codec {
    /// Parses the embedded schemas. They are compiled in, so failure is a build defect.
    pub fn new() -> Self {
        let mut versions = Vec::new();
        let mut by_fingerprint = HashMap::new();
        let mut latest: HashMap<&'static str, usize> = HashMap::new();
        for (name, version, text) in SCHEMA_FILES {
            let schema = Schema::parse_str(text)
                .unwrap_or_else(|e| panic!("embedded schema {name} v{version} is invalid: {e}"));
            let fingerprint = fingerprint_of(&schema);
            let legacy_fingerprint = rabin(schema.canonical_form().as_bytes());
            let index = versions.len();
            versions.push(SchemaVersion {
                name,
                version: *version,
                schema,
                fingerprint,
                legacy_fingerprint,
            });
            by_fingerprint.insert(fingerprint, index);
            by_fingerprint.insert(legacy_fingerprint, index);
            let newest = latest.entry(name).or_insert(index);
            if versions[*newest].version < *version {
                *newest = index;
            }
        }
        let fingerprint = |name: &str| {
            let v = &versions[latest[name]];
            [v.fingerprint, v.legacy_fingerprint]
        };
        let view_fingerprints = [
            fingerprint(<crate::Sample as AvroRecord>::NAME),
            fingerprint(<crate::experiment::EnrichedSample as AvroRecord>::NAME),
        ];
        Codec {
            inner: Arc::new(Inner {
                versions,
                by_fingerprint,
                latest,
                view_fingerprints,
            }),
        }
    }

    /// All known schema versions, in declaration order.
    pub fn versions(&self) -> &[SchemaVersion] {
        &self.inner.versions
    }

    /// The version `encode` writes for record `name`.
    pub fn writer_schema(&self, name: &str) -> Option<&SchemaVersion> {
        self.inner
            .latest
            .get(name)
            .map(|&i| &self.inner.versions[i])
    }

    fn latest(&self, name: &'static str) -> &SchemaVersion {
        self.writer_schema(name)
            .unwrap_or_else(|| panic!("no schema for record {name}: add it to SCHEMA_FILES"))
    }

    pub fn encode<T: AvroRecord>(&self, record: &T) -> Result<Vec<u8>> {
        let writer = self.latest(T::NAME);
        let body = apache_avro::to_avro_datum(&writer.schema, record.to_avro())
            .map_err(|e| Error::avro("encode", e))?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&writer.fingerprint.to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The record name of the writer schema `bytes` names (e.g. `labstream.Sample`),
    /// for readers that accept more than one record type on a topic.
    pub fn record_name(&self, bytes: &[u8]) -> Result<&'static str> {
        let fingerprint = header_fingerprint(bytes).ok_or_else(|| {
            Error::NotSingleObject(format!("{} bytes without the C3 01 header", bytes.len()))
        })?;
        let index = *self
            .inner
            .by_fingerprint
            .get(&fingerprint)
            .ok_or(Error::UnknownSchema(fingerprint))?;
        Ok(self.inner.versions[index].name)
    }

    pub fn decode<T: AvroRecord>(&self, bytes: &[u8]) -> Result<T> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::NotSingleObject(format!(
                "{} bytes, shorter than the 10-byte header",
                bytes.len()
            )));
        }
        if bytes[..2] != MAGIC {
            return Err(Error::NotSingleObject(format!(
                "magic {:02X} {:02X}, expected C3 01",
                bytes[0], bytes[1]
            )));
        }
        let fingerprint = header_fingerprint(bytes).expect("header checked above");
        let index = *self
            .inner
            .by_fingerprint
            .get(&fingerprint)
            .ok_or(Error::UnknownSchema(fingerprint))?;
        let writer = &self.inner.versions[index];
        let reader = self.latest(T::NAME);
        if writer.name != T::NAME {
            return Err(Error::shape(
                T::NAME,
                format!("message holds a {}, not a {}", writer.name, T::NAME),
            ));
        }
        let mut body = &bytes[HEADER_LEN..];
        if writer.fingerprint == reader.fingerprint
            && let Some(decoded) = T::decode_current(body)
        {
            return decoded;
        }
        let reader_schema = (writer.fingerprint != reader.fingerprint).then_some(&reader.schema);
        let value = apache_avro::from_avro_datum(&writer.schema, &mut body, reader_schema)
            .map_err(|e| Error::avro("decode", e))?;
        T::from_avro(value)
    }
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

/// CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, as the
/// Avro specification defines it (and Java's `SchemaNormalization`, fastavro, ...).
pub fn fingerprint_of(schema: &Schema) -> u64 {
    rabin(canonical_form(schema).as_bytes())
}

/// The Parsing Canonical Form. apache-avro strips a primitive's `logicalType` but leaves
/// it as `{"type":"long"}` where the specification's [PRIMITIVES] rule makes it `"long"`;
/// in a canonical form (no whitespace, only the kept attributes) that object can only be
/// such a primitive, so it is replaced by the bare name.
fn canonical_form(schema: &Schema) -> String {
    const PRIMITIVES: [&str; 8] = [
        "null", "boolean", "int", "long", "float", "double", "bytes", "string",
    ];
    let mut form = schema.canonical_form();
    for p in PRIMITIVES {
        form = form.replace(&format!("{{\"type\":\"{p}\"}}"), &format!("\"{p}\""));
    }
    form
}

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

fn rabin(bytes: &[u8]) -> u64 {
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u64; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & 0u64.wrapping_sub(fp & 1));
            }
            *slot = fp;
        }
        table
    });
    let mut fp = EMPTY;
    for &b in bytes {
        fp = (fp >> 8) ^ table[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

#[cfg(test)]
mod tests;
