//! Following a family of topics that grows while labstream runs (every `alerts.<name>`
//! topic: a new rule may name a new one): one task lists the cluster's topics every
//! few seconds and publishes the set of those that match, so each reader of the family
//! subscribes to what exists now instead of polling metadata on its own.

use crate::client::{Logged, Role};
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the alert topics are listed to follow new ones.
const ALERT_TOPICS_REFRESH: Duration = Duration::from_secs(1);

/// How long one metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The topics of the cluster, for metadata questions (which topics exist, how many
/// partitions one has).
#[derive(Clone)]
pub struct Cluster {
    client: Arc<BaseConsumer<Logged>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let client: BaseConsumer<Logged> = config
            .client(Role::Metadata, &[])
            .create_with_context(Logged)
            .map_err(Error::Config)?;
        Ok(Self {
            client: Arc::new(client),
        })
    }

    /// The names of the topics that exist now (and have partitions) for which
    /// `wanted` is true.
    pub async fn topics(
        &self,
        wanted: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<BTreeSet<String>> {
        let client = self.client.clone();
        blocking(move || {
            let metadata = client
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map_err(Error::Consume)?;
            Ok(metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                .filter(|t| wanted(t.name()))
                .map(|t| t.name().to_owned())
                .collect())
        })
        .await
    }

    /// The number of partitions of `topic`; an error when it does not exist.
    pub async fn partition_count(&self, topic: &str) -> Result<i32> {
        let (client, topic) = (self.client.clone(), topic.to_owned());
        blocking(move || {
            let metadata = client
                .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
                .map_err(Error::Consume)?;
            let count = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map_or(0, |t| t.partitions().len());
            if count == 0 {
                return Err(Error::Admin(format!("topic {topic} has no partitions")));
            }
            Ok(count as i32)
        })
        .await
    }
}

/// The set of topics of a family, kept current by a background task.
#[derive(Clone, Debug)]
pub struct TopicWatch {
    rx: watch::Receiver<BTreeSet<String>>,
}

impl TopicWatch {
    /// Lists the topics for which `wanted` is true now and every `every` until `cancel`.
    /// A failed listing is logged and tried again at the next tick.
    pub fn start(
        cluster: Cluster,
        every: Duration,
        wanted: impl Fn(&str) -> bool + Clone + Send + Sync + 'static,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = watch::channel(BTreeSet::new());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tick.tick() => {}
                }
                match cluster.topics(wanted.clone()).await {
                    Ok(now) => {
                        tx.send_if_modified(|known| {
                            let changed = *known != now;
                            if changed {
                                *known = now;
                            }
                            changed
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "listing topics failed; retrying"),
                }
            }
        });
        Self { rx }
    }

    /// Every `alerts.<name>` topic of the deployment, as rules create them (the alert
    /// feed, webhook delivery and the alerts lake sink follow them).
    pub fn alert_topics(config: &KafkaConfig, cancel: CancellationToken) -> Result<Self> {
        let catalog = crate::catalog::TopicCatalog::new(config, 1);
        Ok(Self::start(
            Cluster::new(config)?,
            ALERT_TOPICS_REFRESH,
            move |t| catalog.is_alert_topic(t),
            cancel,
        ))
    }

    /// The topics known now.
    pub fn current(&self) -> BTreeSet<String> {
        self.rx.borrow().clone()
    }

    /// The set, when it changed since the last look (`None` otherwise).
    pub fn changed_now(&mut self) -> Option<BTreeSet<String>> {
        self.rx
            .has_changed()
            .unwrap_or(false)
            .then(|| self.rx.borrow_and_update().clone())
    }

    /// Waits until the set changes and returns it; never returns once the watching
    /// task ended (cancelled), so it can sit in a `select!` next to the cancellation.
    pub async fn changed(&mut self) -> BTreeSet<String> {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.rx.borrow_and_update().clone()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Admin(format!("metadata task failed: {e}")))?
}
