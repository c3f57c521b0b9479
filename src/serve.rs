//! Running roles: builds what the process shares once (`Wiring`), starts each role from
//! its own settings, serves HTTP when a role answers it, and runs until SIGINT/SIGTERM
//! or until a component stops on its own; then stops them in order (HTTP first, then
//! sinks finish their batch and commit).

use crate::config::Settings;
use crate::roles::{Role, Roles};
use crate::wiring::Wiring;
use anyhow::Context;
use axum::Router;
use labstream_bus::BatchConsumer;
use labstream_sinks::DeadLetters;
use labstream_sinks::lake::{LakeSink, LakeSource};
use labstream_sinks::mongo::MongoSink;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A named task of a running process.
pub(crate) type Task = (&'static str, JoinHandle<anyhow::Result<()>>);

/// What starting a role gave: its tasks, and the routes it serves over HTTP.
#[derive(Default)]
struct Started {
    tasks: Vec<Task>,
    routes: Option<Router>,
}

impl Started {
    fn task<F>(mut self, name: &'static str, run: F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.push((name, tokio::spawn(run)));
        self
    }

    fn routes(mut self, router: Router) -> Self {
        self.routes = Some(self.routes.take().unwrap_or_default().merge(router));
        self
    }
}

pub(crate) async fn run(settings: Settings, roles: Roles) -> anyhow::Result<()> {
    let wiring = Wiring::new(settings, roles).await?;
    let mut tasks = Vec::new();
    let mut routes = Router::new();
    for role in roles.iter() {
        let started = start(role, &wiring)
            .await
            .with_context(|| format!("starting {}", role.title()))?;
        tasks.extend(started.tasks);
        routes = routes.merge(started.routes.unwrap_or_default());
    }
    if roles.serve_http() {
        tasks.push(("http", crate::http::serve(&wiring, routes).await?));
    }
    let settings = &wiring.settings;
    tracing::info!(roles = ?roles, lake = %settings.lake.path.display(), topic_prefix = %settings.kafka.topic_prefix, "labstream running");
    let result = supervise(tasks, &wiring).await;
    if let Err(e) = wiring.producer.flush(Duration::from_secs(10)) {
        tracing::warn!(error = %e, "producer flush at shutdown");
    }
    result
}

/// Starts `role` from its own settings and the shared clients.
async fn start(role: Role, w: &Wiring) -> anyhow::Result<Started> {
    let (s, kafka, cancel) = (&w.settings, &w.settings.kafka, &w.cancel);
    let topics = w.catalog.names();
    let dead_letters = |sink| DeadLetters::new(w.producer.clone(), topics.samples_dlq(), sink);
    Ok(match role {
        Role::Ingest => {
            Started::default().routes(labstream_ingest::router(labstream_ingest::IngestState {
                producer: w.producer.clone(),
                topic: topics.samples_raw(),
                registry: w.registry.clone(),
                codec: w.codec.clone(),
                config: s.ingest.clone(),
                metrics: w.metrics.ingest.clone(),
                auth: w.verifier.clone(),
            }))
        }
        Role::Api => start_api(w).await?,
        Role::MongoSink => {
            let consumer =
                BatchConsumer::new(kafka, &s.sinks.mongo.group_id, &[&topics.samples_raw()])?;
            let sink = MongoSink::new(
                consumer,
                w.mongo.clone().expect("opened for the MongoDB sink"),
                w.codec.clone(),
                dead_letters("mongo"),
                s.sinks.mongo.clone(),
                w.metrics.sinks.for_sink("mongo"),
            );
            let c = cancel.clone();
            Started::default().task(role.name(), async move { Ok(sink.run(c).await?) })
        }
        Role::LakeSink => {
            let source = match s.sinks.lake.source {
                LakeSource::Enriched => topics.samples_enriched(),
                LakeSource::Raw => topics.samples_raw(),
            };
            let consumer = BatchConsumer::new(kafka, &s.sinks.lake.group_id, &[&source])?;
            let sink = LakeSink::new(
                consumer,
                s.lake.path.clone(),
                w.registry.clone(),
                w.codec.clone(),
                dead_letters("lake"),
                s.sinks.lake.clone(),
                w.metrics.sinks.for_sink("lake"),
            )
            .with_context(|| format!("opening the lake at {}", s.lake.path.display()))?;
            let c = cancel.clone();
            Started::default().task(role.name(), async move { Ok(sink.run(c).await?) })
        }
        Role::AlertsSink => {
            let writer = s.sinks.alerts.build(kafka, s.lake.path.clone())?;
            let c = cancel.clone();
            Started::default().task(role.name(), async move { Ok(writer.run(c).await?) })
        }
        Role::Compaction => {
            let compactor = labstream_lake::Compactor::new(
                s.lake.path.clone(),
                w.registry.clone(),
                s.compaction.clone(),
            );
            let c = cancel.clone();
            Started::default().task(role.name(), async move { Ok(compactor.run(c).await?) })
        }
        Role::Experiments => {
            let (k, t, site, lake, c) = (
                kafka.clone(),
                topics.clone(),
                s.experiments.site_id.clone(),
                Some(s.lake.path.clone()),
                cancel.clone(),
            );
            Started::default().task(role.name(), async move {
                Ok(labstream_processors::experiments::run_snapshots(k, t, site, lake, c).await?)
            })
        }
        Role::Enrichment => {
            let enrichment = labstream_processors::enrichment::Enrichment::new(
                kafka.clone(),
                topics.clone(),
                s.experiments.site_id.clone(),
                s.processors.instance_id.clone(),
                s.processors.enrichment.clone(),
            );
            let c = cancel.clone();
            Started::default().task(role.name(), async move { Ok(enrichment.run(c).await?) })
        }
        Role::Alerts => {
            // The rules file is applied before the processor reads the rules.
            if s.alerts.rules_file.is_some() {
                w.rule_store().await?;
            }
            let mut config = s.processors.alerts.clone();
            config.instance_id = s.processors.instance_id.clone();
            let processor = config.build(kafka, Some((*w.registry).clone())).await?;
            let c = cancel.clone();
            Started::default().task(role.name(), async move { Ok(processor.run(c).await?) })
        }
        Role::Webhooks => {
            let webhooks = s.processors.webhooks.build(kafka).await?;
            let c = cancel.clone();
            Started::default().task(role.name(), async move { Ok(webhooks.run(c).await?) })
        }
    })
}

/// The API role: the experiment and alert rule stores (kept current in the background,
/// so what other instances wrote shows), the alert feed, and their routes.
async fn start_api(w: &Wiring) -> anyhow::Result<Started> {
    use labstream_api::{alerts, experiments};
    let (s, kafka, cancel) = (&w.settings, &w.settings.kafka, &w.cancel);
    let store = experiments::ExperimentStore::open(
        kafka,
        experiments::StoreConfig {
            site_id: s.experiments.site_id.clone(),
            topic: w.catalog.names().experiments_events(),
            max_backdate: s.processors.enrichment.lateness,
        },
    )
    .await
    .context("reading the experiment log")?;
    let rules = w.rule_store().await?;
    let feed = alerts::AlertFeed::new(alerts::FeedConfig {
        topic_prefix: kafka.topic_prefix.clone(),
        window: s.alerts.stream_window,
        max_events: s.alerts.stream_max_events,
    });
    let (refreshed, refreshed_rules, f, k) =
        (store.clone(), rules.clone(), feed.clone(), kafka.clone());
    let (c1, c2, c3) = (cancel.clone(), cancel.clone(), cancel.clone());
    Ok(Started::default()
        .task("experiments-refresh", async move {
            refreshed.refresh_every(Duration::from_secs(1), c1).await;
            Ok(())
        })
        .task("alert-rules-refresh", async move {
            refreshed_rules
                .refresh_every(Duration::from_secs(1), c2)
                .await;
            Ok(())
        })
        .task("alert-feed", async move { Ok(f.run(k, c3).await?) })
        .routes(experiments::router(experiments::ExperimentsState {
            store,
            registry: w.registry.clone(),
            auth: w.verifier.clone(),
        }))
        .routes(alerts::router(alerts::AlertsState {
            rules,
            feed,
            auth: w.verifier.clone(),
            shutdown: cancel.clone(),
            max_since: s.alerts.stream_window,
        }))
        .routes(labstream_api::router(labstream_api::ApiState {
            engine: s.query.build(s.lake.path.clone())?,
            auth: w.verifier.clone(),
        })))
}

/// Runs until a signal, or until a task stops on its own (which is a failure); then
/// stops HTTP first (no new request; those in progress are answered), then every other
/// task, and waits for each.
async fn supervise(mut tasks: Vec<Task>, w: &Wiring) -> anyhow::Result<()> {
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
    w.http_stop.cancel();
    if let Some(at) = tasks.iter().position(|(name, _)| *name == "http") {
        let (name, handle) = tasks.remove(at);
        report(name, handle.await);
    }
    w.cancel.cancel();
    for (name, handle) in tasks {
        report(name, handle.await);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn report(name: &str, ended: Result<anyhow::Result<()>, tokio::task::JoinError>) {
    match ended {
        Ok(Ok(())) => tracing::info!(task = name, "stopped"),
        Ok(Err(e)) => {
            tracing::error!(task = name, error = %format!("{e:#}"), "stopped with an error")
        }
        Err(e) => tracing::error!(task = name, error = %e, "panicked"),
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
