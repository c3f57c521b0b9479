//! The experiment fold: property tests over random command sequences (only the
//! commands `decide` accepts become events), and round-trips of every record through
//! the single-object codec.

use labstream_schemas::experiment::{
    Command, CommandContext, ConfiguredSensor, EnrichedSample, ExperimentDefinition,
    ExperimentEvent, ExperimentStatus, ProgressStatus, ProtocolTask, RecordingContext, Rejection,
    SiteState, decide,
};
use labstream_schemas::{Codec, ExperimentId, FieldValue, Sample, SensorId, Timestamp};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const EXPERIMENTS: [&str; 3] = ["e1", "e2", "e3"];
const PARTICIPANTS: [&str; 3] = ["p1", "p2", "p3"];
const TASKS: [&str; 2] = ["t1", "t2"];
const SENSORS: [&str; 3] = ["s1", "s2", "s3"];

fn definition(participants: usize) -> ExperimentDefinition {
    ExperimentDefinition {
        name: "study".into(),
        owner: "dr-a".into(),
        description: None,
        sensor_config_id: "cfg".into(),
        tasks: TASKS
            .iter()
            .map(|t| ProtocolTask {
                task_id: (*t).into(),
                name: format!("task {t}"),
                description: None,
            })
            .collect(),
        operators: vec!["op".into()],
        participants: PARTICIPANTS[..participants.clamp(1, 3)]
            .iter()
            .map(|p| (*p).into())
            .collect(),
    }
}

/// A step of a random scenario: a raw command, or one aimed at the active experiment
/// and its running recordings (so starts and stops are common, not lucky guesses).
#[derive(Clone, Debug)]
enum Op {
    Raw(Command),
    StartInActive(
        String,
        &'static str,
        &'static str,
        Option<Vec<&'static str>>,
    ),
    StopRunning(usize),
}

impl Op {
    fn resolve(self, state: &SiteState) -> Command {
        let active = state
            .active()
            .map_or_else(|| ExperimentId::from("e1"), |e| e.experiment_id.clone());
        match self {
            Op::Raw(c) => c,
            Op::StartInActive(r, p, t, sensors) => Command::StartRecording {
                experiment_id: active,
                recording_id: r.into(),
                participant_id: p.into(),
                task_id: t.into(),
                sensors: sensors.map(|s| s.into_iter().map(SensorId::from).collect()),
                started_at: None,
            },
            Op::StopRunning(n) => {
                let open: Vec<_> = state
                    .experiments
                    .values()
                    .flat_map(|e| {
                        e.open_recordings()
                            .map(|r| (e.experiment_id.clone(), r.recording_id.clone()))
                    })
                    .collect();
                let (experiment_id, recording_id) = open
                    .get(n % open.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| (active, "none".into()));
                Command::StopRecording {
                    experiment_id,
                    recording_id,
                    stopped_at: None,
                }
            }
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let recording = (0u16..1000).prop_map(|i| format!("r{i}"));
    let sensors = prop::option::of(prop::sample::subsequence(SENSORS.to_vec(), 0..=2));
    prop_oneof![
        4 => command().prop_map(Op::Raw),
        3 => (recording, prop::sample::select(PARTICIPANTS.to_vec()), prop::sample::select(TASKS.to_vec()), sensors)
            .prop_map(|(r, p, t, s)| Op::StartInActive(r, p, t, s)),
        2 => any::<usize>().prop_map(Op::StopRunning),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let exp = prop::sample::select(EXPERIMENTS.to_vec()).prop_map(ExperimentId::from);
    let participant = prop::sample::select(PARTICIPANTS.to_vec());
    let task = prop::sample::select(TASKS.to_vec());
    let recording = (0u8..12).prop_map(|i| format!("r{i}"));
    let sensors = prop::option::of(prop::sample::subsequence(SENSORS.to_vec(), 0..=2));
    prop_oneof![
        1 => (exp.clone(), 1usize..=3).prop_map(|(experiment_id, n)| Command::CreateExperiment {
            experiment_id,
            definition: definition(n),
        }),
        1 => (exp.clone(), 1usize..=3).prop_map(|(experiment_id, n)| Command::RedefineExperiment {
            experiment_id,
            definition: definition(n),
        }),
        3 => exp.clone().prop_map(|experiment_id| Command::Activate { experiment_id }),
        1 => exp.clone().prop_map(|experiment_id| Command::Deactivate { experiment_id }),
        1 => exp.clone().prop_map(|experiment_id| Command::Archive { experiment_id }),
        5 => (exp.clone(), recording.clone(), participant.clone(), task.clone(), sensors).prop_map(
            |(experiment_id, r, p, t, sensors)| Command::StartRecording {
                experiment_id,
                recording_id: r.into(),
                participant_id: p.into(),
                task_id: t.into(),
                sensors: sensors.map(|s| s.into_iter().map(SensorId::from).collect()),
                started_at: None,
            }
        ),
        4 => (exp.clone(), recording.clone()).prop_map(|(experiment_id, r)| Command::StopRecording {
            experiment_id,
            recording_id: r.into(),
            stopped_at: None,
        }),
        1 => (exp.clone(), "[a-z ]{0,12}").prop_map(|(experiment_id, text)| Command::AddLogbookEntry {
            experiment_id,
            entry_id: "x".into(),
            text,
            recording_id: None,
            at: None,
        }),
        1 => (exp, participant, task).prop_map(|(experiment_id, p, t)| Command::RecordProgress {
            experiment_id,
            participant_id: p.into(),
            task_id: t.into(),
            status: ProgressStatus::Done,
            note: None,
        }),
    ]
}

fn context(step: usize, expected_version: Option<i64>) -> CommandContext {
    CommandContext {
        site_id: "lab".into(),
        actor: "tester".into(),
        now: Timestamp::from_micros(1_700_000_000_000_000 + step as i64 * 1_000_000),
        event_id: format!("ev-{step}"),
        expected_version,
        max_backdate: Duration::from_secs(5),
    }
}

fn start() -> (SiteState, Vec<ExperimentEvent>) {
    let mut state = SiteState::default();
    let event = decide(
        &state,
        Command::DefineSensorConfig {
            sensor_config_id: "cfg".into(),
            name: "bench".into(),
            description: None,
            sensors: SENSORS
                .iter()
                .map(|s| ConfiguredSensor {
                    sensor_id: (*s).into(),
                    sensor_type: "temperature".into(),
                    label: None,
                })
                .collect(),
        },
        &context(0, None),
    )
    .unwrap();
    state.apply(&event);
    (state, vec![event])
}

fn check_invariants(state: &SiteState) {
    let active = state
        .experiments
        .values()
        .filter(|e| e.status == ExperimentStatus::Active)
        .count();
    assert!(active <= 1, "{active} experiments active");
    let mut sensors_recorded = BTreeSet::new();
    let mut everything_recorded = false;
    let mut participants = BTreeSet::new();
    for e in state.experiments.values() {
        for r in &e.recordings {
            if let Some(stop) = r.stopped_at {
                assert!(
                    stop >= r.started_at,
                    "recording {} stops before it starts",
                    r.recording_id
                );
                continue;
            }
            assert_eq!(
                e.status,
                ExperimentStatus::Active,
                "open recording in a non-active experiment"
            );
            assert!(
                participants.insert(r.participant_id.clone()),
                "participant recorded twice at once"
            );
            assert!(!everything_recorded, "a sensor recorded twice at once");
            if r.sensors.is_empty() {
                everything_recorded = true;
                assert!(
                    sensors_recorded.is_empty(),
                    "a sensor recorded twice at once"
                );
            }
            for s in &r.sensors {
                assert!(
                    sensors_recorded.insert(s.clone()),
                    "sensor {s} recorded twice at once"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of commands: accepted ones keep the invariants, versions count the
    /// events of each aggregate, archived experiments never change again, and rebuilding
    /// from the log (also after an Avro round trip) equals the incremental state.
    #[test]
    fn folding_accepted_commands_keeps_the_invariants(ops in prop::collection::vec(op(), 1..80)) {
        let codec = Codec::new();
        let (mut state, mut log) = start();
        let mut archived: BTreeMap<ExperimentId, _> = BTreeMap::new();
        for (i, op) in ops.into_iter().enumerate() {
            let command = op.resolve(&state);
            let before = state.clone();
            match decide(&state, command, &context(i + 1, None)) {
                Ok(event) => {
                    let aggregate_version = before.version_of(&event.aggregate_id);
                    prop_assert_eq!(event.version, aggregate_version + 1);
                    let changed = state.apply(&event);
                    log.push(event);
                    if let Some(id) = changed {
                        prop_assert!(!archived.contains_key(&id), "archived experiment {} changed", id);
                        let exp = &state.experiments[&id];
                        if exp.status == ExperimentStatus::Archived {
                            archived.insert(id, exp.clone());
                        }
                    }
                }
                Err(_) => prop_assert_eq!(&state, &before, "a rejected command changed the state"),
            }
            check_invariants(&state);
        }
        prop_assert_eq!(&SiteState::fold(&log), &state, "rebuild differs from incremental");
        let decoded: Vec<ExperimentEvent> = log
            .iter()
            .map(|e| codec.decode(&codec.encode(e).unwrap()).unwrap())
            .collect();
        prop_assert_eq!(&decoded, &log);
        prop_assert_eq!(&SiteState::fold(&decoded), &state);
        for exp in state.experiments.values() {
            let back: labstream_schemas::experiment::ExperimentState =
                codec.decode(&codec.encode(exp).unwrap()).unwrap();
            prop_assert_eq!(&back, exp);
        }
    }
}

fn accept(state: &mut SiteState, command: Command, step: usize) -> ExperimentEvent {
    let event = decide(state, command, &context(step, None)).unwrap();
    state.apply(&event);
    event
}

#[test]
fn invalid_transitions_are_refused_with_the_reason() {
    let (mut state, _) = start();
    for e in ["e1", "e2"] {
        accept(
            &mut state,
            Command::CreateExperiment {
                experiment_id: e.into(),
                definition: definition(2),
            },
            1,
        );
    }
    let start_p1 = |step| Command::StartRecording {
        experiment_id: "e1".into(),
        recording_id: format!("r{step}").into(),
        participant_id: "p1".into(),
        task_id: "t1".into(),
        sensors: None,
        started_at: None,
    };
    let refused = decide(&state, start_p1(2), &context(2, None)).unwrap_err();
    assert!(
        matches!(&refused, Rejection::Conflict(m) if m.contains("not active")),
        "{refused}"
    );

    accept(
        &mut state,
        Command::Activate {
            experiment_id: "e1".into(),
        },
        3,
    );
    let refused = decide(
        &state,
        Command::Activate {
            experiment_id: "e2".into(),
        },
        &context(4, None),
    )
    .unwrap_err();
    assert!(
        matches!(&refused, Rejection::Conflict(m) if m.contains("e1 is active")),
        "{refused}"
    );

    accept(&mut state, start_p1(5), 5);
    let refused = decide(
        &state,
        Command::Deactivate {
            experiment_id: "e1".into(),
        },
        &context(6, None),
    )
    .unwrap_err();
    assert!(
        matches!(&refused, Rejection::Conflict(m) if m.contains("r5 is running")),
        "{refused}"
    );

    let unknown = Command::StartRecording {
        experiment_id: "e1".into(),
        recording_id: "r9".into(),
        participant_id: "nobody".into(),
        task_id: "t1".into(),
        sensors: Some(vec![]),
        started_at: None,
    };
    let refused = decide(&state, unknown, &context(7, None)).unwrap_err();
    assert!(
        matches!(&refused, Rejection::Invalid(m) if m.contains("nobody")),
        "{refused}"
    );

    let stale = decide(
        &state,
        Command::Archive {
            experiment_id: "e2".into(),
        },
        &context(8, Some(7)),
    )
    .unwrap_err();
    assert_eq!(
        stale,
        Rejection::VersionMismatch {
            aggregate: "e2".into(),
            expected: 7,
            actual: 1
        }
    );

    let backdated = Command::StopRecording {
        experiment_id: "e1".into(),
        recording_id: "r5".into(),
        stopped_at: Some(Timestamp::from_micros(
            context(9, None).now.as_micros() - 60_000_000,
        )),
    };
    let refused = decide(&state, backdated, &context(9, None)).unwrap_err();
    assert!(
        matches!(&refused, Rejection::Invalid(m) if m.contains("in the past")),
        "{refused}"
    );
}

#[test]
fn an_enriched_sample_round_trips_with_and_without_its_recording() {
    let codec = Codec::new();
    let sample = Sample {
        sensor_id: "s1".into(),
        sensor_type: "temperature".into(),
        ts: Timestamp::from_micros(1_700_000_000_123_456),
        seq: Some(3),
        values: [("celsius".to_owned(), FieldValue::Double(21.5))].into(),
        tags: [("room".to_owned(), "lab-2".to_owned())].into(),
        received_at: Timestamp::from_micros(1_700_000_000_200_000),
    };
    for context in [
        None,
        Some(RecordingContext {
            experiment_id: "e1".into(),
            recording_id: "r1".into(),
            participant_id: "p1".into(),
            task_id: "t1".into(),
        }),
    ] {
        let enriched = EnrichedSample {
            sample: sample.clone(),
            context,
        };
        let back: EnrichedSample = codec.decode(&codec.encode(&enriched).unwrap()).unwrap();
        assert_eq!(back, enriched);
    }
}
