//! Writing results to stdout, where the reader may go away at any time.

use std::io::{self, ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

/// Whether stdout still has a reader.
pub enum Output {
    Open,
    Closed,
}

/// Whether what was written to stdout so far ends mid-line.
static MID_LINE: AtomicBool = AtomicBool::new(false);

/// Writes to stdout; a reader that went away (`| head -c1`) is a normal end, not an error.
pub fn write_out(mut output: impl Write, bytes: &[u8]) -> Result<Output> {
    match output.write_all(bytes).and_then(|()| output.flush()) {
        Ok(()) => {
            if let Some(&last) = bytes.last() {
                MID_LINE.store(last != b'\n', Ordering::Relaxed);
            }
            Ok(Output::Open)
        }
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(Output::Closed),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

/// Before an error line: when stdout and stderr are the same terminal and the output so far
/// ends mid-line (`hello` with no newline), ends that line, so the error starts a line of its
/// own instead of running on (`helloerror: …`). Pipes and files are left byte-exact.
pub fn end_line_before_error() {
    if MID_LINE.load(Ordering::Relaxed) && crate::platform::stdout_and_stderr_share_a_terminal() {
        let _ = io::stdout()
            .write_all(b"\n")
            .and_then(|()| io::stdout().flush());
    }
}
