//! One exchange with the server: the input goes out on one thread while this one copies the
//! reply to the output and checks it. Doing one after the other would deadlock once the data
//! outgrows the socket buffers.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use log::{debug, info};

use super::check::{self, Expect, Outbox, ReplyCheck};
use crate::link::Link;
use crate::numbers::thousands;
use crate::output::{Output, write_out};
use crate::{platform, stall};

/// Large copies: one syscall moves a lot, and a pipe of gigabytes costs few of them.
const COPY_BUF: usize = 256 * 1024;
/// Input is read in pieces of this size, each kept until its echo is back: a pipe hands out
/// at most this much per read anyway.
const CHUNK: usize = 64 * 1024;
/// When the server closes having echoed all that was sent, input that has waited this long
/// for more (a person at a terminal) is idle, and the exchange ended well; input that has more
/// to send by then was cut short.
const IDLE_INPUT: Duration = Duration::from_millis(50);
/// A message this small fits an empty socket's send buffer (16 KiB at least on Linux), so its
/// write cannot block on the reply and needs no thread of its own.
const INLINE_MESSAGE: usize = 8 * 1024;

/// What the client sends.
pub enum Input<R> {
    /// Bytes given on the command line, sent whole.
    Message(Vec<u8>),
    /// A stream read to its end (stdin).
    Stream(R),
}

impl Input<io::Chain<io::Cursor<Vec<u8>>, File>> {
    /// `input` (stdin) as one message when all of it is already there and small enough to go
    /// out without a thread (`printf hello |`, a short file); otherwise a stream, beginning with
    /// what was read to find out. A person at a terminal, or a producer still writing, is
    /// never waited for.
    pub fn at_hand(mut input: File) -> io::Result<Self> {
        let mut read = Vec::new();
        while read.len() <= INLINE_MESSAGE && platform::ready_to_read(&input) {
            let start = read.len();
            read.resize(INLINE_MESSAGE + 1, 0);
            let n = read_input(&mut input, &mut read[start..]);
            read.truncate(start + *n.as_ref().unwrap_or(&0));
            if n? == 0 {
                return Ok(Input::Message(read));
            }
        }
        Ok(Input::Stream(io::Cursor::new(read).chain(input)))
    }
}

/// One read of the input, retried when a signal interrupts it.
fn read_input(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Whether the reply was copied to the server's close (`true`) or stdout closed first (`false`).
///
/// The reply must be the echo of what was sent, as `expect` says: a reply that differs, ends
/// early or runs long is an error, after what arrived was written out. Returns as soon as the
/// server closes having echoed everything, even while the input is still open (a terminal, say).
/// With `timeout`, a write the server does not take in for that long is an error, and so is a
/// wait that long for the rest of the reply once all input is sent.
pub fn exchange<R: Read + Send + 'static, L: Link>(
    link: L,
    input: Input<R>,
    mut output: impl Write,
    timeout: Option<Duration>,
    expect: Expect,
) -> Result<bool> {
    if timeout.is_some() {
        link.socket()
            .set_write_timeout(timeout)
            .context("cannot set the write timeout")?;
    }
    let link = Arc::new(link);
    let (mut outbox, mut check) = check::in_flight(expect, CHUNK);
    let sending = Arc::new(Sending::new(timeout));
    match input {
        Input::Message(message) if message.len() <= INLINE_MESSAGE => {
            let chunk = outbox.post_message(message);
            sending.attempt(&*link, true, || link.send_last(&chunk, timeout));
            sending.lock().done = true;
        }
        input => {
            let sender = Sender {
                link: Arc::clone(&link),
                shared: Arc::clone(&sending),
            };
            thread::Builder::new()
                .name("send".into())
                .spawn(move || {
                    match input {
                        Input::Message(message) => {
                            sender.send_message(&outbox.post_message(message));
                        }
                        Input::Stream(input) => sender.send_stream(input, &mut outbox),
                    }
                    sender.shared.lock().done = true;
                })
                .context("cannot start the sending thread")?;
        }
    }
    let started = Instant::now();
    let received = receive(&*link, &mut output, timeout, &sending, &mut check);
    info!(
        "sent {} bytes, received {} bytes in {:.3} ms",
        thousands(check.sent()),
        thousands(check.confirmed()),
        started.elapsed().as_secs_f64() * 1e3
    );
    sending.outcome(received, &check)
}

/// The server reset the connection: where, in the reply.
fn reset(check: &ReplyCheck) -> anyhow::Error {
    anyhow!(
        "the server reset the connection after {} of {} bytes",
        thousands(check.confirmed()),
        thousands(check.sent())
    )
}

/// Copies the server's reply to `output`, checked, until the server closes.
fn receive(
    link: &impl Link,
    output: &mut impl Write,
    timeout: Option<Duration>,
    sending: &Sending,
    check: &mut ReplyCheck,
) -> Result<bool> {
    let stream = link.socket();
    if timeout.is_some() {
        stream
            .set_read_timeout(timeout)
            .context("cannot set the reply timeout")?;
    }
    let mut buf = vec![0; COPY_BUF];
    let mut last_data = Instant::now();
    loop {
        match link.receive(&mut buf) {
            Ok(0) => return server_closed(check, sending),
            Ok(n) => {
                last_data = Instant::now();
                // What arrived is written out even when it is wrong: the reader may want it.
                let verdict = check.check(&buf[..n]);
                if let Output::Closed = write_out(&mut *output, &buf[..n])? {
                    return Ok(false);
                }
                verdict?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if stall::is_timeout(&e) => {
                // The reply timeout only counts once everything is sent: before that, the server
                // may simply be waiting for a person still typing.
                let (Some(limit), Some(sent_at)) = (timeout, sending.lock().half_closed) else {
                    continue;
                };
                let waited = Instant::now() - sent_at.max(last_data);
                if waited >= limit {
                    bail!("no reply from the server for {limit:?}");
                }
                stream
                    .set_read_timeout(Some(limit - waited))
                    .context("cannot set the reply timeout")?;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(reset(check)),
            Err(e) => {
                return Err(match link.explain(&e) {
                    Some(why) => anyhow!(why),
                    None => anyhow::Error::new(e).context("cannot read from the server"),
                });
            }
        }
    }
}

/// The server closed: fine if it echoed everything and there is no more to send, or the input
/// is idle (a person at a terminal); otherwise the reply was cut short.
fn server_closed(check: &ReplyCheck, sending: &Sending) -> Result<bool> {
    if !check.checking() {
        return Ok(true);
    }
    loop {
        if check.owed() {
            bail!(
                "the server closed the connection after {} of {} bytes",
                thousands(check.confirmed()),
                thousands(check.sent())
            );
        }
        let state = sending.lock();
        let idle = state
            .waiting_for_input
            .is_some_and(|since| since.elapsed() >= IDLE_INPUT);
        // Half-closed: everything was sent (the sender may not have said it is done yet).
        if state.done || state.half_closed.is_some() || idle {
            return Ok(true);
        }
        drop(state);
        // Rare, and over within `IDLE_INPUT`: a poll is simpler than a wake-up per chunk.
        thread::sleep(Duration::from_millis(1));
    }
}

/// What the sending side tells the receiving side.
struct Sending {
    state: Mutex<SendState>,
    changed: Condvar,
    timeout: Option<Duration>,
}

#[derive(Default)]
struct SendState {
    /// A write to the socket is under way.
    writing: bool,
    /// The receiver is done and waits for that write to finish.
    awaited: bool,
    /// When everything was sent and our side shut down.
    half_closed: Option<Instant>,
    /// Our own input failed: the one sending error the receiver cannot see for itself.
    input_error: Option<io::Error>,
    /// A write made no progress for the whole timeout: the server stopped reading.
    stalled: bool,
    /// The server echoed nothing for the whole timeout while the window was full.
    silent: bool,
    /// Since when the sender waits for more input, while it does.
    waiting_for_input: Option<Instant>,
    /// The sender is finished, well or not.
    done: bool,
    /// A reset that a write saw first. The kernel reports a reset once, to whichever call asks
    /// first, so the receiver may then see only a plain end of stream.
    reset: Option<io::Error>,
}

impl Sending {
    fn new(timeout: Option<Duration>) -> Sending {
        Sending {
            state: Mutex::default(),
            changed: Condvar::new(),
            timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, SendState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one write to `stream` (`last`: the one that ends the input with a half-close) and
    /// records how it went. Returns whether it succeeded.
    fn attempt(
        &self,
        link: &impl Link,
        last: bool,
        write: impl FnOnce() -> io::Result<()>,
    ) -> bool {
        self.lock().writing = true;
        let result = write();
        let ok = result.is_ok();
        let mut state = self.lock();
        state.writing = false;
        match result {
            Ok(()) if last => state.half_closed = Some(Instant::now()),
            Ok(()) => {}
            Err(e) => {
                debug!("sending stopped: {e}");
                match e.kind() {
                    _ if stall::is_timeout(&e) && self.timeout.is_some() => {
                        state.stalled = true;
                        // Wake the receiver: the exchange is over.
                        let _ = link.socket().shutdown(Shutdown::Both);
                    }
                    ErrorKind::ConnectionReset => state.reset = Some(e),
                    _ => {}
                }
            }
        }
        // Only `outcome` ever waits, once, at the end: no wake-up syscall per chunk otherwise.
        if state.awaited {
            drop(state);
            self.changed.notify_all();
        }
        ok
    }

    /// The exchange's result, once the receiver is done, with what the sender saw.
    fn outcome(&self, received: Result<bool>, check: &ReplyCheck) -> Result<bool> {
        // A write under way on a connection the server closed ends at once, with or without an
        // error; the bound only keeps a server that half-closed but stopped reading from
        // holding us here.
        let deadline = Instant::now() + Duration::from_millis(200);
        let mut state = self.lock();
        state.awaited = true;
        while state.writing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if let Some(e) = state.input_error.take() {
            return Err(e).context("cannot read stdin");
        }
        let limit = self.timeout.unwrap_or_default();
        if state.stalled {
            return Err(anyhow!("the server stopped reading for {limit:?}"));
        }
        if state.silent {
            return Err(anyhow!("no reply from the server for {limit:?}"));
        }
        match (received, state.reset.take()) {
            (Ok(false), _) => Ok(false),
            (_, Some(_)) => Err(reset(check)),
            (received, None) => received,
        }
    }
}

/// The sending half: input to socket, then a half-close so the server knows we are done.
struct Sender<L> {
    link: Arc<L>,
    shared: Arc<Sending>,
}

impl<L: Link> Sender<L> {
    fn send_message(&self, message: &[u8]) {
        self.shared.attempt(&*self.link, true, || {
            self.link
                .send(message, self.shared.timeout)
                .and_then(|()| self.link.finish())
        });
    }

    fn send_stream(&self, mut input: impl Read, outbox: &mut Outbox) {
        loop {
            let mut buf = match outbox.buffer(self.shared.timeout) {
                Ok(buf) => buf,
                Err(RecvTimeoutError::Timeout) => {
                    self.shared.lock().silent = true;
                    let _ = self.link.socket().shutdown(Shutdown::Both);
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            self.shared.lock().waiting_for_input = Some(Instant::now());
            let read = read_input(&mut input, &mut buf);
            self.shared.lock().waiting_for_input = None;
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    self.shared.lock().input_error = Some(e);
                    // Wake the receiver so the error is reported now, not at the server's
                    // leisure.
                    let _ = self.link.socket().shutdown(Shutdown::Both);
                    return;
                }
            };
            if n == 0 {
                break;
            }
            let chunk = outbox.post(buf, n);
            if !self.shared.attempt(&*self.link, false, || {
                self.link.send(&chunk, self.shared.timeout)
            }) {
                return;
            }
        }
        self.shared
            .attempt(&*self.link, true, || self.link.finish());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `len` bytes, as stdin would be given with `<`.
    fn input_of(len: usize, name: &str) -> (std::path::PathBuf, Vec<u8>) {
        let path = std::env::temp_dir().join(format!("tcpdemo-{name}-{}", std::process::id()));
        let bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    #[test]
    fn input_already_at_hand_goes_out_whole_without_a_thread() {
        let (path, bytes) = input_of(INLINE_MESSAGE, "whole");
        let input = Input::at_hand(File::open(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        match input {
            Input::Message(message) => assert_eq!(message, bytes),
            Input::Stream(_) => panic!("a short input that had ended was streamed"),
        }
    }

    #[test]
    fn longer_input_streams_and_loses_nothing_read_to_find_out() {
        let (path, bytes) = input_of(3 * INLINE_MESSAGE + 7, "long");
        let input = Input::at_hand(File::open(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        match input {
            Input::Stream(mut stream) => {
                let mut read = Vec::new();
                stream.read_to_end(&mut read).unwrap();
                assert_eq!(read, bytes);
            }
            Input::Message(_) => panic!("more than a message's worth went out as one"),
        }
    }
}
