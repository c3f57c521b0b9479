//! labstream benchmarks: the load generator behind `labstream-loadgen` and
//! `benches/run` (a simulated sensor fleet, HTTP and raw-Kafka targets, closed and open
//! workload models, HDR latency recording, the RESULTS.md writer), the sinks benchmark
//! behind `labstream-sinkbench` (`sinks`), the alert-latency results and report behind
//! `labstream-alertbench` (`alerts`), and criterion
//! micro-benches of hot paths in `benches/benches/` (`cargo bench -p labstream-benches`);
//! `exit`: how the tools end on an error.
//! Benchmarks are not tests: targets are checked in the report, never asserted.

pub mod alerts;
pub mod endpoint;
pub mod exit;
pub mod fleet;
pub mod models;
pub mod process_stats;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod sinks;
pub mod wire;
