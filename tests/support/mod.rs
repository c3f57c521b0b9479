//! `TestStack`: runs the real `labstream` binary against the local stack's Kafka and
//! MongoDB-wire server, isolated by a unique topic prefix, consumer groups, database
//! and lake folder, so tests can run in parallel and leave nothing shared behind.

#![allow(dead_code, unreachable_pub)]

pub mod power;
pub mod readers;

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
        self.worker_with(args, &[])
    }

    /// `worker` with settings of its own on top (e.g. another `http.listen`).
    pub fn worker_with(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Worker {
        let mut w = self.idle_worker(args, extra_env);
        w.start();
        w
    }

    /// `worker_with`, not started yet (e.g. to start it with a test hook for one run).
    pub fn idle_worker(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Worker {
        let mut env = self.env.clone();
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut name = args.join("-");
        let mut n = 1;
        while self.dir.path().join(format!("{name}.log")).exists() {
            n += 1;
            name = format!("{}-{n}", args.join("-"));
        }
        let log = self.dir.path().join(format!("{name}.log"));
        std::fs::write(&log, b"").unwrap();
        Worker {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env,
            log,
            child: None,
        }
    }

    /// The settings every process of this stack gets (`LABSTREAM__*`).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
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

    /// Process id of the running binary.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits up to `within` for the binary to end by itself (after a signal the test
    /// sent, or at a crash point) and returns how it ended.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let log = self.log.clone();
        wait_exit(&mut self.child, within, "labstream", &log).await
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
        let codec = labstream_schemas::Codec::new();
        self.read_raw(topic, n)
            .into_iter()
            .map(|r| {
                let key = String::from_utf8(r.key.expect("a key")).unwrap();
                (key, codec.decode(&r.payload.expect("a value")).unwrap())
            })
            .collect()
    }

    /// Every committed record of `topic` from the beginning, as bytes: waits until
    /// there are at least `n` (or 30 s passed), then reads on until every partition
    /// reported its end after its last record, so a record beyond `n` (a duplicate)
    /// that is already committed shows up too. The end of a read_committed read is
    /// the last stable offset.
    pub fn read_raw(&self, topic: &str, n: usize) -> Vec<RawRecord> {
        self.read_raw_isolated(topic, n, "read_committed")
    }

    /// `read_raw` with isolation.level=read_uncommitted: also the records of aborted
    /// (and open) transactions, as they lie in the log.
    pub fn read_raw_uncommitted(&self, topic: &str, n: usize) -> Vec<RawRecord> {
        self.read_raw_isolated(topic, n, "read_uncommitted")
    }

    fn read_raw_isolated(&self, topic: &str, n: usize, isolation: &str) -> Vec<RawRecord> {
        use rdkafka::Message;
        use rdkafka::message::Headers;
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set(
                "group.id",
                format!("t{}-reader-{}", self.id, uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", isolation)
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let partitions = metadata.topics()[0].partitions().len();
        assert!(partitions > 0, "topic {topic} does not exist");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let mut at_end = std::collections::HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if out.len() >= n && at_end.len() == partitions {
                break;
            }
            if Instant::now() >= deadline {
                assert!(out.len() < n, "{topic} was not read to its end within 30 s");
                break;
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_owned(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(RawRecord {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        headers,
                    });
                }
            }
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

/// A record as Kafka holds it.
#[derive(Clone, Debug)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: std::collections::BTreeMap<String, String>,
}

impl Drop for TestStack {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits up to `within` for `child` to end by itself and returns how it ended (taking
/// it); panics with `what` and its log if it still runs.
async fn wait_exit(
    child: &mut Option<Child>,
    within: Duration,
    what: &str,
    log: &Path,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        let running = child.as_mut().expect("not running");
        if let Some(status) = running.try_wait().unwrap() {
            *child = None;
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} still runs after {within:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
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
        self.start_with_env(&[]);
    }

    /// Starts it with settings (or test hooks, e.g. `LABSTREAM_CRASH_POINT`) for this
    /// run only.
    pub fn start_with_env(&mut self, extra_env: &[(&str, &str)]) {
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
                .envs(extra_env.iter().copied())
                .env_remove("RUST_LOG")
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawning labstream"),
        );
    }

    /// Waits up to `within` for the process to end by itself (e.g. at a crash point)
    /// and returns how it ended; panics with its log if it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let what = format!("{:?}", self.args);
        wait_exit(&mut self.child, within, &what, &self.log).await
    }

    /// Process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: a crash, with no chance to flush or commit.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait (at most 60 s): a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{:?} did not stop within 60 s of SIGTERM:\n{}",
                        self.args,
                        self.logs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            };
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

/// Polls `probe` until it answers `Ok`, at most `within`; then returns its value. On
/// the deadline the test fails with `what` and the probe's last `Err` (what it saw).
/// Every wait of the end-to-end tests goes through here or a helper built on it: a
/// condition with a deadline, never a fixed sleep standing in for one.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Records `group` has still to read in `topic` (transaction markers do not count).
pub async fn group_lag(brokers: &str, group: &str, topic: &str) -> i64 {
    let kafka = labstream_bus::KafkaConfig {
        brokers: brokers.to_owned(),
        ..labstream_bus::KafkaConfig::default()
    };
    labstream_bus::GroupAdmin::new(&kafka, group)
        .unwrap()
        .offsets(topic)
        .await
        .unwrap()
        .iter()
        .map(labstream_bus::PartitionOffsets::lag)
        .sum()
}

/// Waits until `group` has committed everything in `topic` up to its end (as it is
/// when called, or later): what the group's members wrote is complete, and anything
/// they would write twice is written by then.
pub async fn wait_caught_up(brokers: &str, group: &str, topic: &str, within: Duration) {
    eventually(
        &format!("consumer group {group} committing to the end of {topic}"),
        within,
        || async {
            match group_lag(brokers, group, topic).await {
                0 => Ok(()),
                lag => Err(format!("lag {lag}")),
            }
        },
    )
    .await
}

/// Lines of `log` containing every one of `parts`.
pub fn count_lines(log: &str, parts: &[&str]) -> usize {
    log.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}
