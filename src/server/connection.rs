//! One connection's life, on its own thread: the echo, then one close line saying how it ended.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use log::{Level, debug, info};
use socket2::{SockRef, TcpKeepalive};

use super::{Phase, Shared};
use crate::echo::{self, EchoError};
use crate::numbers::thousands;
use crate::platform;
use crate::proxy::{self, Origin};
use crate::stall;
use crate::tls;

/// After the first keepalive probe, probes this far apart, and give up after this many: a peer
/// that vanished is found within `--keepalive` + 60 s.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 6;

/// rustls' handshake needs well over 64 KiB of stack in a debug build. More than four times a
/// connection thread's: glibc hands a new thread a cached stack of an ended one up to four times
/// its size, pages still resident, and a connection thread on a handshake's stack would keep
/// the handshake's deep pages for as long as it lives. Untouched, the size costs nothing.
const HANDSHAKE_STACK: usize = 4 * super::TLS_STACK_SIZE + 64 * 1024;

/// How long a connection may take to send its PROXY protocol header, and then to complete its
/// TLS handshake (from the same start).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How each connection is set up.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub idle_timeout: Option<Duration>,
    pub keepalive: Option<Duration>,
    /// Every connection begins with a PROXY protocol header.
    pub proxy_protocol: bool,
}

/// One open connection; dropping it (however the thread ends) takes it off the books.
pub struct Connection {
    pub id: u64,
    pub peer: SocketAddr,
    /// The proxy the connection came through, when a PROXY header named the client.
    pub via: Option<SocketAddr>,
    pub stream: Arc<TcpStream>,
    pub echoed: u64,
    pub shared: Arc<Shared>,
    pub settings: Settings,
}

/// A connection after its TLS handshake, and what the handshake settled, for the open line.
struct Secured {
    stream: Box<tls::Stream<rustls::ServerConnection>>,
    /// `TLSv1.3 TLS13_AES_128_GCM_SHA256`.
    session: String,
    /// The subject of the client's certificate, under mTLS.
    subject: Option<String>,
}

/// Why a connection was closed before its echo began.
enum Refusal {
    /// The peer went away (a TLS health check, `openssl s_time`): routine.
    PeerLeft,
    /// Something is wrong, and the log says what.
    Failed,
}

/// Whom a connection is for, in its log lines: `client` or `client via proxy`.
struct Who(SocketAddr, Option<SocketAddr>);

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(proxy) => write!(f, "{} via {proxy}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Connection {
    pub fn serve(mut self) {
        let (settings, started) = (self.settings, Instant::now());
        self.prepare(settings);
        let mut first = Vec::new();
        if settings.proxy_protocol {
            match self.read_proxy_header() {
                Ok(rest) => first = rest,
                Err(why) => return self.refuse(&why, Refusal::Failed),
            }
        }
        let tls = match self.shared.tls.clone() {
            Some(config) => match self.handshake(&config, &first, started + HEADER_TIMEOUT) {
                Ok(secured) => Some(secured),
                Err((why, refusal)) => return self.refuse(&why, refusal),
            },
            None => None,
        };
        self.log_open(tls.as_ref());
        let result = self.echo(settings, &mut first, tls.as_ref().map(|t| &*t.stream));
        self.log_close(result, settings, started);
    }

    /// The open line. Its own frame, off the stack the echo runs on: formatting and the
    /// log's key-values take a kilobyte, which every idle connection would otherwise keep a
    /// page deeper (with TLS, the echo's deepest frame ends a few hundred bytes past two pages).
    #[inline(never)]
    fn log_open(&self, tls: Option<&Secured>) {
        if !self.shared.activity.opened() {
            return;
        }
        let (id, who) = (self.id, Who(self.peer, self.via));
        // Formatted only for a line that is written, like the rest of it.
        let via = self.via.map(|v| v.to_string());
        match tls {
            None => info!(conn = id, peer:% = self.peer, via = via; "#{id} {who}: connected"),
            Some(Secured {
                session, subject, ..
            }) => {
                let client = subject.as_ref().map(|s| format!(", client {s}"));
                info!(
                    conn = id, peer:% = self.peer, via = via, tls = session,
                    client_cert = subject;
                    "#{id} {who}: connected, {session}{}", client.unwrap_or_default()
                );
            }
        }
    }

    /// The close line, saying how the echo ended (its own frame, as `log_open`'s).
    #[inline(never)]
    fn log_close(&self, result: Result<(), EchoError>, settings: Settings, started: Instant) {
        let (level, reason) = if self.shared.phase() == Phase::Cutting {
            (Level::Info, "cut at shutdown".to_string())
        } else {
            describe(result, settings.idle_timeout)
        };
        let (id, who) = (self.id, Who(self.peer, self.via));
        let (echoed, took) = (self.echoed, started.elapsed());
        // One unit for every duration, so lines compare at a glance (and ASCII). Formatted
        // only for a line that is written: most are not, at high connection rates or with -q.
        let line = || {
            format!(
                "#{id} {who}: closed, {} bytes echoed in {:.3} ms, {reason}",
                thousands(echoed),
                took.as_secs_f64() * 1e3
            )
        };
        // Counted either way, so the summary line knows of it.
        let routine_logged = self.shared.activity.closed(echoed);
        match level {
            Level::Info if routine_logged => {
                let via = self.via.map(|v| v.to_string());
                info!(
                    conn = id, peer:% = self.peer, via = via, bytes = echoed,
                    duration_us = took.as_micros() as u64, reason:% = reason; "{}", line()
                );
            }
            Level::Info => {}
            _ => {
                self.shared
                    .warnings
                    .warn(|held_back| format!("{}{held_back}", line()));
            }
        }
    }

    /// The PROXY header that must begin the connection, from a trusted proxy: the client it
    /// names becomes the peer. Returns the bytes that came after it.
    fn read_proxy_header(&mut self) -> Result<Vec<u8>, String> {
        if !self.shared.trusts(self.peer.ip()) {
            return Err("not a trusted proxy (see --proxy-from)".into());
        }
        let (origin, rest) =
            proxy::read_header(&self.stream, HEADER_TIMEOUT).map_err(|e| e.to_string())?;
        // A client that sent its own header (`client --send-proxy`) came through no proxy.
        if let Origin::Client(client) = origin
            && client != self.peer
        {
            self.via = Some(self.peer);
            self.peer = client;
        }
        Ok(rest)
    }

    /// Closes a connection before its echo began: a routine close line when the peer left or
    /// the server cut it at shutdown, a warning otherwise (no usable PROXY header or TLS
    /// handshake).
    fn refuse(&self, why: &str, refusal: Refusal) {
        let shared = &self.shared;
        shared.activity.opened();
        let routine_logged = shared.activity.closed(0);
        let (id, peer) = (self.id, self.peer);
        let routine = match refusal {
            _ if shared.phase() == Phase::Cutting => Some("cut at shutdown"),
            Refusal::PeerLeft => Some(why),
            Refusal::Failed => None,
        };
        match routine {
            Some(reason) if routine_logged => {
                info!(conn = id, peer:% = peer; "#{id} {peer}: closed, {reason}");
            }
            Some(_) => {}
            None => {
                shared.warnings.warn(|held_back| {
                    format!("#{id} {peer}: closed without echoing anything: {why}{held_back}")
                });
            }
        }
    }

    /// Sets the socket up before anything is read, where it did not inherit its options from
    /// the listening socket (see `prepare_socket`).
    fn prepare(&self, settings: Settings) {
        if !platform::ACCEPTED_INHERITS_OPTIONS {
            prepare_socket(SockRef::from(&*self.stream), settings.keepalive);
        }
    }

    /// The TLS handshake, by `deadline`; `first`: bytes that came with the PROXY header.
    ///
    /// It runs on a thread of its own that ends with it, while this one waits. What the
    /// handshake frees (some 8 KiB, which glibc keeps in the freeing thread's cache) and its
    /// deep stack then go back to the allocator and the system, instead of staying with the
    /// connection's thread for as long as the connection stays open. Everything deep runs
    /// there, the connection state's construction too (its kilobytes pass through the stack on
    /// their way to the heap), so that this thread touches no more stack pages than a plain
    /// connection's: 10,000 idle TLS connections took 19 KiB each so, 27 KiB with that frame
    /// here (and 4 KiB more when this thread got an ended handshake thread's stack, see
    /// `HANDSHAKE_STACK`), 31 KiB with a reused handshake thread, 34 KiB with the handshake on
    /// this thread. The thread's start costs some 10% of handshakes/s.
    #[inline(never)]
    fn handshake(
        &self,
        config: &Arc<rustls::ServerConfig>,
        first: &[u8],
        deadline: Instant,
    ) -> Result<Secured, (String, Refusal)> {
        let shake = || secure(config, &self.stream, first, deadline);
        // Past `HANDSHAKE_THREADS` at once (a flood of handshakes), here: each thread takes
        // memory mappings, and one started past the system's limit aborts the process.
        let threads = &self.shared.handshake_threads;
        if threads.fetch_add(1, Ordering::Relaxed) >= super::HANDSHAKE_THREADS {
            threads.fetch_sub(1, Ordering::Relaxed);
            return shake();
        }
        let result = thread::scope(|scope| {
            match thread::Builder::new()
                .name("handshake".into())
                .stack_size(HANDSHAKE_STACK)
                .spawn_scoped(scope, shake)
            {
                // A panic is a bug: it takes this connection's thread down with it.
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                // Out of threads: here, then.
                Err(_) => shake(),
            }
        });
        threads.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// The data path: socket → buffer → uppercase → socket, then our FIN after the peer's
    /// (over TLS: decrypt → uppercase → encrypt, and a close_notify before each FIN).
    /// `first`: bytes already read with the PROXY header, echoed before the rest.
    fn echo(
        &mut self,
        settings: Settings,
        first: &mut [u8],
        tls: Option<&tls::Stream<rustls::ServerConnection>>,
    ) -> Result<(), EchoError> {
        let stream = &*self.stream;
        // Reading the PROXY header left a read timeout of its own.
        if settings.idle_timeout.is_some() || settings.proxy_protocol {
            let idle = settings.idle_timeout;
            stream.set_read_timeout(idle).map_err(EchoError::Read)?;
            stream.set_write_timeout(idle).map_err(EchoError::Write)?;
        }
        let write_timeout = settings.idle_timeout;
        if let Some(tls) = tls {
            tls.set_write_timeout(write_timeout);
            let echoed = echo::echo(tls, tls, write_timeout, &mut self.echoed);
            // An idle peer is closed cleanly too: a TLS client tells a close without
            // close_notify from an attack that cut the stream short.
            if let Err(EchoError::Read(e)) = &echoed
                && stall::is_timeout(e)
            {
                let _ = tls.close();
            }
            echoed?;
            tls.close().map_err(EchoError::Write)?;
        } else {
            if !first.is_empty() {
                echo::uppercase(first);
                stall::write_all(stream, first, write_timeout).map_err(EchoError::Write)?;
                self.echoed += first.len() as u64;
            }
            echo::echo(stream, stream, write_timeout, &mut self.echoed)?;
        }
        // The peer may already be gone; its close was still a normal end.
        let _ = stream.shutdown(Shutdown::Write);
        Ok(())
    }
}

/// A TLS handshake from start to end, with what it settled (for `Connection::handshake`).
fn secure(
    config: &Arc<rustls::ServerConfig>,
    socket: &Arc<TcpStream>,
    first: &[u8],
    deadline: Instant,
) -> Result<Secured, (String, Refusal)> {
    let conn =
        tls::accept(config).map_err(|e| (format!("cannot start TLS: {e}"), Refusal::Failed))?;
    let stream = Box::new(tls::Stream::new(
        Arc::clone(socket),
        tls::Threads::One,
        conn,
        first,
    ));
    let result = stream.handshake(deadline, tls::client_hello).map(|()| {
        // Parsing a client certificate goes deep too.
        stream.with(|conn| (tls::session(conn), tls::peer_subject(conn)))
    });
    match result {
        Ok((session, subject)) => Ok(Secured {
            stream,
            session,
            subject,
        }),
        // A TCP health check, a port scan, a client that gave up without an alert: routine, as
        // a plain connection that closes at once is.
        Err(e) if !tls::is_tls(&e) && (gone(&e) || e.kind() == ErrorKind::UnexpectedEof) => {
            let how = if gone(&e) { "reset" } else { "closed" };
            Err((
                format!("{how} by peer during the TLS handshake"),
                Refusal::PeerLeft,
            ))
        }
        Err(e) => Err((tls::explain(&e), Refusal::Failed)),
    }
}

/// Small replies (and a TLS handshake's last flight) go out at once instead of waiting on
/// Nagle for the peer's delayed ACK (~40 ms), and keepalive finds peers that vanished. Set on
/// each accepted socket, or once on the listening one where accepted sockets inherit them.
pub(super) fn prepare_socket(socket: SockRef<'_>, keepalive_idle: Option<Duration>) {
    if let Err(e) = socket.set_tcp_nodelay(true) {
        debug!("cannot turn Nagle's algorithm off: {e}");
    }
    if let Some(idle) = keepalive_idle {
        keepalive(socket, idle);
    }
}

/// Turns keepalive on. Systems without a probe count (Windows before 10 1703, Wine) still get
/// the idle time and the interval; a connection is never refused for want of keepalive.
fn keepalive(socket: SockRef<'_>, idle: Duration) {
    let params = TcpKeepalive::new()
        .with_time(idle)
        .with_interval(KEEPALIVE_INTERVAL);
    let result = socket
        .set_tcp_keepalive(&params.clone().with_retries(KEEPALIVE_PROBES))
        .or_else(|_| socket.set_tcp_keepalive(&params));
    if let Err(e) = result {
        debug!("cannot turn keepalive on: {e}");
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

/// The peer reset the connection or is gone.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::BrokenPipe
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected
    )
}

/// How a connection ended, for its close line: `Info` for the routine, `Warn` for the rest.
fn describe(result: Result<(), EchoError>, idle_timeout: Option<Duration>) -> (Level, String) {
    use Level::{Info, Warn};
    let idle = idle_timeout.unwrap_or_default();
    match result {
        Ok(()) => (Info, "closed by peer".into()),
        Err(EchoError::Read(e)) if stall::is_timeout(&e) && idle_timeout.is_some() => {
            (Info, format!("idle for {idle:?}"))
        }
        Err(EchoError::Write(e)) if stall::is_timeout(&e) && idle_timeout.is_some() => {
            (Info, format!("peer stopped reading for {idle:?}"))
        }
        // Keepalive probes went unanswered: the peer vanished without a FIN or a reset.
        Err(EchoError::Read(e) | EchoError::Write(e)) if e.kind() == ErrorKind::TimedOut => {
            (Info, "peer vanished (keepalive probes unanswered)".into())
        }
        Err(EchoError::Read(e)) if gone(&e) => (Info, format!("reset by peer ({e})")),
        // TLS only: the peer's FIN came without its close_notify.
        Err(EchoError::Read(e)) if e.kind() == ErrorKind::UnexpectedEof => {
            (Info, "closed by peer without a TLS close_notify".into())
        }
        Err(EchoError::Write(e)) if gone(&e) => (Info, format!("peer went away mid-write ({e})")),
        Err(EchoError::Read(e)) => (Warn, format!("read failed: {e}")),
        Err(EchoError::Write(e)) => (Warn, format!("write failed: {e}")),
    }
}
