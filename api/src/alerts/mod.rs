//! Alerts in the API: the rules (`/v1/alerts/rules`, stored as events in the compacted
//! `alerts.rules`) and the live alert streams (SSE and WebSocket) fed from the
//! `alerts.<name>` topics.

mod feed;
mod routes;
mod rules;

pub use feed::{AlertFeed, FeedConfig, FeedError};
pub use routes::{AlertsState, router};
pub use rules::{Applied, RuleError, RuleStore, RuleStoreConfig, parse_rules_file};
