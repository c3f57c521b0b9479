//! Rule evaluation, the alerts processor's per-sample hot path: one `step` of a
//! (rule, sensor) machine, and the whole per-sample work when a transition happens
//! (step + event with rendered message + Avro encoding of event and state).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use labstream_processors::alerts::{Input, MachineState, Rule, step};
use labstream_schemas::{
    AlertCondition, AlertRule, Codec, RuleId, SensorId, SensorType, Severity, Timestamp,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

fn rule(condition: AlertCondition, for_duration: Duration) -> Rule {
    let wire = AlertRule {
        rule_id: RuleId::new("freezer-warm"),
        name: "Freezer too warm".into(),
        topic: "freezers".into(),
        enabled: true,
        sensor_type: SensorType::new("temperature"),
        sensor_ids: vec![],
        field: Some("celsius".into()),
        condition,
        for_duration,
        severity: Severity::Critical,
        labels: BTreeMap::from([("room".to_owned(), "lab-2".to_owned())]),
        message: "{{sensor_id}} in {{labels.room}} at {{value}} (limit {{threshold}})".into(),
        revision: 1,
        updated_at: Timestamp::from_micros(0),
    };
    Rule::compile(&wire, None).expect("valid rule")
}

fn inputs(n: usize) -> Vec<Input> {
    // A value oscillating across the threshold 8 with hysteresis band 6..8.
    (0..n)
        .map(|i| Input::Sample {
            ts: Timestamp::from_micros(1_795_428_000_000_000 + i as i64 * 1_000_000),
            value: Some(7.0 + 2.0 * ((i as f64) / 7.0).sin()),
        })
        .collect()
}

fn evaluation(c: &mut Criterion) {
    let samples = inputs(10_000);
    let mut group = c.benchmark_group("alerts_step");
    group.throughput(Throughput::Elements(samples.len() as u64));
    for (name, rule) in [
        (
            "above_hysteresis",
            rule(
                AlertCondition::Above {
                    threshold: 8.0,
                    recovery: Some(6.0),
                },
                Duration::ZERO,
            ),
        ),
        (
            "above_for_30s",
            rule(
                AlertCondition::Above {
                    threshold: 8.0,
                    recovery: Some(6.0),
                },
                Duration::from_secs(30),
            ),
        ),
        (
            "rate_of_change",
            rule(
                AlertCondition::RateOfChange {
                    threshold: 0.25,
                    recovery: Some(0.1),
                },
                Duration::ZERO,
            ),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut state = MachineState::new(Timestamp::from_micros(0));
                let mut transitions = 0usize;
                for input in &samples {
                    let (next, out) = step(&rule, &state, *input);
                    state = next;
                    transitions += out.len();
                }
                black_box(transitions)
            })
        });
    }
    group.finish();

    let codec = Codec::new();
    let r = rule(
        AlertCondition::Above {
            threshold: 8.0,
            recovery: None,
        },
        Duration::ZERO,
    );
    let sensor = SensorId::new("freezer-1");
    let sensor_type = SensorType::new("temperature");
    let firing = Input::Sample {
        ts: Timestamp::from_micros(1_795_428_000_000_000),
        value: Some(9.5),
    };
    c.bench_function("alerts_transition_encoded", |b| {
        b.iter(|| {
            let (state, out) = step(&r, &MachineState::new(Timestamp::from_micros(0)), firing);
            let event = out[0].to_event(&r, &sensor, &sensor_type, Timestamp::now());
            let e = codec.encode(&event).expect("encodes");
            let s = codec
                .encode(&state.to_record(&r, &sensor, &sensor_type))
                .expect("encodes");
            black_box((e, s))
        })
    });
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
