//! Wiring: builds the clients from settings, hands them to the components, runs the
//! chosen roles until SIGINT/SIGTERM, then stops them in order (HTTP first, then sinks
//! finish their batch and commit).

use crate::config::Settings;
use anyhow::Context;
use axum::Router;
use labstream_api::ApiState;
use labstream_bus::{BatchConsumer, Producer, TopicCatalog};
use labstream_ingest::IngestState;
use labstream_schemas::{Codec, Topics};
use labstream_sinks::DeadLetters;
use labstream_sinks::lake::{LakeSink, LakeSource};
use labstream_sinks::mongo::MongoSink;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

/// Which parts of labstream this process runs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Roles {
    pub(crate) ingest: bool,
    pub(crate) api: bool,
    pub(crate) mongo_sink: bool,
    pub(crate) lake_sink: bool,
    pub(crate) compaction: bool,
    pub(crate) experiments_processor: bool,
    pub(crate) enrichment: bool,
    pub(crate) alerts_processor: bool,
    pub(crate) webhooks: bool,
    pub(crate) alerts_lake: bool,
}

impl Roles {
    pub(crate) fn all(settings: &Settings) -> Self {
        Self {
            ingest: true,
            api: true,
            mongo_sink: settings.sinks.mongo.enabled,
            lake_sink: settings.sinks.lake.enabled,
            compaction: settings.compaction.enabled,
            experiments_processor: settings.processors.experiments.enabled,
            enrichment: settings.processors.enrichment.enabled,
            alerts_processor: settings.processors.alerts.enabled,
            webhooks: settings.processors.webhooks.enabled
                && !settings.processors.webhooks.targets.is_empty(),
            alerts_lake: settings.sinks.alerts.enabled,
        }
    }
}

pub(crate) async fn run(settings: Settings, roles: Roles) -> anyhow::Result<()> {
    let registry = Arc::new(settings.registry()?);
    let verifier = if roles.ingest || roles.api {
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
    let codec = Codec::new();
    let topics = Topics::new(&settings.kafka.topic_prefix);
    let kafka = &settings.kafka;

    labstream_bus::probe(kafka, Duration::from_secs(15))
        .await
        .context("start Kafka (infra/local/stack up) or set LABSTREAM__KAFKA__BROKERS")?;
    labstream_bus::ensure_topics(
        kafka,
        &TopicCatalog::new(kafka, settings.processors.alerts.topic_partitions).core(),
    )
    .await
    .context("creating the topics")?;
    let producer = Producer::new(kafka)?;

    let mut metrics_registry = prometheus_client::registry::Registry::default();
    let ingest_metrics = labstream_ingest::IngestMetrics::register(&mut metrics_registry);
    let sink_metrics = labstream_sinks::SinkMetricsFamilies::register(&mut metrics_registry);
    let metrics_registry = Arc::new(metrics_registry);

    let cancel = CancellationToken::new();
    let mut tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)> = Vec::new();

    // Checked by /readyz when this process writes to MongoDB.
    let mut mongo_db = None;
    if roles.mongo_sink {
        let mut options = mongodb::options::ClientOptions::parse(&settings.mongo.uri)
            .await
            .with_context(|| format!("invalid mongo.uri {:?}", settings.mongo.uri))?;
        // Fail a write after 5 s without a server (the sink then backs off and retries)
        // rather than the driver's 30 s, unless the URI says otherwise.
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        options
            .app_name
            .get_or_insert_with(|| "labstream".to_owned());
        let client = mongodb::Client::with_options(options)
            .with_context(|| format!("invalid mongo.uri {:?}", settings.mongo.uri))?;
        let db = client.database(&settings.mongo.database);
        mongo_db = Some(db.clone());
        let consumer = BatchConsumer::new(
            kafka,
            &settings.sinks.mongo.group_id,
            &[&topics.samples_raw()],
        )?;
        let sink = MongoSink::new(
            consumer,
            db,
            codec.clone(),
            DeadLetters::new(producer.clone(), topics.samples_dlq(), "mongo"),
            settings.sinks.mongo.clone(),
            sink_metrics.for_sink("mongo"),
        );
        let c = cancel.clone();
        tasks.push((
            "sink-mongo",
            tokio::spawn(async move { Ok(sink.run(c).await?) }),
        ));
    }
    if roles.lake_sink {
        let consumer = BatchConsumer::new(
            kafka,
            &settings.sinks.lake.group_id,
            &[&match settings.sinks.lake.source {
                LakeSource::Enriched => topics.samples_enriched(),
                LakeSource::Raw => topics.samples_raw(),
            }],
        )?;
        let sink = LakeSink::new(
            consumer,
            settings.lake.path.clone(),
            registry.clone(),
            codec.clone(),
            DeadLetters::new(producer.clone(), topics.samples_dlq(), "lake"),
            settings.sinks.lake.clone(),
            sink_metrics.for_sink("lake"),
        )
        .with_context(|| format!("opening the lake at {}", settings.lake.path.display()))?;
        let c = cancel.clone();
        tasks.push((
            "sink-lake",
            tokio::spawn(async move { Ok(sink.run(c).await?) }),
        ));
    }
    if roles.enrichment {
        let enrichment = labstream_processors::enrichment::Enrichment::new(
            kafka.clone(),
            topics.clone(),
            settings.experiments.site_id.clone(),
            settings.processors.instance_id.clone(),
            settings.processors.enrichment.clone(),
        );
        let c = cancel.clone();
        tasks.push((
            "enrichment",
            tokio::spawn(async move { Ok(enrichment.run(c).await?) }),
        ));
    }
    if roles.experiments_processor {
        let (k, t, site, lake, c) = (
            kafka.clone(),
            topics.clone(),
            settings.experiments.site_id.clone(),
            Some(settings.lake.path.clone()),
            cancel.clone(),
        );
        tasks.push((
            "experiments",
            tokio::spawn(async move {
                Ok(labstream_processors::experiments::run_snapshots(k, t, site, lake, c).await?)
            }),
        ));
    }
    // The rules both the API and a provisioning file write; the processor reads the topic.
    let rule_store =
        if roles.api || (roles.alerts_processor && settings.alerts.rules_file.is_some()) {
            let store = labstream_api::alerts::RuleStore::open(
                kafka,
                labstream_api::alerts::RuleStoreConfig {
                    rules_topic: topics.alerts_rules(),
                    topic_prefix: kafka.topic_prefix.clone(),
                    alert_topic_partitions: settings.processors.alerts.topic_partitions,
                },
                registry.clone(),
            )
            .await
            .context("reading the alert rules")?;
            if let Some(path) = &settings.alerts.rules_file {
                provision_rules(&store, path).await?;
            }
            Some(store)
        } else {
            None
        };
    if roles.alerts_processor {
        let mut config = settings.processors.alerts.clone();
        config.instance_id = settings.processors.instance_id.clone();
        let processor = config
            .build(kafka, Some((*registry).clone()))
            .await
            .context("starting the alerts processor")?;
        let c = cancel.clone();
        tasks.push((
            "alerts",
            tokio::spawn(async move { Ok(processor.run(c).await?) }),
        ));
    }
    if roles.alerts_lake {
        let writer = settings
            .sinks
            .alerts
            .build(kafka, settings.lake.path.clone())
            .context("starting the alerts lake writer")?;
        let c = cancel.clone();
        tasks.push((
            "sink-alerts",
            tokio::spawn(async move { Ok(writer.run(c).await?) }),
        ));
    }
    if roles.webhooks {
        let webhooks = settings
            .processors
            .webhooks
            .build(kafka)
            .await
            .context("starting webhook delivery")?;
        let c = cancel.clone();
        tasks.push((
            "webhooks",
            tokio::spawn(async move { Ok(webhooks.run(c).await?) }),
        ));
    }
    if roles.compaction {
        let compactor = labstream_lake::Compactor::new(
            settings.lake.path.clone(),
            registry.clone(),
            settings.compaction.clone(),
        );
        let c = cancel.clone();
        tasks.push((
            "compaction",
            tokio::spawn(async move { Ok(compactor.run(c).await?) }),
        ));
    }
    if roles.ingest || roles.api {
        let registry_for_metrics = metrics_registry.clone();
        let readiness = crate::readiness::Readiness::new(kafka.clone(), mongo_db.clone());
        let mut app = Router::new()
            .route("/healthz", axum::routing::get(healthz))
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let readiness = readiness.clone();
                    async move { readiness.check().await }
                }),
            )
            .route(
                "/openapi.json",
                axum::routing::get(move || crate::openapi::handler(roles)),
            )
            .route(
                "/metrics",
                axum::routing::get(move || metrics(registry_for_metrics.clone())),
            );
        if roles.ingest {
            app = app.merge(labstream_ingest::router(IngestState {
                producer: producer.clone(),
                topic: topics.samples_raw(),
                registry: registry.clone(),
                codec: codec.clone(),
                config: settings.ingest.clone(),
                metrics: ingest_metrics.clone(),
                auth: verifier.clone(),
            }));
        }
        if roles.api {
            let store = labstream_api::experiments::ExperimentStore::open(
                kafka,
                labstream_api::experiments::StoreConfig {
                    site_id: settings.experiments.site_id.clone(),
                    topic: topics.experiments_events(),
                    max_backdate: settings.processors.enrichment.lateness,
                },
            )
            .await
            .context("reading the experiment log")?;
            let (refresher, c) = (store.clone(), cancel.clone());
            tasks.push((
                "experiments-refresh",
                tokio::spawn(async move {
                    refresher.refresh_every(Duration::from_secs(1), c).await;
                    Ok(())
                }),
            ));
            app = app.merge(labstream_api::experiments::router(
                labstream_api::experiments::ExperimentsState {
                    store,
                    registry: registry.clone(),
                    auth: verifier.clone(),
                },
            ));
            let rules = rule_store.clone().expect("opened for the api role");
            let (refresher, c) = (rules.clone(), cancel.clone());
            tasks.push((
                "alert-rules-refresh",
                tokio::spawn(async move {
                    refresher.refresh_every(Duration::from_secs(1), c).await;
                    Ok(())
                }),
            ));
            let feed = labstream_api::alerts::AlertFeed::new(labstream_api::alerts::FeedConfig {
                topic_prefix: kafka.topic_prefix.clone(),
                window: settings.alerts.stream_window,
                max_events: settings.alerts.stream_max_events,
            });
            let (f, k, c) = (feed.clone(), kafka.clone(), cancel.clone());
            tasks.push((
                "alert-feed",
                tokio::spawn(async move { Ok(f.run(k, c).await?) }),
            ));
            app = app.merge(labstream_api::alerts::router(
                labstream_api::alerts::AlertsState {
                    rules,
                    feed,
                    auth: verifier.clone(),
                    shutdown: cancel.clone(),
                    max_since: settings.alerts.stream_window,
                },
            ));
            app = app.merge(labstream_api::router(ApiState {
                engine: settings.query.build(settings.lake.path.clone())?,
                auth: verifier.clone(),
            }));
        }
        let app = app.layer(TraceLayer::new_for_http());
        let listener = tokio::net::TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http.listen))?;
        tracing::info!(listen = %settings.http.listen, ingest = roles.ingest, api = roles.api, "HTTP server listening");
        let c = cancel.clone();
        tasks.push((
            "http",
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(c.cancelled_owned())
                    .await
                    .context("HTTP server failed")
            }),
        ));
    }
    tracing::info!(
        roles = ?roles,
        lake = %settings.lake.path.display(),
        topic_prefix = %kafka.topic_prefix,
        "labstream running"
    );

    // Run until a signal, or until a component stops on its own (which is a failure).
    let mut first_error = None;
    let watch = futures::future::select_all(tasks.iter_mut().map(|(_, h)| h));
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutdown requested"),
        (result, index, _) = watch => {
            let outcome = match result {
                Ok(Ok(())) => anyhow::anyhow!("stopped unexpectedly"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("panicked: {e}"),
            };
            let name = tasks[index].0;
            tracing::error!(task = name, error = %format!("{outcome:#}"), "a component stopped; shutting down");
            first_error = Some(outcome.context(format!("{name} stopped")));
            tasks.remove(index);
        }
    }
    cancel.cancel();
    for (name, handle) in tasks {
        match handle.await {
            Ok(Ok(())) => tracing::info!(task = name, "stopped"),
            Ok(Err(e)) => {
                tracing::error!(task = name, error = %format!("{e:#}"), "stopped with an error")
            }
            Err(e) => tracing::error!(task = name, error = %e, "panicked"),
        }
    }
    if let Err(e) = producer.flush(Duration::from_secs(10)) {
        tracing::warn!(error = %e, "producer flush at shutdown");
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Applies the rules of `alerts.rules_file`: creates or replaces them, so every
/// start converges on the file; an invalid rule stops the start with its reason.
async fn provision_rules(
    store: &labstream_api::alerts::RuleStore,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    use labstream_api::alerts::Applied;
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

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(
    registry: Arc<prometheus_client::registry::Registry>,
) -> impl axum::response::IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (
            axum::http::StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            format!("encoding metrics failed: {e}"),
        ),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
