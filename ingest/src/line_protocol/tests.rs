use super::*;
use crate::validate::RejectKind;
use labstream_schemas::{FieldValue, Registry};
use std::time::Duration;

/// 2026-11-23T10:00:00Z, when the requests of these tests arrive.
const NOW: Timestamp = Timestamp::from_micros(1_795_428_000_000_000);

fn parse_with(body: &[u8], precision: Precision, tag: &str, registry: &Registry) -> Parsed {
    parse_line_protocol(body, precision, tag, &Validator::new(registry, NOW))
        .expect("the body holds points")
}

fn parse(body: &str) -> Parsed {
    parse_with(
        body.as_bytes(),
        Precision::Ns,
        "sensor_id",
        &Registry::default_lab(),
    )
}

/// The single sample of a one-line body, or its rejection as `code: reason`.
fn one(body: &str, registry: &Registry) -> std::result::Result<Sample, String> {
    let mut p = parse_with(body.as_bytes(), Precision::Ns, "sensor_id", registry);
    assert_eq!(p.total, 1, "{body}");
    match p.rejected.pop() {
        Some(r) => Err(format!("{}: {}", r.code.as_str(), r.reason)),
        None => Ok(p.samples.pop().expect("one sample")),
    }
}

fn lab_one(body: &str) -> std::result::Result<Sample, String> {
    one(body, &Registry::default_lab())
}

fn kinds() -> Registry {
    Registry::from_json_str(
        "test",
        r#"{"sensor_types": {"note": {"fields": {
            "text": {"type": "string"},
            "count": {"type": "long"},
            "level": {"type": "double"},
            "ok": {"type": "boolean"}
        }}}}"#,
    )
    .unwrap()
}

fn raw(token: &str) -> std::result::Result<RawValue, String> {
    parse_unquoted("v", token).map_err(|e| e.reason)
}

#[test]
fn a_telegraf_payload_parses_exactly() {
    // As Telegraf's influx serializer writes it: tags sorted, `host` names the sensor.
    let body = concat!(
        "temperature,host=lab-pi-1,room=lab\\ 2,site=a\\,b celsius=21.5 1795427990000000000\n",
        "humidity,host=lab-pi-1,room=lab\\ 2,site=a\\,b percent=41.25 1795427990000000000\n",
        "co2,host=lab-pi-2,room=cold\\=room ppm=415i 1795427995000000000\n",
        "door,host=door-3 open=true 1795427999123456789\n",
        "accelerometer,host=imu-1 x=0.01,y=-0.02,z=9.81 1795427999500000000\n",
    );
    let p = parse_with(
        body.as_bytes(),
        Precision::Ns,
        "host",
        &Registry::default_lab(),
    );
    assert_eq!(
        (p.total, p.rejected.len(), p.samples.len()),
        (5, 0, 5),
        "{:?}",
        p.rejected
    );

    let t = &p.samples[0];
    assert_eq!(t.sensor_id.as_str(), "lab-pi-1");
    assert_eq!(t.sensor_type.as_str(), "temperature");
    assert_eq!(t.ts.as_micros(), 1_795_427_990_000_000);
    assert_eq!(t.seq, None);
    assert_eq!(
        t.values,
        BTreeMap::from([("celsius".to_owned(), FieldValue::Double(21.5))])
    );
    assert_eq!(
        t.tags,
        BTreeMap::from([
            ("room".to_owned(), "lab 2".to_owned()),
            ("site".to_owned(), "a,b".to_owned()),
        ])
    );
    assert_eq!(t.received_at, NOW);

    let h = &p.samples[1];
    assert_eq!(
        (h.sensor_id.as_str(), h.sensor_type.as_str()),
        ("lab-pi-1", "humidity")
    );
    assert_eq!(h.values["percent"], FieldValue::Double(41.25));

    let c = &p.samples[2];
    assert_eq!(
        (c.sensor_id.as_str(), c.sensor_type.as_str()),
        ("lab-pi-2", "co2")
    );
    assert_eq!(c.ts.as_micros(), 1_795_427_995_000_000);
    // An integer is accepted for a double field and stored as a double.
    assert_eq!(c.values["ppm"], FieldValue::Double(415.0));
    assert_eq!(c.tags["room"], "cold=room");

    let d = &p.samples[3];
    assert_eq!(
        (d.sensor_id.as_str(), d.sensor_type.as_str()),
        ("door-3", "door")
    );
    // Nanoseconds are truncated to the microsecond.
    assert_eq!(d.ts.as_micros(), 1_795_427_999_123_456);
    assert_eq!(d.values["open"], FieldValue::Bool(true));
    assert!(d.tags.is_empty());

    let a = &p.samples[4];
    assert_eq!(a.sensor_id.as_str(), "imu-1");
    assert_eq!(
        a.values,
        BTreeMap::from([
            ("x".to_owned(), FieldValue::Double(0.01)),
            ("y".to_owned(), FieldValue::Double(-0.02)),
            ("z".to_owned(), FieldValue::Double(9.81)),
        ])
    );
}

#[test]
fn escapes_in_tags_keys_and_measurements() {
    let s = lab_one(
        r"temperature,sensor_id=fridge\ 1,room\ name=lab\ 2,site=a\,b,eq=x\=y,path=C:\data,two=a\\,b celsius=4",
    )
    .unwrap();
    assert_eq!(s.sensor_id.as_str(), "fridge 1");
    assert_eq!(
        s.tags,
        BTreeMap::from([
            ("room name".to_owned(), "lab 2".to_owned()),
            ("site".to_owned(), "a,b".to_owned()),
            ("eq".to_owned(), "x=y".to_owned()),
            // A backslash before anything but ',', '=' or ' ' is kept.
            ("path".to_owned(), r"C:\data".to_owned()),
            ("two".to_owned(), r"a\,b".to_owned()),
        ])
    );
    // Registry names are identifiers, so an escaped space reaches the registry intact
    // and is refused there.
    let err = lab_one(r"room\ temperature,sensor_id=t1 celsius=4").unwrap_err();
    assert!(
        err.starts_with("unknown_sensor_type: line 1: unknown sensor_type \"room temperature\""),
        "{err}"
    );
    let err = lab_one(r"temperature,sensor_id=t1 cel\ si\,us\=x=4").unwrap_err();
    assert!(
        err.starts_with("unknown_field: line 1: unknown field \"cel si,us=x\""),
        "{err}"
    );
    // '=' needs no escape in a measurement name.
    let err = lab_one(r"a=b,sensor_id=t1 celsius=4").unwrap_err();
    assert!(err.contains("unknown sensor_type \"a=b\""), "{err}");
}

#[test]
fn string_fields_unescape_quotes_and_backslashes() {
    let registry = kinds();
    let s = one(
        r#"note,sensor_id=n1 text="say \"hi\", a\\b, lone \ and \n stay; = and spaces too 🚀",count=3i 1795427990000000000"#,
        &registry,
    )
    .unwrap();
    assert_eq!(
        s.values["text"],
        FieldValue::Str(r#"say "hi", a\b, lone \ and \n stay; = and spaces too 🚀"#.into())
    );
    assert_eq!(s.values["count"], FieldValue::Long(3));
    let s = one(r#"note,sensor_id=n1 text="",ok=f"#, &registry).unwrap();
    assert_eq!(s.values["text"], FieldValue::Str(String::new()));
    // A string that ends in an escaped backslash is closed by the next quote.
    let s = one(r#"note,sensor_id=n1 text="dir\\""#, &registry).unwrap();
    assert_eq!(s.values["text"], FieldValue::Str(r"dir\".into()));
    // A string is never a number, even when it looks like one.
    let err = one(r#"note,sensor_id=n1 count="3""#, &registry).unwrap_err();
    assert!(err.contains("must be a long, got a string"), "{err}");
}

#[test]
fn every_boolean_spelling() {
    for (token, want) in [
        ("t", true),
        ("T", true),
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("f", false),
        ("F", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
    ] {
        let s = lab_one(&format!("door,sensor_id=d1 open={token}")).unwrap();
        assert_eq!(s.values["open"], FieldValue::Bool(want), "{token}");
    }
    for bad in ["tRUE", "truth", "fa", "t1"] {
        let err = lab_one(&format!("door,sensor_id=d1 open={bad}")).unwrap_err();
        assert!(
            err.starts_with("malformed: line 1: field \"open\""),
            "{err}"
        );
        assert!(err.contains("no boolean"), "{err}");
    }
}

#[test]
fn numbers_are_typed_by_their_suffix() {
    assert_eq!(raw("12i"), Ok(RawValue::Int(12)));
    assert_eq!(raw("-12i"), Ok(RawValue::Int(-12)));
    assert_eq!(raw("-9223372036854775808i"), Ok(RawValue::Int(i64::MIN)));
    assert_eq!(raw("12u"), Ok(RawValue::UInt(12)));
    assert_eq!(raw("18446744073709551615u"), Ok(RawValue::UInt(u64::MAX)));
    // Without a suffix every number is a float.
    assert_eq!(raw("12"), Ok(RawValue::Float(12.0)));
    assert_eq!(raw("-1.5e3"), Ok(RawValue::Float(-1500.0)));
    assert_eq!(raw("1E+2"), Ok(RawValue::Float(100.0)));
    assert_eq!(raw("2.5e-3"), Ok(RawValue::Float(0.0025)));
    assert_eq!(raw("1."), Ok(RawValue::Float(1.0)));
    assert_eq!(raw(".5"), Ok(RawValue::Float(0.5)));
    assert_eq!(raw("1.e2"), Ok(RawValue::Float(100.0)));
    assert_eq!(raw("-0"), Ok(RawValue::Float(-0.0)));

    for bad in ["9223372036854775808i", "18446744073709551616u", "1e309"] {
        assert!(raw(bad).unwrap_err().contains("out of range"), "{bad}");
    }
    for bad in [
        "-1u", "1.5i", "1e3i", "1.2.3", ".", "-", "1e", "1e+", "--1", "1_000", "0x10", "12a",
    ] {
        assert!(raw(bad).unwrap_err().contains("no number"), "{bad}");
    }
    for bad in ["+1", "i", "inf", "NaN", "\"x", "hello"] {
        assert!(
            raw(bad).unwrap_err().contains("no line protocol type"),
            "{bad}"
        );
    }
}

#[test]
fn numbers_reach_the_registry_types() {
    let registry = kinds();
    let s = one(
        "note,sensor_id=n1 count=-7i,level=-1.5e3,ok=T 1795427990000000000",
        &registry,
    )
    .unwrap();
    assert_eq!(s.values["count"], FieldValue::Long(-7));
    assert_eq!(s.values["level"], FieldValue::Double(-1500.0));
    assert_eq!(s.values["ok"], FieldValue::Bool(true));
    let s = one("note,sensor_id=n1 count=7u,level=3u", &registry).unwrap();
    assert_eq!(s.values["count"], FieldValue::Long(7));
    assert_eq!(s.values["level"], FieldValue::Double(3.0));
    // An unsuffixed number is a float, which a long field refuses.
    let err = one("note,sensor_id=n1 count=7", &registry).unwrap_err();
    assert!(
        err.starts_with(
            "wrong_type: line 1: field \"count\" must be a long, got a fractional number"
        ),
        "{err}"
    );
    let err = one("note,sensor_id=n1 count=18446744073709551615u", &registry).unwrap_err();
    assert!(err.starts_with("wrong_type: "), "{err}");
}

#[test]
fn a_missing_timestamp_is_the_arrival_time() {
    let s = lab_one("temperature,sensor_id=t1 celsius=20").unwrap();
    assert_eq!(s.ts, NOW);
    // Trailing spaces are no timestamp either.
    let s = lab_one("temperature,sensor_id=t1 celsius=20   ").unwrap();
    assert_eq!(s.ts, NOW);
}

#[test]
fn timestamps_follow_the_precision() {
    let registry = Registry::default_lab();
    for (precision, ts, micros) in [
        (Precision::S, "1795427990", 1_795_427_990_000_000),
        (Precision::Ms, "1795427990123", 1_795_427_990_123_000),
        (Precision::Us, "1795427990123456", 1_795_427_990_123_456),
        (Precision::Ns, "1795427990123456789", 1_795_427_990_123_456),
        (Precision::Ns, "-1", -1),
        (Precision::S, "0", 0),
    ] {
        let body = format!("temperature,sensor_id=t1 celsius=20 {ts}");
        let p = parse_with(body.as_bytes(), precision, "sensor_id", &registry);
        assert_eq!(p.rejected, [], "{precision:?} {ts}");
        assert_eq!(p.samples[0].ts.as_micros(), micros, "{precision:?} {ts}");
    }
    // Seconds so large they overflow microseconds are refused, not wrapped.
    let body = "temperature,sensor_id=t1 celsius=20 9223372036854775807";
    let p = parse_with(body.as_bytes(), Precision::S, "sensor_id", &registry);
    assert!(
        p.rejected[0]
            .reason
            .contains("out of range for precision s"),
        "{}",
        p.rejected[0].reason
    );
}

#[test]
fn comments_blank_lines_and_crlf_are_skipped() {
    let body = "# written by a script\r\n\r\n   \n\
                temperature,sensor_id=t1 celsius=20 1795427990000000000\r\n\
                \x20 # an indented comment\r\n\
                \t\r\n\
                humidity,sensor_id=h1 percent=40 1795427990000000000\r\n\
                door,sensor_id=d1 open=maybe\r\n";
    let p = parse(body);
    assert_eq!(p.total, 3);
    assert_eq!(p.samples.len(), 2);
    assert_eq!(p.samples[0].values["celsius"], FieldValue::Double(20.0));
    assert_eq!(p.samples[1].values["percent"], FieldValue::Double(40.0));
    assert_eq!(p.samples[1].ts.as_micros(), 1_795_427_990_000_000);
    // The index counts points, the line number counts every line.
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].index, 2);
    assert!(
        p.rejected[0].reason.starts_with("line 8: field \"open\""),
        "{}",
        p.rejected[0].reason
    );
    // Leading and repeated spaces between the sections are allowed.
    let s = lab_one("  temperature,sensor_id=t1   celsius=20   1795427990000000000  \r").unwrap();
    assert_eq!(s.ts.as_micros(), 1_795_427_990_000_000);
}

#[test]
fn an_empty_body_is_empty() {
    let registry = Registry::default_lab();
    let v = Validator::new(&registry, NOW);
    for body in ["", "\n\n", "# only a comment\n  \r\n#another"] {
        let r = parse_line_protocol(body.as_bytes(), Precision::Ns, "sensor_id", &v);
        assert!(matches!(r, Err(Error::Empty)), "{body:?}: {r:?}");
    }
}

#[test]
fn malformed_lines_are_rejected_and_the_rest_still_parse() {
    let body = [
        "# malformed lines between good ones",
        "temperature,sensor_id=t1 celsius=20 1795427990000000000",
        "temperature,sensor_id=t1",
        "temperature,sensor_id=t1 ",
        "temperature,sensor_id=t1 celsius 1795427990000000000",
        "temperature,sensor_id=t1 celsius= 1795427990000000000",
        "temperature,sensor_id=t1 celsius=20,",
        r#"door,sensor_id=d1 open="true"#,
        r#"door,sensor_id=d1 open="a\""#,
        "temperature,sensor_id=t1 celsius=20 yesterday",
        "temperature,sensor_id=t1 celsius=20 2026-11-23T10:00:00Z",
        "temperature,sensor_id=t1 celsius=20 1795427990000000000 extra",
        "temperature,sensor_id=t1 celsius=20 1795427990000000000 1",
        r#"temperature,sensor_id=t1 celsius=20,note="x"y"#,
        "temperature,room=lab celsius=20 1795427990000000000",
        "temperature,sensor_id=t1,room= celsius=20",
        "temperature,sensor_id=t1,room celsius=20",
        "temperature,sensor_id=t1,=lab celsius=20",
        "temperature,sensor_id=t1, celsius=20",
        "temperature,sensor_id=t1,room=lab,room=lab2 celsius=20",
        "temperature,sensor_id=t1,sensor_id=t2 celsius=20",
        "temperature,sensor_id=a=b celsius=20",
        ",sensor_id=t1 celsius=20",
        "temperature,sensor_id=t1 celsius=hot",
        "temperature,sensor_id=t1 =20",
        "temperature,sensor_id=t1\tcelsius=20",
        "humidity,sensor_id=h1 percent=40",
    ]
    .join("\n");
    let p = parse(&body);
    assert_eq!(p.total, 26);
    assert_eq!(p.samples.len(), 2);
    assert_eq!(p.samples[0].sensor_type.as_str(), "temperature");
    assert_eq!(p.samples[1].sensor_type.as_str(), "humidity");
    let expected: &[(usize, &str)] = &[
        (1, "line 3: no fields"),
        (2, "line 4: no fields"),
        (3, "line 5: field \"celsius\" has no value"),
        (4, "line 6: field \"celsius\" has no value"),
        (
            5,
            "line 7: expected a field key at column 37, found the end of the line",
        ),
        (
            6,
            "line 8: the string value of field \"open\" has no closing quote",
        ),
        (
            7,
            "line 9: the string value of field \"open\" has no closing quote",
        ),
        (
            8,
            "line 10: invalid timestamp \"yesterday\"; expected an integer number of nanoseconds",
        ),
        (9, "line 11: invalid timestamp \"2026-11-23T10:00:00Z\""),
        (10, "line 12: unexpected text \"extra\" after the timestamp"),
        (11, "line 13: unexpected text \"1\" after the timestamp"),
        (
            12,
            "line 14: expected ',' or a space after a field value at column 45, found 'y'",
        ),
        (
            13,
            "line 15: no \"sensor_id\" tag; every line needs one to name its sensor, e.g. temperature,sensor_id=<id>",
        ),
        (
            14,
            "line 16: tag \"room\" has an empty value; omit the tag instead",
        ),
        (15, "line 17: tag \"room\" has no value"),
        (
            16,
            "line 18: expected a tag key after ',' at column 26, found '='",
        ),
        (
            17,
            "line 19: expected a tag key after ',' at column 26, found ' '",
        ),
        (18, "line 20: tag \"room\" is given twice"),
        (19, "line 21: tag \"sensor_id\" is given twice"),
        (
            20,
            "line 22: expected ',' or a space after the measurement and tags at column 24, found '='",
        ),
        (
            21,
            "line 23: expected a measurement name at column 1, found ','",
        ),
        (
            22,
            "line 24: field \"celsius\" has the value \"hot\" of no line protocol type",
        ),
        (23, "line 25: expected a field key at column 26, found '='"),
        (
            24,
            "line 26: a tag value holds the control character '\\t' at column 25",
        ),
    ];
    let got: Vec<(usize, &str)> = p
        .rejected
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect();
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for ((index, reason), (want_index, want_reason)) in got.iter().zip(expected) {
        assert_eq!(index, want_index, "{reason}");
        assert!(
            reason.starts_with(want_reason),
            "{reason:?} should start with {want_reason:?}"
        );
    }
    assert!(p.rejected.iter().all(|r| r.code == RejectKind::Malformed));
    // The missing-tag reason says how to use another tag.
    assert!(p.rejected[12].reason.contains("set ingest.sensor_id_tag"));
}

#[test]
fn the_sensor_id_tag_is_configurable() {
    let registry = Registry::default_lab();
    let body = "temperature,host=pi-4,sensor_id=x celsius=20";
    let p = parse_with(body.as_bytes(), Precision::Ns, "host", &registry);
    assert_eq!(p.samples[0].sensor_id.as_str(), "pi-4");
    // Any other tag, even one named sensor_id, is an ordinary tag then.
    assert_eq!(p.samples[0].tags["sensor_id"], "x");
    let body = "temperature,sensor_id=t1 celsius=20";
    let p = parse_with(body.as_bytes(), Precision::Ns, "host", &registry);
    let reason = &p.rejected[0].reason;
    assert_eq!(p.rejected[0].code, RejectKind::Malformed);
    assert!(reason.starts_with("line 1: no \"host\" tag"), "{reason}");
    assert!(reason.contains("ingest.sensor_id_tag"), "{reason}");
}

#[test]
fn an_integer_seq_field_is_the_sequence_number() {
    let s = lab_one("temperature,sensor_id=t1 celsius=20,seq=7i").unwrap();
    assert_eq!(s.seq, Some(7));
    assert_eq!(s.values.len(), 1);
    assert!(!s.values.contains_key("seq"));
    let s = lab_one("temperature,sensor_id=t1 seq=8u,celsius=20").unwrap();
    assert_eq!(s.seq, Some(8));
    for bad in ["seq=7", "seq=\"7\"", "seq=true", "seq=9223372036854775808u"] {
        let err = lab_one(&format!("temperature,sensor_id=t1 celsius=20,{bad}")).unwrap_err();
        assert!(err.contains("must be an integer"), "{bad}: {err}");
    }
    let err = lab_one("temperature,sensor_id=t1 celsius=20,seq=1i,seq=2i").unwrap_err();
    assert!(err.contains("\"seq\" is given twice"), "{err}");
    // A line with only a seq has no values.
    let err = lab_one("temperature,sensor_id=t1 seq=1i").unwrap_err();
    assert!(err.contains("at least one field"), "{err}");
}

#[test]
fn the_validator_decides_registry_and_time() {
    let registry = Registry::default_lab();
    let validator = Validator {
        registry: &registry,
        received_at: NOW,
        max_past: Some(Duration::from_secs(3600)),
        max_future: Some(Duration::from_secs(60)),
    };
    let body = [
        "fridge,sensor_id=f1 celsius=4",
        "temperature,sensor_id=t1 kelvin=277",
        "door,sensor_id=d1 open=1",
        "temperature,sensor_id=t1 celsius=20 1700000000",
        "temperature,sensor_id=t1 celsius=20 1795428000",
        "temperature,sensor_id=t1 celsius=20,celsius=21",
    ]
    .join("\n");
    let p = parse_line_protocol(body.as_bytes(), Precision::S, "sensor_id", &validator).unwrap();
    let got: Vec<(usize, RejectKind)> = p.rejected.iter().map(|r| (r.index, r.code)).collect();
    assert_eq!(
        got,
        [
            (0, RejectKind::UnknownSensorType),
            (1, RejectKind::UnknownField),
            (2, RejectKind::WrongType),
            (3, RejectKind::OutOfWindow),
            (5, RejectKind::Malformed),
        ]
    );
    assert!(
        p.rejected[0]
            .reason
            .starts_with("line 1: unknown sensor_type \"fridge\"")
    );
    assert!(p.rejected[3].reason.starts_with("line 4: ts "));
    assert!(p.rejected[4].reason.contains("given twice"));
    assert_eq!(p.samples.len(), 1);
    assert_eq!(p.samples[0].ts, NOW);
}

#[test]
fn a_line_that_is_not_utf8_is_malformed() {
    let mut body = b"temperature,sensor_id=t1 celsius=20\n".to_vec();
    body.extend_from_slice(b"temperature,sensor_id=t\xff celsius=20\n");
    body.extend_from_slice(b"# a comment may hold anything: \xfe\n");
    body.extend_from_slice(b"temperature,sensor_id=t2 celsius=21\n");
    let p = parse_with(&body, Precision::Ns, "sensor_id", &Registry::default_lab());
    assert_eq!((p.total, p.samples.len()), (3, 2));
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].index, 1);
    assert_eq!(p.rejected[0].code, RejectKind::Malformed);
    assert_eq!(
        p.rejected[0].reason,
        "line 2: invalid UTF-8 at column 24; line protocol must be UTF-8"
    );
}

#[test]
fn long_strings_are_refused() {
    let registry = kinds();
    let ok = format!(
        "note,sensor_id=n1 text=\"{}\"",
        "a".repeat(MAX_STRING_BYTES)
    );
    assert!(one(&ok, &registry).is_ok());
    let long = format!(
        "note,sensor_id=n1 text=\"{}\"",
        "a".repeat(MAX_STRING_BYTES + 1)
    );
    let err = one(&long, &registry).unwrap_err();
    assert!(err.contains("at most 64 KiB"), "{err}");
}

#[test]
fn float_grammar_matches_the_spec() {
    for ok in [
        "1", "-1", "1.", "1.5", ".5", "-.5", "1e5", "1E-5", "1.e+5", ".5e5",
    ] {
        assert!(is_float(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "", "-", ".", "e5", ".e5", "1e", "1e+", "1..5", "1e5.5", "+1", "1e5e5", "1 ",
    ] {
        assert!(!is_float(bad.as_bytes()), "{bad}");
    }
}
