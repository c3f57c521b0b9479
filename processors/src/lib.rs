//! Stream processors of labstream: experiment state (event-sourced), enrichment of
//! samples with their recording, and threshold alerts. They consume-transform-produce
//! inside Kafka transactions. Not built yet: see the experiments and alerts issues.

pub mod alerts;
