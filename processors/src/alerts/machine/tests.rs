use super::*;
use crate::alerts::rule::tests::wire;
use labstream_schemas::{AlertCondition, Codec};
use proptest::prelude::*;
use std::time::Duration;

const S: i64 = 1_000_000;

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_micros(1_795_428_000 * S + seconds * S)
}

fn rule_of(condition: AlertCondition, for_seconds: u64) -> Rule {
    let mut w = wire(condition);
    w.for_duration = Duration::from_secs(for_seconds);
    Rule::compile(&w, None).unwrap()
}

fn above(threshold: f64, recovery: f64, for_seconds: u64) -> Rule {
    rule_of(
        AlertCondition::Above {
            threshold,
            recovery: Some(recovery),
        },
        for_seconds,
    )
}

fn sample(seconds: i64, v: f64) -> Input {
    Input::Sample {
        ts: t(seconds),
        value: Some(v),
    }
}

fn run(rule: &Rule, state: &MachineState, inputs: &[Input]) -> (MachineState, Vec<Transition>) {
    let mut state = state.clone();
    let mut all = Vec::new();
    for input in inputs {
        let (next, out) = step(rule, &state, *input);
        state = next;
        all.extend(out);
    }
    (state, all)
}

fn statuses(ts: &[Transition]) -> Vec<AlertStatus> {
    ts.iter().map(|t| t.status).collect()
}

use AlertStatus::{Firing, Resolved};

#[test]
fn hysteresis_turns_flapping_into_one_firing_and_one_resolution() {
    let rule = above(8.0, 6.0, 0);
    let values = [5.0, 8.5, 7.9, 8.1, 7.0, 9.0, 6.5, 8.2, 6.0, 8.0, 7.9];
    let inputs: Vec<Input> = values
        .iter()
        .enumerate()
        .map(|(i, v)| sample(i as i64, *v))
        .collect();
    let (state, out) = run(&rule, &MachineState::new(t(0)), &inputs);
    assert_eq!(statuses(&out), [Firing, Resolved]);
    assert_eq!(
        (out[0].ts, out[0].value, out[0].threshold),
        (t(1), Some(8.5), Some(8.0))
    );
    assert_eq!(
        (out[1].ts, out[1].value, out[1].threshold),
        (t(8), Some(6.0), Some(6.0))
    );
    assert_eq!(out[1].since, t(1));
    assert_eq!([out[0].sequence, out[1].sequence], [1, 2]);
    assert_eq!(state.phase, Phase::Ok);
}

#[test]
fn for_delays_firing_until_the_condition_held_that_long() {
    let rule = above(8.0, 8.0, 60);
    // Held 50 s, then dropped: nothing.
    let (state, out) = run(
        &rule,
        &MachineState::new(t(0)),
        &[sample(0, 9.0), sample(30, 9.5), sample(50, 7.0)],
    );
    assert!(out.is_empty());
    assert_eq!(state.phase, Phase::Ok);
    // Held from 100 on: fires at 160, stamped when the period ran out.
    let (state, out) = run(
        &rule,
        &state,
        &[
            sample(100, 9.0),
            sample(130, 9.1),
            Input::Tick { at: t(159) },
        ],
    );
    assert!(out.is_empty());
    assert_eq!(state.phase, Phase::Pending { since: t(100) });
    let (_, out) = step(&rule, &state, Input::Tick { at: t(160) });
    assert_eq!(statuses(&out), [Firing]);
    assert_eq!(
        (out[0].ts, out[0].since, out[0].value),
        (t(160), t(100), Some(9.1))
    );
}

#[test]
fn a_late_sample_that_shows_the_period_ran_out_fires_and_may_resolve_at_once() {
    let rule = above(8.0, 8.0, 60);
    // No tick came, the next sample is 90 s later and already fine: the value 9.0 was
    // in force from 0 to 90, so the rule fired at 60 and resolved at 90.
    let (_, out) = run(
        &rule,
        &MachineState::new(t(0)),
        &[sample(0, 9.0), sample(90, 7.0)],
    );
    assert_eq!(statuses(&out), [Firing, Resolved]);
    assert_eq!((out[0].ts, out[1].ts), (t(60), t(90)));
    // The same samples with a tick in between give the same transitions.
    let (_, with_tick) = run(
        &rule,
        &MachineState::new(t(0)),
        &[sample(0, 9.0), Input::Tick { at: t(75) }, sample(90, 7.0)],
    );
    assert_eq!(with_tick, out);
}

#[test]
fn absent_fires_for_a_registered_sensor_that_never_reported() {
    let rule = rule_of(
        AlertCondition::Absent {
            after: Duration::from_secs(300),
        },
        0,
    );
    let state = MachineState::new(t(0));
    let (state, out) = step(&rule, &state, Input::Tick { at: t(299) });
    assert!(out.is_empty());
    let (state, out) = step(&rule, &state, Input::Tick { at: t(400) });
    assert_eq!(statuses(&out), [Firing]);
    assert_eq!(
        (out[0].ts, out[0].since, out[0].value),
        (t(300), t(0), None)
    );
    // Later ticks do not fire again; the first sample resolves.
    let (state, out) = step(&rule, &state, Input::Tick { at: t(900) });
    assert!(out.is_empty());
    let (state, out) = step(
        &rule,
        &state,
        Input::Sample {
            ts: t(950),
            value: None,
        },
    );
    assert_eq!(statuses(&out), [Resolved]);
    assert_eq!(out[0].ts, t(950));
    // Silence is counted from the last sample now.
    let (_, out) = step(&rule, &state, Input::Tick { at: t(1249) });
    assert!(out.is_empty());
}

#[test]
fn absent_records_a_silence_seen_only_afterwards() {
    let rule = rule_of(
        AlertCondition::Absent {
            after: Duration::from_secs(60),
        },
        0,
    );
    let inputs = [
        Input::Sample {
            ts: t(0),
            value: None,
        },
        Input::Sample {
            ts: t(100),
            value: None,
        },
    ];
    let (_, out) = run(&rule, &MachineState::new(t(0)), &inputs);
    assert_eq!(statuses(&out), [Firing, Resolved]);
    assert_eq!((out[0].ts, out[1].ts), (t(60), t(100)));
}

#[test]
fn below_outside_inside_and_rate_fire_and_recover_on_their_side() {
    let below = rule_of(
        AlertCondition::Below {
            threshold: 2.0,
            recovery: Some(3.0),
        },
        0,
    );
    let (_, out) = run(
        &below,
        &MachineState::new(t(0)),
        &[
            sample(0, 2.5),
            sample(1, 1.5),
            sample(2, 2.9),
            sample(3, 3.0),
        ],
    );
    assert_eq!(statuses(&out), [Firing, Resolved]);
    assert_eq!((out[0].ts, out[1].ts), (t(1), t(3)));

    let outside = rule_of(
        AlertCondition::Outside {
            low: 18.0,
            high: 24.0,
            recovery_low: Some(19.0),
            recovery_high: Some(23.0),
        },
        0,
    );
    let (_, out) = run(
        &outside,
        &MachineState::new(t(0)),
        &[
            sample(0, 20.0),
            sample(1, 24.5),
            sample(2, 23.5),
            sample(3, 22.0),
            sample(4, 17.0),
        ],
    );
    assert_eq!(statuses(&out), [Firing, Resolved, Firing]);
    assert_eq!(out[0].threshold, Some(24.0));
    assert_eq!(out[1].threshold, Some(23.0));
    assert_eq!(out[2].threshold, Some(18.0));

    let inside = rule_of(
        AlertCondition::Inside {
            low: 0.0,
            high: 1.0,
            recovery_low: Some(-1.0),
            recovery_high: Some(2.0),
        },
        0,
    );
    let (_, out) = run(
        &inside,
        &MachineState::new(t(0)),
        &[
            sample(0, 5.0),
            sample(1, 0.5),
            sample(2, 1.5),
            sample(3, 2.5),
        ],
    );
    assert_eq!(statuses(&out), [Firing, Resolved]);
    assert_eq!((out[0].ts, out[1].ts), (t(1), t(3)));

    let rate = rule_of(
        AlertCondition::RateOfChange {
            threshold: 0.5,
            recovery: Some(0.1),
        },
        0,
    );
    let (_, out) = run(
        &rate,
        &MachineState::new(t(0)),
        &[
            sample(0, 20.0),
            sample(10, 21.0),
            sample(20, 30.0),
            sample(30, 28.0),
            sample(40, 28.5),
        ],
    );
    assert_eq!(statuses(&out), [Firing, Resolved]);
    assert_eq!((out[0].ts, out[0].value), (t(20), Some(0.9)));
    assert_eq!((out[1].ts, out[1].value), (t(40), Some(0.05)));
}

#[test]
fn older_samples_are_ignored_and_samples_without_the_field_change_nothing() {
    let rule = above(8.0, 8.0, 0);
    let (state, out) = run(
        &rule,
        &MachineState::new(t(0)),
        &[sample(10, 9.0), sample(5, 1.0)],
    );
    assert_eq!(statuses(&out), [Firing]);
    assert!(state.is_firing());
    let (state2, out) = step(
        &rule,
        &state,
        Input::Sample {
            ts: t(11),
            value: None,
        },
    );
    assert!(out.is_empty());
    assert!(state2.is_firing());
    assert_eq!(state2.last_seen, Some(t(11)));
}

#[test]
fn events_carry_the_rule_and_a_rendered_message() {
    let mut w = wire(AlertCondition::Above {
        threshold: 8.0,
        recovery: None,
    });
    w.message = "{{sensor_id}} at {{value}} > {{threshold}}".into();
    let rule = Rule::compile(&w, None).unwrap();
    let (_, out) = step(&rule, &MachineState::new(t(0)), sample(3, 9.25));
    let event = out[0].to_event(
        &rule,
        &SensorId::new("freezer-1"),
        &SensorType::new("temperature"),
        t(4),
    );
    assert_eq!(event.event_id, "freezer-warm/freezer-1/1");
    assert_eq!(event.message, "freezer-1 at 9.25 > 8");
    assert_eq!(event.field.as_deref(), Some("celsius"));
    assert_eq!(event.condition, "above");
    assert_eq!((event.ts, event.emitted_at), (t(3), t(4)));
}

#[test]
fn a_changed_condition_restarts_a_pending_period_but_keeps_a_firing_alert() {
    let old = above(8.0, 8.0, 60);
    let new = above(9.0, 9.0, 60);
    let (pending, _) = step(&old, &MachineState::new(t(0)), sample(0, 10.0));
    assert_eq!(pending.after_rule_change(&old, &new).phase, Phase::Ok);
    assert_eq!(pending.after_rule_change(&old, &old), pending);
    let (firing, _) = step(&old, &pending, Input::Tick { at: t(60) });
    assert!(firing.after_rule_change(&old, &new).is_firing());
}

#[test]
fn retiring_resolves_a_firing_alert_once() {
    let rule = above(8.0, 8.0, 0);
    let (firing, _) = step(&rule, &MachineState::new(t(0)), sample(10, 9.0));
    let (ok, tr) = retire(&firing, t(5));
    let tr = tr.unwrap();
    assert_eq!(
        (tr.status, tr.sequence, tr.ts, tr.value),
        (Resolved, 2, t(10), None)
    );
    assert_eq!(ok.phase, Phase::Ok);
    assert!(retire(&ok, t(20)).1.is_none());
}

#[test]
fn inconsistent_state_records_are_refused() {
    let rule = above(8.0, 8.0, 0);
    let (state, _) = step(&rule, &MachineState::new(t(0)), sample(0, 9.0));
    let mut record = state.to_record(&rule, &SensorId::new("s"), &SensorType::new("x"));
    record.fired_at = None;
    let err = MachineState::from_record(&record).unwrap_err();
    assert!(err.to_string().contains("freezer-warm/s"), "{err}");
    let mut record = state.to_record(&rule, &SensorId::new("s"), &SensorType::new("x"));
    record.sequence = 2;
    assert!(MachineState::from_record(&record).is_err());
}

// ---- properties ----

/// Inputs of one sensor: samples moving forward in time (sometimes a late one) and ticks.
fn inputs(max_len: usize) -> impl Strategy<Value = Vec<Input>> {
    let one = prop_oneof![
        6 => (0i64..40, -5.0f64..15.0).prop_map(|(dt, v)| (dt, Some(v), false)),
        1 => (0i64..40).prop_map(|dt| (dt, None, false)),
        2 => (0i64..120).prop_map(|dt| (dt, None, true)),
        1 => (-30i64..0, -5.0f64..15.0).prop_map(|(dt, v)| (dt, Some(v), false)),
    ];
    proptest::collection::vec(one, 0..max_len).prop_map(|steps| {
        let mut now = 0i64;
        steps
            .into_iter()
            .map(|(dt, v, tick)| {
                if tick {
                    Input::Tick { at: t(now + dt) }
                } else if dt < 0 {
                    Input::Sample {
                        ts: t(now + dt),
                        value: v,
                    }
                } else {
                    now += dt;
                    Input::Sample {
                        ts: t(now),
                        value: v,
                    }
                }
            })
            .collect()
    })
}

fn value_condition() -> impl Strategy<Value = AlertCondition> {
    prop_oneof![
        (0.0f64..10.0, 0.0f64..5.0).prop_map(|(th, h)| AlertCondition::Above {
            threshold: th,
            recovery: Some(th - h)
        }),
        (0.0f64..10.0, 0.0f64..5.0).prop_map(|(th, h)| AlertCondition::Below {
            threshold: th,
            recovery: Some(th + h)
        }),
        (0.0f64..5.0, 0.0f64..5.0, 0.0f64..1.0).prop_map(|(lo, w, h)| {
            AlertCondition::Outside {
                low: lo,
                high: lo + w,
                recovery_low: Some(lo + w * h / 2.0),
                recovery_high: Some(lo + w - w * h / 2.0),
            }
        }),
        (0.0f64..5.0, 0.0f64..5.0, 0.0f64..3.0).prop_map(|(lo, w, h)| {
            AlertCondition::Inside {
                low: lo,
                high: lo + w,
                recovery_low: Some(lo - h),
                recovery_high: Some(lo + w + h),
            }
        }),
        (0.01f64..2.0, 0.0f64..1.0).prop_map(|(th, h)| AlertCondition::RateOfChange {
            threshold: th,
            recovery: Some(th * h)
        }),
    ]
}

fn value_rule() -> impl Strategy<Value = Rule> {
    (value_condition(), 0u64..100).prop_map(|(c, for_s)| rule_of(c, for_s))
}

fn any_rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        5 => value_rule(),
        1 => (1u64..200).prop_map(|s| rule_of(
            AlertCondition::Absent {
                after: Duration::from_secs(s)
            },
            0
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Flapping anywhere above the recovery bound, after a first crossing, then one
    /// value at or below it: exactly one firing and one resolution.
    #[test]
    fn flapping_with_hysteresis_gives_one_firing_and_one_resolution(
        threshold in -20.0f64..20.0,
        band in 0.1f64..5.0,
        flaps in proptest::collection::vec(0.0f64..1.0, 0..50),
        over in 0.001f64..10.0,
        under in 0.0f64..10.0,
    ) {
        let recovery = threshold - band;
        let rule = above(threshold, recovery, 0);
        let mut inputs = vec![sample(0, threshold + over)];
        for (i, f) in flaps.iter().enumerate() {
            // Strictly above the recovery bound: below or above the threshold.
            let v = recovery + band * 2.0 * f + 1e-9;
            inputs.push(sample(i as i64 + 1, v));
        }
        inputs.push(sample(flaps.len() as i64 + 1, recovery - under));
        let (_, out) = run(&rule, &MachineState::new(t(0)), &inputs);
        prop_assert_eq!(statuses(&out), vec![Firing, Resolved]);
    }

    /// A firing after a pending period is stamped exactly `for` after the condition
    /// began, and every sample in that period violated the condition.
    #[test]
    fn for_delays_firing(rule in value_rule(), inputs in inputs(60)) {
        let mut state = MachineState::new(t(0));
        // The value in force at each event time (the last sample with that ts wins).
        let mut seen: std::collections::BTreeMap<Timestamp, f64> = Default::default();
        for input in inputs {
            let (next, out) = step(&rule, &state, input);
            for tr in out.iter().filter(|tr| tr.status == Firing) {
                prop_assert!(tr.ts >= tr.since);
                if rule.for_micros > 0 {
                    prop_assert_eq!(tr.ts, plus(tr.since, rule.for_micros));
                    if !matches!(rule.condition, Condition::RateOfChange { .. }) {
                        for (ts, v) in seen.range(tr.since..tr.ts) {
                            prop_assert!(rule.condition.violated_by(*v).is_some(),
                                "sample {} = {} in the pending period does not violate", ts, v);
                        }
                    }
                }
            }
            if let Input::Sample { ts, value: Some(v) } = input
                && ts >= state.clock
            {
                seen.insert(ts, v);
            }
            state = next;
        }
    }

    /// Transitions alternate firing/resolved, number consecutively, never go back in time.
    #[test]
    fn transitions_alternate_strictly(rule in any_rule(), inputs in inputs(80)) {
        let (_, out) = run(&rule, &MachineState::new(t(0)), &inputs);
        for (i, tr) in out.iter().enumerate() {
            prop_assert_eq!(tr.sequence, i as i64 + 1);
            prop_assert_eq!(tr.status, if i % 2 == 0 { Firing } else { Resolved });
            if i > 0 {
                prop_assert!(tr.ts >= out[i - 1].ts);
            }
            if tr.status == Resolved {
                prop_assert_eq!(tr.since, out[i - 1].since);
            }
        }
    }

    /// Stopping anywhere, storing the state as Avro and resuming from it gives the
    /// same transitions as running through.
    #[test]
    fn restart_from_the_stored_state_resumes_identically(
        rule in any_rule(),
        inputs in inputs(60),
        cut in any::<prop::sample::Index>(),
    ) {
        let codec = Codec::new();
        let (_, straight) = run(&rule, &MachineState::new(t(0)), &inputs);
        let k = if inputs.is_empty() { 0 } else { cut.index(inputs.len() + 1) };
        let (state, mut resumed) = run(&rule, &MachineState::new(t(0)), &inputs[..k]);
        let sensor = SensorId::new("s-1");
        let record = state.to_record(&rule, &sensor, &SensorType::new("temperature"));
        let bytes = codec.encode(&record).unwrap();
        let restored = MachineState::from_record(&codec.decode::<AlertState>(&bytes).unwrap()).unwrap();
        prop_assert_eq!(&restored, &state);
        let (_, rest) = run(&rule, &restored, &inputs[k..]);
        resumed.extend(rest);
        prop_assert_eq!(resumed, straight);
    }
}
