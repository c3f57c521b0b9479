//! `TestStack`: runs the real `labstream` binary against the local stack's Kafka and
//! MongoDB-wire server, isolated by a unique topic prefix, consumer groups, database
//! and lake folder, so tests can run in parallel and leave nothing shared behind.

#![allow(dead_code, unreachable_pub)]

pub mod power;

use rdkafka::consumer::{BaseConsumer, Consumer};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn brokers() -> String {
    std::env::var("LABSTREAM__KAFKA__BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn mongo_uri() -> String {
    std::env::var("LABSTREAM__MONGO__URI")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".into())
}

pub struct TestStack {
    pub id: String,
    /// An admin token, sent by `post` and `query`.
    pub token: String,
    /// Signs tokens the server accepts (its public key is `auth.public_key`).
    pub issuer: labstream_schemas::auth::Issuer,
    /// The Kafka this instance uses (the local stack's unless overridden).
    pub brokers: String,
    pub url: String,
    pub lake: PathBuf,
    pub prefix: String,
    pub database: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
    env: Vec<(String, String)>,
    command: String,
}

impl TestStack {
    /// Starts `labstream serve` and waits until `/healthz` answers.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra_env: &[(&str, &str)]) -> Self {
        Self::start_command("serve", extra_env).await
    }

    /// Starts `labstream <command>` (`serve`, `ingest`, `api`) as the HTTP process.
    pub async fn start_command(command: &str, extra_env: &[(&str, &str)]) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let port = free_port();
        let prefix = format!("t{id}.");
        let database = format!("t{id}");
        let mut env = vec![
            (
                "LABSTREAM__HTTP__LISTEN".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
            ("LABSTREAM__KAFKA__BROKERS".to_owned(), brokers()),
            ("LABSTREAM__KAFKA__TOPIC_PREFIX".to_owned(), prefix.clone()),
            (
                "LABSTREAM__KAFKA__SAMPLES_PARTITIONS".to_owned(),
                "3".to_owned(),
            ),
            ("LABSTREAM__MONGO__URI".to_owned(), mongo_uri()),
            ("LABSTREAM__MONGO__DATABASE".to_owned(), database.clone()),
            (
                "LABSTREAM__LAKE__PATH".to_owned(),
                lake.display().to_string(),
            ),
            (
                "LABSTREAM__SINKS__MONGO__GROUP_ID".to_owned(),
                format!("t{id}-mongo"),
            ),
            (
                "LABSTREAM__SINKS__LAKE__GROUP_ID".to_owned(),
                format!("t{id}-lake"),
            ),
            (
                "LABSTREAM__PROCESSORS__ENRICHMENT__GROUP_ID".to_owned(),
                format!("t{id}-enrichment"),
            ),
            (
                "LABSTREAM__PROCESSORS__ALERTS__GROUP_ID".to_owned(),
                format!("t{id}-alerts"),
            ),
            (
                "LABSTREAM__PROCESSORS__WEBHOOKS__GROUP_ID".to_owned(),
                format!("t{id}-webhooks"),
            ),
            (
                "LABSTREAM__SINKS__ALERTS__GROUP_ID".to_owned(),
                format!("t{id}-alerts-lake"),
            ),
            (
                "LABSTREAM__SINKS__ALERTS__FLUSH_INTERVAL".to_owned(),
                "500ms".to_owned(),
            ),
            (
                "LABSTREAM__PROCESSORS__INSTANCE_ID".to_owned(),
                format!("t{id}"),
            ),
            (
                "LABSTREAM__PROCESSORS__ENRICHMENT__LATENESS".to_owned(),
                "3s".to_owned(),
            ),
            (
                "LABSTREAM__SINKS__LAKE__FLUSH_INTERVAL".to_owned(),
                "500ms".to_owned(),
            ),
            (
                "LABSTREAM__LOG__FILTER".to_owned(),
                "info,labstream=debug".to_owned(),
            ),
            // Fixed historical timestamps in tests must stay valid as time passes.
            ("LABSTREAM__INGEST__MAX_TS_PAST".to_owned(), "0s".to_owned()),
        ];
        for (k, v) in extra_env {
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        // Auth is on, as in production: a fresh key pair per instance.
        let (private_pem, public_pem) =
            labstream_schemas::auth::generate_keypair(labstream_schemas::auth::KeyAlg::Ed25519)
                .unwrap();
        let public_key = dir.path().join("public.pem");
        std::fs::write(&public_key, public_pem).unwrap();
        let issuer = labstream_schemas::auth::Issuer::from_pem(&private_pem).unwrap();
        let token = issuer
            .issue(
                "test-admin",
                &[labstream_schemas::auth::Scope::Admin],
                None,
                Duration::from_secs(3600),
                None,
            )
            .unwrap();
        env.insert(
            0,
            (
                "LABSTREAM__AUTH__PUBLIC_KEY".to_owned(),
                public_key.display().to_string(),
            ),
        );
        let log = dir.path().join("labstream.log");
        let brokers = env
            .iter()
            .rev()
            .find(|(k, _)| k == "LABSTREAM__KAFKA__BROKERS")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(brokers);
        let mut stack = TestStack {
            id,
            token,
            issuer,
            brokers,
            url: format!("http://127.0.0.1:{port}"),
            lake,
            prefix,
            database,
            dir,
            child: None,
            log,
            env,
            command: command.to_owned(),
        };
        stack.spawn().await;
        stack
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_labstream"))
            .arg(&self.command)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning labstream");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "labstream exited with {status} before it was healthy:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "labstream was not healthy within 60 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts another labstream process with the same settings, e.g. `["sink", "lake"]`.
    pub fn worker(&self, args: &[&str]) -> Worker {
        let mut w = Worker {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: self.env.clone(),
            log: self.dir.path().join(format!("{}.log", args.join("-"))),
            child: None,
        };
        w.start();
        w
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `labstream <args>` with this stack's settings; stdout and stderr together.
    #[allow(dead_code)]
    pub fn run_cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_labstream"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn topic(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// Stops the binary with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.wait();
        }
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("response to {path} is not JSON ({e}): {text}"));
        (status, json)
    }

    pub async fn query(&self, sql: &str) -> (u16, serde_json::Value) {
        self.post(
            "/v1/query",
            "application/json",
            serde_json::json!({ "sql": sql }).to_string(),
        )
        .await
    }

    /// Polls `sql` until it returns `rows` rows (the sinks flush asynchronously).
    pub async fn query_until_rows(&self, sql: &str, rows: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            let (status, body) = self.query(sql).await;
            if status == 200 && body.as_array().map(Vec::len) == Some(rows) {
                return body.as_array().unwrap().clone();
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!(
            "query {sql:?} did not return {rows} rows within 60 s; last answer: {last}\n{}",
            self.logs()
        );
    }

    pub async fn mongo(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(mongo_uri())
            .await
            .unwrap()
            .database(&self.database)
    }

    /// Number of records in `topic` (sum of the high watermarks of its partitions).
    pub fn topic_records(&self, topic: &str) -> i64 {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let partitions = metadata.topics()[0].partitions().len();
        assert!(partitions > 0, "topic {topic} does not exist");
        (0..partitions as i32)
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap();
                high - low
            })
            .sum()
    }

    /// Reads every record of `topic` from the beginning, waiting until there are at
    /// least `n` (or 30 s passed), and decodes them as samples, with their keys.
    pub fn read_samples(&self, topic: &str, n: usize) -> Vec<(String, labstream_schemas::Sample)> {
        self.read_records(topic, n)
    }

    /// Like `read_samples`, for any record type (e.g. enriched samples).
    pub fn read_records<T: labstream_schemas::AvroRecord>(
        &self,
        topic: &str,
        n: usize,
    ) -> Vec<(String, T)> {
        use rdkafka::Message;
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set(
                "group.id",
                format!("t{}-reader-{}", self.id, uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let codec = labstream_schemas::Codec::new();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while out.len() < n && Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                let m = m.unwrap();
                let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                out.push((key, codec.decode(m.payload().unwrap()).unwrap()));
            }
        }
        // Anything beyond n that is already there shows up too.
        while let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            out.push((key, codec.decode(m.payload().unwrap()).unwrap()));
        }
        out
    }

    pub fn lake_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, out);
                    } else {
                        out.push(p);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.lake, &mut out);
        out
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A labstream process without HTTP (a sink), which tests kill and restart.
pub struct Worker {
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Worker {
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_labstream"))
                .args(&self.args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env_remove("RUST_LOG")
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawning labstream"),
        );
    }

    /// SIGKILL: a crash, with no chance to flush or commit.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "{:?} exited with {status}:\n{}",
                self.args,
                self.logs()
            );
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A second local stack (own folder and ports, started by `infra/local/stack`) for
/// tests that stop a service, so the shared one stays up for the other tests. It
/// reuses the shared stack's Kafka jars and SecantusDB venv when they are installed.
pub struct PrivateStack {
    pub dir: tempfile::TempDir,
    pub kafka_port: u16,
    pub controller_port: u16,
    pub mongo_port: u16,
}

impl PrivateStack {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            kafka_port: free_port(),
            controller_port: free_port(),
            mongo_port: free_port(),
        }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    pub fn mongo_uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            self.mongo_port
        )
    }

    /// Runs `infra/local/stack <args>` against this stack; panics with its output on failure.
    pub fn stack(&self, args: &[&str]) {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let shared = std::env::var("LABSTREAM_STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo.join("infra/local/.stack"));
        let mut cmd = Command::new(repo.join("infra/local/stack"));
        cmd.args(args)
            .env("LABSTREAM_STACK_DIR", self.dir.path())
            .env("LABSTREAM_KAFKA_PORT", self.kafka_port.to_string())
            .env(
                "LABSTREAM_KAFKA_CONTROLLER_PORT",
                self.controller_port.to_string(),
            )
            .env("LABSTREAM_MONGO_PORT", self.mongo_port.to_string());
        if shared.join("kafka/lib").is_dir() {
            cmd.env("LABSTREAM_KAFKA_LIB", shared.join("kafka/lib"));
        }
        if shared.join("mongo/venv/bin/secantusd-py").exists() {
            cmd.env("LABSTREAM_MONGO_VENV", shared.join("mongo/venv"));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "stack {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateStack {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stack(&["down"])));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
