//! Which live files of a directory to merge: runs of consecutive small files of one
//! topic-partition, so an output's offset range never hides a file it does not hold.

use super::{CompactOptions, LakeFile, MAX_FAN_IN};
use std::collections::BTreeMap;

/// Which live files to merge: per topic-partition with more than `min_files` live
/// files, runs of consecutive small files (by offset) of at most `max_merge_bytes` and
/// `MAX_FAN_IN` files. Only consecutive live files may be merged: the output's range
/// would otherwise contain a file that is not in it, and hide that file's rows.
pub(super) fn plan<'a>(live: &'a [LakeFile], options: &CompactOptions) -> Vec<Vec<&'a LakeFile>> {
    let mut groups: BTreeMap<(&str, i32), Vec<&LakeFile>> = BTreeMap::new();
    for f in live {
        groups
            .entry((f.part.topic.as_str(), f.part.partition))
            .or_default()
            .push(f);
    }
    let large = options.max_merge_bytes / 2;
    let mut sets = Vec::new();
    for mut files in groups.into_values() {
        if files.len() <= options.min_files {
            continue;
        }
        files.sort_by_key(|f| f.part.first_offset);
        let mut run: Vec<&LakeFile> = Vec::new();
        let mut run_bytes = 0;
        for f in files {
            let full = run.len() == MAX_FAN_IN || run_bytes + f.size > options.max_merge_bytes;
            if f.size >= large || full {
                let done = std::mem::take(&mut run);
                if done.len() >= 2 {
                    sets.push(done);
                }
                run_bytes = 0;
            }
            if f.size < large {
                run_bytes += f.size;
                run.push(f);
            }
        }
        if run.len() >= 2 {
            sets.push(run);
        }
    }
    sets
}
