//! The echo itself: bytes in, ASCII-uppercased bytes out, over any `Read` and `Write`.

use std::io::{self, ErrorKind, Read, Write};
use std::time::Duration;

use crate::stall;

/// Buffer on the stack, enough for request/response traffic: an idle or chatty connection never
/// touches the heap, which keeps thousands of open connections cheap.
const SMALL: usize = 4 * 1024;
/// Buffer a bulk stream moves to once a read fills the small one.
const LARGE: usize = 64 * 1024;

/// Uppercases `a`-`z` and leaves every other byte (NUL, 0xFF, UTF-8 sequences) alone.
/// Being byte-wise, any cut of a stream into chunks gives the same output.
pub fn uppercase(bytes: &mut [u8]) {
    bytes.make_ascii_uppercase();
}

/// Why an echo stopped early: the side tells "peer idle" apart from "peer not reading".
#[derive(Debug)]
pub enum EchoError {
    Read(io::Error),
    Write(io::Error),
}

/// Echoes `input` to `output`, uppercased, until `input` ends.
///
/// Each read is written back in full before the next read, so a peer that sends a request and
/// waits (without closing) gets its reply. `echoed` counts what was written back, even when the
/// echo ends in an error. `write_timeout` is the output's own (a socket's `SO_SNDTIMEO`): a
/// write that waits that long without finishing is a stall (see `stall::write_all`).
pub fn echo(
    mut input: impl Read,
    mut output: impl Write,
    write_timeout: Option<Duration>,
    echoed: &mut u64,
) -> Result<(), EchoError> {
    let mut small = [0u8; SMALL];
    let mut large = Vec::new();
    loop {
        let buf: &mut [u8] = if large.is_empty() {
            &mut small
        } else {
            &mut large
        };
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
        if n == SMALL && large.is_empty() {
            large = vec![0; LARGE];
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
