//! Windows.

use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::windows::io::{AsHandle, AsRawSocket};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use windows_sys::Win32::Foundation::{FALSE, FILETIME, HANDLE, TRUE};
use windows_sys::Win32::Networking::WinSock::{
    POLLRDNORM, SIO_UDP_CONNRESET, SOCKET, WSAIoctl, WSAPOLLFD, WSAPoll,
};
use windows_sys::Win32::System::Console::{
    CTRL_BREAK_EVENT, CTRL_C_EVENT, CTRL_CLOSE_EVENT, SetConsoleCtrlHandler,
};
use windows_sys::Win32::System::IO::CancelIoEx;
use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};
use windows_sys::core::BOOL;

/// WSAEMFILE, WSAENOBUFS: out of sockets or of buffer space for them.
pub const OUT_OF_RESOURCES: [i32; 2] = [10024, 10055];
pub const REUSE_ADDRESS: bool = false;

/// Windows has no per-process limit on open sockets to raise.
pub fn raise_open_files() -> io::Result<Option<(u64, u64)>> {
    Ok(None)
}

/// Winsock picks its own maximum when asked for `SOMAXCONN`, which the caller's request for the
/// largest queue amounts to.
pub fn listen_queue_max() -> Option<u32> {
    None
}

pub fn stdin() -> io::Result<File> {
    Ok(File::from(io::stdin().as_handle().try_clone_to_owned()?))
}

pub fn ready_to_read(file: &File) -> bool {
    // A disk file always is; pipes and consoles cannot be polled, so they are never said to be.
    file.metadata().is_ok_and(|m| m.is_file())
}

pub fn stdout() -> io::Result<File> {
    Ok(File::from(io::stdout().as_handle().try_clone_to_owned()?))
}

pub fn cpu_time() -> Option<Duration> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: GetProcessTimes only writes the four structs we pass.
    let ok = unsafe {
        GetProcessTimes(
            GetCurrentProcess(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    // FILETIMEs count 100 ns ticks.
    let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    (ok != 0).then(|| Duration::from_nanos((ticks(kernel) + ticks(user)) * 100))
}

pub fn defer_port_choice(_socket: &socket2::Socket) {}

pub fn set_reuse_port(_socket: &socket2::Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "Windows has no SO_REUSEPORT: one server per port",
    ))
}

/// Windows services are told otherwise; systemd is not there.
pub fn notify_service_manager(_state: super::ServiceState) {}

/// Cancels the I/O pending on the socket, whichever thread waits on it.
pub fn cancel_io(stream: &TcpStream) {
    // SAFETY: the socket stays open for the call; a null OVERLAPPED cancels all its I/O.
    unsafe { CancelIoEx(stream.as_raw_socket() as HANDLE, std::ptr::null()) };
}

/// Where the console handler, which Windows runs on a thread of its own, sends what it got.
static REQUESTS: Mutex<Option<Sender<&'static str>>> = Mutex::new(None);

/// How long the handler holds on after the console was closed: Windows ends the process when the
/// handler returns, or after about 5 s, so this lets the stop run its course meanwhile.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

unsafe extern "system" fn on_console_event(event: u32) -> BOOL {
    let name = match event {
        CTRL_C_EVENT => "Ctrl-C",
        CTRL_BREAK_EVENT => "Ctrl-Break",
        CTRL_CLOSE_EVENT => "console closed",
        _ => return FALSE,
    };
    if let Ok(guard) = REQUESTS.lock()
        && let Some(tx) = guard.as_ref()
    {
        let _ = tx.send(name);
    }
    if event == CTRL_CLOSE_EVENT {
        std::thread::sleep(CLOSE_WAIT);
    }
    TRUE
}

pub fn stop_requests() -> io::Result<Receiver<&'static str>> {
    let (tx, rx) = mpsc::channel();
    *REQUESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx);
    // SAFETY: the handler is a plain function that lives as long as the process.
    if unsafe { SetConsoleCtrlHandler(Some(on_console_event), TRUE) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rx)
}

/// A UDP socket on loopback that sends to itself: Windows has no socket pair, and `WSAPoll`
/// waits on sockets only.
pub struct Waker {
    socket: UdpSocket,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(socket.local_addr()?)?;
        socket.set_nonblocking(true)?;
        Ok(Waker { socket })
    }

    pub fn wake(&self) {
        let _ = self.socket.send(&[1]);
    }
}

pub fn wait_readable(socket: &socket2::Socket, waker: &Waker) -> io::Result<()> {
    let pollfd = |socket: SOCKET| WSAPOLLFD {
        fd: socket,
        events: POLLRDNORM,
        revents: 0,
    };
    let mut fds = [
        pollfd(socket.as_raw_socket() as SOCKET),
        pollfd(waker.socket.as_raw_socket() as SOCKET),
    ];
    // SAFETY: WSAPoll reads and writes only the two entries we pass, whose sockets stay open.
    if unsafe { WSAPoll(fds.as_mut_ptr(), fds.len() as u32, -1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn ignore_unreachable_peers(socket: &UdpSocket) -> io::Result<()> {
    let off: u32 = 0;
    let mut returned: u32 = 0;
    // SAFETY: WSAIoctl reads the 4-byte BOOL we pass and writes only `returned`; no overlapped
    // I/O, so nothing outlives the call.
    let result = unsafe {
        WSAIoctl(
            socket.as_raw_socket() as SOCKET,
            SIO_UDP_CONNRESET,
            (&off as *const u32).cast(),
            4,
            std::ptr::null_mut(),
            0,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Windows has no socket activation to hand over a socket that is not listening.
pub fn is_listening(_listener: &TcpListener) -> Option<bool> {
    None
}

/// Both are consoles: a process has one console.
pub fn same_file_as_stderr() -> bool {
    true
}

/// Windows has no socket activation.
pub fn handed_over_socket() -> io::Result<Option<TcpListener>> {
    Ok(None)
}

pub fn system_roots() -> (Vec<rustls_pki_types::CertificateDer<'static>>, Vec<String>) {
    let found = rustls_native_certs::load_native_certs();
    let errors = found.errors.iter().map(ToString::to_string).collect();
    (found.certs, errors)
}

pub fn send_before_fin(mut stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    use std::io::Write;
    stream.write(buf)
}

pub fn connect_in_progress(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

pub fn mappings_left() -> Option<u64> {
    None
}
