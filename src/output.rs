//! Standard output of the tool subcommands. A reader that goes away before the end
//! (`labstream lag | head -1`, a `less` quit early) is not an error of the command: the
//! write fails with [`StdoutClosed`] inside its `io::Error`, the command stops there and
//! `main` exits quietly with 141, the status of a process ended by SIGPIPE, as `cat` or
//! `git log` would. `println!` would panic instead.

use std::io::{self, Write};

/// `println!` that returns the write's `io::Result` instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::output::stdout(), $($arg)*)
    }};
}

/// The reader of standard output has gone away (EPIPE).
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// The exit status when standard output was closed early: 128 + SIGPIPE.
pub(crate) const STDOUT_CLOSED_STATUS: u8 = 141;

/// Standard output whose broken-pipe errors carry [`StdoutClosed`].
pub(crate) fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

pub(crate) struct Stdout(io::StdoutLock<'static>);

fn mark(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}

/// Whether the command failed only because standard output was closed by its reader.
pub(crate) fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_stdout_is_recognised() {
        let closed = io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed);
        let e = anyhow::Error::new(closed).context("printing the lag");
        assert!(is_stdout_closed(&e));
        // A broken pipe elsewhere (a socket, a child process) is a real error.
        let other = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_stdout_closed(&other));
        let marked = mark(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_stdout_closed(&anyhow::Error::new(marked)));
        let unmarked = mark(io::Error::from(io::ErrorKind::WriteZero));
        assert!(!is_stdout_closed(&anyhow::Error::new(unmarked)));
    }
}
