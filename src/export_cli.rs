//! `labstream export --experiment <id> [--participant P] [--day D] --output FILE.tar`:
//! the same archive as `GET /v1/experiments/{id}/export`, made locally from the lake
//! folder (metadata from the lake's `experiments` table, no Kafka), written to a
//! temporary name and renamed once complete, with progress on standard error.

use crate::config::Settings;
use anyhow::{Context, bail};
use chrono::NaiveDate;
use clap::Args;
use futures::StreamExt;
use labstream_api::{ExportProgress, ExportRequest};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// The experiment to export.
    #[arg(long, short)]
    pub(crate) experiment: String,
    /// Only this participant's samples, recordings, progress and logbook entries.
    #[arg(long, short)]
    pub(crate) participant: Option<String>,
    /// Only this UTC day (YYYY-MM-DD).
    #[arg(long, short)]
    pub(crate) day: Option<NaiveDate>,
    /// The tar archive to write (`-` for standard output).
    #[arg(long, short)]
    pub(crate) output: PathBuf,
    /// Lake folder (default: lake.path of the settings).
    #[arg(long)]
    pub(crate) lake: Option<PathBuf>,
    /// Close a Parquet part of the archive once it holds this many bytes (bounds memory).
    #[arg(long, default_value_t = labstream_api::DEFAULT_PART_BYTES)]
    pub(crate) part_bytes: usize,
}

pub(crate) async fn run(settings: &Settings, args: ExportArgs) -> anyhow::Result<()> {
    let lake = args.lake.unwrap_or_else(|| settings.lake.path.clone());
    let engine = settings.query.build(lake)?;
    let export = engine
        .export(ExportRequest {
            experiment_id: args.experiment.as_str().into(),
            participant: args.participant.map(Into::into),
            day: args.day,
        })
        .await?
        .with_part_bytes(args.part_bytes);
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("a tar archive is binary: write it to a file with --output FILE.tar, or pipe it");
    }
    eprintln!(
        "exporting experiment {} (version {}): {} recording(s), sample tables: {}",
        args.experiment,
        export.state().version,
        export.state().recordings.len(),
        if export.tables().is_empty() {
            "none".to_owned()
        } else {
            export.tables().join(", ")
        }
    );
    let tmp = args.output.with_file_name(format!(
        ".{}.partial",
        args.output
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(crate::output::stdout())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        ))
    };
    let mut last_line = Instant::now();
    let mut stream = Box::pin(export.into_stream(move |p| match p {
        ExportProgress::File { path, bytes } => eprintln!("  {path}: {}", human(*bytes)),
        ExportProgress::Rows {
            table,
            rows,
            archive_bytes,
        } => {
            if last_line.elapsed() >= Duration::from_secs(1) {
                last_line = Instant::now();
                eprintln!(
                    "  {table}: {rows} rows so far (archive {})",
                    human(*archive_bytes)
                );
            }
        }
        ExportProgress::TableDone {
            table,
            rows,
            files,
            bytes,
        } => eprintln!(
            "  {table}: {rows} rows in {files} Parquet file(s), {}",
            human(*bytes)
        ),
        ExportProgress::Done { archive_bytes } => {
            eprintln!("archive complete: {}", human(*archive_bytes))
        }
    }));
    let written = async {
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?)?;
        }
        out.flush()?;
        anyhow::Ok(())
    }
    .await;
    drop(out);
    if let Err(e) = written {
        if !to_stdout {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(e.context("the export failed; no archive was written"));
    }
    if !to_stdout {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, &args.output)
            .with_context(|| format!("renaming to {}", args.output.display()))?;
        eprintln!("wrote {}", args.output.display());
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
