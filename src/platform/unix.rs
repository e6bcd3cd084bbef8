//! Unix: Linux, macOS and the BSDs.

use std::fs::File;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

pub const OUT_OF_RESOURCES: [i32; 4] = [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM];
pub const REUSE_ADDRESS: bool = true;

pub fn raise_open_files() -> io::Result<Option<(u64, u64)>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    let target = match max_files_per_process() {
        // macOS: the hard limit is usually "unlimited", which the soft limit may not be set to.
        Some(max) => limit.rlim_max.min(max),
        None => limit.rlim_max,
    };
    if limit.rlim_cur < target {
        limit.rlim_cur = target;
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(Some((as_u64(before), as_u64(limit.rlim_cur))))
}

#[allow(clippy::useless_conversion)] // rlim_t is u64 on Linux and macOS, not everywhere
fn as_u64(value: libc::rlim_t) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// The most open files a process may have, where the hard limit does not say (as Go's
/// `os/rlimit_darwin.go` reads it).
#[cfg(target_os = "macos")]
fn max_files_per_process() -> Option<libc::rlim_t> {
    sysctl_int(c"kern.maxfilesperproc").map(|n| n as libc::rlim_t)
}

#[cfg(not(target_os = "macos"))]
fn max_files_per_process() -> Option<libc::rlim_t> {
    None
}

#[cfg(target_os = "linux")]
pub fn listen_queue_max() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(target_os = "macos")]
pub fn listen_queue_max() -> Option<u32> {
    sysctl_int(c"kern.ipc.somaxconn").and_then(|n| u32::try_from(n).ok())
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn listen_queue_max() -> Option<u32> {
    None
}

#[cfg(target_os = "macos")]
fn sysctl_int(name: &std::ffi::CStr) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>();
    // SAFETY: sysctlbyname writes at most `len` bytes into `value`, and sets `len`.
    let status = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (status == 0 && len == std::mem::size_of::<libc::c_int>()).then_some(value)
}

pub fn stdin() -> io::Result<File> {
    Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
}

pub fn ready_to_read(file: &File) -> bool {
    let mut fds = [libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: poll reads and writes only the pollfd we pass, whose descriptor stays open.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    ready > 0 && fds[0].revents != 0
}

pub fn stdout() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

pub fn cpu_time() -> Option<Duration> {
    // SAFETY: getrusage only writes into the struct we pass; all zeroes is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

#[cfg(target_os = "linux")]
pub fn defer_port_choice(socket: &socket2::Socket) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from a pointer to one, on a socket we own. A kernel
    // without the option (before 4.2) refuses it, and binding then picks the port as usual.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

#[cfg(not(target_os = "linux"))]
pub fn defer_port_choice(_socket: &socket2::Socket) {}

#[cfg(target_os = "linux")]
pub fn send_before_fin(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    socket2::SockRef::from(stream).send_with_flags(buf, libc::MSG_MORE | libc::MSG_NOSIGNAL)
}

#[cfg(not(target_os = "linux"))]
pub fn send_before_fin(mut stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    stream.write(buf)
}

pub fn set_reuse_port(socket: &socket2::Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

pub fn notify_service_manager(state: super::ServiceState) {
    use sd_notify::NotifyState;
    let state = match state {
        super::ServiceState::Ready => NotifyState::Ready,
        super::ServiceState::Stopping => NotifyState::Stopping,
    };
    if let Err(e) = sd_notify::notify(&[state]) {
        log::debug!("cannot notify the service manager: {e}");
    }
}

/// A shutdown already woke the thread.
pub fn cancel_io(_stream: &TcpStream) {}

pub fn stop_requests() -> io::Result<Receiver<&'static str>> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = match signal {
                    SIGINT => "SIGINT",
                    SIGHUP => "SIGHUP",
                    _ => "SIGTERM",
                };
                if tx.send(name).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}

/// A socket pair: `wake` writes a byte to one end, which makes the other readable.
pub struct Waker {
    readable: UnixStream,
    writable: UnixStream,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        let (readable, writable) = UnixStream::pair()?;
        readable.set_nonblocking(true)?;
        writable.set_nonblocking(true)?;
        Ok(Waker { readable, writable })
    }

    pub fn wake(&self) {
        // A full buffer already holds a wake-up.
        let _ = (&self.writable).write(&[1]);
    }
}

pub fn wait_readable(socket: &socket2::Socket, waker: &Waker) -> io::Result<()> {
    let mut fds = [
        libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: waker.readable.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: poll reads and writes only the two pollfds we pass, whose descriptors stay open.
    if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

pub fn ignore_unreachable_peers(_socket: &std::net::UdpSocket) -> io::Result<()> {
    Ok(())
}

pub fn is_listening(listener: &TcpListener) -> Option<bool> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, on a socket we hold.
    let status = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (status == 0).then_some(value != 0)
}

/// Whether stdout and stderr are the same file (device and inode).
pub fn same_file_as_stderr() -> bool {
    use std::os::unix::fs::MetadataExt;
    let metadata = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(File::from)
            .and_then(|f| f.metadata())
    };
    match (
        metadata(io::stdout().as_fd()),
        metadata(io::stderr().as_fd()),
    ) {
        (Ok(out), Ok(err)) => {
            (out.dev(), out.ino(), out.rdev()) == (err.dev(), err.ino(), err.rdev())
        }
        _ => false,
    }
}

pub fn handed_over_socket() -> io::Result<Option<TcpListener>> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let Some(fd) = sd_notify::listen_fds()?.next() else {
        return Ok(None);
    };
    // SAFETY: fcntl only reads the descriptor's flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not open"),
        ));
    }
    // SAFETY: the service manager passed this open descriptor to us alone; nothing else owns
    // it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let socket = socket2::Socket::from(owned);
    let is_tcp = socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM)
        && socket.local_addr().is_ok_and(|a| a.as_socket().is_some());
    if !is_tcp {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd} is not a TCP socket"),
        ));
    }
    Ok(Some(socket.into()))
}

#[cfg(not(target_os = "macos"))]
pub fn system_roots() -> (Vec<rustls_pki_types::CertificateDer<'static>>, Vec<String>) {
    let found = rustls_native_certs::load_native_certs();
    let errors = found.errors.iter().map(ToString::to_string).collect();
    (found.certs, errors)
}

/// rustls-native-certs reads the keychains through Security.framework, which cannot be linked
/// without Apple's SDK (cross builds use zig); the system bundle needs no framework.
#[cfg(target_os = "macos")]
pub fn system_roots() -> (Vec<rustls_pki_types::CertificateDer<'static>>, Vec<String>) {
    use rustls_pki_types::pem::PemObject;
    let path = std::env::var_os("SSL_CERT_FILE").unwrap_or_else(|| "/etc/ssl/cert.pem".into());
    let (mut certs, mut errors) = (Vec::new(), Vec::new());
    match rustls_pki_types::CertificateDer::pem_file_iter(&path) {
        Ok(iter) => {
            for cert in iter {
                match cert {
                    Ok(cert) => certs.push(cert),
                    Err(e) => errors.push(format!("{}: {e:?}", path.display())),
                }
            }
        }
        Err(e) => errors.push(format!("{}: {e:?}", std::path::Path::new(&path).display())),
    }
    (certs, errors)
}

pub fn connect_in_progress(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINPROGRESS)
}

#[cfg(target_os = "linux")]
pub fn mappings_left() -> Option<u64> {
    let max: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let used = std::fs::read("/proc/self/maps")
        .ok()?
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    Some(max.saturating_sub(used))
}

#[cfg(not(target_os = "linux"))]
pub fn mappings_left() -> Option<u64> {
    None
}
