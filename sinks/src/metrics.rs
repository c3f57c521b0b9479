//! Prometheus metrics of the sinks, labelled by sink (`mongo`, `lake`), recorded once
//! per batch. The registry is passed in by the binary, which serves it on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: &'static str,
}

/// The metric families of all sinks; `for_sink` hands one sink its series.
#[derive(Clone, Debug)]
pub struct SinkMetricsFamilies {
    consumed: Family<SinkLabel, Counter>,
    written: Family<SinkLabel, Counter>,
    duplicates: Family<SinkLabel, Counter>,
    dead_letters: Family<SinkLabel, Counter>,
    lag: Family<SinkLabel, Gauge>,
    write_seconds: Family<SinkLabel, Histogram, fn() -> Histogram>,
}

/// The series of one sink.
#[derive(Clone, Debug)]
pub struct SinkMetrics {
    pub consumed: Counter,
    pub written: Counter,
    pub duplicates: Counter,
    pub dead_letters: Counter,
    pub lag: Gauge,
    pub write_seconds: Histogram,
}

fn write_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl SinkMetricsFamilies {
    pub fn register(registry: &mut Registry) -> Self {
        let f = Self {
            consumed: Family::default(),
            written: Family::default(),
            duplicates: Family::default(),
            dead_letters: Family::default(),
            lag: Family::default(),
            write_seconds: Family::new_with_constructor(write_histogram),
        };
        registry.register(
            "labstream_sink_records_consumed",
            "Records read from Kafka by each sink",
            f.consumed.clone(),
        );
        registry.register(
            "labstream_sink_rows_written",
            "Rows newly written by each sink (MongoDB documents, lake rows)",
            f.written.clone(),
        );
        registry.register(
            "labstream_sink_duplicates_skipped",
            "Records already present (re-delivery or replay) and not written again",
            f.duplicates.clone(),
        );
        registry.register(
            "labstream_sink_dead_letters",
            "Records sent to the dead-letter queue",
            f.dead_letters.clone(),
        );
        registry.register(
            "labstream_sink_lag_records",
            "Records in the sink's partitions not yet consumed (sampled every 10 s)",
            f.lag.clone(),
        );
        registry.register(
            "labstream_sink_write_seconds",
            "Time to write one batch (MongoDB bulk insert, lake flush)",
            f.write_seconds.clone(),
        );
        f
    }

    pub fn for_sink(&self, sink: &'static str) -> SinkMetrics {
        let label = SinkLabel { sink };
        SinkMetrics {
            consumed: self.consumed.get_or_create(&label).clone(),
            written: self.written.get_or_create(&label).clone(),
            duplicates: self.duplicates.get_or_create(&label).clone(),
            dead_letters: self.dead_letters.get_or_create(&label).clone(),
            lag: self.lag.get_or_create(&label).clone(),
            write_seconds: self.write_seconds.get_or_create(&label).clone(),
        }
    }
}

impl SinkMetrics {
    /// Series registered nowhere, for components built without a registry (tests).
    pub fn unregistered() -> Self {
        SinkMetricsFamilies::register(&mut Registry::default()).for_sink("test")
    }
}
