//! Writes to a peer that may stop reading, bounded by the socket's write timeout.
//!
//! With a write timeout set, a blocking write that waited the whole timeout returns whatever
//! little room opened meanwhile (Linux hands back a few KiB as the receiver's buffer is
//! compacted), so `write_all` would wait the timeout again and again for a peer that has
//! stopped reading. Here a write that waited the whole timeout and still could not finish is a
//! stall, whatever it managed.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `write_all`, except that a write that blocks for `timeout` (the socket's write timeout)
/// without finishing fails with `TimedOut`.
pub fn write_all(mut out: impl Write, mut buf: &[u8], timeout: Option<Duration>) -> io::Result<()> {
    while !buf.is_empty() {
        match write_some(&mut out, &[IoSlice::new(buf)], timeout)? {
            0 => return Err(ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// One gathering write of `bufs`, retried if interrupted: what it wrote, or `TimedOut` if it
/// blocked for the whole `timeout` and still fell short.
pub fn write_some(
    mut out: impl Write,
    bufs: &[IoSlice<'_>],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    loop {
        // Without a timeout there is nothing to time: the data path pays for no clock.
        let started = timeout.map(|t| (Instant::now(), t));
        match out.write_vectored(bufs) {
            Ok(n) if n < total && started.is_some_and(|(at, t)| at.elapsed() >= t) => {
                return Err(io::Error::new(ErrorKind::TimedOut, "peer stopped reading"));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// One read from `stream` that returns by `deadline`: a request that must arrive whole within a
/// time (a PROXY header, a health check) is bounded as a whole, not read by read, so a peer
/// that trickles a byte at a time cannot hold it open. `TimedOut` once the deadline passed.
pub fn read_by(mut stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(ErrorKind::TimedOut.into()),
            other => return other,
        }
    }
}

/// Whether an error is a timeout, as systems report them (`EAGAIN` on Unix, `TimedOut`
/// elsewhere).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `per_write` bytes a call, each call taking `delay`.
    struct Slow {
        per_write: usize,
        delay: Duration,
        taken: Vec<u8>,
    }

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(self.delay);
            let n = buf.len().min(self.per_write);
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_that_waited_the_whole_timeout_and_fell_short_is_a_stall() {
        let mut slow = Slow {
            per_write: 2,
            delay: Duration::from_millis(30),
            taken: Vec::new(),
        };
        let error = write_all(&mut slow, b"abcdef", Some(Duration::from_millis(20))).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::TimedOut);
        assert_eq!(slow.taken, b"ab");
    }

    #[test]
    fn quick_partial_writes_are_progress() {
        let mut fast = Slow {
            per_write: 2,
            delay: Duration::ZERO,
            taken: Vec::new(),
        };
        write_all(&mut fast, b"abcdef", Some(Duration::from_secs(5))).unwrap();
        assert_eq!(fast.taken, b"abcdef");
    }
}
