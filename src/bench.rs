//! The load generator: measures any echo server in one of three modes, checking every reply.

use std::io::{self, ErrorKind, IsTerminal, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;

use crate::cli::{BenchArgs, BenchMode};
use crate::client;
use crate::numbers::byte;
use crate::output::write_out;
use crate::stall;

/// Bounds every wait on the server, so a stalled server ends the run instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Length of the repeating test pattern; prime, so it drifts across every read and write size.
const PERIOD: usize = 251;
/// How far a request/response may run ahead of its reply, well inside the socket buffers, so
/// large requests cannot deadlock the way "write all, then read all" would.
const WINDOW: usize = 64 * 1024;
const READ_BUF: usize = 256 * 1024;
const WORKER_STACK: usize = 256 * 1024;

pub struct Options {
    pub host: String,
    pub port: u16,
    pub mode: BenchMode,
    pub connections: u32,
    pub size: usize,
    pub duration: Duration,
    pub plain: bool,
    pub json: bool,
}

impl From<BenchArgs> for Options {
    fn from(args: BenchArgs) -> Self {
        let default_size = if args.mode == BenchMode::Stream {
            64 * 1024
        } else {
            64
        };
        Options {
            host: args.host,
            port: args.port,
            mode: args.mode,
            connections: args.connections,
            size: args.size.map_or(default_size, |s| s as usize),
            duration: args.duration,
            plain: args.plain,
            json: args.json,
        }
    }
}

pub fn run(options: Options) -> Result<()> {
    let report = measure(&options)?;
    let text = if options.json {
        format!("{}\n", report.to_json(&options))
    } else {
        report.to_table(&options)
    };
    // A reader that went away (`| head -1`) has what it wanted; the exit status still tells.
    write_out(io::stdout().lock(), text.as_bytes())?;
    if report.errors > 0 {
        bail!(
            "{} errors during the run; first: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("unknown")
        );
    }
    Ok(())
}

/// What a run measured: operations are requests (rr), connections (connect) or writes (stream).
#[derive(Debug)]
pub struct Report {
    pub elapsed: Duration,
    pub operations: u64,
    pub sent: u64,
    pub received: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    latency: Option<Histogram<u64>>,
}

/// Shared counters, for the progress line.
#[derive(Default)]
struct Progress {
    operations: AtomicU64,
    received: AtomicU64,
}

/// What one worker saw.
struct Tally {
    operations: u64,
    sent: u64,
    received: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            operations: 0,
            sent: 0,
            received: 0,
            errors: 0,
            first_error: None,
            // Two significant digits (1%) keep each worker's histogram to a few KiB.
            latency: Histogram::new(2).expect("2 significant digits is a valid precision"),
        }
    }

    fn error(&mut self, error: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }

    /// One request (or connection) of `size` bytes each way, begun at `started`, went well.
    fn exchanged(&mut self, started: Instant, size: usize, progress: &Progress) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.sent += size as u64;
        self.received += size as u64;
        progress.operations.fetch_add(1, Ordering::Relaxed);
        progress.received.fetch_add(size as u64, Ordering::Relaxed);
        self.operations += 1;
        let _ = self.latency.record(nanos.max(1));
    }
}

/// The bytes a worker sends, and what the server must send back for them.
struct Pattern {
    /// `PERIOD`-periodic data, long enough that any slice of `len` can start at any phase.
    data: Vec<u8>,
    expected: Vec<u8>,
    plain: bool,
}

impl Pattern {
    fn new(len: usize, plain: bool) -> Self {
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

    fn send(&self, offset: u64, len: usize) -> &[u8] {
        &self.data[offset as usize % PERIOD..][..len]
    }

    fn expect(&self, offset: u64, len: usize) -> &[u8] {
        &self.expected[offset as usize % PERIOD..][..len]
    }
}

pub fn measure(options: &Options) -> Result<Report> {
    // Resolve and reach the server once: a server that is not there is one clear error, not
    // thousands, and workers connect to the address that worked without resolving again.
    let probe = client::connect(&options.host, options.port, IO_TIMEOUT)?;
    let addr = probe
        .peer_addr()
        .context("cannot read the server's address")?;
    drop(probe);

    let pattern_len = options.size.max(READ_BUF);
    let pattern = Pattern::new(pattern_len, options.plain);
    let progress = Progress::default();
    let started = Instant::now();
    let deadline = started + options.duration;
    let tallies = thread::scope(|scope| -> Result<Vec<Tally>> {
        let mut handles = Vec::new();
        for _ in 0..options.connections {
            let (pattern, progress) = (&pattern, &progress);
            let size = options.size;
            let work = move || match options.mode {
                BenchMode::Rr => request_response(addr, size, pattern, deadline, progress),
                BenchMode::Stream => stream(addr, size, pattern, deadline, progress),
                BenchMode::Connect => connect(addr, size, pattern, deadline, progress),
            };
            let handle = thread::Builder::new()
                .name("bench".into())
                .stack_size(WORKER_STACK)
                .spawn_scoped(scope, work)
                .context("cannot start a worker thread")?;
            handles.push(handle);
        }
        show_progress(&progress, started, deadline, &handles);
        Ok(handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panicked()))
            .collect())
    })?;
    let elapsed = started.elapsed();

    let mut report = Report {
        elapsed,
        operations: 0,
        sent: 0,
        received: 0,
        errors: 0,
        first_error: None,
        latency: None,
    };
    for tally in tallies {
        report.operations += tally.operations;
        report.sent += tally.sent;
        report.received += tally.received;
        report.errors += tally.errors;
        report.first_error = report.first_error.or(tally.first_error);
        match &mut report.latency {
            Some(total) => total
                .add(&tally.latency)
                .context("cannot merge latency histograms")?,
            None => report.latency = Some(tally.latency),
        }
    }
    if options.mode == BenchMode::Stream {
        report.latency = None;
    }
    Ok(report)
}

fn panicked() -> Tally {
    let mut tally = Tally::new();
    tally.error("a worker thread panicked");
    tally
}

/// Once a second, on a terminal only, while the workers run.
fn show_progress<T>(
    progress: &Progress,
    started: Instant,
    deadline: Instant,
    workers: &[thread::ScopedJoinHandle<'_, T>],
) {
    let mut stderr = io::stderr();
    if !stderr.is_terminal() {
        return;
    }
    let mut next = started + Duration::from_secs(1);
    while next < deadline && !workers.iter().all(|h| h.is_finished()) {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let secs = started.elapsed().as_secs_f64();
        let _ = write!(
            stderr,
            "\r{secs:5.1}s  {:>12} ops  {:>10.1} MiB received",
            progress.operations.load(Ordering::Relaxed),
            progress.received.load(Ordering::Relaxed) as f64 / MIB
        );
        next += Duration::from_secs(1);
    }
    let _ = write!(stderr, "\r{:60}\r", "");
}

fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Reads what is available and checks it against the pattern at `offset`. `Ok(0)` is EOF.
fn read_checked(
    mut stream: &TcpStream,
    buf: &mut [u8],
    pattern: &Pattern,
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
    let (got, expected) = (&buf[..n], pattern.expect(offset, n));
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
    let sent = pattern.send(offset, n);
    if got[..=at] == sent[..=at] && !pattern.plain {
        message += "; the server echoes unchanged (use --plain)";
    } else if pattern.plain && got[..=at] == sent[..=at].to_ascii_uppercase() {
        message += "; the server uppercases (drop --plain)";
    }
    Err(io::Error::new(ErrorKind::InvalidData, message))
}

/// A write with `IO_TIMEOUT` that made no progress: named for what it means.
fn stalled_write(e: io::Error) -> io::Error {
    if stall::is_timeout(&e) {
        io::Error::new(
            ErrorKind::TimedOut,
            format!("the server stopped reading for {IO_TIMEOUT:?}"),
        )
    } else {
        e
    }
}

fn unexpected_eof(received: u64) -> io::Error {
    io::Error::new(
        ErrorKind::UnexpectedEof,
        format!("server closed after {received} bytes"),
    )
}

fn request_response(
    addr: SocketAddr,
    size: usize,
    pattern: &Pattern,
    deadline: Instant,
    progress: &Progress,
) -> Tally {
    let mut tally = Tally::new();
    let mut buf = vec![0; READ_BUF.min(size.max(WINDOW))];
    let mut conn = None;
    while Instant::now() < deadline {
        let stream = match &conn {
            Some(stream) => stream,
            None => match open(addr) {
                Ok(stream) => conn.insert(stream),
                Err(e) => {
                    tally.error(format_args!("connect: {e}"));
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let started = Instant::now();
        match one_request(stream, size, pattern, &mut buf) {
            Ok(()) => tally.exchanged(started, size, progress),
            Err(e) => {
                tally.error(e);
                // Out of step with the server now: start over on a new connection.
                conn = None;
            }
        }
    }
    tally
}

/// One request of `size` bytes and its reply, sent at most `WINDOW` ahead of what came back.
fn one_request(
    stream: &TcpStream,
    size: usize,
    pattern: &Pattern,
    buf: &mut [u8],
) -> io::Result<()> {
    send_and_check(stream, size, pattern, buf, false)
}

/// Sends `size` bytes of the pattern and checks the `size`-byte reply, never more than `WINDOW`
/// ahead of it; `half_close` shuts our side down after the last byte.
fn send_and_check(
    stream: &TcpStream,
    size: usize,
    pattern: &Pattern,
    buf: &mut [u8],
    half_close: bool,
) -> io::Result<()> {
    let (mut sent, mut received) = (0, 0);
    while received < size {
        if sent < size && sent - received < WINDOW {
            let n = (size - sent).min(WINDOW - (sent - received));
            stall::write_all(stream, pattern.send(sent as u64, n), Some(IO_TIMEOUT))
                .map_err(stalled_write)?;
            sent += n;
            if half_close && sent == size {
                stream.shutdown(Shutdown::Write)?;
            }
            continue;
        }
        let want = (sent - received).min(buf.len());
        match read_checked(stream, &mut buf[..want], pattern, received as u64)? {
            0 => return Err(unexpected_eof(received as u64)),
            n => received += n,
        }
    }
    Ok(())
}

fn stream(
    addr: SocketAddr,
    size: usize,
    pattern: &Pattern,
    deadline: Instant,
    progress: &Progress,
) -> Tally {
    let mut tally = Tally::new();
    let conn = match open(addr) {
        Ok(stream) => stream,
        Err(e) => {
            tally.error(format_args!("connect: {e}"));
            return tally;
        }
    };
    let (writing, reading) = thread::scope(|scope| {
        let writer = thread::Builder::new()
            .name("bench-send".into())
            .stack_size(WORKER_STACK)
            .spawn_scoped(scope, || {
                let mut sent = 0u64;
                let mut writes = 0u64;
                let stream = &conn;
                let result = loop {
                    if Instant::now() >= deadline {
                        break stream.shutdown(Shutdown::Write);
                    }
                    if let Err(e) =
                        stall::write_all(stream, pattern.send(sent, size), Some(IO_TIMEOUT))
                    {
                        break Err(stalled_write(e));
                    }
                    sent += size as u64;
                    writes += 1;
                    progress.operations.fetch_add(1, Ordering::Relaxed);
                };
                (sent, writes, result)
            });
        let mut buf = vec![0; READ_BUF];
        let mut received = 0u64;
        let reading = loop {
            match read_checked(&conn, &mut buf, pattern, received) {
                Ok(0) => break Ok(received),
                Ok(n) => {
                    received += n as u64;
                    progress.received.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    // Unblock the writer, which may be stuck on a server that stopped reading.
                    let _ = conn.shutdown(Shutdown::Both);
                    break Err((received, e));
                }
            }
        };
        let writing = match writer {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| (0, 0, Err(io::Error::other("writer panicked")))),
            Err(e) => (0, 0, Err(e)),
        };
        (writing, reading)
    });
    let (sent, writes, write_result) = writing;
    tally.sent = sent;
    tally.operations = writes;
    match reading {
        Ok(received) if received == sent => tally.received = received,
        Ok(received) => {
            tally.received = received;
            tally.error(unexpected_eof(received));
        }
        Err((received, e)) => {
            tally.received = received;
            tally.error(e);
        }
    }
    if let Err(e) = write_result
        && tally.errors == 0
    {
        tally.error(format_args!("send: {e}"));
    }
    tally
}

fn connect(
    addr: SocketAddr,
    size: usize,
    pattern: &Pattern,
    deadline: Instant,
    progress: &Progress,
) -> Tally {
    let mut tally = Tally::new();
    let mut buf = vec![0; size.min(READ_BUF)];
    while Instant::now() < deadline {
        let started = Instant::now();
        match one_connection(addr, size, pattern, &mut buf) {
            Ok(()) => tally.exchanged(started, size, progress),
            Err(e) => tally.error(e),
        }
    }
    tally
}

/// Connect, send, half-close, read the reply to the server's close.
fn one_connection(
    addr: SocketAddr,
    size: usize,
    pattern: &Pattern,
    buf: &mut [u8],
) -> io::Result<()> {
    let stream = open(addr)?;
    send_and_check(&stream, size, pattern, buf, true)?;
    match read_checked(&stream, buf, pattern, size as u64)? {
        0 => Ok(()),
        _ => Err(io::Error::new(
            ErrorKind::InvalidData,
            "server sent more than it was sent",
        )),
    }
}

const MIB: f64 = 1024.0 * 1024.0;

impl Report {
    fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn quantile_micros(&self, q: f64) -> Option<f64> {
        self.latency.as_ref().filter(|h| !h.is_empty()).map(|h| {
            let nanos = match q {
                0.0 => h.min(),
                1.0 => h.max(),
                q => h.value_at_quantile(q),
            };
            nanos as f64 / 1000.0
        })
    }

    const QUANTILES: [(&'static str, f64); 6] = [
        ("min", 0.0),
        ("p50", 0.5),
        ("p90", 0.9),
        ("p99", 0.99),
        ("p99.9", 0.999),
        ("max", 1.0),
    ];

    pub fn to_json(&self, options: &Options) -> serde_json::Value {
        let mut latency = serde_json::Map::new();
        for (name, q) in Self::QUANTILES {
            if let Some(us) = self.quantile_micros(q) {
                latency.insert(name.replace('.', "_"), us.into());
            }
        }
        serde_json::json!({
            "mode": mode_name(options.mode),
            "connections": options.connections,
            "size": options.size,
            "seconds": self.elapsed.as_secs_f64(),
            "operations": self.operations,
            "operations_per_second": self.per_second(self.operations),
            "sent_mib_per_second": self.per_second(self.sent) / MIB,
            "received_mib_per_second": self.per_second(self.received) / MIB,
            "latency_us": latency,
            "errors": self.errors,
            "first_error": self.first_error,
        })
    }

    pub fn to_table(&self, options: &Options) -> String {
        let mut out = format!(
            "{} against {}:{}: {} connection{}, {} bytes, {:.1}s\n",
            mode_name(options.mode),
            options.host,
            options.port,
            options.connections,
            if options.connections == 1 { "" } else { "s" },
            options.size,
            self.elapsed.as_secs_f64()
        );
        let what = match options.mode {
            BenchMode::Rr => "requests",
            BenchMode::Stream => "writes",
            BenchMode::Connect => "connections",
        };
        out += &format!(
            "  {what:<12} {} ({:.0}/s)\n",
            self.operations,
            self.per_second(self.operations)
        );
        out += &format!(
            "  {:<12} sent {:.1} MiB/s, received {:.1} MiB/s\n",
            "throughput",
            self.per_second(self.sent) / MIB,
            self.per_second(self.received) / MIB
        );
        if self.quantile_micros(0.5).is_some() {
            let cells: Vec<String> = Self::QUANTILES
                .iter()
                .filter_map(|&(name, q)| {
                    self.quantile_micros(q)
                        .map(|us| format!("{name} {}", micros(us)))
                })
                .collect();
            out += &format!("  {:<12} {}\n", "latency", cells.join("  "));
        }
        out += &format!("  {:<12} {}\n", "errors", self.errors);
        out
    }
}

fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else {
        format!("{:.2}ms", us / 1000.0)
    }
}

fn mode_name(mode: BenchMode) -> &'static str {
    match mode {
        BenchMode::Rr => "rr",
        BenchMode::Stream => "stream",
        BenchMode::Connect => "connect",
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
