//! The client: sends a message or stdin to the server while it copies the reply to stdout.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use log::debug;

use crate::addr;

/// Used for each address tried when `--timeout` is not given.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Large copies: one syscall moves a lot, and a pipe of gigabytes costs few of them.
const COPY_BUF: usize = 256 * 1024;
/// A message this small fits an empty socket's send buffer (16 KiB at least on Linux), so its
/// write cannot block on the reply and needs no thread of its own.
const INLINE_MESSAGE: usize = 8 * 1024;

pub struct Options {
    pub host: String,
    pub port: u16,
    pub timeout: Option<Duration>,
    /// `None` streams stdin.
    pub message: Option<Vec<u8>>,
}

pub fn run(options: Options) -> Result<()> {
    let stream = connect(
        &options.host,
        options.port,
        options.timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
    )?;
    // Unbuffered handles on fd 0 and 1: std's stdout would flush per line, its stdin copies twice.
    let stdout = File::from(
        io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot open stdout")?,
    );
    match options.message {
        Some(message) => {
            // Like echo: the reply gets a newline, unless stdout closed before the reply ended.
            let finished = if message.len() <= INLINE_MESSAGE {
                exchange_small(stream, &message, &stdout, options.timeout)?
            } else {
                exchange(stream, io::Cursor::new(message), &stdout, options.timeout)?
            };
            if finished {
                write_out(&stdout, b"\n")?;
            }
        }
        None => {
            let stdin = File::from(
                io::stdin()
                    .as_fd()
                    .try_clone_to_owned()
                    .context("cannot open stdin")?,
            );
            exchange(stream, stdin, &stdout, options.timeout)?;
        }
    }
    Ok(())
}

/// Connects to the first address of `host` that accepts, each attempt bounded by `timeout`.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let shown = addr::show(host, port);
    let addrs = addr::resolve(host, port)?;
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                debug!("connected to {addr}");
                // Small writes go out at once instead of waiting for the previous one's ACK.
                stream
                    .set_nodelay(true)
                    .with_context(|| format!("cannot configure the connection to {shown}"))?;
                return Ok(stream);
            }
            Err(e) => {
                debug!("cannot connect to {addr}: {e}");
                last_error = Some(e);
            }
        }
    }
    match last_error {
        Some(e) => Err(e).with_context(|| format!("cannot connect to {shown}")),
        None => Err(anyhow!("cannot connect to {shown}: no addresses")),
    }
}

/// Whether the reply was copied to the server's close (`true`) or stdout closed first (`false`).
///
/// `input` is copied to the server on a thread of its own, which half-closes at its end, while
/// this thread copies the reply to `output`: doing one after the other deadlocks once the data
/// outgrows the socket buffers. Returns as soon as the server closes, even while `input` is still
/// open (a terminal, say).
pub fn exchange(
    stream: TcpStream,
    input: impl Read + Send + 'static,
    mut output: impl Write,
    timeout: Option<Duration>,
) -> Result<bool> {
    let sender = Sender {
        stream: stream
            .try_clone()
            .context("cannot duplicate the connection")?,
        shared: Arc::default(),
    };
    let shared = Arc::clone(&sender.shared);
    thread::Builder::new()
        .name("send".into())
        .spawn(move || sender.run(input))
        .context("cannot start the sending thread")?;
    let received = receive(&stream, &mut output, timeout, &shared);
    shared.outcome(received)
}

/// `exchange` for a message of at most `INLINE_MESSAGE` bytes: one thread, sooner done.
fn exchange_small(
    stream: TcpStream,
    message: &[u8],
    mut output: impl Write,
    timeout: Option<Duration>,
) -> Result<bool> {
    let shared = Sending::default();
    shared.attempt(true, || {
        (&stream)
            .write_all(message)
            .and_then(|()| stream.shutdown(Shutdown::Write))
    });
    let received = receive(&stream, &mut output, timeout, &shared);
    shared.outcome(received)
}

/// Copies the server's reply to `output` until the server closes.
fn receive(
    mut stream: &TcpStream,
    output: &mut impl Write,
    timeout: Option<Duration>,
    sending: &Sending,
) -> Result<bool> {
    if timeout.is_some() {
        stream
            .set_read_timeout(timeout)
            .context("cannot set the reply timeout")?;
    }
    let mut buf = vec![0; COPY_BUF];
    let mut last_data = Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                last_data = Instant::now();
                if let Output::Closed = write_out(&mut *output, &buf[..n])? {
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // The timeout only counts once everything is sent: before that, the server may
                // simply be waiting for a person still typing.
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
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Err(e).context("connection reset by the server");
            }
            Err(e) => return Err(e).context("cannot read from the server"),
        }
    }
}

enum Output {
    Open,
    Closed,
}

/// Writes to stdout; a reader that went away (`| head -c1`) is a normal end, not an error.
fn write_out(mut output: impl Write, bytes: &[u8]) -> Result<Output> {
    match output.write_all(bytes) {
        Ok(()) => Ok(Output::Open),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(Output::Closed),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

/// What the sending side tells the receiving side.
#[derive(Default)]
struct Sending {
    state: Mutex<SendState>,
    changed: Condvar,
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
    /// A reset that a write saw first. The kernel reports a reset once, to whichever call asks
    /// first, so the receiver may then see only a plain end of stream.
    reset: Option<io::Error>,
}

impl Sending {
    fn lock(&self) -> MutexGuard<'_, SendState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one write to the socket (`last`: the half-close that ends the input) and records how
    /// it went. Returns whether it succeeded.
    fn attempt(&self, last: bool, write: impl FnOnce() -> io::Result<()>) -> bool {
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
                if e.kind() == ErrorKind::ConnectionReset {
                    state.reset = Some(e);
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
    fn outcome(&self, received: Result<bool>) -> Result<bool> {
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
        match (received, state.reset.take()) {
            (Ok(true), Some(e)) => Err(e).context("connection reset by the server"),
            (received, _) => received,
        }
    }
}

/// The sending half: input to socket, then a half-close so the server knows we are done.
struct Sender {
    stream: TcpStream,
    shared: Arc<Sending>,
}

impl Sender {
    fn run(self, mut input: impl Read) {
        let mut buf = vec![0; COPY_BUF];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.shared.lock().input_error = Some(e);
                    // Wake the receiver so the error is reported now, not at the server's leisure.
                    let _ = self.stream.shutdown(Shutdown::Both);
                    return;
                }
            };
            if !self
                .shared
                .attempt(false, || (&self.stream).write_all(&buf[..n]))
            {
                return;
            }
        }
        self.shared
            .attempt(true, || self.stream.shutdown(Shutdown::Write));
    }
}
