//! The alerts processor against the local stack's real Kafka: each test has its own
//! topic prefix, consumer group and transactional id.

use labstream_bus::{KafkaConfig, LogReader, Producer, TopicSpec};
use labstream_processors::alerts::ownership::partition_for_key;
use labstream_processors::alerts::{AlertsConfig, AlertsProcessor};
use labstream_schemas::{
    AlertCondition, AlertEvent, AlertRule, AlertStatus, Codec, FieldValue, Registry, RuleId,
    Sample, SensorId, SensorType, Severity, Timestamp, Topics,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Setup {
    kafka: KafkaConfig,
    topics: Topics,
    config: AlertsConfig,
    producer: Producer,
    codec: Codec,
}

async fn setup() -> Setup {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let kafka = KafkaConfig {
        brokers: std::env::var("LABSTREAM__KAFKA__BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic_prefix: format!("t{id}."),
        samples_partitions: 3,
        ..KafkaConfig::default()
    };
    let config = AlertsConfig {
        group_id: format!("t{id}-alerts"),
        batch_max_wait: Duration::from_millis(20),
        allowed_lateness: Duration::from_secs(1),
        rules_refresh: Duration::from_millis(100),
        topic_partitions: 2,
        ..AlertsConfig::default()
    };
    let producer = Producer::new(&kafka).unwrap();
    Setup {
        topics: Topics::new(kafka.topic_prefix.clone()),
        kafka,
        config,
        producer,
        codec: Codec::new(),
    }
}

impl Setup {
    async fn build(&self) -> AlertsProcessor {
        self.config
            .build(&self.kafka, Some(Registry::default_lab()))
            .await
            .unwrap()
    }

    async fn start(&self) -> (CancellationToken, JoinHandle<()>) {
        let processor = self.build().await;
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let handle = tokio::spawn(async move { processor.run(c).await.unwrap() });
        (cancel, handle)
    }

    async fn put_rule(&self, rule: &AlertRule) {
        self.producer
            .send(
                &self.topics.alerts_rules(),
                rule.rule_id.as_str().as_bytes(),
                &self.codec.encode(rule).unwrap(),
            )
            .await
            .unwrap();
    }

    async fn delete_rule(&self, rule_id: &str) {
        self.producer
            .send(&self.topics.alerts_rules(), rule_id.as_bytes(), &[])
            .await
            .unwrap();
    }

    async fn post(&self, sensor: &str, ts: Timestamp, celsius: f64) {
        let sample = Sample {
            sensor_id: SensorId::new(sensor),
            sensor_type: SensorType::new("temperature"),
            ts,
            seq: None,
            values: BTreeMap::from([("celsius".to_owned(), FieldValue::Double(celsius))]),
            tags: BTreeMap::new(),
            received_at: Timestamp::now(),
        };
        self.producer
            .send(
                &self.topics.samples_raw(),
                sensor.as_bytes(),
                &self.codec.encode(&sample).unwrap(),
            )
            .await
            .unwrap();
    }

    /// Reads `alerts.<name>` (committed only) until it holds `n` events or `within`
    /// passed; then, once the processor committed every sample (its transactions hold
    /// the events with the offsets), whatever else the topic holds: an extra event
    /// would be there by then.
    async fn alerts(&self, name: &str, n: usize, within: Duration) -> Vec<AlertEvent> {
        let topic = self.topics.alerts_topic(name);
        labstream_bus::ensure_topics(
            &self.kafka,
            &[TopicSpec::new(topic.clone(), self.config.topic_partitions)],
        )
        .await
        .unwrap();
        let reader = LogReader::new(&self.kafka, &topic).await.unwrap();
        let deadline = tokio::time::Instant::now() + within;
        let mut events = Vec::new();
        loop {
            for r in reader.read_to_end(Duration::from_secs(10)).await.unwrap() {
                events.push(
                    self.codec
                        .decode::<AlertEvent>(r.payload.as_deref().unwrap())
                        .unwrap(),
                );
            }
            if events.len() >= n || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.caught_up(within).await;
        for r in reader.read_to_end(Duration::from_secs(10)).await.unwrap() {
            events.push(
                self.codec
                    .decode::<AlertEvent>(r.payload.as_deref().unwrap())
                    .unwrap(),
            );
        }
        events
    }
}

impl Setup {
    /// Waits until the processor's group has committed every record of `samples.raw`.
    async fn caught_up(&self, within: Duration) {
        let admin = labstream_bus::GroupAdmin::new(&self.kafka, &self.config.group_id).unwrap();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let lag: i64 = admin
                .offsets(&self.topics.samples_raw())
                .await
                .unwrap()
                .iter()
                .map(labstream_bus::PartitionOffsets::lag)
                .sum();
            if lag == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the alerts processor did not commit the samples within {within:?}: lag {lag}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the processor in a process of its own (this test binary, running only
    /// `alerts_processor_process`), with static group membership so a restart takes
    /// its partitions back at once; its log goes to `log`.
    fn spawn_process(&self, log: &std::path::Path) -> std::process::Child {
        let mut kafka = self.kafka.clone();
        kafka.librdkafka.insert(
            "group.instance.id".into(),
            format!("{}-process", self.config.group_id),
        );
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "alerts_processor_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(
                PROCESS,
                serde_json::to_string(&(&kafka, &self.config)).unwrap(),
            )
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap()
    }
}

/// The settings of `alerts_processor_process`, as JSON (KafkaConfig, AlertsConfig).
const PROCESS: &str = "LABSTREAM_TEST_ALERTS_PROCESS";

/// Not a test by itself: the alerts processor as a process of its own, which
/// `a_crashed_processor_neither_repeats_nor_loses_a_transition` starts and SIGKILLs.
#[test]
#[ignore = "started as a process by the crash test"]
fn alerts_processor_process() {
    let Ok(settings) = std::env::var(PROCESS) else {
        return;
    };
    let (kafka, config): (KafkaConfig, AlertsConfig) = serde_json::from_str(&settings).unwrap();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let processor = config
            .build(&kafka, Some(Registry::default_lab()))
            .await
            .unwrap();
        tracing::info!("processor process running");
        processor.run(CancellationToken::new()).await.unwrap();
    });
}

/// Waits until `log` has at least `n` lines with all of `parts`; panics after `within`.
async fn wait_log(log: &std::path::Path, parts: &[&str], n: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count();
        if found >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} lines with {parts:?} not within {within:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn rule(id: &str, topic: &str, condition: AlertCondition) -> AlertRule {
    let absent = matches!(condition, AlertCondition::Absent { .. });
    AlertRule {
        rule_id: RuleId::new(id),
        name: format!("rule {id}"),
        topic: topic.into(),
        enabled: true,
        sensor_type: SensorType::new("temperature"),
        sensor_ids: vec![],
        field: (!absent).then(|| "celsius".to_owned()),
        condition,
        for_duration: Duration::ZERO,
        severity: Severity::Critical,
        labels: BTreeMap::from([("room".to_owned(), "lab-2".to_owned())]),
        message: "{{sensor_id}} is {{value}} (limit {{threshold}})".into(),
        revision: 1,
        updated_at: Timestamp::now(),
    }
}

fn seconds_ago(s: i64) -> Timestamp {
    Timestamp::from_micros(Timestamp::now().as_micros() - s * 1_000_000)
}

fn plus(t: Timestamp, s: i64) -> Timestamp {
    Timestamp::from_micros(t.as_micros() + s * 1_000_000)
}

fn summary(events: &[AlertEvent]) -> Vec<(AlertStatus, i64, String, Option<f64>)> {
    events
        .iter()
        .map(|e| (e.status, e.sequence, e.sensor_id.to_string(), e.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_samples_publish_one_firing_then_one_resolved() {
    let s = setup().await;
    s.build().await; // creates the topics
    s.put_rule(&rule(
        "freezer-warm",
        "freezers",
        AlertCondition::Above {
            threshold: 8.0,
            recovery: Some(6.0),
        },
    ))
    .await;
    let (cancel, handle) = s.start().await;
    let base = seconds_ago(60);
    for (i, v) in [5.0, 8.5, 7.9, 8.1, 7.0, 9.0, 6.5, 8.2, 6.0, 8.0, 7.9]
        .into_iter()
        .enumerate()
    {
        s.post("freezer-1", plus(base, i as i64), v).await;
    }
    let events = s.alerts("freezers", 2, Duration::from_secs(30)).await;
    assert_eq!(
        summary(&events),
        [
            (AlertStatus::Firing, 1, "freezer-1".into(), Some(8.5)),
            (AlertStatus::Resolved, 2, "freezer-1".into(), Some(6.0)),
        ]
    );
    let (firing, resolved) = (&events[0], &events[1]);
    assert_eq!(firing.event_id, "freezer-warm/freezer-1/1");
    assert_eq!(firing.threshold, Some(8.0));
    assert_eq!(firing.ts, plus(base, 1));
    assert_eq!(firing.message, "freezer-1 is 8.5 (limit 8)");
    assert_eq!(firing.severity, Severity::Critical);
    assert_eq!(firing.labels.get("room").map(String::as_str), Some("lab-2"));
    assert_eq!(resolved.threshold, Some(6.0));
    assert_eq!(resolved.ts, plus(base, 8));
    assert_eq!(resolved.since, firing.ts);
    cancel.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_processor_neither_repeats_nor_loses_a_transition() {
    let s = setup().await;
    s.build().await;
    s.put_rule(&rule(
        "hot",
        "crash",
        AlertCondition::Above {
            threshold: 8.0,
            recovery: None,
        },
    ))
    .await;
    let base = seconds_ago(60);
    // Several sensors, so crossings and recoveries land in different batches and
    // partitions. The processor runs as a process of its own and is SIGKILLed the
    // moment it has evaluated transitions (their transaction open or just committed),
    // then started again with the same instance id (transactional id).
    let sensors = ["s-1", "s-2", "s-3", "s-4"];
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("processor.log");
    let mut process = s.spawn_process(&log);
    wait_log(
        &log,
        &["processor process running"],
        1,
        Duration::from_secs(60),
    )
    .await;
    for (i, sensor) in sensors.iter().enumerate() {
        s.post(sensor, plus(base, 0), 5.0).await;
        s.post(sensor, plus(base, 1), 9.0 + i as f64).await;
    }
    wait_log(
        &log,
        &["alert transition", "status=firing"],
        4,
        Duration::from_secs(60),
    )
    .await;
    process.kill().unwrap();
    process.wait().unwrap();

    let mut process = s.spawn_process(&log);
    for sensor in &sensors[..2] {
        s.post(sensor, plus(base, 2), 4.0).await;
    }
    wait_log(
        &log,
        &["alert transition", "status=resolved"],
        1,
        Duration::from_secs(60),
    )
    .await;
    process.kill().unwrap();
    process.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("alerts: state restored"),
        "the restarted processor restored the machines' state:\n{text}"
    );

    let mut process = s.spawn_process(&log);
    for sensor in &sensors[2..] {
        s.post(sensor, plus(base, 2), 4.0).await;
    }
    let mut events = s.alerts("crash", 8, Duration::from_secs(60)).await;
    events.sort_by(|a, b| (&a.sensor_id, a.sequence).cmp(&(&b.sensor_id, b.sequence)));
    let expected: Vec<_> = sensors
        .iter()
        .enumerate()
        .flat_map(|(i, sensor)| {
            [
                (
                    AlertStatus::Firing,
                    1,
                    sensor.to_string(),
                    Some(9.0 + i as f64),
                ),
                (AlertStatus::Resolved, 2, sensor.to_string(), Some(4.0)),
            ]
        })
        .collect();
    assert_eq!(
        summary(&events),
        expected,
        "processor log:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    process.kill().unwrap();
    process.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_fires_for_a_listed_sensor_that_never_reported() {
    let s = setup().await;
    s.build().await;
    let mut r = rule(
        "silent",
        "silence",
        AlertCondition::Absent {
            after: Duration::from_secs(2),
        },
    );
    r.sensor_ids = vec![SensorId::new("ghost-1")];
    r.message = String::new();
    s.put_rule(&r).await;
    let (cancel, handle) = s.start().await;
    let events = s.alerts("silence", 1, Duration::from_secs(30)).await;
    assert_eq!(
        summary(&events),
        [(AlertStatus::Firing, 1, "ghost-1".into(), None)]
    );
    assert_eq!(events[0].condition, "absent");
    assert!(
        events[0].message.contains("ghost-1 sent nothing since"),
        "{}",
        events[0].message
    );
    s.post("ghost-1", Timestamp::now(), 20.0).await;
    let events = s.alerts("silence", 2, Duration::from_secs(30)).await;
    assert_eq!(
        summary(&events)[1..],
        [(AlertStatus::Resolved, 2, "ghost-1".into(), None)]
    );
    cancel.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_and_deleted_rules_take_effect_without_restart() {
    let s = setup().await;
    s.build().await;
    let mut r = rule(
        "warm",
        "changes",
        AlertCondition::Above {
            threshold: 8.0,
            recovery: None,
        },
    );
    s.put_rule(&r).await;
    let (cancel, handle) = s.start().await;
    let base = seconds_ago(60);
    s.post("room-1", base, 7.0).await;
    // Evaluated under revision 1 (below its threshold): nothing fires.
    s.caught_up(Duration::from_secs(30)).await;
    r.condition = AlertCondition::Above {
        threshold: 6.0,
        recovery: None,
    };
    r.revision = 2;
    s.put_rule(&r).await;
    // The same value again until revision 2 is in force: the first sample it sees fires.
    let topic = s.topics.alerts_topic("changes");
    labstream_bus::ensure_topics(
        &s.kafka,
        &[TopicSpec::new(topic.clone(), s.config.topic_partitions)],
    )
    .await
    .unwrap();
    let reader = LogReader::new(&s.kafka, &topic).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for k in 1.. {
        s.post("room-1", plus(base, k), 7.0).await;
        s.caught_up(Duration::from_secs(30)).await;
        if !reader
            .read_to_end(Duration::from_secs(10))
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "revision 2 of the rule never took effect"
        );
    }
    let events = s.alerts("changes", 1, Duration::from_secs(30)).await;
    assert_eq!(
        summary(&events),
        [(AlertStatus::Firing, 1, "room-1".into(), Some(7.0))]
    );
    assert_eq!(
        (events[0].threshold, events[0].rule_revision),
        (Some(6.0), 2)
    );
    // Deleting the rule resolves what it had firing.
    s.delete_rule("warm").await;
    let events = s.alerts("changes", 2, Duration::from_secs(30)).await;
    assert_eq!(
        summary(&events)[1..],
        [(AlertStatus::Resolved, 2, "room-1".into(), None)]
    );
    cancel.cancel();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensor_ownership_matches_the_producers_partitioner() {
    let s = setup().await;
    let topic = s.topics.samples_raw();
    labstream_bus::ensure_topics(&s.kafka, &[TopicSpec::new(topic.clone(), 6)])
        .await
        .unwrap();
    for i in 0..40 {
        let key = format!("sensor-{i}");
        let delivery = s.producer.send(&topic, key.as_bytes(), b"x").await.unwrap();
        assert_eq!(
            delivery.partition,
            partition_for_key(key.as_bytes(), 6),
            "{key}"
        );
    }
}
