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
const HEADER_LEN: usize = 10;

/// Every schema version this build knows, oldest first per record. Add a new file here
/// when a schema evolves; the compatibility test checks each against its predecessor.
const SCHEMA_FILES: &[(&str, u32, &str)] = &[
    (
        "labstream.Sample",
        1,
        include_str!("../avro/sample.v1.avsc"),
    ),
    (
        "labstream.AlertRule",
        1,
        include_str!("../avro/alert_rule.v1.avsc"),
    ),
    (
        "labstream.AlertEvent",
        1,
        include_str!("../avro/alert_event.v1.avsc"),
    ),
    (
        "labstream.AlertState",
        1,
        include_str!("../avro/alert_state.v1.avsc"),
    ),
    (
        "labstream.EnrichedSample",
        1,
        include_str!("../avro/enriched_sample.v1.avsc"),
    ),
    (
        "labstream.ExperimentEvent",
        1,
        include_str!("../avro/experiment_event.v1.avsc"),
    ),
    (
        "labstream.state.ExperimentState",
        1,
        include_str!("../avro/experiment_state.v1.avsc"),
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
}

/// One version of one record schema.
#[derive(Debug)]
pub struct SchemaVersion {
    pub name: &'static str,
    pub version: u32,
    pub schema: Schema,
    pub fingerprint: u64,
}

/// Encodes with the newest version of each record; decodes any known version.
#[derive(Clone, Debug)]
pub struct Codec {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    versions: Vec<SchemaVersion>,
    by_fingerprint: HashMap<u64, usize>,
    latest: HashMap<&'static str, usize>,
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
            let index = versions.len();
            versions.push(SchemaVersion {
                name,
                version: *version,
                schema,
                fingerprint,
            });
            by_fingerprint.insert(fingerprint, index);
            let newest = latest.entry(name).or_insert(index);
            if versions[*newest].version < *version {
                *newest = index;
            }
        }
        Codec {
            inner: Arc::new(Inner {
                versions,
                by_fingerprint,
                latest,
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
        if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
            return Err(Error::NotSingleObject(format!(
                "{} bytes without the C3 01 header",
                bytes.len()
            )));
        }
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&bytes[2..HEADER_LEN]);
        let fingerprint = u64::from_le_bytes(fp);
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
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&bytes[2..HEADER_LEN]);
        let fingerprint = u64::from_le_bytes(fp);
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
        let reader_schema = (writer.fingerprint != reader.fingerprint).then_some(&reader.schema);
        let mut body = &bytes[HEADER_LEN..];
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

/// CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form.
pub fn fingerprint_of(schema: &Schema) -> u64 {
    rabin(schema.canonical_form().as_bytes())
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
mod tests {
    use super::*;
    use crate::{FieldValue, Sample, SensorId, SensorType, Timestamp};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn fingerprint_matches_the_avro_spec_vector() {
        // From the Avro specification / Java SchemaNormalization: "null" -> 0x63dd24e7cc258f8a.
        let schema = Schema::parse_str(r#""null""#).unwrap();
        assert_eq!(fingerprint_of(&schema), 0x63dd_24e7_cc25_8f8a);
        let schema = Schema::parse_str(r#""int""#).unwrap();
        assert_eq!(fingerprint_of(&schema), 0x7275_d51a_3f39_5c8f);
    }

    fn sample() -> Sample {
        Sample {
            sensor_id: SensorId::new("door-3"),
            sensor_type: SensorType::new("door"),
            ts: Timestamp::from_micros(1_795_428_000_123_000),
            seq: Some(7),
            values: BTreeMap::from([("open".to_owned(), FieldValue::Bool(true))]),
            tags: BTreeMap::from([("room".to_owned(), "lab-2".to_owned())]),
            received_at: Timestamp::from_micros(1_795_428_000_200_000),
        }
    }

    #[test]
    fn single_object_header_names_the_writer_schema() {
        let codec = Codec::new();
        let bytes = codec.encode(&sample()).unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        let fp = codec.writer_schema("labstream.Sample").unwrap().fingerprint;
        assert_eq!(&bytes[2..10], &fp.to_le_bytes());
    }

    #[test]
    fn sample_round_trips() {
        let codec = Codec::new();
        let s = sample();
        assert_eq!(
            codec.decode::<Sample>(&codec.encode(&s).unwrap()).unwrap(),
            s
        );
    }

    #[test]
    fn rejects_garbage_with_a_clear_error() {
        let codec = Codec::new();
        let err = codec.decode::<Sample>(b"{\"json\": 1}").unwrap_err();
        assert!(err.to_string().contains("expected C3 01"), "{err}");
        let mut bytes = codec.encode(&sample()).unwrap();
        bytes[2] ^= 0xff;
        assert!(matches!(
            codec.decode::<Sample>(&bytes),
            Err(Error::UnknownSchema(_))
        ));
        let err = codec.decode::<Sample>(&[0xC3]).unwrap_err();
        assert!(err.to_string().contains("shorter"), "{err}");
    }

    fn field_value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(FieldValue::Double),
            any::<i64>().prop_map(FieldValue::Long),
            any::<bool>().prop_map(FieldValue::Bool),
            ".{0,12}".prop_map(FieldValue::Str),
        ]
    }

    proptest! {
        #[test]
        fn any_sample_round_trips(
            sensor_id in "[a-z0-9-]{1,16}",
            ts in any::<i64>(),
            seq in proptest::option::of(any::<i64>()),
            values in proptest::collection::btree_map("[a-z_]{1,8}", field_value(), 0..6),
            tags in proptest::collection::btree_map("[a-z]{1,6}", ".{0,10}", 0..4),
            received_at in any::<i64>(),
        ) {
            let codec = Codec::new();
            let s = Sample {
                sensor_id: SensorId::new(sensor_id),
                sensor_type: SensorType::new("t"),
                ts: Timestamp::from_micros(ts),
                seq,
                values,
                tags,
                received_at: Timestamp::from_micros(received_at),
            };
            prop_assert_eq!(codec.decode::<Sample>(&codec.encode(&s).unwrap()).unwrap(), s);
        }
    }
}
