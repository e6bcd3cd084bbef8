//! The echo: what the echo of some bytes is (this server's uppercase, or RFC 862's unchanged
//! bytes), the server's echo loop over any `Read` and `Write`, and the one description of a
//! reply that is not the echo, for the client's check and bench's.

use std::io::{self, ErrorKind, Read, Write};
use std::time::Duration;

use crate::numbers::{printable_byte, thousands};
use crate::stall;

/// Buffer on the stack, enough for small requests: an idle or chatty connection never touches
/// the heap, and the buffer shares a page with the thread's other frames. (At 4 KiB it took a
/// page of its own: 13.8 KiB resident per idle connection, 9.8 KiB at this size.)
const SMALL: usize = 256;
/// A read that fills its buffer moves the connection to a bigger one on the heap, 16 times the
/// size, up to `LARGE`: a request of a few KiB gets 4 KiB, a bulk stream 128 KiB (iperf3's
/// block). Half the system calls of 64 KiB: one stream through loopback went 1.21x tokio's echo
/// against 1.09x (medians of 8 alternating rounds), for 64 KiB more on a connection that bulk
/// data has passed through.
const GROWTH: usize = 16;
const LARGE: usize = 128 * 1024;

/// Uppercases `a`-`z` and leaves every other byte (NUL, 0xFF, UTF-8 sequences) alone.
/// Being byte-wise, any cut of a stream into chunks gives the same output.
pub(crate) fn uppercase(bytes: &mut [u8]) {
    bytes.make_ascii_uppercase();
}

/// Which echo a server gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// This server's: ASCII uppercase.
    Uppercase,
    /// RFC 862's: the bytes unchanged.
    Plain,
}

impl Echo {
    /// The echo of one byte.
    pub(crate) fn of(self, sent: u8) -> u8 {
        match self {
            Echo::Uppercase => sent.to_ascii_uppercase(),
            Echo::Plain => sent,
        }
    }

    fn other(self) -> Echo {
        match self {
            Echo::Uppercase => Echo::Plain,
            Echo::Plain => Echo::Uppercase,
        }
    }
}

/// How a reply is not the echo of what was sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// The byte at `at` differs; `other_echo` if the reply so far is the other kind of echo
    /// (the commonest mistake: an uppercasing server measured with `--plain`, or the reverse).
    Differs {
        at: u64,
        expected: u8,
        got: u8,
        echo: Echo,
        other_echo: bool,
    },
    /// The reply went on past the `at` bytes that were sent.
    Longer { at: u64 },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Mismatch::Differs {
                at,
                expected,
                got,
                echo,
                other_echo,
            } => {
                write!(
                    f,
                    "the reply differs from the echo at byte {}: expected {}, got {}",
                    thousands(at),
                    printable_byte(expected),
                    printable_byte(got)
                )?;
                match (other_echo, echo) {
                    (false, _) => Ok(()),
                    (true, Echo::Uppercase) => {
                        f.write_str("; the server echoes unchanged (use --plain)")
                    }
                    (true, Echo::Plain) => f.write_str("; the server uppercases (drop --plain)"),
                }
            }
            Mismatch::Longer { at } => write!(
                f,
                "the reply is longer than the echo: more than the {} bytes sent",
                thousands(at)
            ),
        }
    }
}

impl std::error::Error for Mismatch {}

/// Checks that `reply` is the `echo` of `sent` (the same length), which began at byte `offset`
/// of the stream.
pub(crate) fn check(echo: Echo, sent: &[u8], reply: &[u8], offset: u64) -> Result<(), Mismatch> {
    let Some(i) = first_difference(echo, sent, reply) else {
        return Ok(());
    };
    let other = echo.other();
    Err(Mismatch::Differs {
        at: offset + i as u64,
        expected: echo.of(sent[i]),
        got: reply[i],
        echo,
        other_echo: sent[..=i]
            .iter()
            .zip(&reply[..=i])
            .all(|(&s, &r)| other.of(s) == r),
    })
}

/// Where `reply` first differs from the echo of `sent` (same length). Blocks of 64 bytes are
/// compared without branching, so the compiler can use vector instructions: a GiB goes by in a
/// fraction of the time the copy itself takes.
fn first_difference(echo: Echo, sent: &[u8], reply: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let block_differs = |s: &[u8], r: &[u8]| match echo {
        Echo::Uppercase => {
            s.iter()
                .zip(r)
                .fold(0, |acc, (s, r)| acc | (s.to_ascii_uppercase() ^ r))
                != 0
        }
        Echo::Plain => s != r,
    };
    let mut start = 0;
    for (s, r) in sent.chunks(BLOCK).zip(reply.chunks(BLOCK)) {
        if block_differs(s, r) {
            return s
                .iter()
                .zip(r)
                .position(|(&s, &r)| echo.of(s) != r)
                .map(|i| start + i);
        }
        start += s.len();
    }
    None
}

/// Why an echo stopped early: the side tells "peer idle" apart from "peer not reading".
#[derive(Debug)]
pub(crate) enum EchoError {
    Read(io::Error),
    Write(io::Error),
}

/// Echoes `input` to `output`, uppercased, until `input` ends.
///
/// Each read is written back in full before the next read, so a peer that sends a request and
/// waits (without closing) gets its reply. `echoed` counts what was written back, even when the
/// echo ends in an error. `write_timeout` is the output's own (a socket's `SO_SNDTIMEO`): a
/// write that waits that long without finishing is a stall (see `stall::write_all`).
pub(crate) fn echo(
    mut input: impl Read,
    mut output: impl Write,
    write_timeout: Option<Duration>,
    echoed: &mut u64,
) -> Result<(), EchoError> {
    let mut small = [0u8; SMALL];
    let mut heap = Vec::new();
    loop {
        let buf: &mut [u8] = if heap.is_empty() {
            &mut small
        } else {
            &mut heap
        };
        let room = buf.len();
        let n = match input.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(EchoError::Read(e)),
        };
        let chunk = &mut buf[..n];
        uppercase(chunk);
        stall::write_all(&mut output, chunk, write_timeout).map_err(EchoError::Write)?;
        *echoed += n as u64;
        if n == room && room < LARGE {
            heap = vec![0; room * GROWTH];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reader that hands out its data in the given chunk sizes, as a socket might.
    struct Chunked {
        data: Vec<u8>,
        pos: usize,
        cuts: Vec<usize>,
    }

    impl Read for Chunked {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let want = if self.cuts.is_empty() {
                usize::MAX
            } else {
                self.cuts.remove(0)
            };
            let n = want.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn only_ascii_letters_change() {
        let mut bytes = b"Hello, Server! \0\xff caf\xc3\xa9 z{".to_vec();
        uppercase(&mut bytes);
        assert_eq!(bytes, b"HELLO, SERVER! \0\xff CAF\xc3\xa9 Z{");
    }

    #[test]
    fn a_mismatch_names_its_position_and_the_other_kind_of_echo() {
        let error = check(Echo::Uppercase, b"abcdef", b"ABCdEF", 10).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the reply differs from the echo at byte 13: expected 'D', got 'd'"
        );
        let unchanged = check(Echo::Uppercase, b"abc", b"abc", 0).unwrap_err();
        assert!(
            unchanged.to_string().ends_with("(use --plain)"),
            "{unchanged}"
        );
        let uppercased = check(Echo::Plain, b"abc", b"ABC", 0).unwrap_err();
        assert!(
            uppercased.to_string().ends_with("(drop --plain)"),
            "{uppercased}"
        );
        assert_eq!(check(Echo::Plain, b"abc", b"abc", 0), Ok(()));
    }

    #[test]
    fn long_blocks_find_the_exact_position() {
        let sent = vec![b'x'; 1000];
        let mut reply = sent.to_ascii_uppercase();
        reply[777] = b'!';
        assert_eq!(first_difference(Echo::Uppercase, &sent, &reply), Some(777));
        let echo = sent.to_ascii_uppercase();
        assert_eq!(first_difference(Echo::Uppercase, &sent, &echo), None);
    }

    #[test]
    fn echo_counts_bytes_and_stops_at_end_of_input() {
        let mut out = Vec::new();
        let mut echoed = 0;
        echo(&b"abc"[..], &mut out, None, &mut echoed).unwrap();
        assert_eq!(out, b"ABC");
        assert_eq!(echoed, 3);
    }

    #[test]
    fn echo_reports_which_side_failed() {
        let mut echoed = 0;
        let closed: &mut [u8] = &mut [];
        let result = echo(&b"abc"[..], io::Cursor::new(closed), None, &mut echoed);
        assert!(matches!(result, Err(EchoError::Write(_))));
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_uppercase_of_the_whole(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            cuts in proptest::collection::vec(1usize..6_000, 0..20),
        ) {
            let mut out = Vec::new();
            let mut echoed = 0;
            echo(Chunked { data: data.clone(), pos: 0, cuts }, &mut out, None, &mut echoed).unwrap();
            prop_assert_eq!(echoed as usize, data.len());
            prop_assert_eq!(out, data.to_ascii_uppercase());
        }
    }
}
