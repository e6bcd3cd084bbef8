//! The server: an accept loop that hands each connection a thread of its own, and the
//! connection's life from open to close.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use log::{debug, info, warn};
use socket2::{Domain, Protocol, Socket, Type};

use crate::transform::{self, EchoError};
use crate::{addr, fdlimit, workers::Workers};

/// Stack of a connection thread: the echo loop needs a few KiB; only touched pages are resident.
const STACK_SIZE: usize = 64 * 1024;
/// How long a thread whose connection closed waits for another before exiting.
const THREAD_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// Descriptors the process needs besides its connections (std streams, listener, signals).
const SPARE_FDS: u64 = 32;
/// Repeated warnings (accept failures, the connection limit) are logged at most this often.
const WARN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub backlog: u32,
    pub max_connections: u64,
    pub idle_timeout: Option<Duration>,
    pub grace: Duration,
}

/// Totals reported when the server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub served: u64,
    pub bytes: u64,
    pub cut: u64,
}

/// Binds, prints the `listening on` line, serves until SIGINT or SIGTERM, then drains.
pub fn run(config: Config) -> Result<()> {
    match fdlimit::raise() {
        Ok((before, after)) => {
            debug!("open-file limit: {after} (was {before})");
            if config.max_connections + SPARE_FDS > after {
                warn!(
                    "--max-connections {} exceeds what the open-file limit of {after} allows; \
                     accepts will fail beyond about {} connections",
                    config.max_connections,
                    after.saturating_sub(SPARE_FDS)
                );
            }
        }
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }
    let server = Server::bind(config)?;
    let stopper = server.stopper()?;
    // Installed before the `listening on` line, so a signal sent as soon as it is read is handled.
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])
        .context("cannot install signal handlers")?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for (count, signal) in signals.forever().enumerate() {
                let name = if signal == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
                if count == 0 {
                    // Stop first: once this line is out, new connects are already refused.
                    stopper.stop();
                    info!("{name} received: no longer accepting, stopping (send it again to exit at once)");
                } else {
                    warn!("{name} received again: exiting now");
                    std::process::exit(1);
                }
            }
        })
        .context("cannot start the signal thread")?;

    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {}", server.local_addr())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    drop(stdout);

    let summary = server.run();
    info!(
        "shutdown: connections served: {}, bytes echoed: {}, cut at shutdown: {}",
        summary.served, summary.bytes, summary.cut
    );
    Ok(())
}

pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: Config,
    shared: Arc<Shared>,
    workers: Workers,
}

/// State shared by the accept loop, the connection threads and whoever stops the server.
#[derive(Default)]
struct Shared {
    open: Mutex<Registry>,
    /// Signalled whenever a connection closes or the server starts stopping.
    changed: Condvar,
    stopping: AtomicBool,
    cutting: AtomicBool,
    served: AtomicU64,
    bytes: AtomicU64,
}

/// The open connections, so that shutdown can cut the ones still open after the grace period.
#[derive(Default)]
struct Registry {
    streams: HashMap<u64, Arc<TcpStream>>,
    next_id: u64,
    /// Threads waiting on `changed`: only the accept loop at the connection limit, and the
    /// drain at shutdown. Closing connections wake no one (a syscall each) when it is zero.
    waiters: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Nothing panics while holding this lock, so even a poisoned one is consistent.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(
        &'a self,
        mut guard: MutexGuard<'a, Registry>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Registry> {
        guard.waiters += 1;
        let mut guard = match timeout {
            Some(t) => {
                self.changed
                    .wait_timeout(guard, t)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => self
                .changed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner),
        };
        guard.waiters -= 1;
        guard
    }
}

/// Stops a running server from another thread (the signal handler's).
pub struct Stopper {
    shared: Arc<Shared>,
    listener: Socket,
}

impl Stopper {
    /// Stops accepting at once: the listening socket is shut down, so new connects are refused
    /// rather than queued, and the blocked `accept` wakes up. Open connections carry on.
    pub fn stop(&self) {
        let guard = self.shared.lock();
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(guard);
        self.shared.changed.notify_all();
        if let Err(e) = self.listener.shutdown(Shutdown::Both) {
            warn!("cannot shut down the listening socket: {e}");
        }
    }
}

impl Server {
    pub fn bind(config: Config) -> Result<Server> {
        let addr = addr::resolve(&config.host, config.port)?
            .next()
            .ok_or_else(|| anyhow!("cannot resolve {}: no addresses", config.host))?;
        let listener =
            listen(addr, config.backlog).with_context(|| format!("cannot listen on {addr}"))?;
        let local_addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        Ok(Server {
            listener,
            local_addr,
            config,
            shared: Arc::default(),
            workers: Workers::new(STACK_SIZE, THREAD_KEEP_ALIVE),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stopper(&self) -> Result<Stopper> {
        let listener = self
            .listener
            .try_clone()
            .context("cannot duplicate the listening socket")?;
        Ok(Stopper {
            shared: Arc::clone(&self.shared),
            listener: listener.into(),
        })
    }

    /// Accepts and serves until stopped, then waits up to the grace period for open connections
    /// and cuts the rest.
    pub fn run(self) -> Summary {
        let mut limit = LimitLog::default();
        let mut accept_warning = RateLimit::default();
        while self.wait_for_slot(&mut limit) {
            match self.listener.accept() {
                Ok((stream, peer)) => self.dispatch(stream, peer),
                Err(_) if self.shared.stopping.load(Ordering::SeqCst) => break,
                Err(e) => {
                    let resource = is_resource_exhaustion(&e);
                    // A peer that gave up while queued is its own business.
                    if e.kind() != ErrorKind::ConnectionAborted {
                        accept_warning.warn(|suppressed| format!("accept failed: {e}{suppressed}"));
                    }
                    // Out of descriptors or memory, retrying at once would spin: the pending
                    // connection stays queued and fails again until something closes.
                    thread::sleep(if resource {
                        Duration::from_millis(100)
                    } else {
                        Duration::from_millis(5)
                    });
                }
            }
        }
        drop(self.listener);
        drain(&self.shared, self.config.grace)
    }

    /// Waits while `max_connections` are open. Returns false once the server is stopping.
    fn wait_for_slot(&self, limit: &mut LimitLog) -> bool {
        let max = usize::try_from(self.config.max_connections).unwrap_or(usize::MAX);
        let mut open = self.shared.lock();
        while open.streams.len() >= max && !self.shared.stopping.load(Ordering::SeqCst) {
            limit.reached(max);
            open = self.shared.wait(open, None);
        }
        limit.resumed(open.streams.len());
        !self.shared.stopping.load(Ordering::SeqCst)
    }

    fn dispatch(&self, stream: TcpStream, peer: SocketAddr) {
        let stream = Arc::new(stream);
        let mut open = self.shared.lock();
        let id = open.next_id;
        open.next_id += 1;
        open.streams.insert(id, Arc::clone(&stream));
        drop(open);
        let conn = Connection {
            id,
            peer: SocketAddr::new(peer.ip().to_canonical(), peer.port()),
            stream,
            echoed: 0,
            shared: Arc::clone(&self.shared),
        };
        let idle_timeout = self.config.idle_timeout;
        if let Err(e) = self.workers.execute(move || conn.serve(idle_timeout)) {
            // The job, and with it the connection, was dropped: the client sees a close.
            warn!("cannot start a thread for {peer}, closing it: {e}");
        }
    }
}

fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Dual-stack where the system allows it; where it does not, IPv6 alone is still useful.
        if let Err(e) = socket.set_only_v6(false) {
            debug!("cannot accept IPv4 on {addr}: {e}");
        }
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// One open connection; dropping it (however the thread ends) takes it off the books.
struct Connection {
    id: u64,
    peer: SocketAddr,
    stream: Arc<TcpStream>,
    echoed: u64,
    shared: Arc<Shared>,
}

impl Connection {
    fn serve(mut self, idle_timeout: Option<Duration>) {
        let started = Instant::now();
        info!("{}: connected", self.peer);
        let result = self.echo(idle_timeout);
        let (level, text) = if self.shared.cutting.load(Ordering::SeqCst) {
            (log::Level::Info, "cut at shutdown".to_string())
        } else {
            describe(result, idle_timeout)
        };
        log::log!(
            level,
            "{}: closed, {} bytes echoed in {:.3?}, {text}",
            self.peer,
            self.echoed,
            started.elapsed()
        );
    }

    /// The data path: socket → buffer → uppercase → socket, then our FIN after the peer's.
    fn echo(&mut self, idle_timeout: Option<Duration>) -> Result<(), EchoError> {
        let stream = &*self.stream;
        // Without this, a small reply waits on Nagle until the peer's delayed ACK (~40 ms).
        stream.set_nodelay(true).map_err(EchoError::Write)?;
        if idle_timeout.is_some() {
            stream
                .set_read_timeout(idle_timeout)
                .map_err(EchoError::Read)?;
            stream
                .set_write_timeout(idle_timeout)
                .map_err(EchoError::Write)?;
        }
        transform::echo(stream, stream, &mut self.echoed)?;
        // The peer may already be gone; its close was still a normal end.
        let _ = stream.shutdown(Shutdown::Write);
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.served.fetch_add(1, Ordering::Relaxed);
        self.shared.bytes.fetch_add(self.echoed, Ordering::Relaxed);
        let mut open = self.shared.lock();
        open.streams.remove(&self.id);
        if open.waiters > 0 {
            drop(open);
            self.shared.changed.notify_all();
        }
    }
}

/// How a connection ended, for its close line: `Info` for the routine, `Warn` for the rest.
fn describe(result: Result<(), EchoError>, idle_timeout: Option<Duration>) -> (log::Level, String) {
    use log::Level::{Info, Warn};
    let idle = idle_timeout.unwrap_or_default();
    let timed_out = |e: &io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    let gone = |e: &io::Error| {
        matches!(
            e.kind(),
            ErrorKind::ConnectionReset
                | ErrorKind::BrokenPipe
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
        )
    };
    match result {
        Ok(()) => (Info, "closed by peer".into()),
        Err(EchoError::Read(e)) if timed_out(&e) => (Info, format!("idle for {idle:?}")),
        Err(EchoError::Write(e)) if timed_out(&e) => {
            (Info, format!("peer stopped reading for {idle:?}"))
        }
        Err(EchoError::Read(e)) if gone(&e) => (Info, format!("reset by peer ({e})")),
        Err(EchoError::Write(e)) if gone(&e) => (Info, format!("peer went away mid-write ({e})")),
        Err(EchoError::Read(e)) => (Warn, format!("read failed: {e}")),
        Err(EchoError::Write(e)) => (Warn, format!("write failed: {e}")),
    }
}

/// After the accept loop: waits up to `grace` for open connections, then cuts the rest.
fn drain(shared: &Shared, grace: Duration) -> Summary {
    let deadline = Instant::now() + grace;
    let mut open = shared.lock();
    if !open.streams.is_empty() {
        info!(
            "waiting up to {grace:?} for {} open connections",
            open.streams.len()
        );
    }
    while !open.streams.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        open = shared.wait(open, Some(left));
    }
    let cut = open.streams.len() as u64;
    if cut > 0 {
        info!("grace period over: cutting {cut} connections");
        shared.cutting.store(true, Ordering::SeqCst);
        for stream in open.streams.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Give the cut threads a moment to log their close lines; they wake at once.
        let deadline = Instant::now() + Duration::from_secs(1);
        while !open.streams.is_empty() && Instant::now() < deadline {
            open = shared.wait(
                open,
                Some(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }
    drop(open);
    Summary {
        served: shared.served.load(Ordering::SeqCst),
        bytes: shared.bytes.load(Ordering::SeqCst),
        cut,
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Logs a repeated warning at most once per `WARN_INTERVAL`, counting what it held back.
#[derive(Default)]
struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    fn warn(&mut self, message: impl FnOnce(String) -> String) {
        if self.last.is_some_and(|t| t.elapsed() < WARN_INTERVAL) {
            self.suppressed += 1;
            return;
        }
        let suppressed = match self.suppressed {
            0 => String::new(),
            n => format!(" ({n} more since the last report)"),
        };
        warn!("{}", message(suppressed));
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// The connection limit's two log lines: reached (warn) and resumed (info), once per episode,
/// and not again while a server hovering at its limit flaps between the two.
#[derive(Default)]
struct LimitLog {
    at_limit: bool,
    last_warning: Option<Instant>,
}

impl LimitLog {
    fn reached(&mut self, max: usize) {
        if self.at_limit
            || self
                .last_warning
                .is_some_and(|t| t.elapsed() < WARN_INTERVAL * 10)
        {
            return;
        }
        warn!("connection limit reached: {max} open; new clients wait in the listen queue");
        self.at_limit = true;
        self.last_warning = Some(Instant::now());
    }

    fn resumed(&mut self, open: usize) {
        if self.at_limit {
            info!("accepting again: {open} open");
            self.at_limit = false;
        }
    }
}
