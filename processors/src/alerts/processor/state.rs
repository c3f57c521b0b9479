//! The processor's durable side: the machines restored from the compacted
//! `alerts.state`, and the transaction that writes a batch's transitions, the changed
//! states and the consumed offsets together.

use super::{AlertsProcessor, Outbox, Pair, READ_TIMEOUT};
use crate::alerts::machine::{MachineState, Transition};
use crate::alerts::rule::Rule;
use crate::error::{Error, Result};
use labstream_bus::{LogReader, Positions};
use labstream_schemas::{AlertState, Codec, RuleId, SensorId, Timestamp, Topics, alert_key};
use std::collections::HashMap;

impl AlertsProcessor {
    /// Replaces the in-memory machines by the committed ones in `alerts.state`.
    pub(super) async fn reload_states(&mut self) -> Result<()> {
        let reader = LogReader::new(&self.kafka, &self.topics.alerts_state()).await?;
        let records = reader.read_to_end(READ_TIMEOUT).await?;
        let mut machines = HashMap::new();
        for record in records {
            let Some(key) = record.key.as_deref() else {
                continue;
            };
            let Some(bytes) = record.payload.as_deref().filter(|b| !b.is_empty()) else {
                if let Some((r, s)) = std::str::from_utf8(key)
                    .ok()
                    .and_then(|k| k.split_once('/'))
                {
                    machines.remove(&(RuleId::new(r), SensorId::new(s)));
                }
                continue;
            };
            let restored = self
                .codec
                .decode::<AlertState>(bytes)
                .map_err(|e| Error::BadState {
                    key: String::from_utf8_lossy(key).into_owned(),
                    detail: e.to_string(),
                })
                .and_then(|r| Ok((MachineState::from_record(&r)?, r)));
            match restored {
                Ok((state, record)) => {
                    machines.insert(
                        (record.rule_id, record.sensor_id),
                        Pair {
                            sensor_type: record.sensor_type,
                            state,
                        },
                    );
                }
                Err(e) => tracing::error!(error = %e, "alerts: a state record is skipped"),
            }
        }
        machines.retain(|(rule_id, _), _| self.rules.contains_key(rule_id));
        tracing::info!(machines = machines.len(), "alerts: state restored");
        self.machines = machines;
        let rules: Vec<Rule> = self.rules.values().cloned().collect();
        for rule in &rules {
            self.ensure_expected(rule);
        }
        Ok(())
    }

    /// After a failed transaction: back to the committed offsets and state.
    pub(super) async fn recover(&mut self) -> Result<()> {
        self.consumer.rewind_to_committed(READ_TIMEOUT).await?;
        self.reload_states().await
    }

    pub(super) async fn transact(&self, outbox: Outbox, positions: Positions) -> Result<()> {
        let producer = self.producer.clone();
        let consumer = self.consumer.clone();
        let state_topic = self.topics.alerts_state();
        tokio::task::spawn_blocking(move || -> labstream_bus::Result<()> {
            producer.transact(|p| {
                for (topic, key, payload) in &outbox.events {
                    p.send(topic, key.as_bytes(), payload)?;
                }
                for (key, payload) in &outbox.states {
                    p.send(&state_topic, key.as_bytes(), payload)?;
                }
                p.commit(&positions, &consumer)
            })
        })
        .await
        .map_err(|e| Error::Config(format!("transaction task failed: {e}")))?
        .map_err(Error::Kafka)
    }
}

/// Queues `transitions` as events and the pair's state as its latest record.
pub(super) fn record_outputs(
    codec: &Codec,
    topics: &Topics,
    rule: &Rule,
    sensor_id: &SensorId,
    pair: &Pair,
    transitions: &[Transition],
    outbox: &mut Outbox,
) {
    let key = alert_key(&rule.id, sensor_id);
    let now = Timestamp::now();
    for tr in transitions {
        let event = tr.to_event(rule, sensor_id, &pair.sensor_type, now);
        match codec.encode(&event) {
            Ok(bytes) => {
                tracing::info!(rule = %rule.id, sensor = %sensor_id, status = %tr.status, sequence = tr.sequence, ts = %tr.ts, "alert transition");
                outbox
                    .events
                    .push((topics.alerts_topic(&rule.topic), key.clone(), bytes));
            }
            Err(e) => tracing::error!(error = %e, "alerts: encoding an event failed"),
        }
    }
    match codec.encode(&pair.state.to_record(rule, sensor_id, &pair.sensor_type)) {
        Ok(bytes) => {
            outbox.states.insert(key, bytes);
        }
        Err(e) => tracing::error!(error = %e, "alerts: encoding a state failed"),
    }
}
