//! The roles a labstream process runs, as a table: `serve` runs every role its settings
//! enable, and each role also runs alone (`labstream ingest`, `sink lake`, `process
//! alerts`, ...) as a member of its consumer group, so roles scale out across processes.

use crate::config::Settings;

/// One part of labstream that a process can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Role {
    /// HTTP ingest: `POST /v1/samples`, `/api/v2/write`.
    Ingest,
    /// The HTTP API: queries, exports, experiments, alert rules and streams.
    Api,
    /// Raw samples into MongoDB.
    MongoSink,
    /// Samples into the Parquet lake.
    LakeSink,
    /// Alert events into the lake's `alerts` table.
    AlertsSink,
    /// Scheduled compaction of the lake.
    Compaction,
    /// Experiment snapshots and the lake's experiment tables.
    Experiments,
    /// samples.raw x recordings -> samples.enriched.
    Enrichment,
    /// Threshold rules -> alert events.
    Alerts,
    /// Alert events -> webhook targets.
    Webhooks,
}

impl Role {
    /// Every role, in the order a process starts them.
    pub(crate) const ALL: [Role; 10] = [
        Role::Ingest,
        Role::Api,
        Role::MongoSink,
        Role::LakeSink,
        Role::AlertsSink,
        Role::Compaction,
        Role::Experiments,
        Role::Enrichment,
        Role::Alerts,
        Role::Webhooks,
    ];

    /// How logs and task names call it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Api => "api",
            Role::MongoSink => "sink-mongo",
            Role::LakeSink => "sink-lake",
            Role::AlertsSink => "sink-alerts",
            Role::Compaction => "compaction",
            Role::Experiments => "experiments",
            Role::Enrichment => "enrichment",
            Role::Alerts => "alerts",
            Role::Webhooks => "webhooks",
        }
    }

    /// What it is, in a sentence (errors say "starting <title>").
    pub(crate) fn title(self) -> &'static str {
        match self {
            Role::Ingest => "HTTP ingest",
            Role::Api => "the API",
            Role::MongoSink => "the MongoDB sink",
            Role::LakeSink => "the lake sink",
            Role::AlertsSink => "the alerts lake writer",
            Role::Compaction => "compaction",
            Role::Experiments => "the experiments processor",
            Role::Enrichment => "enrichment",
            Role::Alerts => "the alerts processor",
            Role::Webhooks => "webhook delivery",
        }
    }

    /// Whether `serve` runs this role with `settings` (each has its `enabled` switch;
    /// webhook delivery also needs a target).
    fn enabled(self, settings: &Settings) -> bool {
        match self {
            Role::Ingest | Role::Api => true,
            Role::MongoSink => settings.sinks.mongo.enabled,
            Role::LakeSink => settings.sinks.lake.enabled,
            Role::AlertsSink => settings.sinks.alerts.enabled,
            Role::Compaction => settings.compaction.enabled,
            Role::Experiments => settings.processors.experiments.enabled,
            Role::Enrichment => settings.processors.enrichment.enabled,
            Role::Alerts => settings.processors.alerts.enabled,
            Role::Webhooks => {
                settings.processors.webhooks.enabled
                    && !settings.processors.webhooks.targets.is_empty()
            }
        }
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A set of roles.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Roles(u16);

impl Roles {
    /// What `serve` runs: every role `settings` enable.
    pub(crate) fn all(settings: &Settings) -> Self {
        Self::of(Role::ALL.into_iter().filter(|r| r.enabled(settings)))
    }

    pub(crate) fn of(roles: impl IntoIterator<Item = Role>) -> Self {
        Self(roles.into_iter().fold(0, |set, r| set | r.bit()))
    }

    pub(crate) fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether this process answers HTTP (ingest, the API, or both).
    pub(crate) fn serve_http(self) -> bool {
        self.contains(Role::Ingest) || self.contains(Role::Api)
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter().map(Role::name)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_runs_what_the_settings_enable() {
        let mut settings = Settings::default();
        let all = Roles::all(&settings);
        // No webhook target: no webhook delivery.
        assert_eq!(all.iter().count(), Role::ALL.len() - 1);
        assert!(!all.contains(Role::Webhooks));
        settings.sinks.mongo.enabled = false;
        settings.compaction.enabled = false;
        let fewer = Roles::all(&settings);
        assert!(!fewer.contains(Role::MongoSink) && !fewer.contains(Role::Compaction));
        assert!(fewer.contains(Role::LakeSink) && fewer.serve_http());
        let sink = Roles::of([Role::LakeSink, Role::Compaction]);
        assert!(!sink.serve_http());
        assert_eq!(format!("{sink:?}"), r#"["sink-lake", "compaction"]"#);
    }
}
