//! The experiments processor: folds `experiments.events` into state and publishes each
//! changed experiment's snapshot to the compacted `experiments.state`. Snapshots are
//! derived and keyed by experiment, so writing one twice changes nothing; `rebuild`
//! recomputes every snapshot from the whole log and republishes the ones that differ.
//! Given a lake, it also keeps the lake's `experiments` and `recordings` tables current
//! (`lake`), rewriting them whenever an experiment changed.

use crate::error::Result;
use labstream_bus::{KafkaConfig, LogReader, Producer};
use labstream_schemas::experiment::{ExperimentEvent, ExperimentState, SiteState};
use labstream_schemas::{Codec, ExperimentId, Topics};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Folds the committed events of `site_id` that `reader` has not returned yet.
async fn fold_new(
    reader: &LogReader,
    codec: &Codec,
    site_id: &str,
    site: &mut SiteState,
    changed: &mut Vec<ExperimentId>,
) -> Result<usize> {
    let records = reader.read_to_end(READ_TIMEOUT).await?;
    let mut events = 0;
    for r in &records {
        let Some(payload) = r.payload.as_deref() else {
            continue;
        };
        match codec.decode::<ExperimentEvent>(payload) {
            Ok(e) if e.site_id == site_id => {
                events += 1;
                if let Some(id) = site.apply(&e)
                    && !changed.contains(&id)
                {
                    changed.push(id);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(offset = r.offset, error = %e, "undecodable experiment event skipped")
            }
        }
    }
    Ok(events)
}

/// The latest snapshot per experiment in `experiments.state`.
async fn published(
    kafka: &KafkaConfig,
    topics: &Topics,
    codec: &Codec,
) -> Result<BTreeMap<ExperimentId, ExperimentState>> {
    let reader = LogReader::new(kafka, &topics.experiments_state()).await?;
    let mut latest = BTreeMap::new();
    for r in reader.read_to_end(READ_TIMEOUT).await? {
        let Some(payload) = r.payload.as_deref() else {
            continue;
        };
        match codec.decode::<ExperimentState>(payload) {
            Ok(s) => {
                latest.insert(s.experiment_id.clone(), s);
            }
            Err(e) => tracing::warn!(offset = r.offset, error = %e, "undecodable snapshot skipped"),
        }
    }
    Ok(latest)
}

async fn publish(
    producer: &Producer,
    topics: &Topics,
    codec: &Codec,
    state: &ExperimentState,
) -> Result<()> {
    let bytes = codec.encode(state)?;
    producer
        .send(
            &topics.experiments_state(),
            state.experiment_id.as_str().as_bytes(),
            &bytes,
        )
        .await?;
    Ok(())
}

/// Keeps `experiments.state`, and the experiment tables of `lake` if given, current
/// until `cancel`.
pub async fn run_snapshots(
    kafka: KafkaConfig,
    topics: Topics,
    site_id: String,
    lake: Option<PathBuf>,
    cancel: CancellationToken,
) -> Result<()> {
    let codec = Codec::new();
    let producer = Producer::new(&kafka)?;
    let mut pause = Duration::from_millis(500);
    while !cancel.is_cancelled() {
        let session = async {
            let reader = LogReader::new(&kafka, &topics.experiments_events()).await?;
            let mut last = published(&kafka, &topics, &codec).await?;
            let mut site = SiteState::default();
            // The tables are written once the log is read, then after each change; a
            // failed write is retried on the next round.
            let mut tables_stale = lake.is_some();
            loop {
                let mut changed = Vec::new();
                fold_new(&reader, &codec, &site_id, &mut site, &mut changed).await?;
                tables_stale |= !changed.is_empty();
                if let Some(lake) = lake.as_ref().filter(|_| tables_stale) {
                    let (lake, states) = (lake.clone(), site.experiments.clone());
                    let written = tokio::task::spawn_blocking(move || {
                        labstream_lake::experiments::write_tables(&lake, states.values())
                    })
                    .await
                    .map_err(|e| crate::Error::Internal(e.to_string()))?;
                    match written {
                        Ok(()) => tables_stale = false,
                        Err(e) => {
                            tracing::warn!(error = %e, "writing the experiment tables to the lake failed; retrying")
                        }
                    }
                }
                for id in changed {
                    let state = &site.experiments[&id];
                    if last.get(&id) != Some(state) {
                        publish(&producer, &topics, &codec, state).await?;
                        last.insert(id, state.clone());
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Ok::<(), crate::Error>(()),
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        };
        match session.await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "experiment snapshots failed; restarting");
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
    Ok(())
}

/// What `labstream rebuild experiments` found and did.
#[derive(Debug, Default)]
pub struct RebuildReport {
    pub events: usize,
    pub experiments: usize,
    pub sensor_configs: usize,
    /// Snapshots that matched the rebuilt state.
    pub identical: usize,
    /// Snapshots that differed or were missing (republished unless a dry run).
    pub differing: Vec<ExperimentId>,
    /// Snapshots of experiments the log does not know (left alone).
    pub unknown: Vec<ExperimentId>,
}

/// Folds the whole event log from its start and compares with `experiments.state`;
/// republishes what differs unless `dry_run`.
pub async fn rebuild(
    kafka: &KafkaConfig,
    topics: &Topics,
    site_id: &str,
    dry_run: bool,
) -> Result<RebuildReport> {
    let codec = Codec::new();
    let reader = LogReader::new(kafka, &topics.experiments_events()).await?;
    let mut site = SiteState::default();
    let mut changed = Vec::new();
    let events = fold_new(&reader, &codec, site_id, &mut site, &mut changed).await?;
    let last = published(kafka, topics, &codec).await?;
    let mut report = RebuildReport {
        events,
        experiments: site.experiments.len(),
        sensor_configs: site.sensor_configs.len(),
        ..Default::default()
    };
    let producer = if dry_run {
        None
    } else {
        Some(Producer::new(kafka)?)
    };
    for (id, state) in &site.experiments {
        if last.get(id) == Some(state) {
            report.identical += 1;
        } else {
            report.differing.push(id.clone());
            if let Some(p) = &producer {
                publish(p, topics, &codec, state).await?;
            }
        }
    }
    report.unknown = last
        .keys()
        .filter(|id| !site.experiments.contains_key(*id) && last[*id].site_id == site_id)
        .cloned()
        .collect();
    Ok(report)
}
