//! The bytes a worker sends, and the check of what comes back.

use std::io::{self, ErrorKind, Read};

use super::IO_TIMEOUT;
use crate::echo::{self, Echo};
use crate::link::Link;
use crate::stall;

/// Length of the repeating test pattern; prime, so it drifts across every read and write size.
const PERIOD: usize = 251;

/// The bytes a worker sends, and what the server must send back for them.
pub struct Pattern {
    /// `PERIOD`-periodic data, long enough that any slice of `len` can start at any phase.
    data: Vec<u8>,
    expected: Vec<u8>,
    echo: Echo,
}

impl Pattern {
    pub fn new(len: usize, echo: Echo) -> Self {
        // Lowercase letters, so an echo that forgets to uppercase is caught, plus every other
        // kind of byte, so one that mangles binary data is too.
        let data: Vec<u8> = (0..len + PERIOD)
            .map(|i| match i % PERIOD {
                p if p < 104 => b'a' + (p % 26) as u8,
                p => (p * 37 % 256) as u8,
            })
            .collect();
        let expected = data.iter().map(|&b| echo.of(b)).collect();
        Pattern {
            data,
            expected,
            echo,
        }
    }

    /// The echo the server is expected to give.
    pub fn echo(&self) -> Echo {
        self.echo
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
        mut stream: &dyn Link,
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
        // The common case is one comparison against the precomputed echo.
        if buf[..n] == *self.expect(offset, n) {
            return Ok(n);
        }
        echo::check(self.echo, self.send(offset, n), &buf[..n], offset)
            .map(|()| n)
            .map_err(|mismatch| io::Error::new(ErrorKind::InvalidData, mismatch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::Echo;

    #[test]
    fn pattern_holds_lowercase_and_binary_and_expects_uppercase() {
        let pattern = Pattern::new(1000, Echo::Uppercase);
        let sent = pattern.send(3, 600);
        assert!(sent.iter().any(u8::is_ascii_lowercase));
        assert!(sent.iter().any(|b| !b.is_ascii()));
        assert_eq!(pattern.expect(3, 600), sent.to_ascii_uppercase());
        assert_eq!(pattern.send(3 + PERIOD as u64, 600), sent, "periodic");
        let plain = Pattern::new(1000, Echo::Plain);
        assert_eq!(plain.expect(3, 600), plain.send(3, 600));
    }
}
