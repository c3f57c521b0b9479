//! Threshold alerts: rules from `alerts.rules`, one state machine per (rule, sensor)
//! evaluated in event time, and firing/resolved events written to `alerts.<name>` in
//! the same Kafka transaction as the machines' state and the consumed offsets, so a
//! restart neither repeats nor loses a transition.

pub mod machine;
pub mod ownership;
mod processor;
pub mod rule;
pub mod webhooks;

pub use labstream_schemas::alert_rule::{Template, template};
pub use machine::{Input, MachineState, Phase, Transition, retire, step};
pub use processor::{AlertsConfig, AlertsProcessor};
pub use rule::{Condition, Rule};
