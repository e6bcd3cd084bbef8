//! `bench --udp`: flows of datagrams, each numbered, so that what UDP does to them on the way
//! (loss, lateness, duplication, reordering, jitter) is counted rather than guessed.
//!
//! A datagram starts with `HEADER` bytes of uppercase hex (which survives either echo): its
//! sequence number, and when it was due and sent, in ns from the run's start. The rest is the
//! pattern, checked byte for byte. A closed loop (`rr`) sends the next datagram when the reply
//! came or `--udp-timeout` passed; an open loop (`--rate`, and stream) sends on schedule from
//! one thread while another receives.

use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::modes::{Lag, Run, spread_source};
use crate::echo;

/// The header: sequence number, due and sent times, 16 hex digits each.
pub const HEADER: usize = 48;
/// How often a receiving thread looks up from its wait to see whether the run is over.
const LOOK_UP: Duration = Duration::from_millis(50);
/// Room for bursts of replies in an open loop.
const RECEIVE_BUFFER: usize = 4 << 20;

/// How `--udp` runs.
#[derive(Debug, Clone, Copy)]
pub struct UdpOptions {
    /// A reply later than this is late; one that never comes is lost.
    pub timeout: Duration,
    /// Fail the run when more than this percentage is lost.
    pub max_loss: Option<f64>,
}

/// What the datagrams of a run went through; added up over flows.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Datagrams {
    pub sent: u64,
    /// Replies in time, once each.
    pub echoed: u64,
    /// Replies after `--udp-timeout`.
    pub late: u64,
    /// Datagrams with no reply at all.
    pub lost: u64,
    /// Replies to a datagram already answered.
    pub duplicated: u64,
    /// Replies that came after the reply to a later datagram.
    pub reordered: u64,
    /// RFC 3550 interarrival jitter of the round trips, in ns, summed over flows (see `jitter`).
    pub jitter_sum: f64,
    pub flows: u64,
}

impl Datagrams {
    pub fn add(&mut self, other: &Datagrams) {
        self.sent += other.sent;
        self.echoed += other.echoed;
        self.late += other.late;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.jitter_sum += other.jitter_sum;
        self.flows += other.flows;
    }

    /// The share lost, in percent.
    pub fn lost_percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / self.sent as f64
        }
    }

    /// The mean of the flows' jitter, in µs.
    pub fn jitter_micros(&self) -> f64 {
        if self.flows == 0 {
            0.0
        } else {
            self.jitter_sum / self.flows as f64 / 1e3
        }
    }
}

/// A datagram's header, as sent and as it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    /// When it was due and sent, in ns from the run's start.
    pub due: u64,
    pub sent: u64,
}

impl Header {
    pub fn write(self, out: &mut [u8]) {
        for (i, value) in [self.seq, self.due, self.sent].into_iter().enumerate() {
            for (j, byte) in out[i * 16..(i + 1) * 16].iter_mut().enumerate() {
                let nibble = (value >> ((15 - j) * 4)) & 0xF;
                *byte = b"0123456789ABCDEF"[nibble as usize];
            }
        }
    }

    pub fn read(bytes: &[u8]) -> Option<Header> {
        let field = |i: usize| -> Option<u64> {
            bytes
                .get(i * 16..(i + 1) * 16)?
                .iter()
                .try_fold(0u64, |v, &b| {
                    let nibble = match b {
                        b'0'..=b'9' => b - b'0',
                        b'A'..=b'F' => b - b'A' + 10,
                        _ => return None,
                    };
                    Some(v << 4 | u64::from(nibble))
                })
        };
        Some(Header {
            seq: field(0)?,
            due: field(1)?,
            sent: field(2)?,
        })
    }
}

/// One flow's account of its datagrams.
#[derive(Debug, Default)]
pub struct Flow {
    /// Datagrams answered, a bit each by sequence number.
    answered: Vec<u64>,
    /// The latest sequence number answered.
    latest: Option<u64>,
    /// Datagrams sent since measuring began.
    sent: u64,
    counts: Datagrams,
    jitter: Jitter,
}

/// RFC 3550's interarrival jitter (section 6.4.1), as iperf3 reports it: a running mean of how
/// much each transit time differs from the one before, with a gain of 1/16. The transit time
/// here is the round trip.
#[derive(Debug, Default)]
struct Jitter {
    previous: Option<f64>,
    value: f64,
}

impl Jitter {
    fn add(&mut self, transit_ns: f64) {
        if let Some(previous) = self.previous {
            let d = (transit_ns - previous).abs();
            self.value += (d - self.value) / 16.0;
        }
        self.previous = Some(transit_ns);
    }
}

/// What a reply was, to its flow.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// In time, the first for its datagram: time it.
    InTime,
    Late,
    Duplicate,
    /// Not counted: sent before measuring began.
    Unmeasured,
}

impl Flow {
    /// A datagram went out since measuring began.
    pub fn sent(&mut self) {
        self.sent += 1;
    }

    /// The reply to `seq` came, `round_trip` after it was sent; `measured`: it was sent after
    /// the warm-up.
    pub fn replied(
        &mut self,
        seq: u64,
        measured: bool,
        round_trip: Duration,
        timeout: Duration,
    ) -> Reply {
        if !measured {
            return Reply::Unmeasured;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.answered.len() <= word {
            self.answered.resize(word + 1, 0);
        }
        if self.answered[word] & (1 << bit) != 0 {
            self.counts.duplicated += 1;
            return Reply::Duplicate;
        }
        self.answered[word] |= 1 << bit;
        match self.latest {
            Some(latest) if seq < latest => self.counts.reordered += 1,
            _ => self.latest = Some(seq),
        }
        self.jitter.add(round_trip.as_nanos() as f64);
        if round_trip > timeout {
            self.counts.late += 1;
            Reply::Late
        } else {
            self.counts.echoed += 1;
            Reply::InTime
        }
    }

    /// Measured datagrams answered so far, in time or late.
    pub fn answered(&self) -> u64 {
        self.counts.echoed + self.counts.late
    }

    /// The flow's account, once it is over.
    pub fn finish(self) -> Datagrams {
        let answered = self.answered();
        Datagrams {
            sent: self.sent,
            lost: self.sent.saturating_sub(answered),
            jitter_sum: self.jitter.value,
            flows: u64::from(self.sent > 0),
            ..self.counts
        }
    }
}

/// A worker's flow: its own socket, closed or open loop.
pub fn flow(run: &Run, worker: u32, options: UdpOptions) -> Lag {
    let socket = match open(run, worker) {
        Ok(socket) => socket,
        Err(e) => {
            run.recording.error(worker as usize, &e);
            return Lag::default();
        }
    };
    let mut flow = Flow::default();
    let (lag, end) = match run.rate {
        None => closed_loop(run, worker, &socket, &mut flow, options.timeout),
        Some(_) => open_loop(run, worker, &socket, &mut flow, options.timeout),
    };
    run.recording.flow(worker as usize, flow.finish(), end);
    lag
}

/// A socket connected to the server, from a source address of its own where it can be.
fn open(run: &Run, worker: u32) -> io::Result<UdpSocket> {
    // Each flow a peer of its own to the server's --udp-rate, where it can be.
    let source: SocketAddr = match (run.addr, spread_source(run.addr, worker)) {
        (_, Some(source)) => (source, 0).into(),
        (SocketAddr::V4(_), None) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (SocketAddr::V6(_), None) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(source)?;
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(RECEIVE_BUFFER);
    socket.connect(run.addr)?;
    Ok(socket)
}

/// ns from the run's start.
fn since_start(run: &Run, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(run.start).as_nanos()).unwrap_or(u64::MAX)
}

/// Fills `buf` (the datagram) with the header and the pattern.
fn compose(run: &Run, buf: &mut [u8], header: Header) {
    header.write(&mut buf[..HEADER]);
    let len = buf.len() - HEADER;
    buf[HEADER..].copy_from_slice(run.pattern.send(header.seq, len));
}

/// Checks a reply: its header readable, the pattern's echo after it. The header, on success.
fn check(run: &Run, reply: &[u8]) -> io::Result<Header> {
    let wrong = |what: String| io::Error::new(ErrorKind::InvalidData, what);
    if reply.len() != run.size {
        return Err(wrong(format!(
            "a reply is {} bytes, the datagrams sent {}",
            reply.len(),
            run.size
        )));
    }
    let header = Header::read(reply).ok_or_else(|| {
        wrong("a reply's header is not the echo of any header sent (the first 48 bytes)".into())
    })?;
    let body = &reply[HEADER..];
    if body != run.pattern.expect(header.seq, body.len()) {
        let sent = run.pattern.send(header.seq, body.len());
        if let Err(mismatch) = echo::check(run.pattern.echo(), sent, body, HEADER as u64) {
            return Err(wrong(format!("datagram {}: {mismatch}", header.seq)));
        }
    }
    Ok(header)
}

/// Records one reply, by what it was.
fn record(run: &Run, worker: u32, flow: &mut Flow, reply: &[u8], timeout: Duration) {
    let header = match check(run, reply) {
        Ok(header) => header,
        Err(e) => {
            run.recording.error(worker as usize, &e);
            return;
        }
    };
    let done = Instant::now();
    let due = run.start + Duration::from_nanos(header.due);
    let sent = run.start + Duration::from_nanos(header.sent);
    let measured = sent >= run.recording.measure_from();
    let round_trip = done.saturating_duration_since(sent);
    if flow.replied(header.seq, measured, round_trip, timeout) == Reply::InTime {
        run.done(worker, due, sent);
    }
}

/// A receive error that is not the run's end: the server refused (nothing listens, for now),
/// or the wait ran out.
fn receive_failed(run: &Run, worker: u32, e: &io::Error) -> bool {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => false,
        _ => {
            run.recording.error(worker as usize, e);
            true
        }
    }
}

/// Returns where the flow ended against its schedule, and when it was last busy (the run's
/// rates divide by the time to then, not by the wait for replies that never came).
fn closed_loop(
    run: &Run,
    worker: u32,
    socket: &UdpSocket,
    flow: &mut Flow,
    timeout: Duration,
) -> (Lag, Instant) {
    let mut datagram = vec![0u8; run.size];
    let mut reply = vec![0u8; run.size + 1];
    let mut seq = 0u64;
    let mut backoff = super::modes::FIRST_BACKOFF;
    let mut last_reply = run.start;
    let mut wait = LOOK_UP;
    let _ = socket.set_read_timeout(Some(wait));
    while run.going() {
        let sent = Instant::now();
        let at = since_start(run, sent);
        compose(
            run,
            &mut datagram,
            Header {
                seq,
                due: at,
                sent: at,
            },
        );
        if sent >= run.recording.measure_from() {
            flow.sent();
        }
        if let Err(e) = socket.send(&datagram) {
            run.failed(worker, &e, &mut backoff);
            seq += 1;
            continue;
        }
        // Until this datagram's reply, or its timeout; earlier ones' late replies on the way.
        // The socket's timeout changes only near the end (a system call saved per request).
        let until = sent + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || run.stop.load(Ordering::Relaxed) {
                break;
            }
            let want = left.min(LOOK_UP);
            if want < wait || (wait < LOOK_UP && want == LOOK_UP) {
                wait = want;
                let _ = socket.set_read_timeout(Some(wait));
            }
            match socket.recv(&mut reply) {
                Ok(n) => {
                    record(run, worker, flow, &reply[..n], timeout);
                    last_reply = Instant::now();
                    if Header::read(&reply[..n]).is_some_and(|h| h.seq == seq) {
                        backoff = super::modes::FIRST_BACKOFF;
                        break;
                    }
                }
                Err(e) => {
                    if receive_failed(run, worker, &e) {
                        run.failed(worker, &e, &mut backoff);
                        break;
                    }
                }
            }
        }
        seq += 1;
    }
    // A wait past the deadline for a reply that never came is not part of the run.
    (
        Lag::default(),
        last_reply.max(Instant::now().min(run.deadline)),
    )
}

fn open_loop(
    run: &Run,
    worker: u32,
    socket: &UdpSocket,
    flow: &mut Flow,
    timeout: Duration,
) -> (Lag, Instant) {
    let sending = AtomicBool::new(true);
    let measured_sent = AtomicU64::new(0);
    let last_sent = AtomicU64::new(0);
    let mut last_reply = run.start;
    let lag = thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let lag = send_on_schedule(run, worker, socket, &measured_sent, &last_sent);
            sending.store(false, Ordering::Release);
            lag
        });
        let mut reply = vec![0u8; run.size + 1];
        let _ = socket.set_read_timeout(Some(LOOK_UP));
        loop {
            match socket.recv(&mut reply) {
                Ok(n) => {
                    record(run, worker, flow, &reply[..n], timeout);
                    last_reply = Instant::now();
                }
                Err(e) => {
                    receive_failed(run, worker, &e);
                }
            }
            // Replies are awaited until each datagram has one, or for `timeout` after the
            // last went out.
            if !sending.load(Ordering::Acquire) {
                let last = run.start + Duration::from_nanos(last_sent.load(Ordering::Relaxed));
                let all = flow.answered() >= measured_sent.load(Ordering::Relaxed);
                if all || Instant::now() >= last + timeout || run.stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        sender
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    for _ in 0..measured_sent.load(Ordering::Relaxed) {
        flow.sent();
    }
    let last_sent = run.start + Duration::from_nanos(last_sent.load(Ordering::Relaxed));
    (lag, last_sent.max(last_reply))
}

/// The sending half of an open loop: datagrams on schedule, counted once measuring began.
fn send_on_schedule(
    run: &Run,
    worker: u32,
    socket: &UdpSocket,
    measured_sent: &AtomicU64,
    last_sent: &AtomicU64,
) -> Lag {
    let mut schedule = run.schedule(worker);
    let mut datagram = vec![0u8; run.size];
    let mut seq = 0u64;
    let mut backoff = super::modes::FIRST_BACKOFF;
    while let Some(due) = run.next_due(&mut schedule) {
        let sent = Instant::now();
        let at = since_start(run, sent);
        let header = Header {
            seq,
            due: since_start(run, due),
            sent: at,
        };
        compose(run, &mut datagram, header);
        seq += 1;
        match socket.send(&datagram) {
            // A full socket buffer loses the datagram here rather than on the way: still sent.
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => {
                run.failed(worker, &e, &mut backoff);
                continue;
            }
        }
        if sent >= run.recording.measure_from() {
            measured_sent.fetch_add(1, Ordering::Relaxed);
        }
        last_sent.store(at, Ordering::Relaxed);
    }
    run.lag(&schedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_survives_either_echo() {
        let header = Header {
            seq: 0xDEAD_BEEF_0123,
            due: u64::MAX,
            sent: 42,
        };
        let mut bytes = [0u8; HEADER];
        header.write(&mut bytes);
        for echo in [echo::Echo::Uppercase, echo::Echo::Plain] {
            let echoed: Vec<u8> = bytes.iter().map(|&b| echo.of(b)).collect();
            assert_eq!(Header::read(&echoed), Some(header));
        }
        let mut lower = bytes;
        lower.make_ascii_lowercase();
        assert_eq!(
            Header::read(&lower),
            None,
            "only the uppercase echo of a header"
        );
    }

    #[test]
    fn loss_lateness_duplicates_and_reordering_are_told_apart() {
        let timeout = Duration::from_millis(100);
        let fast = Duration::from_millis(1);
        let mut flow = Flow::default();
        for _ in 0..6 {
            flow.sent();
        }
        assert_eq!(flow.replied(0, true, fast, timeout), Reply::InTime);
        assert_eq!(flow.replied(2, true, fast, timeout), Reply::InTime);
        assert_eq!(
            flow.replied(1, true, fast, timeout),
            Reply::InTime,
            "reordered, in time"
        );
        assert_eq!(flow.replied(2, true, fast, timeout), Reply::Duplicate);
        assert_eq!(flow.replied(3, true, timeout * 2, timeout), Reply::Late);
        let d = flow.finish();
        assert_eq!(
            (d.sent, d.echoed, d.late, d.lost, d.duplicated, d.reordered),
            (6, 3, 1, 2, 1, 1)
        );
        assert!((d.lost_percent() - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn what_was_sent_before_measuring_is_not_counted() {
        let mut flow = Flow::default();
        flow.sent();
        assert_eq!(
            flow.replied(0, false, Duration::ZERO, Duration::MAX),
            Reply::Unmeasured
        );
        assert_eq!(flow.finish().lost, 1, "datagram 1, sent after the warm-up");
    }

    #[test]
    fn jitter_follows_rfc_3550() {
        let mut jitter = Jitter::default();
        jitter.add(1000.0);
        assert_eq!(jitter.value, 0.0, "one transit time has no difference yet");
        jitter.add(1160.0);
        assert_eq!(jitter.value, 10.0, "160/16");
        jitter.add(1000.0);
        assert_eq!(jitter.value, 10.0 + (160.0 - 10.0) / 16.0);
    }
}
