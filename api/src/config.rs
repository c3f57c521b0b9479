//! `[query]` settings: the limits every SQL query runs under, so that one query can fail
//! but never take the process (or the other queries) down with it.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Memory one query may hold for sorts, aggregations, joins and buffers (its own
    /// pool; nothing spills to disk). Past it the query fails with 400 `memory_limit`.
    pub max_memory_bytes: usize,
    /// Longest a query may run, from planning to its last row (504 `timeout`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Queries running at once; more get 429 with Retry-After. With `max_memory_bytes`
    /// this bounds the memory all queries take together.
    pub max_concurrent: usize,
    /// Memory the engine keeps, across queries, for the Parquet footers (with page
    /// indexes) of the lake's files, so that a query does not read and parse every
    /// file's footer again; plus a quarter of it each for per-file statistics and bloom
    /// filters (with which a query leaves out files that cannot hold the ids it asks for
    /// without opening them). Least recently used entries go first; 0 turns the caches
    /// off. Uncompacted lakes (many small
    /// files) need the most: the default holds all 8,064 footers of the query
    /// benchmark's 10-million-sample lake.
    pub metadata_cache_bytes: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            max_memory_bytes: 512 * 1024 * 1024,
            timeout: Duration::from_secs(60),
            max_concurrent: 4,
            metadata_cache_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Below this a query cannot even hold one batch of a sort.
const MIN_MEMORY_BYTES: usize = 1024 * 1024;

impl QueryConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_memory_bytes < MIN_MEMORY_BYTES {
            return Err(Error::Config(format!(
                "query.max_memory_bytes must be at least {MIN_MEMORY_BYTES} (1 MiB)"
            )));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config("query.timeout must be more than 0s".into()));
        }
        if self.max_concurrent == 0 {
            return Err(Error::Config(
                "query.max_concurrent must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// `536870912` -> "512 MiB", for error messages.
pub(crate) fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_validated_and_sizes_read_well() {
        assert!(QueryConfig::default().validate().is_ok());
        for bad in [
            QueryConfig {
                max_memory_bytes: 1000,
                ..Default::default()
            },
            QueryConfig {
                timeout: Duration::ZERO,
                ..Default::default()
            },
            QueryConfig {
                max_concurrent: 0,
                ..Default::default()
            },
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(": query."), "{e}");
        }
        assert_eq!(human_bytes(512 * 1024 * 1024), "512 MiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(human_bytes(100), "100 bytes");
    }
}
