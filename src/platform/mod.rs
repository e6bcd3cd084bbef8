//! What differs between systems, behind one interface: Unix (Linux, macOS, the BSDs) in
//! `unix.rs`, Windows in `windows.rs`. Nothing else in tcpdemo needs a `cfg`.

use std::fs::File;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Receiver;
use std::time::Duration;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as system;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as system;

/// Raises the limit on open files as far as the system lets a process, as Go's runtime does at
/// start-up: every connection is one, and the usual soft limit (1024, or 256 on macOS) is far
/// below what a thread-per-connection server can hold. The limit before and after, or `None`
/// where there is no such limit (Windows).
pub fn raise_open_files() -> io::Result<Option<(u64, u64)>> {
    system::raise_open_files()
}

/// The longest listen queue the system grants (Linux: `net.core.somaxconn`, macOS:
/// `kern.ipc.somaxconn`), `None` where it cannot be read; asking for more gets this.
pub fn listen_queue_max() -> Option<u32> {
    system::listen_queue_max()
}

/// Whether a failed `accept` means the process or system ran out of descriptors, sockets or
/// memory: retrying at once would only spin.
pub fn is_out_of_resources(e: &io::Error) -> bool {
    e.raw_os_error()
        .is_some_and(|code| system::OUT_OF_RESOURCES.contains(&code))
}

/// Whether a listening socket should set `SO_REUSEADDR`: on Unix it lets a restarted server
/// bind while old connections linger in TIME_WAIT; on Windows it would let another process
/// take over a port already in use, so std, mio and tokio leave it off there, and so do we.
pub const REUSE_ADDRESS: bool = system::REUSE_ADDRESS;

/// Standard input as an unbuffered `File` of its own: std's `Stdin` copies through a buffer.
pub fn stdin() -> io::Result<File> {
    system::stdin()
}

/// Whether a read of `file` would return at once (data or its end). Windows says so only of
/// disk files: its pipes and consoles cannot be polled.
pub fn ready_to_read(file: &File) -> bool {
    system::ready_to_read(file)
}

/// Standard output as an unbuffered `File` of its own: std's `Stdout` flushes per line.
pub fn stdout() -> io::Result<File> {
    system::stdout()
}

/// Requests to stop, named as the person sent them (`SIGINT`, `Ctrl-C`, …), from now on.
/// Unix: SIGINT, SIGTERM, and SIGHUP (the terminal it runs in was closed). Windows: Ctrl-C,
/// Ctrl-Break and closing the console window.
pub fn stop_requests() -> io::Result<Receiver<&'static str>> {
    system::stop_requests()
}

/// Ends a connection another thread may be blocked on, and wakes that thread. Unix: a shutdown
/// does both. Windows: a shutdown does not wake a blocked `recv` (seen under Wine), so the
/// socket's pending I/O is cancelled too.
pub fn interrupt(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
    system::cancel_io(stream);
}

/// Wakes the threads waiting in `wait_readable`, from any thread, on any system, however
/// the listening socket is shared: nothing goes through the listening port itself. (A
/// connection to the port, the usual trick, may be handed by the kernel to another server on a
/// shared port, or lose an IPv6 scope; shutting the listener down wakes `accept` only on Linux.)
pub struct Waker(system::Waker);

impl Waker {
    pub fn new() -> io::Result<Waker> {
        system::Waker::new().map(Waker)
    }

    pub fn wake(&self) {
        self.0.wake();
    }
}

/// Blocks until `socket` (non-blocking) has a connection to accept or a datagram to read, or
/// `waker` has been woken: a stop is final, so once woken it stays so, for every thread that
/// waits on it.
pub fn wait_readable(socket: socket2::SockRef<'_>, waker: &Waker) -> io::Result<()> {
    system::wait_readable(&socket, &waker.0)
}

/// Keeps a UDP socket usable when a reply draws an ICMP port unreachable. Windows reports one
/// as a `WSAECONNRESET` from the next `recvfrom` (unless `SIO_UDP_CONNRESET` is turned off);
/// Unix reports nothing on a socket that is not connected.
pub fn ignore_unreachable_peers(socket: &std::net::UdpSocket) -> io::Result<()> {
    system::ignore_unreachable_peers(socket)
}

/// Whether stdout and stderr are one terminal, where their lines mix.
pub fn stdout_and_stderr_share_a_terminal() -> bool {
    use std::io::IsTerminal;
    io::stdout().is_terminal() && io::stderr().is_terminal() && system::same_file_as_stderr()
}

/// The socket a service manager handed over (systemd's socket activation: `LISTEN_FDS` and
/// `LISTEN_PID` name it), if any and if it is a TCP socket; Windows has no such thing.
pub fn handed_over_socket() -> io::Result<Option<TcpListener>> {
    system::handed_over_socket()
}

/// Whether a socket is listening for connections (`SO_ACCEPTCONN`); `None` where the system
/// does not say.
pub fn is_listening(listener: &TcpListener) -> Option<bool> {
    system::is_listening(listener)
}

/// Whether a socket accepted from a non-blocking listener is non-blocking too (BSD, macOS and
/// Windows; not Linux), and so must be made blocking for its thread.
pub const ACCEPTED_INHERITS_NONBLOCKING: bool = !cfg!(target_os = "linux");

/// Whether an accepted socket inherits TCP_NODELAY and the keepalive settings from the
/// listening socket (Linux), so that they are set once there, not on each connection.
pub const ACCEPTED_INHERITS_OPTIONS: bool = cfg!(target_os = "linux");

/// CPU time this process has used so far, user and system, where the system tells.
pub fn cpu_time() -> Option<Duration> {
    system::cpu_time()
}

/// Whether every address of 127.0.0.0/8 is this host's (Linux), so that a load generator can
/// spread its connections over many source addresses. macOS and Windows have only 127.0.0.1
/// unless configured otherwise.
pub const LOOPBACK_IS_A_NETWORK: bool = cfg!(target_os = "linux");

/// Asks the system to pick a bound socket's port only at connect time, knowing the destination
/// (Linux: `IP_BIND_ADDRESS_NO_PORT`), so that source ports are shared across destinations and
/// source addresses. Elsewhere nothing: binding then picks the port at once.
pub fn defer_port_choice(socket: &socket2::Socket) {
    system::defer_port_choice(socket);
}

/// How many more memory mappings this process may make (Linux: `vm.max_map_count` less those
/// it has), `None` where the system sets no such limit. Each thread takes about four (its stack
/// and guard page, std's signal stack and its guard page); a thread started past the limit
/// cannot map its signal stack, and std aborts the whole process.
pub fn mappings_left() -> Option<u64> {
    system::mappings_left()
}

/// The socket as written to by bytes that our FIN follows at once, so that they leave in one
/// packet with it (Linux: `MSG_MORE` holds the last partial segment for the FIN, which then
/// rides on it; elsewhere a plain write): one packet, and its handling on both sides, less a
/// connection that sends once and half-closes.
pub struct BeforeFin<'a>(pub &'a TcpStream);

impl io::Write for BeforeFin<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        system::send_before_fin(self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Linux bounds a blocking connect by the socket's write timeout (`SO_SNDTIMEO`).
const CONNECT_OBEYS_WRITE_TIMEOUT: bool = cfg!(target_os = "linux");

/// Connects `socket` to `addr` within `timeout`, and leaves `timeout` as its write timeout.
/// Where a blocking connect obeys the write timeout (Linux), that is all it takes: bench saves
/// the non-blocking round of std's `connect_timeout` (four fcntl and a poll) a connection.
pub fn connect(socket: &socket2::Socket, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let addr = addr.into();
    if !CONNECT_OBEYS_WRITE_TIMEOUT {
        socket.connect_timeout(&addr, timeout)?;
        return socket.set_write_timeout(Some(timeout));
    }
    socket.set_write_timeout(Some(timeout))?;
    loop {
        match socket.connect(&addr) {
            // Linux: called again, connect waits for the connection a signal interrupted.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The timeout passed first.
            Err(e) if connect_in_progress(&e) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
            other => return other,
        }
    }
}

/// Whether a non-blocking connect's error only says it is under way (Unix: `EINPROGRESS`;
/// Windows: `WSAEWOULDBLOCK`).
pub fn connect_in_progress(e: &io::Error) -> bool {
    system::connect_in_progress(e)
}

/// Lets several listening sockets share one port (`SO_REUSEPORT`), where the system has it.
pub fn set_reuse_port(socket: &socket2::Socket) -> io::Result<()> {
    system::set_reuse_port(socket)
}

/// Tells the service manager (systemd, when `NOTIFY_SOCKET` names it) how the service is
/// doing; nothing without one.
pub fn notify_service_manager(state: ServiceState) {
    system::notify_service_manager(state);
}

/// What the service manager is told.
#[derive(Debug, Clone, Copy)]
pub enum ServiceState {
    /// Listening: clients may come.
    Ready,
    /// Stopping: no need to send more.
    Stopping,
}

/// The certificates of the CAs this system trusts, with what could not be read (a line each,
/// for the debug log). Linux, the BSDs and Windows: the system's store, through
/// rustls-native-certs (`SSL_CERT_FILE` and `SSL_CERT_DIR` override it). macOS: the bundle in
/// `/etc/ssl/cert.pem` (or `SSL_CERT_FILE`); roots added to a keychain by hand are not in it.
pub fn system_roots() -> (Vec<rustls_pki_types::CertificateDer<'static>>, Vec<String>) {
    system::system_roots()
}
