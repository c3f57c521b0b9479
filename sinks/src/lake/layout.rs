use chrono::NaiveDate;
use std::path::{Path, PathBuf};

/// Top-level folder of sample tables inside the lake.
pub const SAMPLES_DIR: &str = "samples";

/// Experiment partition value of samples that belong to no experiment.
pub(crate) const NO_EXPERIMENT: &str = "none";

pub(crate) fn table_dir(
    root: &Path,
    sensor_type: &str,
    date: NaiveDate,
    experiment: &str,
) -> PathBuf {
    root.join(SAMPLES_DIR)
        .join(sensor_type)
        .join(format!("date={}", date.format("%Y-%m-%d")))
        .join(format!("experiment={experiment}"))
}

/// The name of a lake file: which records of which topic-partition it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartFile {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl PartFile {
    pub fn file_name(&self) -> String {
        format!(
            "part-{}-p{}-{:020}-{:020}.parquet",
            self.topic, self.partition, self.first_offset, self.last_offset
        )
    }

    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
        let mut parts = stem.rsplitn(4, '-');
        let last_offset = parts.next()?.parse().ok()?;
        let first_offset = parts.next()?.parse().ok()?;
        let partition = parts.next()?.strip_prefix('p')?.parse().ok()?;
        let topic = parts.next()?.to_owned();
        Some(Self {
            topic,
            partition,
            first_offset,
            last_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_file_names_round_trip_even_with_dashes_in_the_topic() {
        let p = PartFile {
            topic: "lab-1.samples.raw".into(),
            partition: 3,
            first_offset: 17,
            last_offset: 4242,
        };
        let name = p.file_name();
        assert_eq!(
            name,
            "part-lab-1.samples.raw-p3-00000000000000000017-00000000000000004242.parquet"
        );
        assert_eq!(PartFile::parse(&name), Some(p));
        assert_eq!(PartFile::parse("part-x.parquet.tmp"), None);
        assert_eq!(PartFile::parse("other.parquet"), None);
    }

    #[test]
    fn table_dirs_are_hive_partitioned() {
        let d = table_dir(
            Path::new("/lake"),
            "door",
            NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            NO_EXPERIMENT,
        );
        assert_eq!(
            d,
            Path::new("/lake/samples/door/date=2026-11-23/experiment=none")
        );
    }
}
