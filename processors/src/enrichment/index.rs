//! Which recording a sample belongs to: the recording of the site whose interval
//! `[started_at, stopped_at)` contains the sample's event time and which records its
//! sensor. Intervals of one sensor never overlap (the command checks refuse it), so
//! the answer is unique.

use labstream_schemas::experiment::{RecordingContext, SiteState};
use labstream_schemas::{SensorId, Timestamp};
use std::collections::HashMap;

#[derive(Debug)]
struct Interval {
    start: Timestamp,
    /// `None` while the recording runs.
    stop: Option<Timestamp>,
    context: RecordingContext,
}

impl Interval {
    fn contains(&self, ts: Timestamp) -> bool {
        self.start <= ts && self.stop.is_none_or(|stop| ts < stop)
    }
}

#[derive(Debug, Default)]
pub struct RecordingIndex {
    by_sensor: HashMap<SensorId, Vec<Interval>>,
    /// Recordings of every sensor (their sensor list is empty).
    every_sensor: Vec<Interval>,
}

impl RecordingIndex {
    pub fn build(site: &SiteState) -> Self {
        let mut index = Self::default();
        for exp in site.experiments.values() {
            for r in &exp.recordings {
                let interval = || Interval {
                    start: r.started_at,
                    stop: r.stopped_at,
                    context: RecordingContext {
                        experiment_id: exp.experiment_id.clone(),
                        recording_id: r.recording_id.clone(),
                        participant_id: r.participant_id.clone(),
                        task_id: r.task_id.clone(),
                    },
                };
                if r.sensors.is_empty() {
                    index.every_sensor.push(interval());
                }
                for s in &r.sensors {
                    index
                        .by_sensor
                        .entry(s.clone())
                        .or_default()
                        .push(interval());
                }
            }
        }
        index
    }

    pub fn lookup(&self, sensor: &SensorId, ts: Timestamp) -> Option<&RecordingContext> {
        self.by_sensor
            .get(sensor)
            .into_iter()
            .flatten()
            .chain(&self.every_sensor)
            .find(|i| i.contains(ts))
            .map(|i| &i.context)
    }

    pub fn len(&self) -> usize {
        self.by_sensor.values().map(Vec::len).sum::<usize>() + self.every_sensor.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
