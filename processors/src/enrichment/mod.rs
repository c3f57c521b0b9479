//! Enrichment: tags each sample with the experiment, recording, participant and task
//! whose recording interval contains it, exactly once into `samples.enriched`.

mod index;
mod processor;

pub use index::RecordingIndex;
pub use processor::{Enrichment, EnrichmentConfig, EnrichmentStats};
