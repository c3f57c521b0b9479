//! Settings, layered: built-in defaults -> the `--config` TOML file -> `LABSTREAM__*`
//! environment variables (`LABSTREAM__SECTION__KEY`, e.g. `LABSTREAM__HTTP__LISTEN`).
//! Every setting is documented in `infra/labstream.example.toml`.

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use labstream_api::QueryConfig;
use labstream_bus::KafkaConfig;
use labstream_ingest::IngestConfig;
use labstream_lake::CompactionConfig;
use labstream_schemas::Registry;
use labstream_sinks::lake::LakeSinkConfig;
use labstream_sinks::mongo::MongoSinkConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Settings {
    pub(crate) http: HttpSettings,
    pub(crate) kafka: KafkaConfig,
    pub(crate) mongo: MongoSettings,
    pub(crate) lake: LakeSettings,
    pub(crate) registry: RegistrySettings,
    pub(crate) ingest: IngestConfig,
    pub(crate) sinks: SinksSettings,
    pub(crate) compaction: CompactionConfig,
    pub(crate) query: QueryConfig,
    pub(crate) experiments: ExperimentsSettings,
    pub(crate) alerts: AlertsSettings,
    pub(crate) processors: ProcessorsSettings,
    pub(crate) auth: AuthSettings,
    pub(crate) log: LogSettings,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AuthSettings {
    /// Accept requests without a token. Refused unless `http.listen` is a loopback address.
    pub(crate) disabled: bool,
    /// PEM public key (RSA, P-256 or Ed25519) that verifies tokens.
    pub(crate) public_key: Option<PathBuf>,
    /// JWKS file (`{"keys": [...]}`) that verifies tokens, selected by `kid`.
    pub(crate) jwks: Option<PathBuf>,
    /// Required `aud` claim.
    pub(crate) audience: String,
    /// Required `iss` claim, if set.
    pub(crate) issuer: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub(crate) leeway: std::time::Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            disabled: false,
            public_key: None,
            jwks: None,
            audience: labstream_schemas::auth::DEFAULT_AUDIENCE.to_owned(),
            issuer: None,
            leeway: labstream_schemas::auth::DEFAULT_LEEWAY,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HttpSettings {
    /// Address the HTTP server (ingest and API) listens on.
    pub(crate) listen: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MongoSettings {
    /// MongoDB connection string.
    pub(crate) uri: String,
    /// Database holding the `samples_<type>` collections.
    pub(crate) database: String,
}

impl Default for MongoSettings {
    fn default() -> Self {
        Self {
            uri: "mongodb://127.0.0.1:27017/?directConnection=true".into(),
            database: "labstream".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LakeSettings {
    /// Root folder of the Parquet lake.
    pub(crate) path: PathBuf,
}

impl Default for LakeSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/lake"),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RegistrySettings {
    /// Sensor-type registry file (`*.sensors.json`); the built-in lab registry when unset.
    pub(crate) path: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SinksSettings {
    pub(crate) mongo: MongoSinkConfig,
    pub(crate) lake: LakeSinkConfig,
    pub(crate) alerts: labstream_sinks::alerts::AlertsLakeConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ExperimentsSettings {
    /// The lab site this deployment records; its events are one ordered stream
    /// (`experiments.events` keyed by site), and only one of its experiments is active.
    pub(crate) site_id: String,
}

impl Default for ExperimentsSettings {
    fn default() -> Self {
        Self {
            site_id: "default".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AlertsSettings {
    /// Alert rules applied at start (a JSON array, or TOML `[[rules]]` tables): each is
    /// created, or replaced when it differs; rules not in the file are left alone.
    pub(crate) rules_file: Option<PathBuf>,
    /// How far back the SSE/WebSocket streams keep alerts (for `Last-Event-ID` resumes
    /// and `?since=`); the API reads this much of the alert topics at start.
    #[serde(with = "humantime_serde")]
    pub(crate) stream_window: std::time::Duration,
    /// Most alerts the streams keep in memory.
    pub(crate) stream_max_events: usize,
}

impl Default for AlertsSettings {
    fn default() -> Self {
        Self {
            rules_file: None,
            stream_window: std::time::Duration::from_secs(15 * 60),
            stream_max_events: 10_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ProcessorsSettings {
    /// Names this process's transactional writers: unique among running processes
    /// and the same across restarts of one (so a restarted instance aborts what its
    /// predecessor left open). Defaults to the host name.
    pub(crate) instance_id: String,
    pub(crate) experiments: ExperimentsProcessorSettings,
    pub(crate) enrichment: labstream_processors::enrichment::EnrichmentConfig,
    pub(crate) alerts: labstream_processors::alerts::AlertsConfig,
    pub(crate) webhooks: labstream_processors::alerts::webhooks::WebhooksConfig,
}

impl Default for ProcessorsSettings {
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "labstream".into());
        Self {
            instance_id: host,
            experiments: ExperimentsProcessorSettings::default(),
            enrichment: Default::default(),
            alerts: Default::default(),
            webhooks: Default::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ExperimentsProcessorSettings {
    /// Run the experiments processor (snapshots to `experiments.state`) in `serve`.
    pub(crate) enabled: bool,
}

impl Default for ExperimentsProcessorSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogSettings {
    /// tracing filter, e.g. `info` or `labstream=debug,rdkafka=warn`; `RUST_LOG` wins.
    pub(crate) filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info".into(),
        }
    }
}

/// Where each layer came from, for `config check`.
pub(crate) struct Loaded {
    pub(crate) settings: Settings,
    pub(crate) file: Option<PathBuf>,
    pub(crate) env_keys: Vec<String>,
}

pub(crate) fn load(config_file: Option<&Path>) -> anyhow::Result<Loaded> {
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(path) = config_file {
        if !path.is_file() {
            bail!("config file {} does not exist", path.display());
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed("LABSTREAM__").split("__"));
    let settings: Settings = figment
        .extract()
        .map_err(|e| anyhow::anyhow!(describe(e)))
        .context("invalid settings")?;
    let env_keys = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("LABSTREAM__"))
        .collect();
    validate(&settings)?;
    Ok(Loaded {
        settings,
        file: config_file.map(Path::to_owned),
        env_keys,
    })
}

fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.path.join("."))
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            format!("{key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn validate(s: &Settings) -> anyhow::Result<()> {
    if s.kafka.samples_partitions < 1 {
        bail!("kafka.samples_partitions must be at least 1");
    }
    if s.kafka.replication_factor < 1 {
        bail!("kafka.replication_factor must be at least 1");
    }
    if s.kafka.brokers.trim().is_empty() {
        bail!("kafka.brokers must name at least one broker");
    }
    s.compaction
        .validate()
        .map_err(|e| anyhow::anyhow!("compaction: {e}"))?;
    s.query.validate()?;
    if s.processors.alerts.batch_max_records == 0 || s.processors.alerts.topic_partitions < 1 {
        bail!(
            "processors.alerts.batch_max_records and processors.alerts.topic_partitions must be at least 1"
        );
    }
    if s.alerts.stream_max_events == 0 {
        bail!("alerts.stream_max_events must be at least 1");
    }
    if s.sinks.lake.flush_rows == 0 || s.sinks.mongo.batch_max_records == 0 {
        bail!("sinks.lake.flush_rows and sinks.mongo.batch_max_records must be at least 1");
    }
    Ok(())
}

impl Settings {
    /// The token verifier of the HTTP roles; `None` when auth is disabled, which is
    /// refused unless the server listens on a loopback address only.
    pub(crate) fn verifier(&self) -> anyhow::Result<Option<labstream_schemas::auth::Verifier>> {
        use labstream_schemas::auth::Verifier;
        let auth = &self.auth;
        if auth.disabled {
            if !self.http.listen.ip().is_loopback() {
                bail!(
                    "auth.disabled is refused because http.listen ({}) is not a loopback address; configure auth.public_key or auth.jwks instead",
                    self.http.listen
                );
            }
            return Ok(None);
        }
        let verifier = match (&auth.public_key, &auth.jwks) {
            (Some(_), Some(_)) => bail!("set either auth.public_key or auth.jwks, not both"),
            (Some(path), None) => Verifier::from_pem_file(path)
                .with_context(|| format!("loading auth.public_key {}", path.display()))?,
            (None, Some(path)) => Verifier::from_jwks_file(path)
                .with_context(|| format!("loading auth.jwks {}", path.display()))?,
            (None, None) => bail!(
                "auth needs a key: set auth.public_key (LABSTREAM__AUTH__PUBLIC_KEY; create a pair with `labstream token keygen`) or auth.jwks, or, for local tests on a loopback address only, auth.disabled = true"
            ),
        };
        Ok(Some(
            verifier
                .with_audience(auth.audience.clone())
                .with_issuer(auth.issuer.clone())
                .with_leeway(auth.leeway),
        ))
    }

    pub(crate) fn registry(&self) -> anyhow::Result<Registry> {
        match &self.registry.path {
            None => Ok(Registry::default_lab()),
            Some(p) => Registry::load(p).context("loading the sensor-type registry"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_env_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "labstream.toml",
                r#"
                [http]
                listen = "127.0.0.1:9000"
                [kafka]
                samples_partitions = 3
                produce_timeout = "3s"
                "#,
            )?;
            jail.set_env("LABSTREAM__HTTP__LISTEN", "127.0.0.1:9100");
            jail.set_env("LABSTREAM__LAKE__PATH", "/tmp/lake");
            let loaded = load(Some(Path::new("labstream.toml"))).unwrap();
            let s = loaded.settings;
            assert_eq!(s.http.listen.to_string(), "127.0.0.1:9100");
            assert_eq!(s.kafka.samples_partitions, 3);
            assert_eq!(s.kafka.produce_timeout, std::time::Duration::from_secs(3));
            assert_eq!(s.lake.path, PathBuf::from("/tmp/lake"));
            assert_eq!(
                s.mongo.uri,
                "mongodb://127.0.0.1:27017/?directConnection=true"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("LABSTREAM__KAFKA__BROKRES", "x");
            let err = format!("{:#}", load(None).err().unwrap());
            assert!(err.contains("brokres"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("LABSTREAM__HTTP__LISTEN", "not-an-address");
            let err = format!("{:#}", load(None).err().unwrap());
            assert!(err.contains("http.listen"), "{err}");
            Ok(())
        });
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    const EXAMPLE: &str = include_str!("../infra/labstream.example.toml");

    fn keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = value {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(inner) if !inner.is_empty() => keys(v, &key, out),
                    _ => out.push(key),
                }
            }
        }
    }

    #[test]
    fn the_example_file_documents_every_setting_with_its_default() {
        let parsed: Settings = toml::from_str(EXAMPLE).expect("the example file parses");
        assert_eq!(
            parsed,
            Settings::default(),
            "the example must show the defaults"
        );
        let mut all = Vec::new();
        keys(
            &toml::Value::try_from(Settings::default()).unwrap(),
            "",
            &mut all,
        );
        all.push("registry.path".into());
        all.push("alerts.rules_file".into());
        for key in all {
            if EXAMPLE.contains(&format!("[{key}]")) {
                continue; // a table of free-form keys, like [kafka.librdkafka]
            }
            let leaf = key.rsplit('.').next().unwrap();
            let section = key.rsplit_once('.').map_or("", |(s, _)| s);
            assert!(
                EXAMPLE.contains(&format!("[{section}]")),
                "section [{section}] is missing from infra/labstream.example.toml"
            );
            assert!(
                EXAMPLE.contains(&format!("{leaf} = ")),
                "setting {key} is missing from infra/labstream.example.toml"
            );
        }
    }
}
