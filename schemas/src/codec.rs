//! Avro single-object encoding (`C3 01`, the 8-byte little-endian CRC-64-AVRO
//! fingerprint of the writer schema, then the body). Every message names its writer
//! schema, so readers need no registry server: they look the fingerprint up among all
//! schema versions kept in `schemas/avro/` and resolve to their own version.

use crate::error::{Error, Result};
use crate::sample_view::SampleView;
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
    /// A hand-written decoder of a body written with the *current* schema version,
    /// for hot paths; `None` (the default) means "use the generic resolver". Must give
    /// exactly what `from_avro` of the generic decoding gives.
    fn decode_current(_body: &[u8]) -> Option<Result<Self>> {
        None
    }
}

/// Reads the Avro binary encoding of a body, for the hand-written decoders of hot
/// records (`AvroRecord::decode_current`). Errors name `record`.
pub(crate) struct BodyReader<'a> {
    bytes: &'a [u8],
    record: &'static str,
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(bytes: &'a [u8], record: &'static str) -> Self {
        Self { bytes, record }
    }

    fn truncated(&self) -> Error {
        Error::shape(self.record, "the body ends in the middle of a value")
    }

    /// A zigzag varint `long` (also `int`, union indexes, lengths and block counts).
    pub(crate) fn long(&mut self) -> Result<i64> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let (&b, rest) = self.bytes.split_first().ok_or_else(|| self.truncated())?;
            self.bytes = rest;
            if shift >= 64 {
                return Err(Error::shape(self.record, "a varint longer than 10 bytes"));
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    pub(crate) fn double(&mut self) -> Result<f64> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<8>() else {
            return Err(self.truncated());
        };
        self.bytes = rest;
        Ok(f64::from_le_bytes(*head))
    }

    pub(crate) fn boolean(&mut self) -> Result<bool> {
        let (&b, rest) = self.bytes.split_first().ok_or_else(|| self.truncated())?;
        self.bytes = rest;
        match b {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Error::shape(self.record, format!("boolean byte {other}"))),
        }
    }

    pub(crate) fn str(&mut self) -> Result<&'a str> {
        let len = self.long()?;
        let len = usize::try_from(len)
            .map_err(|_| Error::shape(self.record, format!("negative string length {len}")))?;
        if len > self.bytes.len() {
            return Err(self.truncated());
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(head)
            .map_err(|e| Error::shape(self.record, format!("a string is not UTF-8: {e}")))
    }

    /// A union branch index below `branches`.
    pub(crate) fn union_index(&mut self, branches: i64) -> Result<i64> {
        let i = self.long()?;
        if !(0..branches).contains(&i) {
            return Err(Error::shape(self.record, format!("union branch {i}")));
        }
        Ok(i)
    }

    /// A map whose keys stay borrowed: calls `entry(key, reader)` for each entry, which
    /// must read the value.
    pub(crate) fn map(
        &mut self,
        mut entry: impl FnMut(&'a str, &mut Self) -> Result<()>,
    ) -> Result<()> {
        loop {
            let mut count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or_else(|| self.truncated())?;
                let _block_bytes = self.long()?;
            }
            for _ in 0..count {
                let key = self.str()?;
                entry(key, self)?;
            }
        }
    }
}

/// The writer schema's fingerprint from a single-object header; `None` without one.
fn header_fingerprint(bytes: &[u8]) -> Option<u64> {
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
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    versions: Vec<SchemaVersion>,
    by_fingerprint: HashMap<u64, usize>,
    latest: HashMap<&'static str, usize>,
    /// Fingerprints (current and legacy) of the current Sample and EnrichedSample,
    /// read by `decode_view`.
    view_fingerprints: [[u64; 2]; 2],
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

    /// A borrowed view of a message written with the current `Sample` or
    /// `EnrichedSample` schema; `None` for any other writer schema (decode those with
    /// `decode`). Gives what `decode` gives, without allocating per string.
    pub fn decode_view<'a>(&self, bytes: &'a [u8]) -> Option<Result<SampleView<'a>>> {
        let fingerprint = header_fingerprint(bytes)?;
        let [sample, enriched] = self.inner.view_fingerprints;
        let body = &bytes[HEADER_LEN..];
        if sample.contains(&fingerprint) {
            Some(SampleView::read(body, false))
        } else if enriched.contains(&fingerprint) {
            Some(SampleView::read(body, true))
        } else {
            None
        }
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
    fn fingerprints_follow_the_canonical_form_of_the_specification() {
        // A timestamp-micros long is "long" in the canonical form (Java's
        // SchemaNormalization, fastavro): what other libraries look the header up by.
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "T", "namespace": "x", "fields": [
                {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                {"name": "n", "type": "long"}]}"#,
        )
        .unwrap();
        assert_eq!(
            canonical_form(&schema),
            r#"{"name":"x.T","type":"record","fields":[{"name":"ts","type":"long"},{"name":"n","type":"long"}]}"#
        );
        let plain = Schema::parse_str(
            r#"{"type": "record", "name": "T", "namespace": "x", "fields": [
                {"name": "ts", "type": "long"}, {"name": "n", "type": "long"}]}"#,
        )
        .unwrap();
        assert_eq!(fingerprint_of(&schema), fingerprint_of(&plain));
        // Records written with the earlier fingerprint are still read.
        let codec = Codec::new();
        let writer = codec.writer_schema("labstream.Sample").unwrap();
        assert_ne!(writer.fingerprint, writer.legacy_fingerprint);
        let mut bytes = codec.encode(&sample()).unwrap();
        bytes[2..10].copy_from_slice(&writer.legacy_fingerprint.to_le_bytes());
        assert_eq!(codec.decode::<Sample>(&bytes).unwrap(), sample());
        assert_eq!(
            codec.decode_view(&bytes).unwrap().unwrap().sensor_id,
            "door-3"
        );
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

    /// What the generic resolver makes of a body written with the current schema.
    fn generic<T: AvroRecord>(codec: &Codec, bytes: &[u8]) -> Result<T> {
        let writer = codec.writer_schema(T::NAME).unwrap();
        let mut body = &bytes[HEADER_LEN..];
        let value = apache_avro::from_avro_datum(&writer.schema, &mut body, None)
            .map_err(|e| Error::avro("decode", e))?;
        T::from_avro(value)
    }

    #[test]
    fn fast_decoder_reads_maps_in_sized_blocks() {
        // values: one block of -1 entries with its byte size, then the end of the map.
        let mut body = Vec::new();
        let long = |out: &mut Vec<u8>, v: i64| {
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            while z >= 0x80 {
                out.push((z as u8) | 0x80);
                z >>= 7;
            }
            out.push(z as u8);
        };
        let string = |out: &mut Vec<u8>, s: &str| {
            long(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        };
        string(&mut body, "door-3");
        string(&mut body, "door");
        long(&mut body, 1_795_428_000_123_000);
        long(&mut body, 1);
        long(&mut body, 7);
        long(&mut body, -1);
        long(&mut body, 7);
        string(&mut body, "open");
        long(&mut body, 2);
        body.push(1);
        long(&mut body, 0);
        long(&mut body, 1);
        string(&mut body, "room");
        string(&mut body, "lab-2");
        long(&mut body, 0);
        long(&mut body, 1_795_428_000_200_000);
        let decoded = Sample::decode_current(&body).unwrap().unwrap();
        assert_eq!(decoded, sample());
        let codec = Codec::new();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(
            &codec
                .writer_schema(Sample::NAME)
                .unwrap()
                .fingerprint
                .to_le_bytes(),
        );
        bytes.extend_from_slice(&body);
        assert_eq!(generic::<Sample>(&codec, &bytes).unwrap(), decoded);
    }

    #[test]
    fn fast_decoder_refuses_truncated_bodies() {
        let codec = Codec::new();
        let bytes = codec.encode(&sample()).unwrap();
        for end in HEADER_LEN..bytes.len() {
            assert!(
                codec.decode::<Sample>(&bytes[..end]).is_err(),
                "cut at {end}"
            );
        }
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
            let bytes = codec.encode(&s).unwrap();
            prop_assert_eq!(generic::<Sample>(&codec, &bytes).unwrap(), s.clone());
            prop_assert_eq!(codec.decode::<Sample>(&bytes).unwrap(), s);
        }

        /// The hand-written decoder gives exactly what the generic resolver gives.
        #[test]
        fn fast_decoder_equals_the_generic_one(
            sensor_id in ".{0,16}",
            sensor_type in "[a-z]{1,8}",
            ts in any::<i64>(),
            seq in proptest::option::of(any::<i64>()),
            values in proptest::collection::btree_map(".{0,8}", field_value(), 0..8),
            tags in proptest::collection::btree_map(".{0,6}", ".{0,10}", 0..4),
            received_at in any::<i64>(),
            context in proptest::option::of(proptest::collection::vec(".{0,12}", 4)),
        ) {
            use crate::experiment::{EnrichedSample, RecordingContext};
            let codec = Codec::new();
            let sample = Sample {
                sensor_id: SensorId::new(sensor_id),
                sensor_type: SensorType::new(sensor_type),
                ts: Timestamp::from_micros(ts),
                seq,
                values,
                tags,
                received_at: Timestamp::from_micros(received_at),
            };
            let bytes = codec.encode(&sample).unwrap();
            let fast = Sample::decode_current(&bytes[HEADER_LEN..]).unwrap().unwrap();
            prop_assert_eq!(&fast, &generic::<Sample>(&codec, &bytes).unwrap());
            prop_assert_eq!(&fast, &sample);
            let enriched = EnrichedSample {
                sample,
                context: context.map(|c| RecordingContext {
                    experiment_id: c[0].clone().into(),
                    recording_id: c[1].clone().into(),
                    participant_id: c[2].clone().into(),
                    task_id: c[3].clone().into(),
                }),
            };
            let bytes = codec.encode(&enriched).unwrap();
            let fast = EnrichedSample::decode_current(&bytes[HEADER_LEN..]).unwrap().unwrap();
            prop_assert_eq!(&fast, &generic::<EnrichedSample>(&codec, &bytes).unwrap());
            prop_assert_eq!(&fast, &enriched);
            // The borrowed view reads the same, of both records.
            let view = codec.decode_view(&bytes).unwrap().unwrap();
            prop_assert_eq!(&view, &SampleView::of(&enriched));
            let raw = EnrichedSample { sample: enriched.sample.clone(), context: None };
            let bytes = codec.encode(&raw.sample).unwrap();
            let view = codec.decode_view(&bytes).unwrap().unwrap();
            prop_assert_eq!(&view, &SampleView::of(&raw));
        }

        /// On arbitrary bytes the view and the owned decoder agree: the same sample, or
        /// both refuse.
        #[test]
        fn sample_view_agrees_on_garbage(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let codec = Codec::new();
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&codec.writer_schema(Sample::NAME).unwrap().fingerprint.to_le_bytes());
            bytes.extend_from_slice(&body);
            let view = codec.decode_view(&bytes).unwrap();
            let owned = codec.decode::<Sample>(&bytes);
            match (view, owned) {
                (Ok(v), Ok(s)) => {
                    let e = crate::experiment::EnrichedSample { sample: s, context: None };
                    prop_assert_eq!(v, SampleView::of(&e));
                }
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "view {:?} owned {:?}", a, b),
            }
        }

        /// On arbitrary bytes the two agree: the same value, or both refuse.
        #[test]
        fn fast_decoder_agrees_on_garbage(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let codec = Codec::new();
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&codec.writer_schema(Sample::NAME).unwrap().fingerprint.to_le_bytes());
            bytes.extend_from_slice(&body);
            let fast = Sample::decode_current(&body).unwrap();
            let slow = generic::<Sample>(&codec, &bytes);
            match (fast, slow) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "fast {:?} generic {:?}", a, b),
            }
        }
    }
}
