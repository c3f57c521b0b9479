//! The state machine of one (rule, sensor) pair, as a pure function of (state, input)
//! in event time. A sensor's value is taken to hold until its next sample, so whether
//! and when a transition happens depends only on the samples and how far event time
//! has advanced, never on when ticks or batches happened to arrive. Transitions of a
//! pair strictly alternate firing, resolved, ... and carry consecutive sequence numbers.

use crate::alerts::rule::{Condition, Rule};
use crate::error::{Error, Result};
use labstream_schemas::{
    AlertEvent, AlertPhase, AlertState, AlertStatus, SensorId, SensorType, Timestamp, alert_key,
};

/// Where a pair stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Phase {
    Ok,
    /// The condition holds since `since`, not yet for the rule's `for` period.
    Pending {
        since: Timestamp,
    },
    Firing {
        since: Timestamp,
        fired_at: Timestamp,
    },
}

/// Everything the machine remembers about one pair; its Avro form is `AlertState`.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineState {
    pub phase: Phase,
    /// Sequence of the last transition; 0 = none.
    pub sequence: i64,
    /// Event time of the newest sample of the sensor.
    pub last_seen: Option<Timestamp>,
    /// The rule's field in the newest sample that had it.
    pub last_value: Option<(Timestamp, f64)>,
    /// What the condition tested at that sample (the rate for rate_of_change).
    pub last_metric: Option<f64>,
    /// Event time the machine has advanced to (newest sample or tick). A sample older
    /// than this is late and ignored; so transitions never go back in event time.
    pub clock: Timestamp,
    /// When watching began; absent rules count silence from here until a first sample.
    pub watched_since: Timestamp,
}

/// What the machine is told.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Input {
    /// A sample of the sensor at event time `ts`, with the rule's field as a number
    /// (`None` when the sample does not have it).
    Sample { ts: Timestamp, value: Option<f64> },
    /// Event time has advanced to `at` (the watermark) without a sample of the sensor.
    Tick { at: Timestamp },
}

/// One firing or resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub status: AlertStatus,
    pub sequence: i64,
    /// Event time of the transition.
    pub ts: Timestamp,
    /// When the condition began to hold.
    pub since: Timestamp,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
}

impl MachineState {
    pub fn new(watched_since: Timestamp) -> Self {
        Self {
            phase: Phase::Ok,
            sequence: 0,
            last_seen: None,
            last_value: None,
            last_metric: None,
            clock: watched_since,
            watched_since,
        }
    }

    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }

    /// The state after the rule changed from `old` to `new`: a firing alert stays firing
    /// until the new rule's recovery says otherwise, but a pending period restarts, as
    /// it was measured against the old condition.
    pub fn after_rule_change(&self, old: &Rule, new: &Rule) -> Self {
        let mut next = self.clone();
        if old.condition != new.condition || old.for_micros != new.for_micros {
            if let Phase::Pending { .. } = next.phase {
                next.phase = Phase::Ok;
            }
            if old.condition.kind() != new.condition.kind() {
                next.last_metric = None;
            }
        }
        next
    }

    /// The `alerts.state` record of this pair.
    pub fn to_record(
        &self,
        rule: &Rule,
        sensor_id: &SensorId,
        sensor_type: &SensorType,
    ) -> AlertState {
        let (phase, since, fired_at) = match self.phase {
            Phase::Ok => (AlertPhase::Ok, None, None),
            Phase::Pending { since } => (AlertPhase::Pending, Some(since), None),
            Phase::Firing { since, fired_at } => (AlertPhase::Firing, Some(since), Some(fired_at)),
        };
        AlertState {
            rule_id: rule.id.clone(),
            sensor_id: sensor_id.clone(),
            sensor_type: sensor_type.clone(),
            phase,
            since,
            fired_at,
            sequence: self.sequence,
            last_seen: self.last_seen,
            last_value: self.last_value.map(|(_, v)| v),
            last_value_at: self.last_value.map(|(t, _)| t),
            last_metric: self.last_metric,
            clock: self.clock,
            watched_since: self.watched_since,
        }
    }

    /// Restores a pair from its `alerts.state` record.
    pub fn from_record(record: &AlertState) -> Result<Self> {
        let bad = |detail: &str| Error::BadState {
            key: alert_key(&record.rule_id, &record.sensor_id),
            detail: detail.to_owned(),
        };
        let phase = match (record.phase, record.since, record.fired_at) {
            (AlertPhase::Ok, _, _) => Phase::Ok,
            (AlertPhase::Pending, Some(since), _) => Phase::Pending { since },
            (AlertPhase::Firing, Some(since), Some(fired_at)) => Phase::Firing { since, fired_at },
            (AlertPhase::Pending, None, _) => return Err(bad("pending without `since`")),
            (AlertPhase::Firing, _, _) => return Err(bad("firing without `since` or `fired_at`")),
        };
        if record.sequence < 0 || (record.sequence % 2 == 1) != (phase_is_firing(phase)) {
            return Err(bad("the sequence does not match the phase"));
        }
        Ok(Self {
            phase,
            sequence: record.sequence,
            last_seen: record.last_seen,
            last_value: record.last_value_at.zip(record.last_value),
            last_metric: record.last_metric,
            clock: record.clock,
            watched_since: record.watched_since,
        })
    }
}

fn phase_is_firing(phase: Phase) -> bool {
    matches!(phase, Phase::Firing { .. })
}

/// Feeds one input to the machine of (`rule`, a sensor). Returns the next state and
/// the transitions, oldest first: none, one, or two when a sample shows both that a
/// pending period (or a silence) ran out and that the sensor has recovered since.
///
/// An input older than the machine's clock (a late sample, a stale tick) changes
/// nothing: the machine never goes back in event time.
pub fn step(rule: &Rule, state: &MachineState, input: Input) -> (MachineState, Vec<Transition>) {
    let mut m = state.clone();
    let mut out = Vec::new();
    let at = match input {
        Input::Tick { at } => at,
        Input::Sample { ts, .. } => ts,
    };
    if at < m.clock {
        return (m, out);
    }
    // Until `at`, the previous value was in force.
    advance(rule, &mut m, at, &mut out);
    m.clock = at;
    let Input::Sample { ts, value } = input else {
        return (m, out);
    };
    m.last_seen = Some(ts);
    match rule.condition {
        Condition::Absent { .. } => {
            if let Phase::Firing { since, fired_at } = m.phase {
                resolve(&mut m, ts.max(fired_at), since, value, None, &mut out);
            }
        }
        Condition::RateOfChange { .. } => {
            if let Some(v) = value {
                let previous = m.last_value.replace((ts, v));
                if let Some((pts, pv)) = previous
                    && ts > pts
                {
                    let seconds = (ts.as_micros() - pts.as_micros()) as f64 / 1e6;
                    let rate = ((v - pv) / seconds).abs();
                    m.last_metric = Some(rate);
                    evaluate(rule, &mut m, ts, rate, &mut out);
                }
            }
        }
        _ => {
            if let Some(v) = value {
                m.last_value = Some((ts, v));
                m.last_metric = Some(v);
                evaluate(rule, &mut m, ts, v, &mut out);
            }
        }
    }
    (m, out)
}

/// The machine's rule was deleted, disabled, or stopped watching the sensor at event
/// time `at`: a firing alert is resolved (without a value), so no subscriber is left
/// with an alert that can never resolve.
pub fn retire(state: &MachineState, at: Timestamp) -> (MachineState, Option<Transition>) {
    let mut m = state.clone();
    let mut out = Vec::new();
    if let Phase::Firing { since, fired_at } = m.phase {
        let ts = at.max(fired_at).max(m.clock);
        m.clock = ts;
        resolve(&mut m, ts, since, None, None, &mut out);
    } else {
        m.phase = Phase::Ok;
    }
    (m, out.pop())
}

/// Event time reached `at` with the last value still in force.
fn advance(rule: &Rule, m: &mut MachineState, at: Timestamp, out: &mut Vec<Transition>) {
    match (rule.condition.clone(), m.phase) {
        (Condition::Absent { after_micros }, Phase::Ok) => {
            let silent_since = m.last_seen.unwrap_or(m.watched_since);
            let due = plus(silent_since, after_micros);
            if at >= due {
                fire(m, due, silent_since, None, None, out);
            }
        }
        (_, Phase::Pending { since }) => {
            let due = plus(since, rule.for_micros);
            if at >= due {
                let bound = m.last_metric.and_then(|v| rule.condition.violated_by(v));
                fire(m, due, since, m.last_metric, bound, out);
            }
        }
        _ => {}
    }
}

/// A new value of the tested quantity at `ts`.
fn evaluate(rule: &Rule, m: &mut MachineState, ts: Timestamp, v: f64, out: &mut Vec<Transition>) {
    match m.phase {
        Phase::Ok => {
            if let Some(bound) = rule.condition.violated_by(v) {
                if rule.for_micros == 0 {
                    fire(m, ts, ts, Some(v), Some(bound), out);
                } else {
                    m.phase = Phase::Pending { since: ts };
                }
            }
        }
        Phase::Pending { .. } => {
            // Had the period run out, `advance` would have fired already.
            if rule.condition.violated_by(v).is_none() {
                m.phase = Phase::Ok;
            }
        }
        Phase::Firing { since, fired_at } => {
            if let Some(bound) = rule.condition.recovered_by(v) {
                resolve(m, ts.max(fired_at), since, Some(v), Some(bound), out);
            }
        }
    }
}

fn fire(
    m: &mut MachineState,
    ts: Timestamp,
    since: Timestamp,
    value: Option<f64>,
    threshold: Option<f64>,
    out: &mut Vec<Transition>,
) {
    m.sequence += 1;
    m.phase = Phase::Firing {
        since,
        fired_at: ts,
    };
    out.push(Transition {
        status: AlertStatus::Firing,
        sequence: m.sequence,
        ts,
        since,
        value,
        threshold,
    });
}

fn resolve(
    m: &mut MachineState,
    ts: Timestamp,
    since: Timestamp,
    value: Option<f64>,
    threshold: Option<f64>,
    out: &mut Vec<Transition>,
) {
    m.sequence += 1;
    m.phase = Phase::Ok;
    out.push(Transition {
        status: AlertStatus::Resolved,
        sequence: m.sequence,
        ts,
        since,
        value,
        threshold,
    });
}

fn plus(t: Timestamp, micros: i64) -> Timestamp {
    Timestamp::from_micros(t.as_micros().saturating_add(micros))
}

impl Transition {
    /// The event published to `alerts.<rule.topic>`, its message rendered.
    pub fn to_event(
        &self,
        rule: &Rule,
        sensor_id: &SensorId,
        sensor_type: &SensorType,
        emitted_at: Timestamp,
    ) -> AlertEvent {
        let mut event = AlertEvent {
            event_id: AlertEvent::event_id_of(&rule.id, sensor_id, self.sequence),
            sequence: self.sequence,
            status: self.status,
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            rule_revision: rule.revision,
            sensor_id: sensor_id.clone(),
            sensor_type: sensor_type.clone(),
            field: rule.field.clone(),
            condition: rule.condition.kind().to_owned(),
            value: self.value,
            threshold: self.threshold,
            severity: rule.severity,
            labels: rule.labels.clone(),
            message: String::new(),
            ts: self.ts,
            since: self.since,
            emitted_at,
        };
        event.message = rule.message.render(&event);
        event
    }
}

#[cfg(test)]
mod tests;
