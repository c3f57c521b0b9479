//! Webhook delivery of alert events: a consumer group over the `alerts.<name>` topics
//! (read_committed) posts each matching transition to each configured target (generic
//! JSON, or Slack's `{"text": ...}`), retrying with exponential backoff. A delivery is
//! recorded in the compacted `alerts.deliveries` (key `target/event_id`) as soon as
//! the target accepted it, and offsets are committed after that, so a restart, which
//! re-reads from the last commit, skips what was delivered: at most one delivery per
//! transition and target (short of a crash between the target's answer and the record).

use crate::error::{Error, Result};
use labstream_bus::{
    BatchConsumer, KafkaConfig, LogReader, Positions, Producer, TopicCatalog, TopicWatch,
};
use labstream_schemas::{AlertEvent, AlertStatus, Codec, Severity, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The body a target receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The alert event as JSON (as on the SSE stream).
    #[default]
    Json,
    /// `{"text": "..."}`: Slack incoming webhooks, Mattermost, Rocket.Chat, Teams workflows.
    Slack,
}

/// One webhook target (`[[processors.webhooks.targets]]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// Names the target in logs and in `alerts.deliveries`; unique.
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Only these rules (empty: every rule), which is how a webhook is set per rule.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Only alerts at least this severe.
    #[serde(default = "info")]
    pub min_severity: Severity,
    /// Only alerts with all these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn info() -> Severity {
    Severity::Info
}

impl WebhookTarget {
    fn wants(&self, e: &AlertEvent) -> bool {
        (self.rules.is_empty() || self.rules.iter().any(|r| r == e.rule_id.as_str()))
            && e.severity >= self.min_severity
            && self
                .labels
                .iter()
                .all(|(k, v)| e.labels.get(k).is_some_and(|l| l == v))
    }

    fn body(&self, e: &AlertEvent) -> serde_json::Value {
        match self.format {
            WebhookFormat::Json => serde_json::to_value(e).unwrap_or_default(),
            WebhookFormat::Slack => {
                let mark = match e.status {
                    AlertStatus::Firing => ":rotating_light: FIRING",
                    AlertStatus::Resolved => ":white_check_mark: RESOLVED",
                };
                serde_json::json!({
                    "text": format!("{mark} [{}] {}", e.severity, e.message)
                })
            }
        }
    }
}

/// `[processors.webhooks]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Run webhook delivery inside `labstream serve` (when targets are configured).
    pub enabled: bool,
    /// Consumer group over the alert topics; instances share the partitions.
    pub group_id: String,
    /// Longest wait for a target's answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per delivery before it is given up (and logged as an error).
    pub max_attempts: u32,
    /// Pause after the first failed attempt; doubles after each, up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    pub targets: Vec<WebhookTarget>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_id: "labstream-webhooks".into(),
            timeout: Duration::from_secs(10),
            max_attempts: 10,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            targets: Vec::new(),
        }
    }
}

impl WebhooksConfig {
    /// Checks the targets, creates `alerts.deliveries` and reads what was delivered.
    pub async fn build(&self, kafka: &KafkaConfig) -> Result<Webhooks> {
        let mut names = HashSet::new();
        for t in &self.targets {
            if t.name.is_empty() || t.name.contains('/') || !names.insert(t.name.as_str()) {
                return Err(Error::Config(format!(
                    "webhook target name {:?} must be non-empty, unique and without '/'",
                    t.name
                )));
            }
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "webhook target {}: url {:?} must start with http:// or https://",
                    t.name, t.url
                )));
            }
        }
        if self.max_attempts == 0 {
            return Err(Error::Config(
                "processors.webhooks.max_attempts must be at least 1".into(),
            ));
        }
        let spec = TopicCatalog::new(kafka, 1).alerts_deliveries();
        let deliveries = spec.name.clone();
        labstream_bus::ensure_topics(kafka, &[spec]).await?;
        let reader = LogReader::new(kafka, &deliveries).await?;
        let delivered: HashSet<String> = reader
            .read_to_end(Duration::from_secs(30))
            .await?
            .into_iter()
            .filter(|r| r.payload.is_some())
            .filter_map(|r| r.key.map(|k| String::from_utf8_lossy(&k).into_owned()))
            .collect();
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .user_agent(concat!("labstream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?;
        Ok(Webhooks {
            config: self.clone(),
            deliveries,
            delivered,
            producer: Producer::new(kafka)?,
            kafka: kafka.clone(),
            http,
            codec: Codec::new(),
        })
    }
}

pub struct Webhooks {
    config: WebhooksConfig,
    deliveries: String,
    /// `target/event_id` of what was delivered.
    delivered: HashSet<String>,
    producer: Producer,
    kafka: KafkaConfig,
    http: reqwest::Client,
    codec: Codec,
}

/// How one delivery ended.
enum Outcome {
    Delivered,
    GaveUp,
    Cancelled,
}

impl Webhooks {
    /// Delivers until `cancel`; the event in progress is not committed, so it is
    /// delivered after a restart unless its delivery was recorded.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        let topics = TopicWatch::alert_topics(&self.kafka, cancel.clone())?;
        let consumer = BatchConsumer::following(&self.kafka, &self.config.group_id, topics)?;
        tracing::info!(
            targets = self.config.targets.len(),
            "webhook delivery started"
        );
        'run: while !cancel.is_cancelled() {
            let records = match consumer
                .next_batch(64, Duration::from_millis(200), &cancel)
                .await
            {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: consume failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            for record in &records {
                if let Some(bytes) = record.payload.as_deref() {
                    match self.codec.decode::<AlertEvent>(bytes) {
                        Ok(event) => {
                            if !self.deliver_everywhere(&event, &cancel).await {
                                break 'run;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(topic = %record.topic, offset = record.offset, error = %e, "webhooks: undecodable alert event skipped")
                        }
                    }
                }
                let mut done = Positions::default();
                done.advance(record);
                if let Err(e) = consumer.commit_positions(&done).await {
                    tracing::warn!(error = %e, "webhooks: committing the offset failed; recorded deliveries are skipped after a restart");
                }
            }
        }
        tracing::info!("webhook delivery stopped");
        Ok(())
    }

    /// Delivers `event` to every target that wants it; false when cancelled.
    async fn deliver_everywhere(&mut self, event: &AlertEvent, cancel: &CancellationToken) -> bool {
        let targets = self.config.targets.clone();
        for target in targets.iter().filter(|t| t.wants(event)) {
            let key = format!("{}/{}", target.name, event.event_id);
            if self.delivered.contains(&key) {
                tracing::debug!(
                    target = target.name,
                    event = event.event_id,
                    "webhooks: already delivered"
                );
                continue;
            }
            match self.deliver(target, event, cancel).await {
                Outcome::Delivered => {
                    // Recorded before the offset moves on; a failure to record only
                    // risks one repeat after a restart.
                    let record =
                        serde_json::json!({ "delivered_at": Timestamp::now() }).to_string();
                    if let Err(e) = self
                        .producer
                        .send(&self.deliveries, key.as_bytes(), record.as_bytes())
                        .await
                    {
                        tracing::warn!(error = %e, key, "webhooks: recording a delivery failed");
                    }
                    self.delivered.insert(key);
                }
                Outcome::GaveUp => {}
                Outcome::Cancelled => return false,
            }
        }
        true
    }

    async fn deliver(
        &self,
        target: &WebhookTarget,
        event: &AlertEvent,
        cancel: &CancellationToken,
    ) -> Outcome {
        let body = target.body(event);
        let mut pause = self.config.backoff_initial;
        for attempt in 1..=self.config.max_attempts {
            let sent = self
                .http
                .post(&target.url)
                .header("x-labstream-event-id", &event.event_id)
                .header("idempotency-key", &event.event_id)
                .json(&body)
                .send()
                .await;
            let (retry, problem) = match sent {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(
                        target = target.name,
                        event = event.event_id,
                        attempt,
                        "webhook delivered"
                    );
                    return Outcome::Delivered;
                }
                Ok(r) => {
                    let s = r.status();
                    // A request the target will never accept is not retried.
                    let retry = s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429;
                    (retry, format!("answered {s}"))
                }
                Err(e) => (true, format!("unreachable: {e}")),
            };
            if !retry || attempt == self.config.max_attempts {
                tracing::error!(
                    target = target.name,
                    event = event.event_id,
                    attempt,
                    problem,
                    "webhook delivery given up"
                );
                return Outcome::GaveUp;
            }
            tracing::warn!(target = target.name, event = event.event_id, attempt, problem, retry_in = ?pause, "webhook delivery failed; retrying");
            tokio::select! {
                _ = cancel.cancelled() => return Outcome::Cancelled,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(self.config.backoff_max);
        }
        Outcome::GaveUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labstream_schemas::{RuleId, SensorId, SensorType};

    fn event(severity: Severity) -> AlertEvent {
        AlertEvent {
            event_id: "warm/f-1/1".into(),
            sequence: 1,
            status: AlertStatus::Firing,
            rule_id: RuleId::new("warm"),
            rule_name: "Warm".into(),
            rule_revision: 1,
            sensor_id: SensorId::new("f-1"),
            sensor_type: SensorType::new("temperature"),
            field: Some("celsius".into()),
            condition: "above".into(),
            value: Some(9.0),
            threshold: Some(5.0),
            severity,
            labels: BTreeMap::from([("room".to_owned(), "lab-2".to_owned())]),
            message: "f-1 at 9".into(),
            ts: Timestamp::from_micros(0),
            since: Timestamp::from_micros(0),
            emitted_at: Timestamp::from_micros(0),
        }
    }

    fn target(format: WebhookFormat) -> WebhookTarget {
        WebhookTarget {
            name: "t".into(),
            url: "http://x".into(),
            format,
            rules: vec![],
            min_severity: Severity::Warning,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn targets_select_by_rule_severity_and_labels() {
        let mut t = target(WebhookFormat::Json);
        assert!(t.wants(&event(Severity::Critical)));
        assert!(!t.wants(&event(Severity::Info)));
        t.rules = vec!["other".into()];
        assert!(!t.wants(&event(Severity::Critical)));
        t.rules = vec!["warm".into()];
        t.labels.insert("room".into(), "lab-3".into());
        assert!(!t.wants(&event(Severity::Critical)));
    }

    #[test]
    fn slack_gets_text_and_json_gets_the_event() {
        let e = event(Severity::Critical);
        assert_eq!(
            target(WebhookFormat::Slack).body(&e),
            serde_json::json!({"text": ":rotating_light: FIRING [critical] f-1 at 9"})
        );
        let json = target(WebhookFormat::Json).body(&e);
        assert_eq!(json["event_id"], "warm/f-1/1");
        assert_eq!(json["status"], "firing");
    }
}
