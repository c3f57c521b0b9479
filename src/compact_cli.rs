//! `labstream compact`: merges the lake's small files once, now, into sorted larger ones
//! without duplicate samples, and prints what it did. Safe while `serve` runs and
//! queries are answered: readers never see a row twice or miss one.

use crate::config::Settings;
use anyhow::bail;
use clap::Args;
use labstream_lake::{CompactionConfig, DirReport, compact_with_progress};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub(crate) struct CompactArgs {
    /// Lake folder (default: lake.path of the settings).
    #[arg(long)]
    pub(crate) lake: Option<PathBuf>,
    /// Merge the files of a directory and topic-partition once there are more than this
    /// many (default: compaction.min_files of the settings).
    #[arg(long)]
    pub(crate) min_files: Option<usize>,
    /// How long merged files stay for queries that may still read them, e.g. "5m" or
    /// "0s" when nothing queries the lake (default: compaction.delete_grace).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) delete_grace: Option<Duration>,
    /// Print what would be merged and deleted; change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

pub(crate) fn run(settings: &Settings, args: CompactArgs) -> anyhow::Result<()> {
    let lake = args.lake.unwrap_or_else(|| settings.lake.path.clone());
    let registry = settings.registry()?;
    let mut options = compaction_settings(settings).options();
    if let Some(n) = args.min_files {
        options.min_files = n;
    }
    if let Some(d) = args.delete_grace {
        options.delete_grace = d;
    }
    options.dry_run = args.dry_run;
    let verb = if options.dry_run {
        "would merge"
    } else {
        "merged"
    };
    let samples = lake.join(labstream_lake::SAMPLES_DIR);
    // A closed stdout stops the lines, not the compaction (which is safe to finish);
    // the command then ends as it would have at the first line.
    let mut printing: std::io::Result<()> = Ok(());
    let report = compact_with_progress(&lake, &registry, &options, |d| {
        if d.is_eventful() && printing.is_ok() {
            printing = outln!("{}", dir_line(&samples, d, verb));
        }
    })?;
    printing?;
    let deleted = if options.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    outln!(
        "{} {} directories in {:.2} s: files {} -> {}, {} rows ({} duplicates dropped), {} -> {}; {deleted} {} superseded files, {} kept for their grace period ({})",
        if options.dry_run {
            "checked"
        } else {
            "compacted"
        },
        report.directories,
        report.elapsed.as_secs_f64(),
        report.files_before,
        report.files_after,
        report.rows_out,
        report.duplicates_dropped,
        bytes(report.bytes_in),
        bytes(report.bytes_out),
        report.deleted,
        report.awaiting_delete,
        humantime::format_duration(options.delete_grace),
    )?;
    if !report.failed.is_empty() {
        bail!(
            "{} directories were left as they were (the lake is still correct); see above",
            report.failed.len()
        );
    }
    Ok(())
}

// Compaction settings are a section of their own once `serve` schedules compaction.
fn compaction_settings(settings: &Settings) -> CompactionConfig {
    settings.compaction.clone()
}

fn dir_line(samples: &Path, d: &DirReport, verb: &str) -> String {
    let name = d.dir.strip_prefix(samples).unwrap_or(&d.dir).display();
    let mut line = format!(
        "{name}: {verb} {} files into {} ({} -> {} live files)",
        d.files_merged, d.merges, d.files_before, d.files_after
    );
    if d.rows_in > 0 {
        line.push_str(&format!(
            ", {} rows, {} duplicates dropped, {} -> {}",
            d.rows_out,
            d.duplicates_dropped,
            bytes(d.bytes_in),
            bytes(d.bytes_out)
        ));
    }
    if d.deleted > 0 {
        line.push_str(&format!(", {} superseded files deleted", d.deleted));
    }
    if let Some(e) = &d.error {
        line.push_str(&format!("; left as it was: {e}"));
    }
    line
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
