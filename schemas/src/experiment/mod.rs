//! The experiment domain, event-sourced: commands are decided against the state folded
//! from `experiments.events`, and each accepted command is one event. Shared by the API
//! (which decides commands and serves state), the experiments processor (snapshots)
//! and the enrichment processor (recording intervals), so it lives with the contracts.

mod command;
mod enriched;
mod events;
mod state;

pub use command::{Command, CommandContext, Rejection, check_id, decide};
pub use enriched::{EnrichedSample, RecordingContext};
pub use events::{
    ConfiguredSensor, EventPayload, ExperimentDefinition, ExperimentEvent, ProgressStatus,
    ProtocolTask,
};
pub use state::{
    ExperimentState, ExperimentStatus, LogbookEntry, Progress, Recording, SensorConfig, SiteState,
};
