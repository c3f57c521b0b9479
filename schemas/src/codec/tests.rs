use super::*;
use crate::SampleView;
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
