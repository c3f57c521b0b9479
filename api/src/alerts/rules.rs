//! The alert rules behind `/v1/alerts/rules`: a projection of the compacted
//! `alerts.rules` (read committed, to the end, before every decision) and its one
//! writer. A rule is checked with the processor's own checks before it is stored, so
//! the processor never meets a rule the API accepted and it refuses. Writes are Kafka
//! transactions under one `transactional.id`, so of two API instances writing at once
//! the newer fences the older, which re-reads the log and decides again.

use labstream_bus::{KafkaConfig, LogReader, TopicSpec, TransactionalProducer};
use labstream_schemas::alert_rule::{self, InvalidRule, RuleDefinition};
use labstream_schemas::{AlertRule, Codec, Registry, Timestamp};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the writer looks again for the change it has just committed.
const READ_BACK_CHECK: Duration = Duration::from_millis(2);

/// What the rule store needs to know.
#[derive(Clone, Debug)]
pub struct RuleStoreConfig {
    /// `alerts.rules` with the prefix.
    pub rules_topic: String,
    /// The topic prefix, to name `alerts.<name>` topics.
    pub topic_prefix: String,
    /// Partitions of an `alerts.<name>` topic the store creates for a new rule.
    pub alert_topic_partitions: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error(transparent)]
    Invalid(#[from] InvalidRule),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(
        "alert rule {rule_id:?} is at revision {current}, not {expected}: someone changed it; read it again"
    )]
    VersionMismatch {
        rule_id: String,
        expected: i64,
        current: i64,
    },
    #[error("the rule log (Kafka) is unavailable: {0}; retry in a moment")]
    Unavailable(String),
}

/// How a provisioned rule was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Replaced,
    Unchanged,
}

#[derive(Clone)]
pub struct RuleStore {
    inner: Arc<Inner>,
}

struct Writer {
    reader: LogReader,
    producer: Option<TransactionalProducer>,
}

struct Inner {
    kafka: KafkaConfig,
    config: RuleStoreConfig,
    registry: Arc<Registry>,
    codec: Codec,
    rules: RwLock<BTreeMap<String, AlertRule>>,
    writer: tokio::sync::Mutex<Writer>,
    ensured_topics: Mutex<HashSet<String>>,
}

/// What a write does to a rule.
enum Change {
    Put(Box<AlertRule>),
    Delete(String),
}

impl RuleStore {
    /// Reads `alerts.rules` (which must exist) to its end.
    pub async fn open(
        kafka: &KafkaConfig,
        config: RuleStoreConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, RuleError> {
        let reader = LogReader::new(kafka, &config.rules_topic)
            .await
            .map_err(|e| RuleError::Unavailable(e.to_string()))?;
        let store = Self {
            inner: Arc::new(Inner {
                kafka: kafka.clone(),
                config,
                registry,
                codec: Codec::new(),
                rules: RwLock::new(BTreeMap::new()),
                writer: tokio::sync::Mutex::new(Writer {
                    reader,
                    producer: None,
                }),
                ensured_topics: Mutex::new(HashSet::new()),
            }),
        };
        store.refresh().await?;
        Ok(store)
    }

    /// Reads what other writers appended since the last read.
    pub async fn refresh(&self) -> Result<(), RuleError> {
        let writer = self.inner.writer.lock().await;
        self.catch_up(&writer).await
    }

    pub fn list(&self) -> Vec<AlertRule> {
        self.inner
            .rules
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, rule_id: &str) -> Option<AlertRule> {
        self.inner
            .rules
            .read()
            .expect("not poisoned")
            .get(rule_id)
            .cloned()
    }

    /// Stores a new rule; 409 when the id is taken.
    pub async fn create(&self, definition: RuleDefinition) -> Result<AlertRule, RuleError> {
        self.write(&definition.rule_id.clone(), |current| match current {
            Some(_) => Err(RuleError::Conflict(format!(
                "alert rule {:?} already exists; replace it with PUT /v1/alerts/rules/{}",
                definition.rule_id, definition.rule_id
            ))),
            None => Ok(Some(Change::Put(Box::new(self.checked(&definition, 1)?)))),
        })
        .await
        .map(|r| r.expect("a create writes"))
    }

    /// Creates or replaces `definition.rule_id`; with `expected`, only if the stored
    /// revision is that one (0 = must not exist). Returns the rule and whether it is new.
    pub async fn replace(
        &self,
        definition: RuleDefinition,
        expected: Option<i64>,
    ) -> Result<(AlertRule, bool), RuleError> {
        let rule_id = definition.rule_id.clone();
        let mut created = false;
        let rule = self
            .write(&rule_id, |current| {
                let revision = current.map_or(0, |r| r.revision);
                check_expected(&rule_id, expected, revision)?;
                created = current.is_none();
                Ok(Some(Change::Put(Box::new(
                    self.checked(&definition, revision + 1)?,
                ))))
            })
            .await?
            .expect("a replace writes");
        Ok((rule, created))
    }

    /// Deletes a rule (a tombstone in `alerts.rules`): its firing alerts resolve.
    pub async fn delete(&self, rule_id: &str, expected: Option<i64>) -> Result<(), RuleError> {
        self.write(rule_id, |current| {
            let Some(current) = current else {
                return Err(RuleError::NotFound(format!(
                    "alert rule {rule_id:?} does not exist"
                )));
            };
            check_expected(rule_id, expected, current.revision)?;
            Ok(Some(Change::Delete(rule_id.to_owned())))
        })
        .await
        .map(|_| ())
    }

    /// Provisioning: creates the rule, replaces it when its definition differs, or
    /// leaves it alone, so applying the same file at every start writes nothing.
    pub async fn apply(&self, definition: RuleDefinition) -> Result<Applied, RuleError> {
        let mut applied = Applied::Unchanged;
        self.write(&definition.rule_id.clone(), |current| {
            let revision = match current {
                Some(r) if RuleDefinition::from_wire(r) == definition => return Ok(None),
                Some(r) => {
                    applied = Applied::Replaced;
                    r.revision
                }
                None => {
                    applied = Applied::Created;
                    0
                }
            };
            Ok(Some(Change::Put(Box::new(
                self.checked(&definition, revision + 1)?,
            ))))
        })
        .await?;
        Ok(applied)
    }

    /// The stored record of `definition` at `revision`, refused when invalid.
    fn checked(&self, definition: &RuleDefinition, revision: i64) -> Result<AlertRule, RuleError> {
        let wire = definition.to_wire(revision, Timestamp::now());
        alert_rule::check(&wire, Some(&self.inner.registry))?;
        Ok(wire)
    }

    /// Reads the log to its end, lets `decide` look at the rule's current version and
    /// commits its change; retried on a newer writer's fence. Answers once the change
    /// is committed and in the projection.
    async fn write(
        &self,
        rule_id: &str,
        mut decide: impl FnMut(Option<&AlertRule>) -> Result<Option<Change>, RuleError>,
    ) -> Result<Option<AlertRule>, RuleError> {
        let mut writer = self.inner.writer.lock().await;
        let mut attempts = 0;
        loop {
            attempts += 1;
            if writer.producer.is_none() {
                let kafka = self.inner.kafka.clone();
                let id = format!("{}labstream-alert-rules", kafka.topic_prefix);
                let producer =
                    tokio::task::spawn_blocking(move || TransactionalProducer::new(&kafka, &id))
                        .await
                        .map_err(|e| RuleError::Unavailable(e.to_string()))?
                        .map_err(|e| RuleError::Unavailable(e.to_string()))?;
                writer.producer = Some(producer);
            }
            self.catch_up(&writer).await?;
            let change = {
                let rules = self.inner.rules.read().expect("not poisoned");
                decide(rules.get(rule_id))?
            };
            let Some(change) = change else {
                return Ok(self.get(rule_id));
            };
            let (key, payload) = match &change {
                Change::Put(rule) => {
                    self.ensure_alert_topic(&rule.topic).await?;
                    let bytes =
                        self.inner.codec.encode(rule.as_ref()).map_err(|e| {
                            RuleError::Unavailable(format!("encoding the rule: {e}"))
                        })?;
                    (rule.rule_id.as_str().to_owned(), Some(bytes))
                }
                Change::Delete(id) => (id.clone(), None),
            };
            let producer = writer.producer.clone().expect("created above");
            let topic = self.inner.config.rules_topic.clone();
            let committed = tokio::task::spawn_blocking(move || {
                producer.transact(|p| {
                    match &payload {
                        Some(bytes) => p.send(&topic, key.as_bytes(), bytes)?,
                        None => p.send_tombstone(&topic, key.as_bytes())?,
                    }
                    p.commit_without_offsets()
                })
            })
            .await
            .map_err(|e| RuleError::Unavailable(e.to_string()))?;
            match committed {
                Ok(()) => {
                    self.read_back(&writer, &change).await?;
                    return Ok(match change {
                        Change::Put(rule) => Some(*rule),
                        Change::Delete(_) => None,
                    });
                }
                Err(labstream_bus::Error::Fenced(e)) if attempts < 3 => {
                    tracing::info!(error = %e, "alert rule writer fenced by another instance; retrying");
                    writer.producer = None;
                }
                Err(e) => {
                    writer.producer = None;
                    return Err(RuleError::Unavailable(e.to_string()));
                }
            }
        }
    }

    /// Creates `alerts.<name>` when missing, so subscribers can attach before the
    /// first alert (the processor would create it too).
    async fn ensure_alert_topic(&self, name: &str) -> Result<(), RuleError> {
        let topic = format!("{}alerts.{name}", self.inner.config.topic_prefix);
        if self
            .inner
            .ensured_topics
            .lock()
            .expect("not poisoned")
            .contains(&topic)
        {
            return Ok(());
        }
        labstream_bus::ensure_topics(
            &self.inner.kafka,
            &[TopicSpec::new(
                topic.clone(),
                self.inner.config.alert_topic_partitions,
            )],
        )
        .await
        .map_err(|e| RuleError::Unavailable(e.to_string()))?;
        self.inner
            .ensured_topics
            .lock()
            .expect("not poisoned")
            .insert(topic);
        Ok(())
    }

    /// Reads the log until `change` (just committed by this writer) shows in the
    /// projection: the brokers write a transaction's commit markers after the commit
    /// has returned, so a read committed read that starts at once may end before it,
    /// and a GET right after the PUT would answer with the old rule.
    async fn read_back(&self, writer: &Writer, change: &Change) -> Result<(), RuleError> {
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        loop {
            self.catch_up(writer).await?;
            let shown = {
                let rules = self.inner.rules.read().expect("not poisoned");
                match change {
                    Change::Put(rule) => rules.get(rule.rule_id.as_str()) == Some(rule.as_ref()),
                    Change::Delete(id) => !rules.contains_key(id.as_str()),
                }
            };
            if shown {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuleError::Unavailable(format!(
                    "the change is committed but could not be read back within {} s; read the rule again in a moment",
                    READ_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(READ_BACK_CHECK).await;
        }
    }

    async fn catch_up(&self, writer: &Writer) -> Result<(), RuleError> {
        let records = writer
            .reader
            .read_to_end(READ_TIMEOUT)
            .await
            .map_err(|e| RuleError::Unavailable(e.to_string()))?;
        if records.is_empty() {
            return Ok(());
        }
        let mut rules = self.inner.rules.write().expect("not poisoned");
        for record in records {
            let Some(key) = record.key.as_deref() else {
                continue;
            };
            let key = String::from_utf8_lossy(key).into_owned();
            match record.payload.as_deref().filter(|p| !p.is_empty()) {
                None => {
                    rules.remove(&key);
                }
                Some(bytes) => match self.inner.codec.decode::<AlertRule>(bytes) {
                    Ok(rule) => {
                        rules.insert(key, rule);
                    }
                    Err(e) => {
                        tracing::warn!(rule = %key, offset = record.offset, error = %e, "undecodable alert rule, skipped")
                    }
                },
            }
        }
        Ok(())
    }
}

fn check_expected(rule_id: &str, expected: Option<i64>, current: i64) -> Result<(), RuleError> {
    match expected {
        Some(expected) if expected != current => Err(RuleError::VersionMismatch {
            rule_id: rule_id.to_owned(),
            expected,
            current,
        }),
        _ => Ok(()),
    }
}

/// Reads a rule file: a JSON array of rules, or TOML with `[[rules]]` tables.
pub fn parse_rules_file(path: &std::path::Path) -> Result<Vec<RuleDefinition>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading alert rules file {}: {e}", path.display()))?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let rules = if is_toml {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            rules: Vec<RuleDefinition>,
        }
        toml::from_str::<File>(&text)
            .map(|f| f.rules)
            .map_err(|e| format!("alert rules file {}: {e}", path.display()))?
    } else {
        serde_json::from_str::<Vec<RuleDefinition>>(&text).map_err(|e| {
            format!(
                "alert rules file {} (a JSON array of rules): {e}",
                path.display()
            )
        })?
    };
    let mut seen = HashSet::new();
    for rule in &rules {
        if !seen.insert(rule.rule_id.as_str()) {
            return Err(format!(
                "alert rules file {}: rule_id {:?} appears twice",
                path.display(),
                rule.rule_id
            ));
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_files_read_as_json_or_toml() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("rules.json");
        std::fs::write(
            &json,
            r#"[{"rule_id": "warm", "name": "Warm", "topic": "freezers", "sensor_type": "temperature",
                 "field": "celsius", "condition": {"kind": "above", "threshold": -18}}]"#,
        )
        .unwrap();
        let toml_path = dir.path().join("rules.toml");
        std::fs::write(
            &toml_path,
            r#"
            [[rules]]
            rule_id = "warm"
            name = "Warm"
            topic = "freezers"
            sensor_type = "temperature"
            field = "celsius"
            condition = { kind = "above", threshold = -18.0 }
            "#,
        )
        .unwrap();
        assert_eq!(
            parse_rules_file(&json).unwrap(),
            parse_rules_file(&toml_path).unwrap()
        );
        std::fs::write(&json, r#"[{"rule_id": "a", "name": "A", "topic": "t", "sensor_type": "door", "condition": {"kind": "absent", "after": "1m"}}, {"rule_id": "a", "name": "A", "topic": "t", "sensor_type": "door", "condition": {"kind": "absent", "after": "1m"}}]"#).unwrap();
        assert!(
            parse_rules_file(&json)
                .unwrap_err()
                .contains("appears twice")
        );
    }
}
