//! `labstream query "<sql>"`: the same read-only SQL as `POST /v1/query`, run locally
//! over the lake folder, printed as a table or written as JSON or CSV.

use crate::config::Settings;
use anyhow::Context;
use clap::{Args, ValueEnum};
use labstream_api::QueryEngine;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct QueryArgs {
    /// The SQL query, e.g. "SELECT sensor_id, avg(celsius) FROM samples_temperature GROUP BY 1".
    pub(crate) sql: String,
    /// Output format.
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
    Csv,
}

pub(crate) async fn run(settings: &Settings, args: QueryArgs) -> anyhow::Result<()> {
    let lake = args.lake.unwrap_or_else(|| settings.lake.path.clone());
    let engine = QueryEngine::new(lake.clone());
    if engine.tables().await?.is_empty() {
        eprintln!(
            "note: the lake at {} holds no table yet (samples appear after the lake sink's first flush)",
            lake.display()
        );
    }
    let result = engine.query(&args.sql).await?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let rows: usize = result.batches.iter().map(|b| b.num_rows()).sum();
    match args.format {
        OutputFormat::Table => {
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(&result.batches)?
            )?;
            writeln!(out, "{rows} row(s)")?;
        }
        OutputFormat::Json => {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut out);
            let batches: Vec<&_> = result.batches.iter().collect();
            w.write_batches(&batches)?;
            w.finish()?;
            drop(w);
            writeln!(out)?;
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in &result.batches {
                w.write(b)?;
            }
        }
    }
    out.flush()?;
    if let Some(path) = &args.output {
        eprintln!("wrote {rows} row(s) to {}", path.display());
    }
    Ok(())
}
