//! How the benchmark tools end: an error is printed as one line with its causes
//! (`error: <what>: <cause>`), never with a backtrace, even when `RUST_BACKTRACE` is set
//! (a `main` returning `anyhow::Result` prints the error's captured backtrace then).

use std::process::ExitCode;

/// Exit status for `result`, printing its error chain to stderr.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
