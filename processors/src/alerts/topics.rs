//! Which topics hold alert events: every `<prefix>alerts.<name>` except labstream's own
//! (`alerts.rules`, `alerts.state`, `alerts.deliveries`). Readers of all alerts (webhook
//! delivery, the lake writer) list them every few seconds to follow new rules' topics.

use crate::alerts::error::{Error, Result};
use labstream_bus::rdkafka::consumer::{Consumer, StreamConsumer};
use labstream_schemas::alert_rule::is_rule_topic;
use std::collections::BTreeSet;
use std::time::Duration;

/// The alert topics that exist now; `prefix` is `<topic prefix>alerts.`.
pub(crate) fn alert_topics(consumer: &StreamConsumer, prefix: &str) -> Result<BTreeSet<String>> {
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| Error::Kafka(labstream_bus::Error::Consume(e)))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name().strip_prefix(prefix).is_some_and(is_rule_topic))
        .map(|t| t.name().to_owned())
        .collect())
}
