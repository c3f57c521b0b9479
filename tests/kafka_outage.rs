//! Kafka stops mid-load (SIGKILL, a crash) and comes back. Ingest must answer 503 with
//! Retry-After while it is gone, never a 2xx for a sample Kafka did not acknowledge,
//! and afterwards every sample that got a 2xx is in `samples.raw` exactly once per
//! request sent. The broker is a private one (its own folder and ports, started by
//! `infra/local/stack`), so other tests keep the shared broker.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;
use support::{PrivateStack, TestStack};

#[derive(Debug)]
struct Sent {
    status: u16,
    retry_after: Option<String>,
    keys: Vec<(String, i64)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_crash_gives_503s_and_loses_or_duplicates_nothing_acknowledged() {
    let kafka = PrivateStack::new();
    kafka.stack(&["up", "kafka"]);
    let brokers = kafka.brokers();
    let stack = TestStack::start_with(&[
        ("LABSTREAM__KAFKA__BROKERS", &brokers),
        ("LABSTREAM__KAFKA__PRODUCE_TIMEOUT", "3s"),
        ("LABSTREAM__SINKS__MONGO__ENABLED", "false"),
        ("LABSTREAM__SINKS__LAKE__ENABLED", "false"),
        // Ingest alone is under test.
        ("LABSTREAM__PROCESSORS__ENRICHMENT__ENABLED", "false"),
        ("LABSTREAM__PROCESSORS__EXPERIMENTS__ENABLED", "false"),
    ])
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let clock = Arc::new(AtomicI64::new(1_795_428_000_000_000));
    // Answers so far: 202s and 503s.
    let accepted = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..3 {
        let (stop, clock) = (stop.clone(), clock.clone());
        let (accepted, unavailable) = (accepted.clone(), unavailable.clone());
        let url = format!("{}/v1/samples", stack.url);
        let token = stack.token.clone();
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut sent = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let keys: Vec<(String, i64)> = (0..10)
                    .map(|_| (format!("w{w}"), clock.fetch_add(1, Ordering::Relaxed)))
                    .collect();
                let body: Vec<_> = keys
                    .iter()
                    .map(|(id, ts)| {
                        serde_json::json!({"sensor_id": id, "sensor_type": "power", "ts": ts, "values": {"watts": 1.5}})
                    })
                    .collect();
                let resp = client
                    .post(format!("{url}?precision=us"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .expect("ingest answers even while Kafka is down");
                match resp.status().as_u16() {
                    202 => accepted.fetch_add(1, Ordering::SeqCst),
                    503 => unavailable.fetch_add(1, Ordering::SeqCst),
                    _ => 0,
                };
                sent.push(Sent {
                    status: resp.status().as_u16(),
                    retry_after: resp
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned()),
                    keys,
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        }));
    }

    // Load flows, then Kafka dies mid-stream; it stays down until ingest answered 503s
    // for a while, and load goes on until requests were accepted again after its
    // restart.
    let count = |c: &Arc<AtomicUsize>| c.load(Ordering::SeqCst);
    support::eventually(
        "requests accepted before the crash",
        Duration::from_secs(60),
        || async {
            let n = count(&accepted);
            if n >= 30 {
                Ok(())
            } else {
                Err(format!("{n} accepted"))
            }
        },
    )
    .await;
    kafka.stack(&["kill", "kafka"]);
    support::eventually(
        "503s while Kafka is down",
        Duration::from_secs(60),
        || async {
            let n = count(&unavailable);
            if n >= 6 {
                Ok(())
            } else {
                Err(format!("{n} answered 503"))
            }
        },
    )
    .await;
    kafka.stack(&["up", "kafka"]);
    let before = count(&accepted);
    support::eventually(
        "requests accepted after the restart",
        Duration::from_secs(90),
        || async {
            let n = count(&accepted) - before;
            if n >= 30 {
                Ok(())
            } else {
                Err(format!("{n} accepted since the restart"))
            }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);

    let mut sent = Vec::new();
    for w in workers {
        sent.extend(w.await.unwrap());
    }
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for s in &sent {
        *by_status.entry(s.status).or_default() += 1;
    }
    assert!(
        by_status.keys().all(|s| *s == 202 || *s == 503),
        "only 202 and 503 are expected: {by_status:?}\n{}",
        stack.logs()
    );
    assert!(
        by_status.get(&503).copied().unwrap_or(0) > 0,
        "no 503 while Kafka was down: {by_status:?}"
    );
    assert!(
        by_status.get(&202).copied().unwrap_or(0) > 0,
        "{by_status:?}"
    );
    assert!(
        sent.iter()
            .filter(|s| s.status == 503)
            .all(|s| s.retry_after.as_deref() == Some("5")),
        "every 503 carries Retry-After"
    );
    // Requests after the restart succeed again.
    let last = sent.iter().rev().take(3).collect::<Vec<_>>();
    assert!(
        last.iter().all(|s| s.status == 202),
        "ingest did not recover after Kafka came back: {:?}",
        last.iter().map(|s| s.status).collect::<Vec<_>>()
    );

    let acknowledged: BTreeSet<(String, i64)> = sent
        .iter()
        .filter(|s| s.status == 202)
        .flat_map(|s| s.keys.iter().cloned())
        .collect();
    let in_topic = stack.topic_records(&stack.topic("samples.raw"));
    let records = stack.read_samples(&stack.topic("samples.raw"), acknowledged.len());
    eprintln!(
        "{in_topic} records by the watermarks, {} read, {by_status:?}",
        records.len()
    );
    let mut seen: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for (_, s) in &records {
        *seen
            .entry((s.sensor_id.as_str().to_owned(), s.ts.as_micros()))
            .or_default() += 1;
    }
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|k| !seen.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged samples are missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "samples written twice: {duplicated:?}"
    );
    eprintln!(
        "requests by status: {by_status:?}; {} acknowledged samples, {} records in samples.raw",
        acknowledged.len(),
        records.len()
    );
}
