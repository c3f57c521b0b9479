//! Crash points: a test hook that ends the process abruptly at a named point of a code
//! path whose recovery must be proven, e.g. between a write and the commit of its
//! offsets. The tests arm one point in one process with the environment variable
//! `LABSTREAM_CRASH_POINT=<name>` (or `<name>@<n>`: the n-th time the point is reached)
//! and check afterwards that the recovery path ran and nothing was lost or repeated.
//!
//! Compiled into every build, not behind a feature flag (per-component features are
//! what STYLE.md rules out, and the tests must crash the very binary users run): the
//! variable is read once per process, and an unarmed point costs one atomic load. When
//! armed, reaching the point prints one line to standard error and calls
//! `std::process::abort()`: no destructor runs, nothing is flushed or committed, Kafka
//! clients neither leave their group nor end their transaction, as in a crash.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that arms a crash point (a test hook; never set in production).
pub const CRASH_POINT_VAR: &str = "LABSTREAM_CRASH_POINT";

/// The armed point and the hit that crashes, read from the environment once.
static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn armed() -> &'static Option<(String, u64)> {
    ARMED.get_or_init(|| {
        let value = std::env::var(CRASH_POINT_VAR).ok()?;
        let (name, at) = match value.split_once('@') {
            Some((name, at)) => (name, at.parse().unwrap_or(1)),
            None => (value.as_str(), 1),
        };
        Some((name.to_owned(), at.max(1)))
    })
}

/// Aborts the process if `LABSTREAM_CRASH_POINT` names this point and this is the hit
/// it asks for; otherwise does nothing.
pub fn crash_point(name: &str) {
    let Some((armed, at)) = armed() else {
        return;
    };
    if armed != name {
        return;
    }
    let hit = HITS.fetch_add(1, Ordering::SeqCst) + 1;
    if hit == *at {
        eprintln!("crash point {name} reached (hit {hit}): aborting the process");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unarmed_or_other_point_does_nothing() {
        // The test process has no LABSTREAM_CRASH_POINT (or one naming another point).
        crash_point("schemas.test.never_armed");
        crash_point("schemas.test.never_armed");
    }
}
