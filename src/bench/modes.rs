//! The three things bench does to a server, one worker each: request/response (`rr`), a
//! stream both ways (`stream`), and a new connection per request (`connect`).

use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;
use super::pacing::Schedule;
use super::pattern::Pattern;
use super::recording::{Recording, Timing};
use crate::echo::Mismatch;
use crate::link::{Link, TlsLink};
use crate::numbers::thousands;
use crate::{platform, stall, tls};
use socket2::{Domain, Protocol, Socket, Type};

/// How far a request may run ahead of its reply, well inside the socket buffers, so large
/// requests cannot deadlock the way "write all, then read all" would.
const WINDOW: usize = 64 * 1024;
pub const READ_BUF: usize = 256 * 1024;
pub const WORKER_STACK: usize = 256 * 1024;
/// After a failure a worker waits before it tries again, doubling up to `MAX_BACKOFF`, so a
/// server that is down is not hammered (an error every 10 ms per connection, before).
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Shared counters, for the progress line and the connections open at once.
#[derive(Default)]
pub struct Progress {
    pub operations: AtomicU64,
    pub received: AtomicU64,
    /// Connections open now, and the most that were open at once.
    pub open: AtomicU64,
    pub peak_open: AtomicU64,
    /// `--mode hold`: how the opening went and how many were open at the end.
    pub held: std::sync::Mutex<Option<super::hold::Held>>,
}

/// A connection counted in `Progress::open` while it lives.
struct Conn<'a> {
    link: Box<dyn Link>,
    progress: &'a Progress,
}

impl<'a> Conn<'a> {
    fn new(link: Box<dyn Link>, progress: &'a Progress) -> Conn<'a> {
        let open = progress.open.fetch_add(1, Ordering::Relaxed) + 1;
        progress.peak_open.fetch_max(open, Ordering::Relaxed);
        Conn { link, progress }
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = dyn Link;
    fn deref(&self) -> &dyn Link {
        &*self.link
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        self.progress.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How an open-loop worker ended against its schedule.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lag {
    /// How far behind its schedule it was when the run ended.
    pub behind: Duration,
    /// Operations due before the end that it never sent.
    pub unsent: u64,
}

/// What every worker of a run shares.
pub struct Run<'a> {
    pub addr: SocketAddr,
    pub size: usize,
    pub pattern: &'a Pattern,
    /// When the workers started: the open loop's schedule starts here.
    pub start: Instant,
    pub deadline: Instant,
    pub stop: &'a AtomicBool,
    pub recording: &'a Recording,
    pub progress: &'a Progress,
    /// `--rate`: operations per second in all.
    pub rate: Option<f64>,
    pub workers: u32,
    /// `--tls`: every connection starts with a handshake.
    pub tls: Option<Arc<tls::Client>>,
}

impl Run<'_> {
    pub(super) fn going(&self) -> bool {
        Instant::now() < self.deadline && !self.stop.load(Ordering::Relaxed)
    }

    /// The end of the run, or sooner on a stop request.
    fn until(&self) -> Instant {
        if self.stop.load(Ordering::Relaxed) {
            Instant::now()
        } else {
            self.deadline
        }
    }

    /// When the next operation is due: now in a closed loop, on schedule in an open one;
    /// `None` once the run is over.
    pub(super) fn next_due(&self, schedule: &mut Option<Schedule>) -> Option<Instant> {
        match schedule {
            Some(schedule) => schedule.next(self.deadline, &|| self.stop.load(Ordering::Relaxed)),
            None => self.going().then(Instant::now),
        }
    }

    /// Where a worker ended against its schedule.
    pub(super) fn lag(&self, schedule: &Option<Schedule>) -> Lag {
        let Some(schedule) = schedule else {
            return Lag::default();
        };
        let end = self.until().min(Instant::now());
        Lag {
            behind: schedule.behind(end),
            unsent: schedule.unsent(end),
        }
    }

    pub(super) fn schedule(&self, worker: u32) -> Option<Schedule> {
        self.rate
            .map(|rate| Schedule::new(self.start, worker, self.workers, rate))
    }

    pub(super) fn done(&self, worker: u32, due: Instant, sent: Instant) {
        let done = Instant::now();
        self.recording
            .ok(worker as usize, Timing { due, sent, done }, self.size);
        self.progress.operations.fetch_add(1, Ordering::Relaxed);
        self.progress
            .received
            .fetch_add(self.size as u64, Ordering::Relaxed);
    }

    /// Records a failure and waits before the next try, longer after each failure in a row.
    pub(super) fn failed(&self, worker: u32, e: &io::Error, backoff: &mut Duration) {
        self.recording.error(worker as usize, e);
        let until = (Instant::now() + *backoff).min(self.until());
        while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
            thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
    }
}

fn open<'a>(run: &Run<'a>, worker: u32) -> io::Result<Conn<'a>> {
    open_from(run, worker, None)
}

/// A connection from `source` (any port) or from wherever the system picks, set up as bench
/// uses it: Nagle off, `IO_TIMEOUT` on reads and writes.
fn open_from<'a>(run: &Run<'a>, worker: u32, source: Option<Ipv4Addr>) -> io::Result<Conn<'a>> {
    let socket = Socket::new(
        Domain::for_address(run.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(source) = source {
        platform::defer_port_choice(&socket);
        socket.bind(&SocketAddr::from((source, 0)).into())?;
    }
    platform::connect(&socket, run.addr, IO_TIMEOUT)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    secure(run, worker, socket.into())
}

/// The connection as bench uses it: over TLS with `--tls`, the handshake timed and recorded.
fn secure<'a>(run: &Run<'a>, worker: u32, stream: TcpStream) -> io::Result<Conn<'a>> {
    let Some(client) = &run.tls else {
        return Ok(Conn::new(Box::new(stream), run.progress));
    };
    let started = Instant::now();
    let stream = client.handshake(Arc::new(stream), started + IO_TIMEOUT)?;
    let resumed = stream.with(|conn| tls::resumed(conn));
    run.recording
        .handshake(worker as usize, started.elapsed(), resumed);
    let link = TlsLink {
        stream,
        client: Arc::clone(client),
    };
    Ok(Conn::new(Box::new(link), run.progress))
}

/// Source addresses bench spreads its connections (and UDP flows) over, where it can.
const SOURCES: u32 = 64;

/// Against a loopback server on a system where all of 127.0.0.0/8 is local, the `turn`th of
/// `SOURCES` source addresses (127.0.1.1 to 127.0.1.64), each with ports of its own and each a
/// peer of its own to a server that counts by address; `None` elsewhere.
pub(super) fn spread_source(addr: SocketAddr, turn: u32) -> Option<Ipv4Addr> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    (v4.ip().is_loopback() && platform::LOOPBACK_IS_A_NETWORK)
        .then(|| Ipv4Addr::new(127, 0, 1, 1 + (turn % SOURCES) as u8))
}

/// `open` for connect mode. Opening connections as fast as it can, bench closes first and
/// leaves each connection's port in TIME_WAIT: tens of thousands of them, which the kernel's
/// search for a free port then walks, taking about a third of bench's CPU. Against a loopback
/// server on a system where all of 127.0.0.0/8 is local, each connection comes from the next of
/// `SOURCES` addresses, whose ports are searched apart, with the port picked at connect time.
fn open_spread<'a>(run: &Run<'a>, worker: u32, turn: u32) -> io::Result<Conn<'a>> {
    open_from(run, worker, spread_source(run.addr, turn))
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

/// The server closed before the whole echo came back: worded as the client words it.
fn unexpected_eof(received: u64, sent: u64) -> io::Error {
    io::Error::new(
        ErrorKind::UnexpectedEof,
        format!(
            "the server closed the connection after {} of {} bytes",
            thousands(received),
            thousands(sent)
        ),
    )
}

/// Request/response on one connection, reconnecting after a failure.
pub fn request_response(run: &Run, worker: u32) -> Lag {
    let mut buf = vec![0; READ_BUF.min(run.size.max(WINDOW))];
    let mut schedule = run.schedule(worker);
    let mut conn = None;
    let mut backoff = FIRST_BACKOFF;
    while let Some(due) = run.next_due(&mut schedule) {
        let stream = match &conn {
            Some(stream) => stream,
            None => match open(run, worker) {
                Ok(stream) => conn.insert(stream),
                Err(e) => {
                    run.failed(worker, &e, &mut backoff);
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match send_and_check(&**stream, run.size, run.pattern, &mut buf, false) {
            Ok(()) => {
                run.done(worker, due, sent);
                backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                // Out of step with the server now: start over on a new connection.
                conn = None;
                run.failed(worker, &e, &mut backoff);
            }
        }
    }
    run.lag(&schedule)
}

/// A new connection per request: connect, send, half-close, read the reply to the server's
/// close.
pub fn connect(run: &Run, worker: u32) -> Lag {
    let mut buf = vec![0; run.size.min(READ_BUF)];
    let mut schedule = run.schedule(worker);
    let mut backoff = FIRST_BACKOFF;
    let mut turn = worker;
    while let Some(due) = run.next_due(&mut schedule) {
        let sent = Instant::now();
        turn = turn.wrapping_add(run.workers);
        match one_connection(run, worker, turn, &mut buf) {
            Ok(()) => {
                run.done(worker, due, sent);
                backoff = FIRST_BACKOFF;
            }
            Err(e) => run.failed(worker, &e, &mut backoff),
        }
    }
    run.lag(&schedule)
}

fn one_connection(run: &Run, worker: u32, turn: u32, buf: &mut [u8]) -> io::Result<()> {
    let stream = open_spread(run, worker, turn)?;
    send_and_check(&*stream, run.size, run.pattern, buf, true)?;
    match run.pattern.read_checked(&*stream, buf, run.size as u64)? {
        0 => Ok(()),
        _ => Err(io::Error::new(
            ErrorKind::InvalidData,
            Mismatch::Longer {
                at: run.size as u64,
            },
        )),
    }
}

/// Sends `size` bytes of the pattern and checks the `size`-byte reply, never more than `WINDOW`
/// ahead of it; `half_close` shuts our side down after the last byte.
fn send_and_check(
    stream: &dyn Link,
    size: usize,
    pattern: &Pattern,
    buf: &mut [u8],
    half_close: bool,
) -> io::Result<()> {
    let (mut sent, mut received) = (0, 0);
    while received < size {
        if sent < size && sent - received < WINDOW {
            let n = (size - sent).min(WINDOW - (sent - received));
            let bytes = pattern.send(sent as u64, n);
            sent += n;
            if half_close && sent == size {
                stream.send_last(bytes, Some(IO_TIMEOUT))
            } else {
                stream.send(bytes, Some(IO_TIMEOUT))
            }
            .map_err(stalled_write)?;
            continue;
        }
        let want = (sent - received).min(buf.len());
        match pattern.read_checked(stream, &mut buf[..want], received as u64)? {
            0 => return Err(unexpected_eof(received as u64, sent as u64)),
            n => received += n,
        }
    }
    Ok(())
}

/// Both ways at once on one connection: a writer thread sends `size`-byte writes as fast as
/// the server takes them while this one reads and checks the reply.
pub fn stream(run: &Run, worker: u32) -> Lag {
    let id = worker as usize;
    let counted = match open(run, worker) {
        Ok(stream) => stream,
        Err(e) => {
            run.recording.error(id, &e);
            return Lag::default();
        }
    };
    let conn: &dyn Link = &*counted;
    let (write_result, reading) = thread::scope(|scope| {
        let writer = thread::Builder::new()
            .name("bench-send".into())
            .stack_size(WORKER_STACK)
            .spawn_scoped(scope, || send_stream(run, id, conn));
        let reading = receive_stream(run, id, conn);
        let write_result = match writer {
            // A panic is a bug, not a failed write: it ends the run (see `measure`).
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => Err(e),
        };
        (write_result, reading)
    });
    match (reading, write_result) {
        (Ok(received), Ok(sent)) if received == sent => {}
        (Ok(received), Ok(sent)) => run.recording.error(id, &unexpected_eof(received, sent)),
        (Err(e), _) => run.recording.error(id, &e),
        (Ok(_), Err(e)) => run.recording.error(id, &e),
    }
    Lag::default()
}

/// Stream mode's sending half: `size`-byte writes as fast as the server takes them, until the
/// run ends; then a half-close. Returns the bytes sent.
fn send_stream(run: &Run, id: usize, conn: &dyn Link) -> io::Result<u64> {
    let mut sent = 0u64;
    while run.going() {
        let data = run.pattern.send(sent, run.size);
        conn.send(data, Some(IO_TIMEOUT)).map_err(stalled_write)?;
        sent += run.size as u64;
        run.recording.moved(id, 1, run.size as u64, 0);
        run.progress.operations.fetch_add(1, Ordering::Relaxed);
    }
    conn.finish().map(|()| sent)
}

/// Stream mode's receiving half: reads and checks the echo to the server's close. Returns the
/// bytes received.
fn receive_stream(run: &Run, id: usize, conn: &dyn Link) -> io::Result<u64> {
    let mut buf = vec![0; READ_BUF];
    let mut received = 0u64;
    loop {
        match run.pattern.read_checked(conn, &mut buf, received) {
            Ok(0) => return Ok(received),
            Ok(n) => {
                received += n as u64;
                run.recording.moved(id, 0, 0, n as u64);
                run.progress.received.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                // Unblock the writer, which may be stuck on a server that stopped reading.
                let _ = conn.socket().shutdown(Shutdown::Both);
                return Err(e);
            }
        }
    }
}
