//! The topic catalog (DESIGN.md, Topics): every topic labstream writes, with how it is
//! created: partitions, retention and clean-up policy. Every process that creates a
//! topic takes its [`TopicSpec`] from here, so a topic is the same whichever role
//! created it first.

use crate::admin::TopicSpec;
use crate::config::KafkaConfig;
use labstream_schemas::Topics;

/// How long delivery records are kept: far longer than any retry of a delivery.
const DELIVERIES_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// The topics of one deployment (one topic prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicCatalog {
    names: Topics,
    samples_partitions: i32,
    alert_partitions: i32,
}

impl TopicCatalog {
    /// `alert_partitions`: partitions of the alert topics and of the alert state
    /// (`processors.alerts.topic_partitions`).
    pub fn new(kafka: &KafkaConfig, alert_partitions: i32) -> Self {
        Self {
            names: Topics::new(kafka.topic_prefix.clone()),
            samples_partitions: kafka.samples_partitions,
            alert_partitions,
        }
    }

    /// The topic names alone.
    pub fn names(&self) -> &Topics {
        &self.names
    }

    /// What arrived, exactly as accepted.
    pub fn samples_raw(&self) -> TopicSpec {
        TopicSpec::new(self.names.samples_raw(), self.samples_partitions)
    }

    /// Poison records, with the reason in headers.
    pub fn samples_dlq(&self) -> TopicSpec {
        TopicSpec::new(self.names.samples_dlq(), 1)
    }

    /// Samples with their recording: the lake's source.
    pub fn samples_enriched(&self) -> TopicSpec {
        TopicSpec::new(self.names.samples_enriched(), self.samples_partitions)
    }

    /// The event store: one ordered stream per site, kept forever.
    pub fn experiments_events(&self) -> TopicSpec {
        TopicSpec::new(self.names.experiments_events(), 1).with_config("retention.ms", "-1")
    }

    /// Each experiment's latest state, by id.
    pub fn experiments_state(&self) -> TopicSpec {
        compacted(self.names.experiments_state(), 1)
    }

    /// Rules keyed by id: a tombstone deletes one.
    pub fn alerts_rules(&self) -> TopicSpec {
        compacted(self.names.alerts_rules(), 1)
    }

    /// The alert state machines, keyed by pair.
    pub fn alerts_state(&self) -> TopicSpec {
        compacted(self.names.alerts_state(), self.alert_partitions)
    }

    /// What webhook delivery sent, keyed by target and event: kept long enough that a
    /// restarted delivery never sends again what was delivered.
    pub fn alerts_deliveries(&self) -> TopicSpec {
        TopicSpec::new(self.names.alerts_topic("deliveries"), 1)
            .with_config("cleanup.policy", "compact,delete")
            .with_config("retention.ms", &DELIVERIES_RETENTION_MS.to_string())
    }

    /// The firing and resolved events of rules whose topic is `name`.
    pub fn alerts_topic(&self, name: &str) -> TopicSpec {
        TopicSpec::new(self.names.alerts_topic(name), self.alert_partitions)
    }

    /// Whether `topic` is one of the `alerts.<name>` topics rules write their events to
    /// (not `alerts.rules`, `alerts.state` or `alerts.deliveries`).
    pub fn is_alert_topic(&self, topic: &str) -> bool {
        topic
            .strip_prefix(self.names.prefix())
            .and_then(|t| t.strip_prefix("alerts."))
            .is_some_and(labstream_schemas::alert_rule::is_rule_topic)
    }

    /// The topics every labstream process may need from its start.
    pub fn core(&self) -> Vec<TopicSpec> {
        vec![
            self.samples_raw(),
            self.samples_dlq(),
            self.samples_enriched(),
            self.experiments_events(),
            self.experiments_state(),
            self.alerts_rules(),
            self.alerts_state(),
        ]
    }
}

fn compacted(name: String, partitions: i32) -> TopicSpec {
    TopicSpec::new(name, partitions).with_config("cleanup.policy", "compact")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_takes_the_prefix_and_its_policy() {
        let kafka = KafkaConfig {
            topic_prefix: "lab1.".into(),
            samples_partitions: 8,
            ..KafkaConfig::default()
        };
        let catalog = TopicCatalog::new(&kafka, 3);
        let core = catalog.core();
        assert!(core.iter().all(|t| t.name.starts_with("lab1.")));
        assert_eq!(catalog.samples_raw().partitions, 8);
        assert_eq!(catalog.samples_enriched().partitions, 8);
        assert_eq!(catalog.alerts_state().partitions, 3);
        assert_eq!(
            catalog.alerts_topic("freezers").name,
            "lab1.alerts.freezers"
        );
        assert_eq!(catalog.alerts_topic("freezers").partitions, 3);
        let policy = |t: &TopicSpec, key: &str| {
            t.config
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            policy(&catalog.experiments_events(), "retention.ms").as_deref(),
            Some("-1")
        );
        for compacted in [
            catalog.experiments_state(),
            catalog.alerts_rules(),
            catalog.alerts_state(),
        ] {
            assert_eq!(
                policy(&compacted, "cleanup.policy").as_deref(),
                Some("compact"),
                "{}",
                compacted.name
            );
        }
        assert_eq!(
            policy(&catalog.alerts_deliveries(), "cleanup.policy").as_deref(),
            Some("compact,delete")
        );
    }
}
