//! Ingest against the real broker: every format lands in `samples.raw` with the exact
//! values sent; every kind of bad input gets its status and a clear body and writes
//! nothing; `?partial=true` stores only the valid samples.

mod support;

use labstream_schemas::{FieldValue, Sample};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use support::TestStack;

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post_raw(
    stack: &TestStack,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String, Option<String>) {
    let mut r = reqwest::Client::new().post(format!("{}{path}", stack.url));
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        r = r.bearer_auth(&stack.token);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.text().await.unwrap(), retry_after)
}

fn key(s: &Sample) -> (String, i64) {
    (s.sensor_id.as_str().to_owned(), s.ts.as_micros())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_lands_in_samples_raw_with_the_exact_values() {
    let stack = TestStack::start().await;
    let json_ct = [("content-type", "application/json")];

    // One JSON sample, RFC 3339 time.
    let (status, body, _) = post_raw(
        &stack,
        "/v1/samples",
        &json_ct,
        br#"{"sensor_id": "door-3", "sensor_type": "door", "ts": "2026-11-23T10:00:00.123456Z", "seq": 7, "values": {"open": true}, "tags": {"room": "lab-2"}}"#.to_vec(),
    )
    .await;
    assert_eq!((status, body.as_str()), (202, r#"{"accepted":1}"#));

    // A JSON array, seconds.
    let array = json!([
        {"sensor_id": "acc-1", "sensor_type": "accelerometer", "ts": 1795428001, "values": {"x": 0.5, "y": -9.81, "z": 1}},
        {"sensor_id": "co2-1", "sensor_type": "co2", "ts": 1795428001, "values": {"ppm": 415}},
    ]);
    let (status, _, _) = post_raw(
        &stack,
        "/v1/samples?precision=s",
        &json_ct,
        array.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 202);

    // NDJSON, microseconds, gzip.
    let nd = "{\"sensor_id\": \"pw-1\", \"sensor_type\": \"power\", \"ts\": 1795428002000001, \"values\": {\"watts\": 150.25}}\n\
              {\"sensor_id\": \"pw-1\", \"sensor_type\": \"power\", \"ts\": 1795428002000002, \"seq\": 2, \"values\": {\"watts\": 151}}\n";
    let (status, body, _) = post_raw(
        &stack,
        "/v1/samples?precision=us",
        &[
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
        ],
        gzip(nd.as_bytes()),
    )
    .await;
    assert_eq!((status, body.as_str()), (202, r#"{"accepted":2}"#));

    // Line protocol as Telegraf's influxdb_v2 output sends it: tags sorted, escaped
    // spaces and commas, nanoseconds, gzip, text/plain.
    let telegraf = "temperature,host=gw-1,room=lab\\ 2,sensor_id=fridge-1 celsius=4.25 1795428003000000000\n\
                    humidity,host=gw-1,room=lab\\,west,sensor_id=hum-1 percent=45.5 1795428003000000000\n\
                    door,host=gw-1,sensor_id=door-4 open=true 1795428003000000000\n";
    let (status, body, _) = post_raw(
        &stack,
        "/api/v2/write?org=lab&bucket=sensors&precision=ns",
        &[
            ("content-type", "text/plain; charset=utf-8"),
            ("content-encoding", "gzip"),
        ],
        gzip(telegraf.as_bytes()),
    )
    .await;
    assert_eq!((status, body.as_str()), (204, ""));

    let got = stack.read_samples(&stack.topic("samples.raw"), 8);
    assert_eq!(got.len(), 8, "{got:?}");
    for (k, s) in &got {
        assert_eq!(k, s.sensor_id.as_str(), "the Kafka key is the sensor id");
    }
    let by_key: BTreeMap<(String, i64), Sample> =
        got.into_iter().map(|(_, s)| (key(&s), s)).collect();
    let check = |id: &str,
                 ts: i64,
                 sensor_type: &str,
                 seq: Option<i64>,
                 values: &[(&str, FieldValue)],
                 tags: &[(&str, &str)]| {
        let s = by_key
            .get(&(id.to_owned(), ts))
            .unwrap_or_else(|| panic!("no sample {id} at {ts}: {:?}", by_key.keys()));
        assert_eq!(s.sensor_type.as_str(), sensor_type);
        assert_eq!(s.seq, seq, "{id}");
        let want: BTreeMap<String, FieldValue> = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        assert_eq!(s.values, want, "{id}");
        let want: BTreeMap<String, String> = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(s.tags, want, "{id}");
    };
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456Z")
        .unwrap()
        .timestamp_micros();
    check(
        "door-3",
        t0,
        "door",
        Some(7),
        &[("open", FieldValue::Bool(true))],
        &[("room", "lab-2")],
    );
    check(
        "acc-1",
        1_795_428_001_000_000,
        "accelerometer",
        None,
        &[
            ("x", FieldValue::Double(0.5)),
            ("y", FieldValue::Double(-9.81)),
            ("z", FieldValue::Double(1.0)),
        ],
        &[],
    );
    check(
        "co2-1",
        1_795_428_001_000_000,
        "co2",
        None,
        &[("ppm", FieldValue::Double(415.0))],
        &[],
    );
    check(
        "pw-1",
        1_795_428_002_000_001,
        "power",
        None,
        &[("watts", FieldValue::Double(150.25))],
        &[],
    );
    check(
        "pw-1",
        1_795_428_002_000_002,
        "power",
        Some(2),
        &[("watts", FieldValue::Double(151.0))],
        &[],
    );
    check(
        "fridge-1",
        1_795_428_003_000_000,
        "temperature",
        None,
        &[("celsius", FieldValue::Double(4.25))],
        &[("host", "gw-1"), ("room", "lab 2")],
    );
    check(
        "hum-1",
        1_795_428_003_000_000,
        "humidity",
        None,
        &[("percent", FieldValue::Double(45.5))],
        &[("host", "gw-1"), ("room", "lab,west")],
    );
    check(
        "door-4",
        1_795_428_003_000_000,
        "door",
        None,
        &[("open", FieldValue::Bool(true))],
        &[("host", "gw-1")],
    );

    // Other Avro implementations decode the very bytes in Kafka to the same samples,
    // with each value in the union branch its registry type names: fastavro, and
    // Apache Avro for Java (which checks the single-object header and fingerprint).
    let want: BTreeMap<(String, i64), Value> = by_key
        .iter()
        .map(|(k, s)| {
            let values: serde_json::Map<String, Value> = s
                .values
                .iter()
                .map(|(name, v)| {
                    let tagged = match v {
                        FieldValue::Double(d) => json!(["double", d]),
                        FieldValue::Long(l) => json!(["long", l]),
                        FieldValue::Bool(b) => json!(["boolean", b]),
                        FieldValue::Str(t) => json!(["string", t]),
                    };
                    (name.clone(), tagged)
                })
                .collect();
            let sample = json!({"sensor_id": s.sensor_id.as_str(), "sensor_type": s.sensor_type.as_str(),
                "ts": s.ts.as_micros(), "seq": s.seq, "values": values, "tags": s.tags});
            (k.clone(), sample)
        })
        .collect();
    let records: Vec<Vec<u8>> = stack
        .read_raw(&stack.topic("samples.raw"), 8)
        .into_iter()
        .map(|r| r.payload.unwrap())
        .collect();
    for (reader, decoded) in [
        ("fastavro", support::readers::samples_by_fastavro(&records)),
        (
            "Java Avro",
            support::readers::samples_by_java_avro(&records),
        ),
    ] {
        let got: BTreeMap<(String, i64), Value> = decoded
            .into_iter()
            .map(|v| {
                (
                    (
                        v["sensor_id"].as_str().unwrap().to_owned(),
                        v["ts"].as_i64().unwrap(),
                    ),
                    v,
                )
            })
            .collect();
        assert_eq!(got, want, "{reader} decodes other samples");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_a_clear_body_and_writes_nothing() {
    let stack = TestStack::start_with(&[
        ("LABSTREAM__INGEST__MAX_BODY_BYTES", "2048"),
        ("LABSTREAM__INGEST__MAX_SAMPLES_PER_REQUEST", "5"),
        ("LABSTREAM__INGEST__MAX_TS_PAST", "1h"),
        ("LABSTREAM__INGEST__MAX_TS_FUTURE", "1m"),
    ])
    .await;
    let now = chrono::Utc::now();
    let sample = |id: &str, ts: chrono::DateTime<chrono::Utc>, values: serde_json::Value| json!({"sensor_id": id, "sensor_type": "temperature", "ts": ts.to_rfc3339(), "values": values});
    let json_ct = [("content-type", "application/json")];
    // (name, path, headers, body, status, code, message fragment)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        ("malformed JSON", "/v1/samples", json_ct.to_vec(), b"{\"sensor_id\": ".to_vec(), 400, "invalid_json", "not valid JSON"),
        ("unknown type", "/v1/samples", json_ct.to_vec(),
            json!({"sensor_id": "x", "sensor_type": "fridge", "ts": now.to_rfc3339(), "values": {"celsius": 1}}).to_string().into_bytes(),
            422, "invalid_sample", "unknown sensor_type \\\"fridge\\\""),
        ("unknown field", "/v1/samples", json_ct.to_vec(), sample("t", now, json!({"kelvin": 1})).to_string().into_bytes(), 422, "invalid_sample", "unknown field \\\"kelvin\\\""),
        ("wrong type", "/v1/samples", json_ct.to_vec(), sample("t", now, json!({"celsius": "warm"})).to_string().into_bytes(), 422, "invalid_sample", "must be a double, got a string"),
        ("too old", "/v1/samples", json_ct.to_vec(), sample("t", now - chrono::Duration::hours(2), json!({"celsius": 1})).to_string().into_bytes(), 422, "out_of_window", "in the past"),
        ("too far ahead", "/v1/samples", json_ct.to_vec(), sample("t", now + chrono::Duration::minutes(5), json!({"celsius": 1})).to_string().into_bytes(), 422, "out_of_window", "in the future"),
        ("non-finite in line protocol", "/api/v2/write", vec![], b"temperature,sensor_id=t celsius=NaN".to_vec(), 400, "invalid_sample", "line 1"),
        ("too large", "/v1/samples", json_ct.to_vec(), vec![b' '; 4096], 413, "too_large", "larger than 2048 bytes"),
        ("too large after gunzip", "/v1/samples", vec![("content-type", "application/json"), ("content-encoding", "gzip")], gzip(&vec![b' '; 100_000]), 413, "too_large", "larger than 2048 bytes"),
        ("too many samples", "/v1/samples", json_ct.to_vec(),
            serde_json::Value::Array((0..6).map(|i| sample(&format!("t{i}"), now, json!({"celsius": 1}))).collect()).to_string().into_bytes(),
            413, "too_many_samples", "more than 5"),
        ("wrong content type", "/v1/samples", vec![("content-type", "text/csv")], b"a,b".to_vec(), 415, "unsupported_media_type", "text/csv"),
        ("unknown encoding", "/v1/samples", vec![("content-type", "application/json"), ("content-encoding", "br")], b"xx".to_vec(), 415, "unsupported_encoding", "br"),
        ("corrupt gzip", "/v1/samples", vec![("content-type", "application/json"), ("content-encoding", "gzip")], b"not gzip".to_vec(), 400, "bad_body", "gzip"),
        ("bad precision", "/v1/samples?precision=minutes", json_ct.to_vec(), sample("t", now, json!({"celsius": 1})).to_string().into_bytes(), 400, "bad_parameter", "precision"),
        ("empty", "/v1/samples", json_ct.to_vec(), b"[]".to_vec(), 400, "empty", "no sample"),
    ];
    for (name, path, headers, body, status, code, message) in cases {
        let (got_status, got_body, _) = post_raw(&stack, path, &headers, body).await;
        let parsed: serde_json::Value = serde_json::from_str(&got_body)
            .unwrap_or_else(|e| panic!("{name}: body is not JSON ({e}): {got_body}"));
        assert_eq!(got_status, status, "{name}: {got_body}");
        let code_seen = parsed["error"].as_str().unwrap();
        let first_code = parsed["rejected"][0]["code"].as_str().unwrap_or("");
        assert!(
            code_seen == code || first_code == code,
            "{name}: code {code_seen}/{first_code}, want {code}: {got_body}"
        );
        assert!(
            got_body.contains(message),
            "{name}: {got_body} lacks {message:?}"
        );
    }
    assert_eq!(
        stack.topic_records(&stack.topic("samples.raw")),
        0,
        "bad input was written"
    );

    // ?partial=true stores the valid samples and reports the others.
    let batch = json!([
        sample("ok-1", now, json!({"celsius": 20.5})),
        sample("bad-1", now, json!({"celsius": true})),
        sample("ok-2", now, json!({"celsius": 21.5})),
    ]);
    let (status, body, _) = post_raw(
        &stack,
        "/v1/samples?partial=true",
        &json_ct,
        batch.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert_eq!(body["rejected"][0]["code"], "wrong_type");
    let got = stack.read_samples(&stack.topic("samples.raw"), 2);
    let mut ids: Vec<_> = got.iter().map(|(k, _)| k.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["ok-1", "ok-2"]);

    // Without partial, the same batch writes nothing.
    let (status, _, _) = post_raw(
        &stack,
        "/v1/samples",
        &json_ct,
        batch.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(stack.topic_records(&stack.topic("samples.raw")), 2);

    // The metrics count what happened, by outcome and reason.
    let metrics = reqwest::get(format!("{}/metrics", stack.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("labstream_ingest_samples_accepted_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"labstream_ingest_samples_rejected_total{reason="out_of_window"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"labstream_ingest_requests_total{format="json",outcome="rejected"}"#),
        "{metrics}"
    );
}
