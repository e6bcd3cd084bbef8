//! The server: an accept loop that hands each connection a thread of its own, and its stop.
//!
//! `connection.rs` holds a connection's life and the data path; `activity.rs` what the log says
//! about connections; `stop.rs` the signals.

mod activity;
mod connection;
mod health;
mod stop;
mod udp;

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;
use log::{debug, info, warn};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::addr;
use crate::numbers::thousands;
use crate::platform::{self, ServiceState, Waker};
use crate::stop::ExitNow;
use crate::workers::Workers;
use activity::{Activity, RateLimit, WARN_INTERVAL};
use connection::{Connection, Settings};
pub(crate) use stop::Stopper;
pub use udp::{MAX_DATAGRAM, UdpOptions};

/// Stack of a connection thread: the echo loop needs a few KiB; only touched pages are resident.
const STACK_SIZE: usize = 64 * 1024;
/// With TLS: whatever a peer sends after the handshake (an alert, a renegotiation attempt)
/// goes through rustls on this thread, which in a debug build takes more than 64 KiB; an
/// overflow would end the whole process. Untouched, the extra costs no memory.
pub(crate) const TLS_STACK_SIZE: usize = 512 * 1024;

/// How long a thread whose connection closed waits for another before exiting.
const THREAD_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// Descriptors the process needs besides its connections (std streams, listener, signals).
const SPARE_FDS: u64 = 32;
/// Out of descriptors, memory or threads, the server waits this long before trying again; the
/// clients meanwhile wait in the listen queue.
pub(crate) const RESOURCE_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// `None`: the longest queue the system allows.
    pub backlog: Option<u32>,
    pub max_connections: u64,
    pub idle_timeout: Option<Duration>,
    /// Idle time before the first keepalive probe; `None` turns keepalive off.
    pub keepalive: Option<Duration>,
    pub grace: Duration,
    /// Every connection begins with a PROXY protocol header (behind a load balancer).
    pub proxy_protocol: bool,
    /// The addresses whose PROXY headers are believed; empty: every address.
    pub proxy_from: Vec<IpNet>,
    /// Share the port with other servers (`SO_REUSEPORT`).
    pub reuse_port: bool,
    /// Serve an HTTP health check on this port of the same host.
    pub health_port: Option<u16>,
    /// At the first stop request, fail the health check but keep serving this long.
    pub drain_delay: Duration,
    /// Serve TLS.
    pub tls: Option<crate::tls::ServerOptions>,
    /// Also serve the echo over UDP, on the same address and port.
    pub udp: Option<UdpOptions>,
}

/// Totals reported when the server stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub served: u64,
    pub bytes: u64,
    pub cut: u64,
    /// With `--udp`.
    pub datagrams: Option<udp::Counts>,
}

/// Binds, prints the `listening on` line, serves until a stop request, then drains; a
/// deliberate second request calls `exit_now`.
pub fn run(mut config: Config, exit_now: ExitNow) -> Result<()> {
    raise_open_files(config.max_connections);
    config.max_connections = fit_to_mappings(config.max_connections, config.tls.is_some());
    let mut server = Server::bind(config)?;
    // Installed before the `listening on` line, so a signal sent as soon as it is read is handled.
    stop::on_stop_requests(server.stopper(), server.config.drain_delay, exit_now)?;
    let shared = Arc::clone(&server.shared);
    thread::Builder::new()
        .name("activity".into())
        .spawn(move || {
            activity::keep_time(
                &shared.activity,
                || shared.lock().streams.len(),
                || shared.datagrams.counts(),
            );
        })
        .context("cannot start the activity thread")?;
    if let Some(health) = server.health.take() {
        info!(
            "health check on http://{}/",
            health
                .local_addr()
                .context("cannot read the health check's address")?
        );
        health::serve(health, &server.shared)?;
    }
    if let (Some(socket), Some(options)) = (server.udp.take(), server.config.udp) {
        server.udp_thread = Some(udp::serve(socket, options, &server.shared, &server.waker)?);
    }
    server.announce()?;
    let summary = server.serve();
    let datagrams = match summary.datagrams {
        Some(d) => format!(
            ", datagrams echoed: {}{}",
            thousands(d.echoed),
            d.dropped_by_reason()
        ),
        None => String::new(),
    };
    info!(
        "shutdown: connections served: {}, bytes echoed: {}, cut at shutdown: {}{datagrams}",
        thousands(summary.served),
        thousands(summary.bytes),
        thousands(summary.cut)
    );
    Ok(())
}

/// Raises the open-file limit as far as it goes, and says when `max_connections` is still
/// beyond it.
fn raise_open_files(max_connections: u64) {
    match platform::raise_open_files() {
        Ok(None) => {}
        Ok(Some((before, after))) => {
            debug!("open-file limit: {after} (was {before})");
            if max_connections + SPARE_FDS > after {
                warn!(
                    "--max-connections {max_connections} exceeds what the open-file limit of \
                     {after} allows; accepts will fail beyond about {} connections",
                    after.saturating_sub(SPARE_FDS)
                );
            }
        }
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }
}

/// Memory mappings a thread takes.
const MAPPINGS_PER_THREAD: u64 = 4;
/// Mappings kept back for everything else: the heap's arenas, the other threads, libraries.
const SPARE_MAPPINGS: u64 = 2048;
/// TLS handshakes on threads of their own at once; more run on their connection's thread.
pub(crate) const HANDSHAKE_THREADS: usize = 1024;

/// `max_connections`, or fewer where the system's limit on memory mappings would be reached
/// first (Linux: vm.max_map_count, 65,530 by default, some 16,000 threads): a thread started
/// past it aborts the process, so clients wait in the listen queue instead, as at the
/// connection limit.
fn fit_to_mappings(max_connections: u64, tls: bool) -> u64 {
    let (fits, left) = fit(max_connections, platform::mappings_left(), tls);
    if fits < max_connections {
        warn!(
            "--max-connections {} exceeds what vm.max_map_count allows ({} memory mappings \
             left, {} a thread): serving at most {} at once; raise it with sysctl -w \
             vm.max_map_count=N",
            thousands(max_connections),
            thousands(left),
            MAPPINGS_PER_THREAD,
            thousands(fits)
        );
    }
    fits
}

/// The connections that fit in `left` memory mappings (`None`: no limit), and `left`.
fn fit(max_connections: u64, left: Option<u64>, tls: bool) -> (u64, u64) {
    let Some(left) = left else {
        return (max_connections, 0);
    };
    let handshakes = if tls { HANDSHAKE_THREADS as u64 } else { 0 };
    let spare = SPARE_MAPPINGS + handshakes * MAPPINGS_PER_THREAD;
    let fits = left.saturating_sub(spare) / MAPPINGS_PER_THREAD;
    (max_connections.min(fits).max(1), left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_past_the_memory_mapping_limit_wait_instead_of_aborting() {
        // Linux's default 65,530, less the few hundred a process starts with.
        assert_eq!(fit(10_000, Some(65_000), false), (10_000, 65_000));
        assert_eq!(fit(20_000, Some(65_000), false).0, (65_000 - 2048) / 4);
        // With TLS, room for the handshakes' own threads too.
        assert_eq!(
            fit(20_000, Some(65_000), true).0,
            (65_000 - 2048 - 4096) / 4
        );
        assert_eq!(fit(20_000, None, true).0, 20_000, "no limit");
        assert_eq!(fit(20_000, Some(10), false).0, 1, "never none");
    }
}

pub(crate) struct Server {
    listener: TcpListener,
    /// `--health-port`'s listener, until its thread takes it.
    health: Option<TcpListener>,
    /// `--udp`'s socket, until its thread takes it; then the thread, to wait for at the end.
    udp: Option<UdpSocket>,
    udp_thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
    config: Config,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    workers: Workers<Connection>,
    /// Out of threads: one warning a second however many connections wait for one.
    thread_warning: RateLimit,
}

/// A server's life, in order: serving; draining (the first stop request with `--drain-delay`:
/// the health check fails, the echo port still accepts); stopping (no longer accepting: open
/// connections get the grace period); cutting (the grace is over: what is open is cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Phase {
    Serving,
    Draining,
    Stopping,
    Cutting,
}

impl From<u8> for Phase {
    fn from(n: u8) -> Phase {
        match n {
            0 => Phase::Serving,
            1 => Phase::Draining,
            2 => Phase::Stopping,
            _ => Phase::Cutting,
        }
    }
}

/// State shared by the accept loop, the connection threads and whoever stops the server.
struct Shared {
    open: Mutex<Registry>,
    /// Signalled whenever a connection closes or the server starts stopping.
    changed: Condvar,
    /// Where the server is in its life (a `Phase`): it only moves forward.
    phase: AtomicU8,
    /// Why the server stops, logged by the accept loop as it ends.
    stop_reason: OnceLock<String>,
    served: AtomicU64,
    bytes: AtomicU64,
    activity: Activity,
    /// Connections that end in an unexpected error.
    warnings: RateLimit,
    /// `--proxy-from`: who may send a PROXY header; empty: anyone.
    proxy_from: Vec<IpNet>,
    /// `--tls`: every connection begins with a TLS handshake.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Handshakes running on threads of their own (at most `HANDSHAKE_THREADS`).
    handshake_threads: std::sync::atomic::AtomicUsize,
    datagrams: udp::Datagrams,
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
    fn new(proxy_from: Vec<IpNet>, tls: Option<Arc<rustls::ServerConfig>>) -> Shared {
        Shared {
            open: Mutex::default(),
            changed: Condvar::new(),
            phase: AtomicU8::new(Phase::Serving as u8),
            stop_reason: OnceLock::new(),
            served: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            activity: Activity::new(),
            warnings: RateLimit::default(),
            proxy_from,
            tls,
            handshake_threads: std::sync::atomic::AtomicUsize::new(0),
            datagrams: udp::Datagrams::default(),
        }
    }

    /// Whether a PROXY header from `ip` is believed.
    fn trusts(&self, ip: IpAddr) -> bool {
        self.proxy_from.is_empty() || self.proxy_from.iter().any(|net| net.contains(&ip))
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Nothing panics while holding this lock, so even a poisoned one is consistent.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn phase(&self) -> Phase {
        Phase::from(self.phase.load(Ordering::SeqCst))
    }

    /// Moves the server on to `phase`, unless it is there or past it already.
    fn advance(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::SeqCst);
    }

    /// No longer accepting: stopping or cutting.
    fn stopping(&self) -> bool {
        self.phase() >= Phase::Stopping
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

impl Server {
    pub fn bind(config: Config) -> Result<Server> {
        // `--port 0 --udp`: the port picked for TCP may be taken for UDP; another is tried.
        let mut tries = if config.port == 0 { 10 } else { 1 };
        loop {
            tries -= 1;
            match Server::bind_once(config.clone()) {
                Err(e) if tries > 0 && e.is::<UdpPortTaken>() => continue,
                Err(e) if e.is::<UdpPortTaken>() => return Err(anyhow!("{e}")),
                other => return other,
            }
        }
    }

    fn bind_once(config: Config) -> Result<Server> {
        let proxy_from = config.proxy_from.clone();
        let stack_size = if config.tls.is_some() {
            TLS_STACK_SIZE
        } else {
            STACK_SIZE
        };
        let tls = match &config.tls {
            Some(options) => Some(crate::tls::server_config(options, &config.host)?),
            None => None,
        };
        let listener = match handed_over()? {
            Some(listener) => listener,
            None => {
                let addr = addr::resolve(&config.host, config.port)?
                    .next()
                    .ok_or_else(|| anyhow!("cannot resolve {}: no addresses", config.host))?;
                let backlog = config.backlog.or_else(platform::listen_queue_max);
                match backlog {
                    Some(n) => debug!("listen queue: {n} connections"),
                    None => debug!("listen queue: the system's maximum"),
                }
                listen(addr, backlog, config.reuse_port).map_err(|e| {
                    let hint = match e.kind() {
                        ErrorKind::AddrInUse => {
                            ": another program has that port (--port 0 picks a free one)"
                        }
                        _ => "",
                    };
                    anyhow!("cannot listen on {addr}: {e}{hint}")
                })?
            }
        };
        let local_addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        if platform::ACCEPTED_INHERITS_OPTIONS {
            // Once here rather than five system calls a connection.
            connection::prepare_socket(SockRef::from(&listener), config.keepalive);
        }
        // Accepting waits beside the stop's waker (see `run`).
        listener
            .set_nonblocking(true)
            .context("cannot configure the listening socket")?;
        let health = match config.health_port {
            Some(port) => {
                // The same address, IPv6 scope included (`fe80::1%eth0`).
                let mut addr = local_addr;
                addr.set_port(port);
                let listener = listen(addr, Some(128), false)
                    .with_context(|| format!("cannot listen for health checks on {addr}"))?;
                Some(listener)
            }
            None => None,
        };
        let udp = match config.udp {
            // The same address and port number, IPv6 scope included.
            Some(_) => Some(udp::bind(local_addr, config.reuse_port).map_err(|e| {
                if e.kind() == ErrorKind::AddrInUse {
                    anyhow!(UdpPortTaken(local_addr, e))
                } else {
                    anyhow!("cannot listen on UDP {local_addr}: {e}")
                }
            })?),
            None => None,
        };
        Ok(Server {
            listener,
            health,
            udp,
            udp_thread: None,
            local_addr,
            config,
            shared: Arc::new(Shared::new(proxy_from, tls)),
            waker: Arc::new(Waker::new().context("cannot set up the stop")?),
            workers: Workers::new(Connection::serve, stack_size, THREAD_KEEP_ALIVE),
            thread_warning: RateLimit::default(),
        })
    }

    /// The `listening on` line (what scripts and tests wait for), and readiness to a service
    /// manager; first, a warning if anyone may claim any address through a PROXY header.
    fn announce(&self) -> Result<()> {
        let listening = self.local_addr;
        if self.config.proxy_protocol
            && self.config.proxy_from.is_empty()
            && !listening.ip().is_loopback()
        {
            warn!(
                "--proxy-protocol believes every PROXY header: any client that reaches \
                 {listening} can claim any address; name the balancers with --proxy-from CIDR"
            );
        }
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "listening on {listening}")
            .and_then(|()| stdout.flush())
            .context("cannot write to stdout")?;
        platform::notify_service_manager(ServiceState::Ready);
        Ok(())
    }

    /// Stops this server from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: Arc::clone(&self.shared),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Accepts and serves until stopped, then waits up to the grace period for open connections
    /// and cuts the rest.
    pub fn serve(self) -> Summary {
        let mut limit = LimitLog::default();
        let accept_warning = RateLimit::default();
        while self.wait_for_slot(&mut limit) {
            match self.listener.accept() {
                Ok((stream, peer)) => self.dispatch(stream, peer),
                // Busy, the loop accepts without waiting; idle, it waits beside the waker.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if let Err(e) =
                        platform::wait_readable(SockRef::from(&self.listener), &self.waker)
                    {
                        accept_warning.warn(|held_back| {
                            format!("waiting for connections failed: {e}{held_back}")
                        });
                        thread::sleep(RESOURCE_PAUSE);
                    }
                }
                Err(_) if self.shared.stopping() => break,
                Err(e) => {
                    // A peer that gave up while queued is its own business.
                    if e.kind() != ErrorKind::ConnectionAborted {
                        accept_warning.warn(|held_back| format!("accept failed: {e}{held_back}"));
                    }
                    // Out of descriptors or memory, retrying at once would spin: the pending
                    // connection stays queued and fails again until something closes.
                    thread::sleep(if platform::is_out_of_resources(&e) {
                        RESOURCE_PAUSE
                    } else {
                        Duration::from_millis(5)
                    });
                }
            }
        }
        self.take_queued();
        drop(self.listener);
        let why = self
            .shared
            .stop_reason
            .get()
            .map_or("stopped", String::as_str);
        info!("{why}: no longer accepting, stopping (send it again to exit at once)");
        // The UDP thread saw the stop with the accept loop; its totals are final after this.
        if let Some(thread) = self.udp_thread {
            let _ = thread.join();
        }
        let mut summary = finish_connections(&self.shared, self.config.grace);
        if self.config.udp.is_some() {
            summary.datagrams = Some(self.shared.datagrams.counts());
        }
        summary
    }

    /// Waits while `max_connections` are open. Returns false once the server is stopping.
    fn wait_for_slot(&self, limit: &mut LimitLog) -> bool {
        let max = usize::try_from(self.config.max_connections).unwrap_or(usize::MAX);
        let mut open = self.shared.lock();
        while open.streams.len() >= max && !self.shared.stopping() {
            limit.reached(max);
            open = self.shared.wait(open, None);
        }
        limit.resumed(open.streams.len());
        !self.shared.stopping()
    }

    /// Takes in the connections already queued when the server stops, so that they are served
    /// rather than reset by the close, as far as the connection limit allows. Those that land
    /// in the queue after this, before the close, are reset, unless the system hands them to
    /// another server sharing the port (Linux: `net.ipv4.tcp_migrate_req`).
    fn take_queued(&self) {
        let max = usize::try_from(self.config.max_connections).unwrap_or(usize::MAX);
        while self.shared.lock().streams.len() < max {
            match self.listener.accept() {
                Ok((stream, peer)) => self.dispatch(stream, peer),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn dispatch(&self, stream: TcpStream, peer: SocketAddr) {
        if platform::ACCEPTED_INHERITS_NONBLOCKING
            && let Err(e) = stream.set_nonblocking(false)
        {
            debug!("dropped a connection from {peer}: cannot make it blocking: {e}");
            return;
        }
        let stream = Arc::new(stream);
        let mut open = self.shared.lock();
        let id = open.next_id;
        open.next_id += 1;
        open.streams.insert(id, Arc::clone(&stream));
        drop(open);
        let conn = Connection {
            id,
            peer: SocketAddr::new(peer.ip().to_canonical(), peer.port()),
            via: None,
            stream,
            echoed: 0,
            shared: Arc::clone(&self.shared),
            settings: Settings {
                idle_timeout: self.config.idle_timeout,
                keepalive: self.config.keepalive,
                proxy_protocol: self.config.proxy_protocol,
            },
        };
        self.start(conn);
    }

    /// Runs `job` on a thread. Out of threads (a task limit such as systemd's TasksMax), the
    /// accepted connection waits here and the rest in the listen queue, as when out of
    /// descriptors, until a thread frees up or the server stops.
    fn start(&self, mut job: Connection) {
        let mut refused: u64 = 0;
        while let Err((e, back)) = self.workers.execute(job) {
            job = back;
            refused += 1;
            self.thread_warning.warn(|held_back| {
                format!(
                    "cannot start a thread ({e}): not accepting until one frees up; clients \
                     wait in the listen queue{held_back}"
                )
            });
            if self.shared.stopping() {
                // Dropping the job closes its connection.
                return;
            }
            thread::sleep(RESOURCE_PAUSE);
        }
        if refused > 0 {
            info!("threads available again after {refused} tries: accepting");
        }
    }
}

/// The UDP port of the TCP listener's number is taken.
#[derive(Debug)]
struct UdpPortTaken(SocketAddr, io::Error);

impl std::fmt::Display for UdpPortTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot listen on UDP {}: {}: another program has that UDP port (--port 0 picks \
             a port free for both)",
            self.0, self.1
        )
    }
}

impl std::error::Error for UdpPortTaken {}

/// The listening socket a service manager handed over (systemd's socket activation:
/// `LISTEN_FDS` and `LISTEN_PID` name it), if any. Anything else than a listening TCP socket is
/// an error: accepting on it would fail forever.
fn handed_over() -> Result<Option<TcpListener>> {
    const WHAT: &str = "the socket the service manager handed over";
    let listener = platform::handed_over_socket()
        .with_context(|| format!("cannot use {WHAT}: tcpdemo needs a listening TCP socket"))?;
    let Some(listener) = listener else {
        return Ok(None);
    };
    let needed = "tcpdemo needs a listening TCP socket (systemd: ListenStream= with Accept=no)";
    if let Ok(Some(peer)) = SockRef::from(&listener).peer_addr().map(|a| a.as_socket()) {
        bail!("{WHAT} is a TCP connection (from {peer}), not a listening socket: {needed}");
    }
    if platform::is_listening(&listener) == Some(false) {
        bail!("{WHAT} is a TCP socket that is not listening: {needed}");
    }
    info!("using the listening socket the service manager handed over");
    Ok(Some(listener))
}

/// The listening socket. `backlog` `None` asks for the longest queue the system allows; every
/// system cuts a longer request to its maximum.
fn listen(addr: SocketAddr, backlog: Option<u32>, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(platform::REUSE_ADDRESS)?;
    if reuse_port {
        platform::set_reuse_port(&socket)?;
    }
    if addr.is_ipv6() {
        // Dual-stack where the system allows it; where it does not, IPv6 alone is still useful.
        if let Err(e) = socket.set_only_v6(false) {
            debug!("cannot accept IPv4 on {addr}: {e}");
        }
    }
    socket.bind(&addr.into())?;
    let backlog = backlog.map_or(i32::MAX, |n| i32::try_from(n).unwrap_or(i32::MAX));
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// After the accept loop: waits up to `grace` for open connections, then cuts the rest.
/// (Draining is the earlier step: the health check failing while the port still accepts.)
fn finish_connections(shared: &Shared, grace: Duration) -> Summary {
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
        shared.advance(Phase::Cutting);
        for stream in open.streams.values() {
            platform::interrupt(stream);
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
        datagrams: None,
    }
}

/// The connection limit's two log lines: reached (warn) and resumed (info), once per episode,
/// and no more than one warning in ten seconds while a server hovering at its limit flaps
/// between the two.
struct LimitLog {
    at_limit: bool,
    warning: RateLimit,
}

impl Default for LimitLog {
    fn default() -> LimitLog {
        LimitLog {
            at_limit: false,
            warning: RateLimit::every(WARN_INTERVAL * 10),
        }
    }
}

impl LimitLog {
    fn reached(&mut self, max: usize) {
        if !self.at_limit {
            self.at_limit = true;
            self.warning.warn(|_| {
                format!(
                    "connection limit reached: {max} open; new clients wait in the listen queue"
                )
            });
        }
    }

    fn resumed(&mut self, open: usize) {
        if self.at_limit {
            info!("accepting again: {open} open");
            self.at_limit = false;
        }
    }
}
