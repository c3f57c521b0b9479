//! Prometheus metrics of ingest, recorded once per request (never labelled by sensor).
//! The registry is passed in, so the binary exposes it on `/metrics` and tests can
//! read the counters.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Format {
    json,
    ndjson,
    line_protocol,
}

/// How a request ended, from the sender's point of view.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// 2xx: every accepted sample is in Kafka.
    accepted,
    /// 4xx: the sender must fix the request.
    rejected,
    /// 429 or 503: the sender must retry later.
    retry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub format: Format,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug)]
pub struct IngestMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub samples_accepted: Counter,
    pub samples_rejected: Family<ReasonLabels, Counter>,
    pub bytes: Counter,
    pub in_flight_bytes: Gauge,
    pub produce_latency: Histogram,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl IngestMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            samples_accepted: Counter::default(),
            samples_rejected: Family::default(),
            bytes: Counter::default(),
            in_flight_bytes: Gauge::default(),
            produce_latency: latency_histogram(),
        };
        registry.register(
            "labstream_ingest_requests",
            "HTTP ingest requests by format and outcome",
            m.requests.clone(),
        );
        registry.register(
            "labstream_ingest_samples_accepted",
            "Samples acknowledged by Kafka",
            m.samples_accepted.clone(),
        );
        registry.register(
            "labstream_ingest_samples_rejected",
            "Samples refused, by reason",
            m.samples_rejected.clone(),
        );
        registry.register(
            "labstream_ingest_request_bytes",
            "Request body bytes received (after decompression)",
            m.bytes.clone(),
        );
        registry.register(
            "labstream_ingest_in_flight_bytes",
            "Bytes of requests being processed (bounded by ingest.max_in_flight_bytes)",
            m.in_flight_bytes.clone(),
        );
        registry.register(
            "labstream_ingest_produce_latency_seconds",
            "Time from the first send of a request to Kafka's acknowledgement of its last sample",
            m.produce_latency.clone(),
        );
        m
    }
}
