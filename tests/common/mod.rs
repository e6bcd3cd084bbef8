//! Helpers for tests that run the real binary: a server guard that starts `tcpdemo server` on
//! port 0, reads the port from its `listening on` line, collects its log, and kills it on drop.
#![allow(dead_code)] // each test file uses its own share of these

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tcpdemo");

pub fn tcpdemo() -> Command {
    let mut command = Command::new(BIN);
    command.env_remove("RUST_LOG");
    command
}

/// The log a child writes to stderr, as it arrives.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<LogText>, Condvar)>);

#[derive(Default)]
pub struct LogText {
    text: String,
    /// The child closed its stderr: it exited, and every line it wrote is here.
    ended: bool,
}

impl std::ops::Deref for LogText {
    type Target = String;
    fn deref(&self) -> &String {
        &self.text
    }
}

impl Log {
    pub fn collect(&self, stream: impl Read + Send + 'static) {
        let log = self.clone();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let (text, changed) = &*log.0;
                let mut text = text.lock().unwrap();
                text.text.push_str(&line);
                text.text.push('\n');
                changed.notify_all();
            }
            log.0.0.lock().unwrap().ended = true;
            log.0.1.notify_all();
        });
    }

    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().text.clone()
    }

    /// Waits up to `timeout` for the child's stderr to close.
    fn wait_for_end(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (text, changed) = &*self.0;
        let mut text = text.lock().unwrap();
        while !text.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            text = changed.wait_timeout(text, left).unwrap().0;
        }
    }

    /// Waits until the log contains `needle` `times` times; false on timeout.
    pub fn wait_for_count(&self, needle: &str, times: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (text, changed) = &*self.0;
        let mut text = text.lock().unwrap();
        while text.matches(needle).count() < times {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            text = changed.wait_timeout(text, left).unwrap().0;
        }
        true
    }

    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_count(needle, 1, timeout)
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub log: Log,
    child: Arc<Mutex<Child>>,
    exited: Receiver<(ExitStatus, String)>,
    status: Option<ExitStatus>,
    /// What the server printed on stdout after its `listening on` line, known once it exited.
    pub more_stdout: String,
    /// The server's stderr, while the test leaves it unread (`spawn_unread`).
    pub stderr: Option<ChildStderr>,
}

impl Server {
    /// `tcpdemo server --port 0 ARGS...`
    pub fn start(args: &[&str]) -> Server {
        let mut command = tcpdemo();
        command.args(["server", "--port", "0"]).args(args);
        Server::spawn(command)
    }

    /// Runs a prepared command that starts a server and prints its `listening on` line.
    pub fn spawn(command: Command) -> Server {
        let mut server = Server::spawn_unread(command);
        server.read_log();
        server
    }

    /// Starts collecting the log of a server from `spawn_unread`.
    pub fn read_log(&mut self) {
        if let Some(stderr) = self.stderr.take() {
            self.log.collect(stderr);
        }
    }

    /// Like `spawn`, but nobody reads the server's stderr until `read_log`.
    pub fn spawn_unread(mut command: Command) -> Server {
        sys::prepare(&mut command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
        let log = Log::default();
        let stderr = child.stderr.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the server's first line");
        let Some(addr) = line.trim_end().strip_prefix("listening on ") else {
            log.collect(stderr.unwrap());
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "server did not start: stdout {line:?}, log:\n{}",
                log.text()
            );
        };
        let addr: SocketAddr = addr.parse().expect("an address in the listening line");
        let child = Arc::new(Mutex::new(child));
        let (tx, exited) = mpsc::channel();
        let waited = Arc::clone(&child);
        thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
            // Polled, so that `kill` can take the child meanwhile.
            loop {
                match waited.lock().unwrap().try_wait() {
                    Ok(Some(status)) => {
                        let _ = tx.send((status, rest));
                        return;
                    }
                    Ok(None) => {}
                    Err(_) => return,
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        Server {
            addr,
            log,
            child,
            exited,
            status: None,
            more_stdout: String::new(),
            stderr,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn port_arg(&self) -> String {
        self.port().to_string()
    }

    pub fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).expect("connect to the server")
    }

    /// A connection the server has surely taken in: `message` went out and came back uppercased.
    pub fn connect_echoing(&self, message: &[u8]) -> TcpStream {
        let mut stream = self.connect();
        stream.write_all(message).unwrap();
        let reply = read_upto(&mut stream, message.len(), Duration::from_secs(10));
        assert_eq!(reply, message.to_ascii_uppercase());
        stream
    }

    fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// CPU time the server has used so far (Linux: from /proc).
    #[cfg(target_os = "linux")]
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("read /proc");
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// Threads the server runs now (Linux: from /proc).
    #[cfg(target_os = "linux")]
    pub fn threads(&self) -> usize {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("a Threads line")
    }

    /// Sends a signal (Unix only: tests of signals in particular).
    #[cfg(unix)]
    pub fn signal(&self, signal: i32) {
        let pid = self.pid() as i32;
        // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "send signal");
    }

    /// Asks the server to stop as a person would: SIGTERM on Unix, Ctrl-Break on Windows.
    /// False, with the reason printed, where this test run cannot (Wine without a console
    /// refuses console events): the test then has nothing to check, which under CI is a
    /// failure.
    #[must_use]
    pub fn stop(&self) -> bool {
        match sys::request_stop(self.pid()) {
            Ok(()) => true,
            Err(e) => {
                cannot_run_here(&format!("cannot ask the server to stop here: {e}"));
                false
            }
        }
    }

    /// Waits for the server to exit; `None` if it is still running after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok((status, rest)) = self.exited.recv_timeout(timeout)
        {
            self.status = Some(status);
            self.more_stdout = rest;
            // Its last lines may still be on their way to us.
            if self.stderr.is_none() {
                self.log.wait_for_end(Duration::from_secs(5));
            }
        }
        self.status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.wait(Duration::ZERO).is_none() {
            let _ = self.child.lock().unwrap().kill();
            let _ = self.wait(Duration::from_secs(10));
        }
    }
}

/// How a test stops a server, by system.
#[cfg(unix)]
mod sys {
    use std::process::Command;

    pub fn prepare(_command: &mut Command) {}

    pub fn request_stop(pid: u32) -> std::io::Result<()> {
        // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
        match unsafe { libc::kill(pid as i32, libc::SIGTERM) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }
}

#[cfg(windows)]
mod sys {
    use std::os::windows::process::CommandExt;
    use std::process::Command;

    use windows_sys::Win32::System::Console::{
        AllocConsole, CTRL_BREAK_EVENT, GenerateConsoleCtrlEvent,
    };

    /// From WinBase.h; the one constant is not worth another feature of windows-sys.
    const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;

    /// A group of its own, so that Ctrl-Break reaches the server and not the tests, on a
    /// console shared with the tests: console events go only to processes on the sender's
    /// console, and a test run from a pipe (CI, Wine) may have none.
    pub fn prepare(command: &mut Command) {
        // SAFETY: a plain call; it fails harmlessly when there is a console already.
        unsafe { AllocConsole() };
        command.creation_flags(CREATE_NEW_PROCESS_GROUP);
    }

    pub fn request_stop(pid: u32) -> std::io::Result<()> {
        // SAFETY: a plain call; the group id is the server's own process id.
        match unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid) } {
            0 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        }
    }
}

/// Whether the tests run as Windows programs under Wine (`tests/wine.sh` says so).
pub fn under_wine() -> bool {
    std::env::var_os("TCPDEMO_UNDER_WINE").is_some()
}

/// The system's own text for an error, as std shows it, e.g. `Connection refused (os error
/// 111)` on Linux: tests compare against it rather than against one system's wording.
pub fn system_text(e: std::io::Error) -> String {
    e.to_string()
}

/// What connecting to a port nobody listens on fails with, here.
pub fn refused_text() -> String {
    let port = closed_port();
    system_text(TcpStream::connect(("127.0.0.1", port)).expect_err("nothing listens"))
}

/// What binding a port already in use fails with, here.
pub fn in_use_text() -> String {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    system_text(
        socket
            .bind(&taken.local_addr().unwrap().into())
            .expect_err("port in use"),
    )
}

/// A client child process whose stdin the test controls.
pub struct Client {
    pub child: Child,
}

impl Client {
    pub fn start(args: &[&str]) -> Client {
        let child = tcpdemo()
            .arg("client")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the client");
        Client { child }
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().unwrap()
    }

    /// Closes stdin and collects the client's output and exit status.
    pub fn finish(&mut self) -> std::process::Output {
        drop(self.child.stdin.take());
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_end(&mut stdout).unwrap();
        }
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_end(&mut stderr).unwrap();
        }
        let status = self.child.wait().unwrap();
        std::process::Output {
            status,
            stdout,
            stderr,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stdin().write_all(bytes).unwrap();
        self.stdin().flush().unwrap();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads from `stream` until `want` bytes arrived, EOF, or `timeout`.
pub fn read_upto(stream: &mut TcpStream, want: usize, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Sends `data` and reads the reply at the same time, then half-closes; returns the reply.
pub fn round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let stream = TcpStream::connect(addr).expect("connect");
    let mut reader = stream.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    thread::scope(|scope| {
        scope.spawn(|| {
            (&stream).write_all(data).unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut reply = Vec::with_capacity(data.len());
        reader.read_to_end(&mut reply).unwrap();
        reply
    })
}

/// A port nothing listens on: bound by the kernel's choice, then released.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits for `child` and returns its exit status and the CPU time it used, user and system.
#[cfg(unix)]
pub fn wait_with_cpu(child: &mut Child) -> (ExitStatus, Duration) {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: all zeroes is a valid rusage, which wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes the status and usage of our own child, not yet reaped.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (
        ExitStatus::from_raw(status),
        time(usage.ru_utime) + time(usage.ru_stime),
    )
}

/// Moves the calling thread (and the processes and threads it starts from now on) into a new
/// network namespace of its own, with its loopback interface up: a test can then change
/// network settings (`sysctl`s, addresses) without touching the machine's. Needs root; `Err`
/// says why it cannot be done here.
#[cfg(target_os = "linux")]
pub fn own_network_namespace() -> Result<(), String> {
    // SAFETY: unshare changes only this thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "cannot make a network namespace (root only): {}",
            std::io::Error::last_os_error()
        ));
    }
    run_here(&["ip", "link", "set", "lo", "up"])
}

/// Runs a command to its end; `Err` with what it said if it failed.
pub fn run_here(argv: &[&str]) -> Result<(), String> {
    let output = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if !output.status.success() {
        return Err(format!(
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// A test that cannot run here says why and passes, off CI; under CI (`CI` set) that is a
/// failure, since it would pass without checking anything.
pub fn cannot_run_here(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "this test cannot run here, and CI must run it: {why}"
    );
    eprintln!("skipped: {why}");
}

/// A program the machine may lack; the test says so and skips (off CI; under CI, it fails).
pub fn have(program: &str) -> bool {
    let found = Command::new(program)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        cannot_run_here(&format!("{program} is not installed"));
    }
    found
}

/// Runs `tcpdemo ARGS` with `stdin` to its end (at most a minute) and returns what it did.
pub fn run(args: &[&str], stdin: &[u8]) -> std::process::Output {
    assert_cmd::Command::new(BIN)
        .env_remove("RUST_LOG")
        .args(args)
        .write_stdin(stdin.to_vec())
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap()
}

/// What a run wrote to stderr, as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A child process killed when the test ends.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tcpdemo-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until something accepts connections on `addr` (HAProxy says nothing when ready).
pub fn wait_until_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// HAProxy running `config` in the foreground, stopped when the test ends.
pub fn haproxy(config: &std::path::Path) -> Guard {
    Guard(
        Command::new("haproxy")
            .arg("-f")
            .arg(config)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}
