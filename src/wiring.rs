//! What a labstream process builds once and every role it runs shares: the settings,
//! the sensor-type registry, the token verifier, the Kafka producer and topic catalog,
//! the metrics registry, the MongoDB database (when a role writes to it), the alert rule
//! store (opened when first asked for), and the cancellation token every task stops on.

use crate::config::Settings;
use crate::roles::{Role, Roles};
use anyhow::Context;
use labstream_api::alerts::{Applied, RuleStore, RuleStoreConfig};
use labstream_bus::{Producer, TopicCatalog};
use labstream_ingest::IngestMetrics;
use labstream_schemas::auth::Verifier;
use labstream_schemas::{Codec, Registry};
use labstream_sinks::SinkMetricsFamilies;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

pub(crate) struct Wiring {
    pub(crate) settings: Settings,
    pub(crate) roles: Roles,
    pub(crate) registry: Arc<Registry>,
    /// `None` when auth is disabled (loopback only) or no role serves HTTP.
    pub(crate) verifier: Option<Verifier>,
    pub(crate) codec: Codec,
    pub(crate) catalog: TopicCatalog,
    pub(crate) producer: Producer,
    pub(crate) metrics: Metrics,
    /// The database the MongoDB sink writes to (and `/readyz` checks), when it runs.
    pub(crate) mongo: Option<mongodb::Database>,
    pub(crate) cancel: CancellationToken,
    /// Stops the HTTP server, before `cancel` stops everything else.
    pub(crate) http_stop: CancellationToken,
    rules: OnceCell<RuleStore>,
}

/// The Prometheus registry `/metrics` serves and the families components record into.
pub(crate) struct Metrics {
    pub(crate) registry: Arc<prometheus_client::registry::Registry>,
    pub(crate) ingest: IngestMetrics,
    pub(crate) sinks: SinkMetricsFamilies,
}

impl Wiring {
    /// Checks that Kafka answers, creates the topics of the catalog that are missing and
    /// builds the shared clients.
    pub(crate) async fn new(settings: Settings, roles: Roles) -> anyhow::Result<Self> {
        let registry = Arc::new(settings.registry()?);
        let verifier = if roles.serve_http() {
            let v = settings.verifier()?;
            match &v {
                Some(v) => {
                    tracing::info!(algorithms = ?v.algorithms(), audience = v.audience(), "token auth on")
                }
                None => {
                    tracing::warn!(listen = %settings.http.listen, "auth is DISABLED (auth.disabled = true); anyone reaching the listen address may write and query")
                }
            }
            v
        } else {
            None
        };
        let kafka = &settings.kafka;
        labstream_bus::probe(kafka, Duration::from_secs(15))
            .await
            .context("start Kafka (infra/local/stack up) or set LABSTREAM__KAFKA__BROKERS")?;
        let catalog = TopicCatalog::new(kafka, settings.processors.alerts.topic_partitions);
        labstream_bus::ensure_topics(kafka, &catalog.core())
            .await
            .context("creating the topics")?;
        let producer = Producer::new(kafka)?;
        let mut metrics_registry = prometheus_client::registry::Registry::default();
        let ingest = IngestMetrics::register(&mut metrics_registry);
        let sinks = SinkMetricsFamilies::register(&mut metrics_registry);
        let mongo = if roles.contains(Role::MongoSink) {
            Some(mongo_database(&settings).await?)
        } else {
            None
        };
        Ok(Self {
            registry,
            verifier,
            codec: Codec::new(),
            catalog,
            producer,
            metrics: Metrics {
                registry: Arc::new(metrics_registry),
                ingest,
                sinks,
            },
            mongo,
            cancel: CancellationToken::new(),
            http_stop: CancellationToken::new(),
            rules: OnceCell::new(),
            settings,
            roles,
        })
    }

    /// The alert rules both the API and a provisioning file write (the processor reads
    /// the topic): opened once, and `alerts.rules_file` applied when it is.
    pub(crate) async fn rule_store(&self) -> anyhow::Result<RuleStore> {
        self.rules
            .get_or_try_init(|| async {
                let kafka = &self.settings.kafka;
                let store = RuleStore::open(
                    kafka,
                    RuleStoreConfig {
                        rules_topic: self.catalog.names().alerts_rules(),
                        topic_prefix: kafka.topic_prefix.clone(),
                        alert_topic_partitions: self.settings.processors.alerts.topic_partitions,
                    },
                    self.registry.clone(),
                )
                .await
                .context("reading the alert rules")?;
                if let Some(path) = &self.settings.alerts.rules_file {
                    provision_rules(&store, path).await?;
                }
                Ok(store)
            })
            .await
            .cloned()
    }
}

async fn mongo_database(settings: &Settings) -> anyhow::Result<mongodb::Database> {
    let uri = &settings.mongo.uri;
    let mut options = mongodb::options::ClientOptions::parse(uri)
        .await
        .with_context(|| format!("invalid mongo.uri {uri:?}"))?;
    // Fail a write after 5 s without a server (the sink then backs off and retries)
    // rather than the driver's 30 s, unless the URI says otherwise.
    options
        .server_selection_timeout
        .get_or_insert(Duration::from_secs(5));
    options
        .app_name
        .get_or_insert_with(|| "labstream".to_owned());
    let client = mongodb::Client::with_options(options)
        .with_context(|| format!("invalid mongo.uri {uri:?}"))?;
    Ok(client.database(&settings.mongo.database))
}

/// Applies the rules of `alerts.rules_file`: creates or replaces them, so every
/// start converges on the file; an invalid rule stops the start with its reason.
async fn provision_rules(store: &RuleStore, path: &std::path::Path) -> anyhow::Result<()> {
    let rules = labstream_api::alerts::parse_rules_file(path).map_err(|e| anyhow::anyhow!(e))?;
    let (mut created, mut replaced) = (0, 0);
    for rule in rules {
        let id = rule.rule_id.clone();
        match store
            .apply(rule)
            .await
            .with_context(|| format!("alert rule {id:?} of {}", path.display()))?
        {
            Applied::Created => created += 1,
            Applied::Replaced => replaced += 1,
            Applied::Unchanged => {}
        }
    }
    tracing::info!(file = %path.display(), created, replaced, "alert rules provisioned");
    Ok(())
}
