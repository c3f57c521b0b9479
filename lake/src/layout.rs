//! The naming contract of the Parquet lake, shared by the lake writer, the compactor and
//! the query engine: where a table's files live, what a file name says (the Kafka
//! topic-partition and offset range it holds) and which files are live. A file whose
//! range lies inside another file's range of the same topic-partition and directory is
//! superseded (a compaction output holds its rows), so readers skip it and every row is
//! read exactly once, whether or not the compactor has deleted it yet.

use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level folder of sample tables inside the lake.
pub const SAMPLES_DIR: &str = "samples";

/// Experiment partition value of samples that belong to no experiment.
pub const NO_EXPERIMENT: &str = "none";

/// `<root>/samples/<sensor_type>/date=YYYY-MM-DD/experiment=<id|none>`.
pub fn table_dir(root: &Path, sensor_type: &str, date: NaiveDate, experiment: &str) -> PathBuf {
    root.join(SAMPLES_DIR)
        .join(sensor_type)
        .join(format!("date={}", date.format("%Y-%m-%d")))
        .join(format!("experiment={experiment}"))
}

/// The name of a lake file: which records of which topic-partition it holds. A file
/// holds every record of its directory with an offset in `first_offset..=last_offset`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

    /// `None` for anything that is not a finished lake file (temporary files included).
    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
        let mut parts = stem.rsplitn(4, '-');
        let last_offset = parts.next()?.parse().ok()?;
        let first_offset = parts.next()?.parse().ok()?;
        let partition = parts.next()?.strip_prefix('p')?.parse().ok()?;
        let topic = parts.next()?.to_owned();
        if topic.is_empty() || first_offset > last_offset {
            return None;
        }
        Some(Self {
            topic,
            partition,
            first_offset,
            last_offset,
        })
    }

    /// Same topic-partition, and `other`'s offset range lies within this one's.
    pub fn contains(&self, other: &PartFile) -> bool {
        self.topic == other.topic
            && self.partition == other.partition
            && self.first_offset <= other.first_offset
            && other.last_offset <= self.last_offset
    }
}

/// Splits the file names of ONE directory into `(live, superseded)`.
///
/// Per topic-partition, a file whose offset range is contained in another file's range
/// is superseded: the containing file (a compaction output) holds its rows. Names that
/// are not lake files (temporary files, anything else) are in neither list. Both lists
/// come in (topic, partition, first offset) order; live files of one topic-partition
/// then also have strictly increasing last offsets, since none contains another.
pub fn live_files<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> (Vec<S>, Vec<S>) {
    // Per topic-partition: (first offset, last offset, name).
    type Ranges<S> = Vec<(i64, i64, S)>;
    let mut groups: BTreeMap<(String, i32), Ranges<S>> = BTreeMap::new();
    for name in names {
        if let Some(p) = PartFile::parse(name.as_ref()) {
            groups.entry((p.topic, p.partition)).or_default().push((
                p.first_offset,
                p.last_offset,
                name,
            ));
        }
    }
    let (mut live, mut superseded) = (Vec::new(), Vec::new());
    for files in groups.into_values() {
        let mut files = files;
        // First offset ascending, then the wider range first: any file containing
        // another then comes before it, so one sweep over the highest last offset
        // seen so far finds every contained file.
        files.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut reach = None;
        for (_, last, name) in files {
            if reach.is_some_and(|r| r >= last) {
                superseded.push(name);
            } else {
                reach = Some(last);
                live.push(name);
            }
        }
    }
    (live, superseded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn part(topic: &str, partition: i32, first: i64, last: i64) -> PartFile {
        PartFile {
            topic: topic.into(),
            partition,
            first_offset: first,
            last_offset: last,
        }
    }

    fn name(first: i64, last: i64) -> String {
        part("t", 0, first, last).file_name()
    }

    #[test]
    fn part_file_names_round_trip_even_with_dashes_in_the_topic() {
        let p = part("lab-1.samples.raw", 3, 17, 4242);
        let name = p.file_name();
        assert_eq!(
            name,
            "part-lab-1.samples.raw-p3-00000000000000000017-00000000000000004242.parquet"
        );
        assert_eq!(PartFile::parse(&name), Some(p));
        assert_eq!(PartFile::parse("part-x.parquet.tmp"), None);
        assert_eq!(PartFile::parse(&format!(".{name}.tmp")), None);
        assert_eq!(PartFile::parse("other.parquet"), None);
        assert_eq!(
            PartFile::parse("part-t-p0-00000000000000000009-00000000000000000001.parquet"),
            None,
            "a reversed range is not a lake file"
        );
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

    #[test]
    fn a_compacted_file_supersedes_the_files_it_was_merged_from() {
        let names = vec![
            name(0, 9),
            name(10, 19),
            name(0, 19), // the compaction output of the two above
            name(20, 29),
            ".part-t-p0-00000000000000000000-00000000000000000029.parquet.tmp".to_owned(),
            "notes.txt".to_owned(),
        ];
        let (live, superseded) = live_files(names);
        assert_eq!(live, [name(0, 19), name(20, 29)]);
        assert_eq!(superseded, [name(0, 9), name(10, 19)]);
    }

    #[test]
    fn topic_partitions_are_independent() {
        let a = part("t", 0, 0, 100).file_name();
        let b = part("t", 1, 10, 20).file_name();
        let c = part("u", 0, 10, 20).file_name();
        let (live, superseded) = live_files([&a, &b, &c]);
        assert_eq!(live, [&a, &b, &c]);
        assert!(superseded.is_empty());
    }

    #[test]
    fn overlapping_files_that_do_not_contain_each_other_both_stay_live() {
        let (live, superseded) = live_files([name(0, 10), name(5, 15)]);
        assert_eq!(live, [name(0, 10), name(5, 15)]);
        assert!(superseded.is_empty());
        // Same first offset: the wider one wins, in either listing order.
        let (live, superseded) = live_files([name(0, 10), name(0, 30)]);
        assert_eq!((live, superseded), (vec![name(0, 30)], vec![name(0, 10)]));
        let (live, superseded) = live_files([name(5, 30), name(0, 30)]);
        assert_eq!((live, superseded), (vec![name(0, 30)], vec![name(5, 30)]));
    }

    /// One topic-partition: the writer cuts offsets `0..n` into consecutive files, the
    /// compactor repeatedly merges a run of consecutive live files into one file named by
    /// their union, and some superseded files get deleted. Whatever the listing holds,
    /// every offset is then in exactly one live file.
    /// (offsets, writer files, merges as (start, length) among live files, deletions).
    type History = (i64, Vec<(i64, i64)>, Vec<(usize, usize)>, Vec<bool>);

    fn lake_history() -> impl Strategy<Value = History> {
        (
            prop::collection::vec(1i64..20, 1..25),
            prop::collection::vec((0usize..30, 2usize..6), 0..10),
            prop::collection::vec(any::<bool>(), 60),
        )
            .prop_map(|(sizes, merges, deletes)| {
                let mut files = Vec::new();
                let mut next = 0;
                for s in sizes {
                    files.push((next, next + s - 1));
                    next += s;
                }
                (next, files, merges, deletes)
            })
    }

    proptest! {
        #[test]
        fn every_offset_is_in_exactly_one_live_file(
            (n, writer_files, merges, deletes) in lake_history()
        ) {
            let mut on_disk: Vec<(i64, i64)> = writer_files;
            for (start, len) in merges {
                let names: Vec<String> = on_disk.iter().map(|&(f, l)| name(f, l)).collect();
                let (live, _) = live_files(names);
                let live: Vec<PartFile> = live.iter().map(|s| PartFile::parse(s).unwrap()).collect();
                if live.len() < 2 {
                    break;
                }
                let start = start % live.len();
                let end = (start + len).min(live.len());
                if end - start < 2 {
                    continue;
                }
                let merged = (live[start].first_offset, live[end - 1].last_offset);
                prop_assert!(!on_disk.contains(&merged), "an output name is never taken");
                on_disk.push(merged);
            }
            // Delete some superseded files, as the compactor does after its grace period.
            let names: Vec<String> = on_disk.iter().map(|&(f, l)| name(f, l)).collect();
            let (_, superseded) = live_files(names.clone());
            let listing: Vec<String> = names
                .into_iter()
                .filter(|n| {
                    let i = superseded.iter().position(|s| s == n);
                    !i.is_some_and(|i| deletes[i % deletes.len()])
                })
                .collect();
            let (live, superseded) = live_files(listing.clone());
            prop_assert_eq!(live.len() + superseded.len(), listing.len());
            let live: Vec<PartFile> = live.iter().map(|s| PartFile::parse(s).unwrap()).collect();
            for offset in 0..n {
                let holders = live
                    .iter()
                    .filter(|p| p.first_offset <= offset && offset <= p.last_offset)
                    .count();
                prop_assert_eq!(holders, 1, "offset {} is in {} live files", offset, holders);
            }
            for s in &superseded {
                let s = PartFile::parse(s).unwrap();
                prop_assert!(live.iter().any(|l| l.contains(&s)));
            }
            for (i, a) in live.iter().enumerate() {
                for b in &live[i + 1..] {
                    prop_assert!(!a.contains(b) && !b.contains(a));
                }
            }
        }

        #[test]
        fn live_and_superseded_partition_the_lake_files(
            ranges in prop::collection::vec((0i32..2, 0i64..50, 0i64..20), 0..30)
        ) {
            let mut names: Vec<String> = ranges
                .iter()
                .map(|&(p, first, len)| part("t", p, first, first + len).file_name())
                .collect();
            names.sort();
            names.dedup();
            let (live, superseded) = live_files(names.clone());
            let mut all: Vec<String> = live.iter().chain(&superseded).cloned().collect();
            all.sort();
            prop_assert_eq!(&all, &names);
            let live: Vec<PartFile> = live.iter().map(|s| PartFile::parse(s).unwrap()).collect();
            for s in &superseded {
                let s = PartFile::parse(s).unwrap();
                prop_assert!(live.iter().any(|l| l.contains(&s)), "{:?} has no live container", s);
            }
            for (i, a) in live.iter().enumerate() {
                for b in &live[i + 1..] {
                    prop_assert!(!a.contains(b) && !b.contains(a));
                }
            }
        }
    }
}
