//! The bytes a worker sends, and the check of what comes back.

use std::io::{self, ErrorKind, Read};
use std::net::TcpStream;

use super::IO_TIMEOUT;
use crate::numbers::byte;
use crate::stall;

/// Length of the repeating test pattern; prime, so it drifts across every read and write size.
const PERIOD: usize = 251;

/// The bytes a worker sends, and what the server must send back for them.
pub struct Pattern {
    /// `PERIOD`-periodic data, long enough that any slice of `len` can start at any phase.
    data: Vec<u8>,
    expected: Vec<u8>,
    plain: bool,
}

impl Pattern {
    pub fn new(len: usize, plain: bool) -> Self {
        // Lowercase letters, so an echo that forgets to uppercase is caught, plus every other
        // kind of byte, so one that mangles binary data is too.
        let data: Vec<u8> = (0..len + PERIOD)
            .map(|i| match i % PERIOD {
                p if p < 104 => b'a' + (p % 26) as u8,
                p => (p * 37 % 256) as u8,
            })
            .collect();
        let expected = if plain {
            data.clone()
        } else {
            data.to_ascii_uppercase()
        };
        Pattern {
            data,
            expected,
            plain,
        }
    }

    pub fn send(&self, offset: u64, len: usize) -> &[u8] {
        &self.data[offset as usize % PERIOD..][..len]
    }

    pub fn expect(&self, offset: u64, len: usize) -> &[u8] {
        &self.expected[offset as usize % PERIOD..][..len]
    }

    /// Reads what is available and checks it against the pattern at `offset`. `Ok(0)` is EOF.
    pub fn read_checked(
        &self,
        mut stream: &TcpStream,
        buf: &mut [u8],
        offset: u64,
    ) -> io::Result<usize> {
        let n = loop {
            match stream.read(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if stall::is_timeout(&e) => {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        format!("no reply from the server for {IO_TIMEOUT:?}"),
                    ));
                }
                other => break other?,
            }
        };
        let (got, expected) = (&buf[..n], self.expect(offset, n));
        if got == expected {
            return Ok(n);
        }
        let at = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let mut message = format!(
            "wrong byte in reply at offset {}: expected {}, got {}",
            offset + at as u64,
            byte(expected[at]),
            byte(got[at])
        );
        // The commonest mistake: an echo server of the other kind.
        let sent = self.send(offset, n);
        if got[..=at] == sent[..=at] && !self.plain {
            message += "; the server echoes unchanged (use --plain)";
        } else if self.plain && got[..=at] == sent[..=at].to_ascii_uppercase() {
            message += "; the server uppercases (drop --plain)";
        }
        Err(io::Error::new(ErrorKind::InvalidData, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_holds_lowercase_and_binary_and_expects_uppercase() {
        let pattern = Pattern::new(1000, false);
        let sent = pattern.send(3, 600);
        assert!(sent.iter().any(u8::is_ascii_lowercase));
        assert!(sent.iter().any(|b| !b.is_ascii()));
        assert_eq!(pattern.expect(3, 600), sent.to_ascii_uppercase());
        assert_eq!(pattern.send(3 + PERIOD as u64, 600), sent, "periodic");
        let plain = Pattern::new(1000, true);
        assert_eq!(plain.expect(3, 600), plain.send(3, 600));
    }
}
