//! How every Kafka client of labstream is set up: the cluster settings, then the
//! settings of the client's role (producer, transactional producer, group consumer,
//! reader outside any group, admin), then the user's `[kafka.librdkafka]` overrides,
//! last, so an operator can change any of them. librdkafka's own log and error
//! callbacks go to `tracing` at a level that matches what happened: reaching the end of
//! a partition, or a broker connection that will be retried, is not an error.

use crate::config::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// What a client is for; each role brings the settings it needs.
#[derive(Clone, Debug)]
pub(crate) enum Role<'a> {
    /// acks=all, idempotent; `message.timeout.ms` is the produce deadline.
    Producer,
    /// A producer whose writes commit in transactions under this id.
    Transactional(&'a str),
    /// A member of this consumer group: manual commit, read_committed.
    Member(&'a str),
    /// A reader outside any group (manual assignment, nothing committed, committed
    /// records only); `name` tells its group id apart.
    Reader(&'a str),
    /// Group administration: bound to a group it never joins.
    Admin(&'a str),
    /// Cluster metadata and topic administration only.
    Metadata,
}

impl KafkaConfig {
    /// The settings of a client of `role`: cluster, then role, then the overrides.
    pub(crate) fn client(&self, role: Role<'_>, extra: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
        match role {
            Role::Producer => {
                config
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    .set("compression.type", "lz4")
                    // The whole delivery (queueing, retries) must finish within the deadline.
                    .set(
                        "message.timeout.ms",
                        self.produce_timeout.as_millis().max(1).to_string(),
                    );
            }
            Role::Transactional(id) => {
                config
                    .set("transactional.id", id)
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    .set("compression.type", "lz4")
                    // A transaction left open by a crashed process blocks read_committed
                    // readers until the coordinator aborts it; keep that bounded.
                    .set("transaction.timeout.ms", "60000");
            }
            Role::Member(group) => {
                config
                    .set("group.id", group)
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("isolation.level", "read_committed")
                    .set("enable.partition.eof", "false")
                    // A crashed member holds its partitions until its session times out;
                    // keep that short so a restarted member resumes within seconds, not 45 s.
                    .set("session.timeout.ms", "10000")
                    .set("heartbeat.interval.ms", "2000");
            }
            Role::Reader(name) => {
                config
                    // librdkafka wants a group id even for manual assignment; nothing is
                    // committed under it.
                    .set("group.id", format!("{}-{name}", self.client_id))
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("isolation.level", "read_committed")
                    .set("enable.partition.eof", "false")
                    .set("fetch.wait.max.ms", "10");
            }
            Role::Admin(group) => {
                config
                    .set("group.id", group)
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false");
            }
            Role::Metadata => {}
        }
        for (k, v) in extra {
            config.set(*k, *v);
        }
        // Applied last, so `[kafka.librdkafka]` can override any of the above.
        for (k, v) in &self.librdkafka {
            config.set(k, v);
        }
        config
    }
}

/// The context of every labstream client: librdkafka's log and errors to `tracing`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Logged;

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self::error(&error, reason);
    }
}

impl ConsumerContext for Logged {}

impl rdkafka::producer::ProducerContext for Logged {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// librdkafka's log lines at the matching `tracing` level.
pub(crate) fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice => tracing::info!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", facility, "{message}")
        }
    }
}

/// librdkafka's error callback: what the client retries by itself (a broker down, a
/// connection lost) is a warning, the end of a partition is not worth more than debug.
pub(crate) fn error(error: &KafkaError, reason: &str) {
    let code = error.rdkafka_error_code();
    match code {
        _ if matches!(error, KafkaError::PartitionEOF(_)) => {
            tracing::debug!(target: "librdkafka", %error, "{reason}")
        }
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::NetworkException,
        ) => tracing::warn!(target: "librdkafka", %error, "{reason}"),
        Some(RDKafkaErrorCode::PartitionEOF) => {
            tracing::debug!(target: "librdkafka", %error, "{reason}")
        }
        _ => tracing::error!(target: "librdkafka", %error, "{reason}"),
    }
}
