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

    /// Poison records, with the reason in headers.
    pub fn samples_dlq(&self) -> String {
        self.name("samples.dlq")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_the_prefix() {
        assert_eq!(Topics::default().samples_raw(), "samples.raw");
        assert_eq!(Topics::new("lab1.").samples_dlq(), "lab1.samples.dlq");
    }
}
