//! `--mode hold`: many connections open at once, each echoing one byte every `--interval`.
//!
//! The server under test keeps a thread per connection; bench does not, here: tens of
//! thousands of threads on the client side would measure bench, not the server. One thread
//! runs a poll loop (mio) over every connection: connecting (at `--rate` a second, or as fast
//! as the server takes them, `MAX_CONNECTING` at a time), then a byte each, due on a schedule
//! (an open loop: timed from when it was due), its echo checked.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::IO_TIMEOUT;
use super::modes::{Lag, Run, spread_source};
use crate::platform;

/// Connects in progress at once when no --rate paces them: more would overflow the server's
/// queue of half-open connections, and a dropped SYN costs a second.
const MAX_CONNECTING: usize = 256;

/// How `--mode hold` runs.
#[derive(Debug, Clone, Copy)]
pub struct HoldOptions {
    /// Connections to hold.
    pub connections: u32,
    /// Each connection echoes a byte this often.
    pub every: Duration,
    /// How long to hold them all, once open.
    pub hold: Duration,
}

/// What the opening and the end saw, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Held {
    /// Connections opened, and how long opening them all took.
    pub opened: u64,
    pub opening: Duration,
    /// Open when the hold ended.
    pub at_end: u64,
}

enum State {
    Connecting {
        since: Instant,
    },
    /// Idle until its byte is due.
    Open,
    /// Its byte went out; the echo is awaited.
    Waiting {
        due: Instant,
        sent: Instant,
        byte: u8,
    },
    Closed,
}

struct Conn {
    stream: TcpStream,
    state: State,
    /// Bytes echoed so far: the next byte sent is `b'a' + echoed % 26`.
    echoed: u64,
}

/// Opens and holds the connections; returns what the report needs.
pub fn hold(run: &Run, options: HoldOptions) -> (Lag, Held) {
    match Holder::new(run, options) {
        Ok(mut holder) => {
            let held = holder.run();
            (Lag::default(), held)
        }
        Err(e) => {
            run.recording.error(0, &e);
            (Lag::default(), Held::default())
        }
    }
}

struct Holder<'r, 'a> {
    run: &'r Run<'a>,
    options: HoldOptions,
    poll: Poll,
    conns: Vec<Conn>,
    /// When each open connection's next byte is due.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    connecting: usize,
    /// Connects tried, including those that failed at once.
    tried: usize,
    started: Instant,
    /// When `time_out` next looks over every connection.
    next_scan: Instant,
    /// When the last connection opened (or failed to): the hold runs from then.
    all_open: Option<Instant>,
}

impl<'r, 'a> Holder<'r, 'a> {
    fn new(run: &'r Run<'a>, options: HoldOptions) -> io::Result<Holder<'r, 'a>> {
        Ok(Holder {
            run,
            options,
            poll: Poll::new()?,
            conns: Vec::with_capacity(options.connections as usize),
            due: BinaryHeap::new(),
            connecting: 0,
            tried: 0,
            started: Instant::now(),
            next_scan: Instant::now(),
            all_open: None,
        })
    }

    fn run(&mut self) -> Held {
        let mut events = Events::with_capacity(1024);
        let total = self.options.connections as usize;
        let mut opened = 0u64;
        loop {
            let now = Instant::now();
            if self.run.stop.load(Ordering::Relaxed) {
                break;
            }
            // Open more, at --rate or as fast as the server takes them.
            while self.tried < total && self.may_connect(now) {
                self.tried += 1;
                match self.connect(self.conns.len()) {
                    Ok(stream) => {
                        self.conns.push(Conn {
                            stream,
                            state: State::Connecting { since: now },
                            echoed: 0,
                        });
                        self.connecting += 1;
                    }
                    Err(e) => self.run.recording.error(0, &e),
                }
            }
            if self.all_open.is_none() && self.tried == total && self.connecting == 0 {
                self.all_open = Some(now);
            }
            if let Some(all) = self.all_open
                && now >= all + self.options.hold
            {
                break;
            }
            self.send_due(now);
            self.time_out(now);
            let timeout = self.next_wake(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    self.run.recording.error(0, &e);
                    break;
                }
                continue;
            }
            for event in &events {
                let index = event.token().0;
                if matches!(self.conns[index].state, State::Connecting { .. }) {
                    if self.connected(index) {
                        opened += 1;
                    }
                } else if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.receive(index);
                }
            }
        }
        // A byte unanswered for a whole interval is a stall, whatever the run's end cut short
        // (a connection the server never accepted waits in its listen queue, open but mute).
        let now = Instant::now();
        for index in 0..self.conns.len() {
            if let State::Waiting { sent, .. } = self.conns[index].state {
                let waited = now.duration_since(sent);
                if waited >= self.options.every {
                    let e = io::Error::new(
                        ErrorKind::TimedOut,
                        format!("no echo for {waited:.1?} when the hold ended"),
                    );
                    self.fail(index, &e);
                }
            }
        }
        let at_end = self.run.progress.open.load(Ordering::Relaxed);
        let opening = self
            .all_open
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(self.started);
        for conn in &mut self.conns {
            if !matches!(conn.state, State::Closed) {
                conn.state = State::Closed;
                self.run.progress.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Held {
            opened,
            opening,
            at_end,
        }
    }

    fn may_connect(&self, now: Instant) -> bool {
        match self.run.rate {
            Some(rate) => {
                let due = self.started + Duration::from_secs_f64(self.tried as f64 / rate);
                now >= due
            }
            None => self.connecting < MAX_CONNECTING,
        }
    }

    /// A non-blocking connect, from the next source address where the system has many.
    fn connect(&self, index: usize) -> io::Result<TcpStream> {
        let addr = self.run.addr;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        // One source address has some 28,000 ports.
        if let Some(source) = spread_source(addr, index as u32) {
            platform::defer_port_choice(&socket);
            socket.bind(&SocketAddr::from((source, 0)).into())?;
        }
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if platform::connect_in_progress(&e) => {}
            Err(e) => return Err(e),
        }
        socket.set_tcp_nodelay(true)?;
        let mut stream = TcpStream::from_std(socket.into());
        self.poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(stream)
    }

    /// A connecting socket's event: open now, failed, or not yet. True once open.
    fn connected(&mut self, index: usize) -> bool {
        let conn = &mut self.conns[index];
        match conn.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.fail(index, &e);
                return false;
            }
        }
        match conn.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotConnected => return false,
            Err(e) => {
                self.fail(index, &e);
                return false;
            }
        }
        let now = Instant::now();
        conn.state = State::Open;
        self.connecting -= 1;
        let open = self.run.progress.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.run
            .progress
            .peak_open
            .fetch_max(open, Ordering::Relaxed);
        // Only reads matter from now on.
        let _ = self.poll.registry().reregister(
            &mut self.conns[index].stream,
            Token(index),
            Interest::READABLE,
        );
        // Spread over the interval, so the bytes do not all go at once.
        let offset = self.options.every.mul_f64((index % 1000) as f64 / 1000.0);
        self.due.push(Reverse((now + offset, index)));
        true
    }

    /// Sends each open connection's byte that is due.
    fn send_due(&mut self, now: Instant) {
        while let Some(&Reverse((due, index))) = self.due.peek() {
            if due > now {
                return;
            }
            self.due.pop();
            let conn = &mut self.conns[index];
            if !matches!(conn.state, State::Open) {
                continue;
            }
            let byte = b'a' + (conn.echoed % 26) as u8;
            // Before the write: on loopback the echo can be back before the write returns.
            let sent = Instant::now();
            match conn.stream.write(&[byte]) {
                Ok(1) => conn.state = State::Waiting { due, sent, byte },
                Ok(_) => self.fail(index, &io::Error::from(ErrorKind::WriteZero)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // One byte does not fit: the server stopped reading. Try again soon.
                    self.due
                        .push(Reverse((now + Duration::from_millis(10), index)));
                }
                Err(e) => self.fail(index, &e),
            }
        }
    }

    /// Reads an echo, or the end of a connection.
    fn receive(&mut self, index: usize) {
        let mut buf = [0u8; 64];
        loop {
            let conn = &mut self.conns[index];
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    let e = io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the server closed a held connection",
                    );
                    return self.fail(index, &e);
                }
                Ok(n) => {
                    let State::Waiting { due, sent, byte } = conn.state else {
                        let e = io::Error::new(ErrorKind::InvalidData, "bytes nobody asked for");
                        return self.fail(index, &e);
                    };
                    let expected = self.run.pattern.echo().of(byte);
                    if n != 1 || buf[0] != expected {
                        let e = io::Error::new(
                            ErrorKind::InvalidData,
                            format!(
                                "the echo of {:?} came back as {:?}",
                                byte as char,
                                &buf[..n]
                            ),
                        );
                        return self.fail(index, &e);
                    }
                    conn.echoed += 1;
                    conn.state = State::Open;
                    // Counted and timed once all are open: while the server starts thousands of
                    // threads, its memory map's lock holds up page faults, and echoes with
                    // them. Timed from the send: the poll's millisecond timeouts make a byte
                    // up to a millisecond late on its schedule, which is bench's doing.
                    if self.all_open.is_some_and(|all| sent >= all) {
                        self.run.done(0, sent, sent);
                    }
                    self.due.push(Reverse((due + self.options.every, index)));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(index, &e),
            }
        }
    }

    /// Fails connections whose connect or echo takes longer than `IO_TIMEOUT`.
    fn time_out(&mut self, now: Instant) {
        // A scan of every connection, once a second, is enough for a 10 s limit.
        if now < self.next_scan {
            return;
        }
        self.next_scan = now + Duration::from_secs(1);
        for index in 0..self.conns.len() {
            let late = match self.conns[index].state {
                State::Connecting { since } => now.duration_since(since) > IO_TIMEOUT,
                State::Waiting { sent, .. } => now.duration_since(sent) > IO_TIMEOUT,
                _ => false,
            };
            if late {
                let e = io::Error::new(
                    ErrorKind::TimedOut,
                    format!("no answer from the server for {IO_TIMEOUT:?}"),
                );
                self.fail(index, &e);
            }
        }
    }

    /// How long the poll may wait: until the next byte or connect is due.
    fn next_wake(&self, now: Instant) -> Duration {
        let mut wake = now + Duration::from_millis(20);
        if let Some(Reverse((due, _))) = self.due.peek() {
            wake = wake.min(*due);
        }
        wake.saturating_duration_since(now)
    }

    fn fail(&mut self, index: usize, e: &io::Error) {
        self.run.recording.error(0, e);
        let conn = &mut self.conns[index];
        match conn.state {
            State::Connecting { .. } => self.connecting -= 1,
            State::Open | State::Waiting { .. } => {
                self.run.progress.open.fetch_sub(1, Ordering::Relaxed);
            }
            State::Closed => return,
        }
        conn.state = State::Closed;
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    }
}
