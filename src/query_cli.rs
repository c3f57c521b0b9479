//! `labstream query "<sql>"`: the same read-only SQL as `POST /v1/query`, under the same
//! `[query]` limits, run locally over the lake folder: printed as a table, or streamed
//! as JSON, NDJSON, CSV, Arrow IPC or Parquet to a file or standard output.

use crate::config::Settings;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use futures::TryStreamExt;
use labstream_api::Format;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct QueryArgs {
    /// The SQL query, e.g. "SELECT sensor_id, avg(celsius) FROM samples_temperature GROUP BY 1".
    pub(crate) sql: String,
    /// Output format; `table` reads the whole result before printing it, the others
    /// stream it.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) format: OutputFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
    /// Lake folder (default: lake.path of the settings).
    #[arg(long)]
    pub(crate) lake: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    Table,
    Json,
    Ndjson,
    Csv,
    /// Arrow IPC stream.
    Arrow,
    Parquet,
}

impl OutputFormat {
    fn streamed(self) -> Option<Format> {
        match self {
            OutputFormat::Table => None,
            OutputFormat::Json => Some(Format::Json),
            OutputFormat::Ndjson => Some(Format::Ndjson),
            OutputFormat::Csv => Some(Format::Csv),
            OutputFormat::Arrow => Some(Format::Arrow),
            OutputFormat::Parquet => Some(Format::Parquet),
        }
    }
}

pub(crate) async fn run(settings: &Settings, args: QueryArgs) -> anyhow::Result<()> {
    let format = args.format.streamed();
    if matches!(format, Some(Format::Arrow | Format::Parquet))
        && args.output.is_none()
        && std::io::stdout().is_terminal()
    {
        bail!(
            "arrow and parquet are binary: write them to a file with --output FILE, or pipe them"
        );
    }
    let lake = args.lake.unwrap_or_else(|| settings.lake.path.clone());
    let engine = settings.query.build(lake.clone())?;
    if !engine
        .tables()
        .await?
        .iter()
        .any(|t| t.starts_with("samples_"))
    {
        eprintln!(
            "note: the lake at {} holds no sample table yet (samples appear after the lake sink's first flush)",
            lake.display()
        );
    }
    let mut stream = engine.query_stream(&args.sql).await?;
    // Created only once the query runs, so a refused query leaves no empty file behind.
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(crate::output::stdout()),
    };
    let written = async {
        let mut rows = 0;
        match format {
            None => {
                let batches: Vec<_> = stream.try_collect().await?;
                rows = batches.iter().map(|b| b.num_rows()).sum();
                writeln!(
                    out,
                    "{}",
                    arrow::util::pretty::pretty_format_batches(&batches)?
                )?;
                writeln!(out, "{rows} row(s)")?;
            }
            Some(format) => {
                let mut encoder = format.encoder(&stream.schema())?;
                while let Some(batch) = stream.try_next().await? {
                    rows += batch.num_rows();
                    out.write_all(&encoder.write(&batch)?)?;
                }
                out.write_all(&encoder.finish()?)?;
                if format == Format::Json && args.output.is_none() {
                    writeln!(out)?;
                }
            }
        }
        out.flush()?;
        anyhow::Ok(rows)
    }
    .await;
    let rows = match (written, &args.output) {
        (Ok(rows), _) => rows,
        (Err(e), Some(path)) => {
            // A query that failed half way leaves no half-written file.
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    };
    if let Some(path) = &args.output {
        eprintln!("wrote {rows} row(s) to {}", path.display());
    }
    Ok(())
}
