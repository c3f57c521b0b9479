//! How rule changes apply to a running processor: a new or changed rule is compiled and
//! installed (its topic created, its expected sensors watched), a deleted one retired,
//! and the machines of pairs that no longer match it resolve.

use super::state::record_outputs;
use super::{AlertsProcessor, Pair, PairKey};
use crate::alerts::machine::{self, MachineState, Transition};
use crate::alerts::rule::Rule;
use crate::error::Error;
use labstream_bus::Record;
use labstream_schemas::{AlertRule, RuleId, SensorId, SensorType};

impl AlertsProcessor {
    /// Applies records of `alerts.rules`: new, changed and deleted rules.
    pub(super) async fn apply_rule_records(&mut self, records: Vec<Record>) {
        for record in records {
            let Some(key) = record.key.as_deref().map(String::from_utf8_lossy) else {
                tracing::warn!(
                    offset = record.offset,
                    "alerts: a rule without key is ignored"
                );
                continue;
            };
            let rule_id = RuleId::new(key.into_owned());
            match record.payload.as_deref() {
                None | Some([]) => {
                    if let Some(old) = self.rules.remove(&rule_id) {
                        tracing::info!(rule = %rule_id, "alert rule deleted");
                        self.retire(&old, |_| true);
                    }
                }
                Some(bytes) => {
                    let compiled = self
                        .codec
                        .decode::<AlertRule>(bytes)
                        .map_err(|source| Error::UndecodableRule {
                            rule_id: rule_id.to_string(),
                            source,
                        })
                        .and_then(|wire| {
                            if wire.rule_id != rule_id {
                                return Err(Error::invalid_rule(
                                    rule_id.as_str(),
                                    format!("its record says rule_id {:?}", wire.rule_id.as_str()),
                                ));
                            }
                            Rule::compile(&wire, self.registry.as_ref())
                        });
                    match compiled {
                        Ok(rule) => self.install(rule).await,
                        Err(e) => {
                            // The API refuses such rules; one that got in anyway keeps
                            // its previous version running rather than silently none.
                            tracing::error!(error = %e, "alerts: rule not applied");
                        }
                    }
                }
            }
        }
    }

    pub(super) async fn install(&mut self, rule: Rule) {
        let spec = self.catalog.alerts_topic(&rule.topic);
        let topic = spec.name.clone();
        if !self.ensured_topics.contains(&topic) {
            match labstream_bus::ensure_topics(&self.kafka, &[spec]).await {
                Ok(()) => {
                    self.ensured_topics.insert(topic);
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic, "alerts: creating the alert topic failed; the transaction will retry")
                }
            }
        }
        let old = self.rules.insert(rule.id.clone(), rule.clone());
        tracing::info!(rule = %rule.id, revision = rule.revision, enabled = rule.enabled, "alert rule applied");
        if let Some(old) = old {
            if !rule.enabled {
                self.retire(&old, |_| true);
            } else {
                let new = rule.clone();
                // Sensors the rule no longer watches resolve; the others carry on.
                self.retire(&old, |(sensor_type, sensor_id)| {
                    !new.watches(sensor_type, sensor_id)
                });
                for ((rule_id, sensor_id), pair) in &mut self.machines {
                    if *rule_id != rule.id {
                        continue;
                    }
                    let next = pair.state.after_rule_change(&old, &rule);
                    if next != pair.state {
                        pair.state = next;
                        record_outputs(
                            &self.codec,
                            &self.topics,
                            &rule,
                            sensor_id,
                            pair,
                            &[],
                            &mut self.carry,
                        );
                    }
                }
            }
        }
        self.ensure_expected(&rule);
    }

    /// Creates the machines of an absent rule's listed sensors this member owns, so a
    /// sensor that never reports still fires.
    pub(super) fn ensure_expected(&mut self, rule: &Rule) {
        if !rule.is_absent() || !rule.enabled {
            return;
        }
        let since = self.event_time_now();
        for sensor_id in &rule.sensor_ids {
            if !self.owns(sensor_id) {
                continue;
            }
            let key = (rule.id.clone(), sensor_id.clone());
            if self.machines.contains_key(&key) {
                continue;
            }
            let pair = Pair {
                sensor_type: rule.sensor_type.clone(),
                state: MachineState::new(since),
            };
            record_outputs(
                &self.codec,
                &self.topics,
                rule,
                sensor_id,
                &pair,
                &[],
                &mut self.carry,
            );
            self.machines.insert(key, pair);
        }
    }

    /// Resolves and forgets the machines of `rule` whose (sensor type, sensor) `drop` selects.
    pub(super) fn retire(&mut self, rule: &Rule, drop: impl Fn((&SensorType, &SensorId)) -> bool) {
        let at = self.event_time_now();
        let keys: Vec<PairKey> = self
            .machines
            .iter()
            .filter(|((r, s), p)| *r == rule.id && drop((&p.sensor_type, s)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(mut pair) = self.machines.remove(&key) else {
                continue;
            };
            if !self.owns(&key.1) {
                continue;
            }
            let (next, transition) = machine::retire(&pair.state, at);
            if next == pair.state {
                continue;
            }
            pair.state = next;
            let transitions: Vec<Transition> = transition.into_iter().collect();
            record_outputs(
                &self.codec,
                &self.topics,
                rule,
                &key.1,
                &pair,
                &transitions,
                &mut self.carry,
            );
        }
    }
}
