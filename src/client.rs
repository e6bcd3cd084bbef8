//! The client: sends a message or stdin to the server while it copies the reply to stdout.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use log::debug;

/// Used for each address tried when `--timeout` is not given.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Large copies: one syscall moves a lot, and a pipe of gigabytes costs few of them.
const COPY_BUF: usize = 256 * 1024;

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
            if exchange(stream, io::Cursor::new(message), &stdout, options.timeout)? {
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
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let shown = if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    };
    let addrs = (bare, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?;
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
        half_closed: Arc::default(),
        input_error: Arc::default(),
    };
    let half_closed = Arc::clone(&sender.half_closed);
    let input_error = Arc::clone(&sender.input_error);
    thread::Builder::new()
        .name("send".into())
        .spawn(move || sender.run(input))
        .context("cannot start the sending thread")?;

    let received = receive(&stream, &mut output, timeout, &half_closed);
    if let Some(e) = input_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        return Err(e).context("cannot read stdin");
    }
    received
}

/// Copies the server's reply to `output` until the server closes.
fn receive(
    mut stream: &TcpStream,
    output: &mut impl Write,
    timeout: Option<Duration>,
    half_closed: &OnceLock<Instant>,
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
                let (Some(limit), Some(&sent_at)) = (timeout, half_closed.get()) else {
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

/// The sending half: input to socket, then a half-close so the server knows we are done.
struct Sender {
    stream: TcpStream,
    half_closed: Arc<OnceLock<Instant>>,
    /// A failure to read our own input: the only sending error the receiver cannot see for
    /// itself (a broken connection shows on the reading side too).
    input_error: Arc<Mutex<Option<io::Error>>>,
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
                    *self
                        .input_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(e);
                    // Wake the receiver so the error is reported now, not at the server's leisure.
                    let _ = self.stream.shutdown(Shutdown::Both);
                    return;
                }
            };
            if let Err(e) = (&self.stream).write_all(&buf[..n]) {
                debug!("sending stopped: {e}");
                return;
            }
        }
        if let Err(e) = self.stream.shutdown(Shutdown::Write) {
            debug!("cannot half-close: {e}");
        }
        let _ = self.half_closed.set(Instant::now());
    }
}
