//! Writing results to stdout, where the reader may go away at any time.

use std::io::{ErrorKind, Write};

use anyhow::{Context, Result};

/// Whether stdout still has a reader.
pub enum Output {
    Open,
    Closed,
}

/// Writes to stdout; a reader that went away (`| head -c1`) is a normal end, not an error.
pub fn write_out(mut output: impl Write, bytes: &[u8]) -> Result<Output> {
    match output.write_all(bytes).and_then(|()| output.flush()) {
        Ok(()) => Ok(Output::Open),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(Output::Closed),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}
