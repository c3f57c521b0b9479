//! The `labstream` binary: one subcommand per role or tool. It reads settings, builds
//! clients and hands them to the component crates.

#[macro_use]
mod output;

mod backfill_cli;
mod compact_cli;
mod config;
mod export_cli;
mod group_cli;
mod http;
mod openapi;
mod query_cli;
mod readiness;
mod roles;
mod serve;
mod simulate;
mod telemetry;
mod token;
mod wiring;

use clap::{Parser, Subcommand, ValueEnum};
use roles::{Role, Roles};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: the sinks, the processors and DataFusion
/// allocate and free many small buffers per record and per file, which glibc's malloc
/// serves with lock contention and consolidation passes. Built without transparent huge
/// pages (`no_thp`): mimalloc returns freed memory to the system after a few
/// milliseconds, and with huge pages each buffer a query reads a file into next faults in
/// and zeroes 2 MiB at a time (a quarter of a short query's time over a compacted lake).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "labstream",
    version,
    about = "Event-sourced sensor pipeline: HTTP ingest -> Kafka -> MongoDB and a Parquet lake queried with SQL",
    after_help = "Settings: built-in defaults, then --config FILE, then LABSTREAM__SECTION__KEY environment variables.\nSee infra/labstream.example.toml for every setting."
)]
struct Cli {
    /// TOML settings file (see infra/labstream.example.toml).
    #[arg(long, short = 'c', global = true, env = "LABSTREAM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process: ingest, API, processors and both sinks.
    Serve,
    /// Run only HTTP ingest (POST /v1/samples).
    Ingest,
    /// Run only the query API (POST /v1/query).
    Api,
    /// Run one sink worker; start several to share the partitions.
    Sink {
        #[arg(value_enum)]
        which: SinkKind,
    },
    /// Run one stream processor; start several to share the partitions.
    Process {
        #[arg(value_enum)]
        which: ProcessorKind,
    },
    /// Recompute derived state from the event log and republish what differs.
    Rebuild {
        #[arg(value_enum)]
        what: RebuildKind,
        /// Only compare and report; publish nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move a stopped consumer group to a time (or earliest/latest) so its workers read
    /// the log again from there; a dry run unless --execute.
    Replay(group_cli::ReplayArgs),
    /// Committed offset, end offset and lag per partition of labstream's consumer groups.
    Lag(group_cli::LagArgs),
    /// Send samples from files (NDJSON, CSV, line protocol) through ingest's validation
    /// to samples.raw, e.g. data recovered from a gateway after an outage.
    Backfill(backfill_cli::BackfillArgs),
    /// Run SQL over the lake and print the result.
    Query(query_cli::QueryArgs),
    /// Export an experiment (optionally one participant and/or day) from the lake as a tar
    /// archive: metadata, logbook, progress and recordings as JSON, samples as Parquet.
    Export(export_cli::ExportArgs),
    /// Merge the lake's small files into sorted larger ones, dropping duplicate samples
    /// (serve also does it on a schedule); safe while queries run.
    Compact(compact_cli::CompactArgs),
    /// Post a simulated sensor feed (every sensor type of the registry) to ingest.
    Simulate(simulate::SimulateArgs),
    /// Make signing keys, mint JWTs for sensors and users, inspect a token.
    Token(token::TokenArgs),
    /// Inspect settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SinkKind {
    /// Raw samples into MongoDB, one collection per sensor type.
    Mongo,
    /// Samples into the Parquet lake, with scheduled compaction ([compaction]).
    Lake,
    /// Alert events into the lake's `alerts` table.
    Alerts,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProcessorKind {
    /// Experiment snapshots (experiments.events -> experiments.state).
    Experiments,
    /// samples.raw x recordings -> samples.enriched, in Kafka transactions.
    Enrichment,
    /// samples.raw -> alert rules -> alerts.<name> + alerts.state, in Kafka transactions.
    Alerts,
    /// alerts.<name> -> the webhook targets of [processors.webhooks], once per transition.
    Webhooks,
}

#[derive(Clone, Copy, ValueEnum)]
enum RebuildKind {
    /// Every experiment's state from experiments.events (compared with experiments.state).
    Experiments,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the settings in force (TOML) and where they came from; fail on invalid ones.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of the output went away (`| head`): end quietly, as SIGPIPE would.
        Err(e) if output::is_stdout_closed(&e) => ExitCode::from(output::STDOUT_CLOSED_STATUS),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let loaded = config::load(cli.config.as_deref())?;
    let settings = loaded.settings.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("labstream")
        .build()?;
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            settings.registry()?;
            match settings.verifier()? {
                Some(v) => outln!("# auth: tokens verified with {:?}", v.algorithms())?,
                None => outln!("# auth: DISABLED (loopback only)")?,
            }
            match &loaded.file {
                Some(f) => outln!("# settings file: {}", f.display())?,
                None => outln!("# settings file: none (built-in defaults)")?,
            }
            if loaded.env_keys.is_empty() {
                outln!("# environment overrides: none")?;
            } else {
                outln!("# environment overrides: {}", loaded.env_keys.join(", "))?;
            }
            std::io::Write::write_all(
                &mut output::stdout(),
                toml::to_string_pretty(&settings)?.as_bytes(),
            )?;
            outln!("# settings are valid")?;
            Ok(())
        }
        Command::Token(args) => token::run(args),
        Command::Query(args) => {
            telemetry::init("warn");
            runtime.block_on(query_cli::run(&settings, args))
        }
        Command::Export(args) => {
            telemetry::init("warn");
            runtime.block_on(export_cli::run(&settings, args))
        }
        Command::Replay(args) => {
            telemetry::init("warn");
            runtime.block_on(group_cli::replay(&settings, args))
        }
        Command::Lag(args) => {
            telemetry::init("warn");
            runtime.block_on(group_cli::lag(&settings, args))
        }
        Command::Backfill(args) => {
            telemetry::init("warn");
            runtime.block_on(backfill_cli::run(&settings, args))
        }
        Command::Compact(args) => {
            telemetry::init("warn");
            compact_cli::run(&settings, args)
        }
        Command::Simulate(args) => {
            telemetry::init(&settings.log.filter);
            runtime.block_on(simulate::run(&settings, args))
        }
        Command::Rebuild {
            what: RebuildKind::Experiments,
            dry_run,
        } => {
            telemetry::init("warn");
            runtime.block_on(rebuild_experiments(&settings, dry_run))
        }
        Command::Serve
        | Command::Ingest
        | Command::Api
        | Command::Process { .. }
        | Command::Sink { .. } => {
            telemetry::init(&settings.log.filter);
            let roles = roles_of(&cli.command, &settings);
            runtime.block_on(serve::run(settings, roles))
        }
    }
}

/// The roles a running subcommand runs.
fn roles_of(command: &Command, settings: &config::Settings) -> Roles {
    match command {
        Command::Ingest => Roles::of([Role::Ingest]),
        Command::Api => Roles::of([Role::Api]),
        Command::Process { which } => Roles::of([match which {
            ProcessorKind::Experiments => Role::Experiments,
            ProcessorKind::Enrichment => Role::Enrichment,
            ProcessorKind::Alerts => Role::Alerts,
            ProcessorKind::Webhooks => Role::Webhooks,
        }]),
        Command::Sink { which } => match which {
            SinkKind::Mongo => Roles::of([Role::MongoSink]),
            // The lake's writer also keeps it compact (one compactor at a time, by lock).
            SinkKind::Lake if settings.compaction.enabled => {
                Roles::of([Role::LakeSink, Role::Compaction])
            }
            SinkKind::Lake => Roles::of([Role::LakeSink]),
            SinkKind::Alerts => Roles::of([Role::AlertsSink]),
        },
        _ => Roles::all(settings),
    }
}

async fn rebuild_experiments(settings: &config::Settings, dry_run: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let kafka = &settings.kafka;
    labstream_bus::probe(kafka, std::time::Duration::from_secs(15))
        .await
        .context("start Kafka (infra/local/stack up) or set LABSTREAM__KAFKA__BROKERS")?;
    let topics = labstream_schemas::Topics::new(&kafka.topic_prefix);
    let site = &settings.experiments.site_id;
    eprintln!(
        "reading {} (site {site}) from the start...",
        topics.experiments_events()
    );
    let report = labstream_processors::experiments::rebuild(kafka, &topics, site, dry_run)
        .await
        .context("rebuilding experiment state")?;
    outln!(
        "{} events -> {} experiments, {} sensor configurations",
        report.events,
        report.experiments,
        report.sensor_configs
    )?;
    outln!(
        "{} snapshots identical to the rebuilt state",
        report.identical
    )?;
    if report.differing.is_empty() {
        outln!("no snapshot differs: experiments.state matches the log")?;
    } else {
        let verb = if dry_run {
            "would republish"
        } else {
            "republished"
        };
        outln!(
            "{verb} {} snapshots: {}",
            report.differing.len(),
            report
                .differing
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if !report.unknown.is_empty() {
        outln!(
            "{} snapshots name experiments the log does not have (left alone)",
            report.unknown.len()
        )?;
    }
    Ok(())
}
