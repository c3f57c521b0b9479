//! The alert rules behind `/v1/alerts/rules`: a projection of the compacted
//! `alerts.rules` (read committed, to the end, before every decision) and its one
//! writer. A rule is checked with the processor's own checks before it is stored, so
//! the processor never meets a rule the API accepted and it refuses. Writes are Kafka
//! transactions under one `transactional.id`, so of two API instances writing at once
//! the newer fences the older, which re-reads the log and decides again.

use labstream_bus::{Append, Decision, Fold, KafkaConfig, LogStore, Record, TopicCatalog};
use labstream_schemas::alert_rule::{self, InvalidRule, RuleDefinition};
use labstream_schemas::{AlertRule, Codec, Registry, Timestamp};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

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
    log: LogStore<RuleLog>,
    kafka: KafkaConfig,
    config: RuleStoreConfig,
    registry: Arc<Registry>,
    codec: Codec,
    ensured_topics: Arc<Mutex<HashSet<String>>>,
}

/// The rules in `alerts.rules`, by id: the last record of a key wins, a tombstone
/// deletes it.
struct RuleLog {
    codec: Codec,
    rules: BTreeMap<String, AlertRule>,
}

impl Fold for RuleLog {
    fn apply(&mut self, record: &Record) {
        let Some(key) = record.key.as_deref() else {
            return;
        };
        let key = String::from_utf8_lossy(key).into_owned();
        match record.payload.as_deref().filter(|p| !p.is_empty()) {
            None => {
                self.rules.remove(&key);
            }
            Some(bytes) => match self.codec.decode::<AlertRule>(bytes) {
                Ok(rule) => {
                    self.rules.insert(key, rule);
                }
                Err(e) => {
                    tracing::warn!(rule = %key, offset = record.offset, error = %e, "undecodable alert rule, skipped")
                }
            },
        }
    }
}

/// What a write does to a rule.
enum Change {
    Put(Box<AlertRule>),
    Delete(String),
}

fn unavailable(e: labstream_bus::StoreError<RuleError>) -> RuleError {
    e.or_unavailable(RuleError::Unavailable)
}

impl RuleStore {
    /// Reads `alerts.rules` (which must exist) to its end.
    pub async fn open(
        kafka: &KafkaConfig,
        config: RuleStoreConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, RuleError> {
        let codec = Codec::new();
        let log = LogStore::open(
            kafka,
            &config.rules_topic,
            format!("{}labstream-alert-rules", kafka.topic_prefix),
            RuleLog {
                codec: codec.clone(),
                rules: BTreeMap::new(),
            },
        )
        .await
        .map_err(|e| RuleError::Unavailable(e.to_string()))?;
        Ok(Self {
            log,
            kafka: kafka.clone(),
            config,
            registry,
            codec,
            ensured_topics: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Reads what other writers appended since the last read.
    pub async fn refresh(&self) -> Result<(), RuleError> {
        self.log
            .refresh()
            .await
            .map_err(|e| RuleError::Unavailable(e.to_string()))
    }

    /// Refreshes every `every` until `cancel` (picks up rules other API instances or
    /// provisioning wrote).
    pub async fn refresh_every(
        &self,
        every: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        self.log.refresh_every(every, cancel).await;
    }

    pub fn list(&self) -> Vec<AlertRule> {
        self.log.read(|log| log.rules.values().cloned().collect())
    }

    pub fn get(&self, rule_id: &str) -> Option<AlertRule> {
        self.log.read(|log| log.rules.get(rule_id).cloned())
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
        alert_rule::check(&wire, Some(&self.registry))?;
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
        self.log
            .execute(|log: &RuleLog| {
                let current = log.rules.get(rule_id);
                let Some(change) = decide(current)? else {
                    return Ok(Decision::nothing(current.cloned()));
                };
                Ok(match change {
                    Change::Put(rule) => {
                        let bytes = self.codec.encode(rule.as_ref()).map_err(|e| {
                            RuleError::Unavailable(format!("encoding the rule: {e}"))
                        })?;
                        let id = rule.rule_id.as_str().to_owned();
                        let topic = self.ensure_alert_topic(&rule.topic);
                        let stored = (*rule).clone();
                        Decision::append(
                            vec![Append::record(id.clone(), bytes)],
                            Some(*rule),
                            move |log: &RuleLog| log.rules.get(&id) == Some(&stored),
                        )
                        .after(topic)
                    }
                    Change::Delete(id) => Decision::append(
                        vec![Append::tombstone(id.clone())],
                        None,
                        move |log: &RuleLog| !log.rules.contains_key(&id),
                    ),
                })
            })
            .await
            .map_err(unavailable)
    }

    /// Creates `alerts.<name>` when missing, so subscribers can attach before the
    /// first alert (the processor would create it too).
    fn ensure_alert_topic(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<(), RuleError>> + Send + 'static {
        let spec =
            TopicCatalog::new(&self.kafka, self.config.alert_topic_partitions).alerts_topic(name);
        let (kafka, ensured) = (self.kafka.clone(), self.ensured_topics.clone());
        async move {
            if ensured.lock().expect("not poisoned").contains(&spec.name) {
                return Ok(());
            }
            let topic = spec.name.clone();
            labstream_bus::ensure_topics(&kafka, &[spec])
                .await
                .map_err(|e| RuleError::Unavailable(e.to_string()))?;
            ensured.lock().expect("not poisoned").insert(topic);
            Ok(())
        }
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
