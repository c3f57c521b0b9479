//! Line protocol through the crate's public API, as the write route calls it: a Telegraf
//! batch with its own measurements mixed in, and a body that is partly bad.

use labstream_ingest::{Error, Precision, RejectKind, Validator, parse_line_protocol};
use labstream_schemas::{FieldValue, Registry, Timestamp};
use std::time::Duration;

/// 2026-11-23T10:00:00Z.
const NOW: Timestamp = Timestamp::from_micros(1_795_428_000_000_000);

fn validator(registry: &Registry) -> Validator<'_> {
    Validator {
        registry,
        received_at: NOW,
        max_past: Some(Duration::from_secs(24 * 3600)),
        max_future: Some(Duration::from_secs(300)),
    }
}

#[test]
fn line_protocol_from_telegraf_in_seconds_keeps_the_lab_sensors() {
    // Telegraf with `precision = "1s"` and sensor ids in `host`; its own `cpu`
    // measurement is no sensor type and is refused without blocking the others.
    let body = "\
# telegraf --once
cpu,cpu=cpu-total,host=lab-pi-1 usage_idle=98.2,usage_user=1.1 1795427940
temperature,host=lab-pi-1,room=lab\\ 2 celsius=21.25 1795427940
humidity,host=lab-pi-1,room=lab\\ 2 percent=40.5 1795427940
door,host=door-3,room=lab\\ 2 open=false,seq=42i 1795427941
power,host=plug-7 watts=1200u 1795427942
";
    let registry = Registry::default_lab();
    let p =
        parse_line_protocol(body.as_bytes(), Precision::S, "host", &validator(&registry)).unwrap();
    assert_eq!(p.total, 5);
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].index, 0);
    assert_eq!(p.rejected[0].code, RejectKind::UnknownSensorType);
    assert!(
        p.rejected[0]
            .reason
            .starts_with("line 2: unknown sensor_type \"cpu\""),
        "{}",
        p.rejected[0].reason
    );

    let got: Vec<(&str, &str, i64, Option<i64>)> = p
        .samples
        .iter()
        .map(|s| {
            (
                s.sensor_id.as_str(),
                s.sensor_type.as_str(),
                s.ts.as_micros(),
                s.seq,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("lab-pi-1", "temperature", 1_795_427_940_000_000, None),
            ("lab-pi-1", "humidity", 1_795_427_940_000_000, None),
            ("door-3", "door", 1_795_427_941_000_000, Some(42)),
            ("plug-7", "power", 1_795_427_942_000_000, None),
        ]
    );
    assert_eq!(p.samples[0].values["celsius"], FieldValue::Double(21.25));
    assert_eq!(p.samples[0].tags["room"], "lab 2");
    assert_eq!(p.samples[1].values["percent"], FieldValue::Double(40.5));
    assert_eq!(p.samples[2].values.len(), 1);
    assert_eq!(p.samples[2].values["open"], FieldValue::Bool(false));
    assert_eq!(p.samples[3].values["watts"], FieldValue::Double(1200.0));
    assert!(p.samples.iter().all(|s| s.received_at == NOW));
}

#[test]
fn line_protocol_partly_bad_body_reports_each_bad_line() {
    let body = "\
temperature,sensor_id=t1 celsius=20.5 1795427990000000000\r
temperature,sensor_id=t1 celsius=\"warm\" 1795427990000000000\r
\r
temperature,sensor_id=t1 celsius=21.0 1795427990000000000 trailing\r
temperature,sensor_id=t2 celsius=19.75\r
";
    let registry = Registry::default_lab();
    let p = parse_line_protocol(
        body.as_bytes(),
        Precision::Ns,
        "sensor_id",
        &validator(&registry),
    )
    .unwrap();
    assert_eq!(p.total, 4);
    let rejected: Vec<(usize, RejectKind, &str)> = p
        .rejected
        .iter()
        .map(|r| (r.index, r.code, r.reason.as_str()))
        .collect();
    assert_eq!(
        rejected,
        [
            (
                1,
                RejectKind::WrongType,
                "line 2: field \"celsius\" must be a double, got a string"
            ),
            (
                2,
                RejectKind::Malformed,
                "line 4: unexpected text \"trailing\" after the timestamp"
            ),
        ]
    );
    assert_eq!(p.samples.len(), 2);
    assert_eq!(p.samples[0].ts.as_micros(), 1_795_427_990_000_000);
    assert_eq!(p.samples[1].sensor_id.as_str(), "t2");
    assert_eq!(p.samples[1].ts, NOW);
    assert_eq!(p.samples[1].values["celsius"], FieldValue::Double(19.75));
}

#[test]
fn line_protocol_without_points_is_empty() {
    let registry = Registry::default_lab();
    let r = parse_line_protocol(
        b"# nothing yet\n\n",
        Precision::Ns,
        "sensor_id",
        &validator(&registry),
    );
    assert!(matches!(r, Err(Error::Empty)), "{r:?}");
}
