//! The topic catalog (DESIGN.md, Topics). Every name takes the configured prefix, so
//! several deployments, or several tests, can share one cluster.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn name(&self, base: &str) -> String {
        format!("{}{}", self.prefix, base)
    }

    /// What arrived, exactly as accepted; keyed by sensor_id.
    pub fn samples_raw(&self) -> String {
        self.name("samples.raw")
    }

    /// The experiment event store, keyed by site_id; kept forever.
    pub fn experiments_events(&self) -> String {
        self.name("experiments.events")
    }

    /// Compacted snapshots of each experiment, keyed by experiment_id; derived.
    pub fn experiments_state(&self) -> String {
        self.name("experiments.state")
    }

    /// Samples with their recording; keyed by sensor_id; the lake's source.
    pub fn samples_enriched(&self) -> String {
        self.name("samples.enriched")
    }

    /// Poison records, with the reason in headers.
    pub fn samples_dlq(&self) -> String {
        self.name("samples.dlq")
    }

    /// Alert rules, compacted; keyed by rule_id, a tombstone deletes the rule.
    pub fn alerts_rules(&self) -> String {
        self.name("alerts.rules")
    }

    /// State of the alert state machines, compacted; keyed by rule_id/sensor_id.
    pub fn alerts_state(&self) -> String {
        self.name("alerts.state")
    }

    /// Firing and resolved events of the rules whose target is `name`; keyed by
    /// rule_id/sensor_id.
    pub fn alerts_topic(&self, name: &str) -> String {
        self.name(&format!("alerts.{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_the_prefix() {
        assert_eq!(Topics::default().samples_raw(), "samples.raw");
        assert_eq!(Topics::new("lab1.").samples_dlq(), "lab1.samples.dlq");
        assert_eq!(Topics::new("lab1.").alerts_rules(), "lab1.alerts.rules");
        assert_eq!(Topics::new("lab1.").alerts_state(), "lab1.alerts.state");
        assert_eq!(
            Topics::new("lab1.").alerts_topic("freezers"),
            "lab1.alerts.freezers"
        );
    }
}
