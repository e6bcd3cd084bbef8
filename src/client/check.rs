//! The reply check: the server owes one byte back for every byte sent, so the client knows the
//! whole reply in advance and can check it as it streams.
//!
//! What is sent is kept only until its echo has come back: each chunk read from the input is
//! posted here before it is written to the socket, shared with the writer rather than copied,
//! and its buffer goes back to a small pool once both are done with it. The pool bounds the
//! memory (`MAX_CHUNKS` buffers), however long the input.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::Duration;

use crate::echo::Mismatch;
use crate::echo::{self, Echo};

/// Buffers in flight at most. With 64 KiB buffers (what a read from a pipe gives), 16 MiB:
/// enough to keep the socket buffers of both hosts full, so that a server that stops reading
/// blocks a write (the clearer error) before it exhausts the pool.
const MAX_CHUNKS: usize = 256;

/// What the reply must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The echo of what was sent, byte for byte.
    Echo(Echo),
    /// Anything: no check.
    Any,
}

/// Input on its way to the server; its buffer returns to the pool when the last holder drops it.
pub struct Chunk {
    data: Vec<u8>,
    pool: Option<Sender<Vec<u8>>>,
}

impl Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            let _ = pool.send(std::mem::take(&mut self.data));
        }
    }
}

/// The sending side: buffers to read input into, and the record of what was sent.
pub struct Outbox {
    expect: Expect,
    posted: Sender<Arc<Chunk>>,
    sent: Arc<AtomicU64>,
    free: Receiver<Vec<u8>>,
    recycle: Sender<Vec<u8>>,
    allocated: usize,
    chunk_size: usize,
}

/// The receiving side: checks each piece of the reply against what was posted.
pub struct ReplyCheck {
    expect: Expect,
    posted: Receiver<Arc<Chunk>>,
    sent: Arc<AtomicU64>,
    current: Option<Arc<Chunk>>,
    offset: usize,
    confirmed: u64,
}

/// A connected pair for one exchange, reading input in buffers of `chunk_size`.
pub fn in_flight(expect: Expect, chunk_size: usize) -> (Outbox, ReplyCheck) {
    let (posted, to_check) = mpsc::channel();
    let (recycle, free) = mpsc::channel();
    let sent = Arc::new(AtomicU64::new(0));
    let outbox = Outbox {
        expect,
        posted,
        sent: Arc::clone(&sent),
        free,
        recycle,
        allocated: 0,
        chunk_size,
    };
    let check = ReplyCheck {
        expect,
        posted: to_check,
        sent,
        current: None,
        offset: 0,
        confirmed: 0,
    };
    (outbox, check)
}

impl Outbox {
    /// A buffer to read input into: a returned one, a new one while fewer than `MAX_CHUNKS`
    /// exist, or else the next to come back, once the server has echoed what it holds. That
    /// wait is what bounds the memory; with `timeout`, a server that echoes nothing for that
    /// long ends it (`Err`).
    pub fn buffer(&mut self, timeout: Option<Duration>) -> Result<Vec<u8>, RecvTimeoutError> {
        let mut buf = match self.free.try_recv() {
            Ok(buf) => buf,
            Err(_) if self.allocated < MAX_CHUNKS => {
                self.allocated += 1;
                Vec::new()
            }
            Err(_) => match timeout {
                Some(limit) => self.free.recv_timeout(limit)?,
                None => self
                    .free
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected)?,
            },
        };
        buf.resize(self.chunk_size, 0);
        Ok(buf)
    }

    /// Records the first `len` bytes of `buf` as sent, before they are written: a reply to them
    /// may arrive before the write returns. Returns the chunk to write from.
    pub fn post(&self, mut buf: Vec<u8>, len: usize) -> Arc<Chunk> {
        buf.truncate(len);
        let chunk = Arc::new(Chunk {
            data: buf,
            pool: Some(self.recycle.clone()),
        });
        self.sent.fetch_add(len as u64, Ordering::Relaxed);
        if self.expect != Expect::Any {
            let _ = self.posted.send(Arc::clone(&chunk));
        }
        chunk
    }

    /// Records a whole message as sent; it needs no pool.
    pub fn post_message(&self, message: Vec<u8>) -> Arc<Chunk> {
        let chunk = Arc::new(Chunk {
            data: message,
            pool: None,
        });
        self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if self.expect != Expect::Any {
            let _ = self.posted.send(Arc::clone(&chunk));
        }
        chunk
    }
}

impl ReplyCheck {
    /// Checks the next piece of the reply.
    pub fn check(&mut self, mut reply: &[u8]) -> Result<(), Mismatch> {
        let Expect::Echo(echo) = self.expect else {
            self.confirmed += reply.len() as u64;
            return Ok(());
        };
        while !reply.is_empty() {
            let chunk = match &self.current {
                Some(chunk) if self.offset < chunk.len() => Arc::clone(chunk),
                _ => match self.posted.try_recv() {
                    Ok(chunk) => {
                        self.offset = 0;
                        self.current.insert(chunk).clone()
                    }
                    // Everything sent is posted before it is written, so nothing posted means
                    // nothing sent.
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                        return Err(Mismatch::Longer { at: self.confirmed });
                    }
                },
            };
            let sent = &chunk[self.offset..];
            let n = sent.len().min(reply.len());
            echo::check(echo, &sent[..n], &reply[..n], self.confirmed)?;
            self.confirmed += n as u64;
            self.offset += n;
            reply = &reply[n..];
        }
        Ok(())
    }

    /// Bytes of the reply checked so far.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Bytes sent so far (or about to be: posted chunks count).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether the server still owes part of the echo.
    pub fn owed(&self) -> bool {
        self.checking() && self.confirmed < self.sent()
    }

    /// Whether the reply is checked at all.
    pub fn checking(&self) -> bool {
        self.expect != Expect::Any
    }
}

/// The pool's size, for tests: how many buffers were made.
#[cfg(test)]
impl Outbox {
    fn allocated(&self) -> usize {
        self.allocated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(outbox: &mut Outbox, data: &[u8]) -> Arc<Chunk> {
        let mut buf = outbox.buffer(None).unwrap();
        buf[..data.len()].copy_from_slice(data);
        outbox.post(buf, data.len())
    }

    #[test]
    fn a_reply_cut_anywhere_checks_out() {
        let (mut outbox, mut check) = in_flight(Expect::Echo(Echo::Uppercase), 8);
        drop(send(&mut outbox, b"hello, "));
        drop(send(&mut outbox, b"world"));
        for piece in [&b"HE"[..], b"LLO, WO", b"RLD"] {
            check.check(piece).unwrap();
        }
        assert_eq!(check.confirmed(), 12);
        assert!(!check.owed());
    }

    #[test]
    fn the_first_wrong_byte_is_named_with_its_position() {
        let (mut outbox, mut check) = in_flight(Expect::Echo(Echo::Uppercase), 16);
        drop(send(&mut outbox, b"abcdef"));
        check.check(b"AB").unwrap();
        let error = check.check(b"CdEF").unwrap_err();
        assert_eq!(
            error,
            Mismatch::Differs {
                at: 3,
                expected: b'D',
                got: b'd',
                echo: Echo::Uppercase,
                other_echo: false
            }
        );
        assert_eq!(
            error.to_string(),
            "the reply differs from the echo at byte 3: expected 'D', got 'd'"
        );
    }

    #[test]
    fn an_unchanged_echo_points_at_plain() {
        let (mut outbox, mut check) = in_flight(Expect::Echo(Echo::Uppercase), 16);
        drop(send(&mut outbox, b"ABc"));
        let error = check.check(b"ABc").unwrap_err();
        assert!(error.to_string().ends_with("(use --plain)"), "{error}");
        let (mut outbox, mut check) = in_flight(Expect::Echo(Echo::Plain), 16);
        drop(send(&mut outbox, b"ABc"));
        check.check(b"ABc").unwrap();
    }

    #[test]
    fn more_than_was_sent_is_a_mismatch() {
        let (mut outbox, mut check) = in_flight(Expect::Echo(Echo::Uppercase), 16);
        drop(send(&mut outbox, b"ab"));
        assert_eq!(check.check(b"ABC"), Err(Mismatch::Longer { at: 2 }));
    }

    #[test]
    fn an_unfinished_reply_is_still_owed() {
        let (mut outbox, mut check) = in_flight(Expect::Echo(Echo::Uppercase), 16);
        drop(send(&mut outbox, b"abcdef"));
        check.check(b"ABC").unwrap();
        assert!(check.owed());
        assert_eq!((check.confirmed(), check.sent()), (3, 6));
    }

    #[test]
    fn any_reply_checks_nothing_and_holds_nothing() {
        let (mut outbox, mut check) = in_flight(Expect::Any, 16);
        drop(send(&mut outbox, b"abc"));
        check.check(b"HTTP/1.1 400 Bad Request").unwrap();
        assert!(!check.owed());
    }

    #[test]
    fn buffers_are_reused_once_checked_and_written() {
        let (mut outbox, mut check) = in_flight(Expect::Echo(Echo::Uppercase), 4);
        for _ in 0..100 {
            drop(send(&mut outbox, b"abcd"));
            check.check(b"ABCD").unwrap();
        }
        assert!(outbox.allocated() <= 2, "{} buffers", outbox.allocated());
    }
}
