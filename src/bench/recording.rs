//! What the workers record: operations, bytes, latencies and errors by kind, in total and for
//! the current interval.
//!
//! Workers share a few recorders (`SHARDS`), each behind a lock taken once per operation: cheap
//! beside a round trip, and it keeps memory bounded however many connections run (a histogram
//! of 3 significant digits over nanoseconds takes about 200 KiB).

use std::io::{self, ErrorKind};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::udp::Datagrams;
use crate::stall;

/// Recorders shared by the workers.
const SHARDS: usize = 8;

/// What went wrong, for `errors_by_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connect was refused: nothing listens.
    Refused,
    /// The connection was reset.
    Reset,
    /// The server closed before the whole reply came back.
    ClosedEarly,
    /// No reply, or no progress writing, for the I/O timeout; or a connect that timed out.
    Stalled,
    /// A reply byte was not the expected one.
    WrongBytes,
    /// A TLS handshake failed, or a record did not decrypt.
    Tls,
    Other,
}

impl Failure {
    pub const ALL: [Failure; 7] = [
        Failure::Refused,
        Failure::Reset,
        Failure::ClosedEarly,
        Failure::Stalled,
        Failure::WrongBytes,
        Failure::Tls,
        Failure::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Reset => "reset",
            Failure::ClosedEarly => "closed_early",
            Failure::Stalled => "stalled",
            Failure::WrongBytes => "wrong_bytes",
            Failure::Tls => "tls",
            Failure::Other => "other",
        }
    }

    pub fn of(e: &io::Error) -> Failure {
        if crate::tls::is_tls(e) {
            return Failure::Tls;
        }
        if stall::is_timeout(e) {
            return Failure::Stalled;
        }
        match e.kind() {
            ErrorKind::ConnectionRefused => Failure::Refused,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                Failure::Reset
            }
            ErrorKind::UnexpectedEof => Failure::ClosedEarly,
            ErrorKind::InvalidData => Failure::WrongBytes,
            _ => Failure::Other,
        }
    }
}

/// Counts and latencies over some span of the run.
#[derive(Clone)]
pub struct Stats {
    pub operations: u64,
    pub sent: u64,
    pub received: u64,
    pub errors: [u64; Failure::ALL.len()],
    pub first_error: Option<String>,
    /// From when each operation was due (open loop) or sent (closed loop) to its end, in ns.
    pub latency: Histogram<u64>,
    /// From when each operation was sent to its end, in ns: filled only in an open loop, where
    /// it differs from `latency`.
    pub service: Histogram<u64>,
    /// TLS handshakes, how many resumed a session, and how long each took, in ns.
    pub handshakes: u64,
    pub resumed: u64,
    pub handshake: Histogram<u64>,
    /// `--udp`: what happened to the datagrams, added as each flow ends.
    pub datagrams: Datagrams,
}

fn histogram() -> Histogram<u64> {
    // 3 significant digits: 0.1% resolution, as HdrHistogram's own tools default to.
    Histogram::new(3).expect("3 significant digits is a valid precision")
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            operations: 0,
            sent: 0,
            received: 0,
            errors: [0; Failure::ALL.len()],
            first_error: None,
            latency: histogram(),
            service: histogram(),
            handshakes: 0,
            resumed: 0,
            handshake: histogram(),
            datagrams: Datagrams::default(),
        }
    }

    pub fn errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn add(&mut self, other: &Stats) {
        self.operations += other.operations;
        self.sent += other.sent;
        self.received += other.received;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        // Both auto-resize, so adding cannot fail for want of range.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        let _ = self.handshake.add(&other.handshake);
        self.datagrams.add(&other.datagrams);
    }

    fn error(&mut self, failure: Failure, text: &dyn std::fmt::Display) {
        self.errors[failure as usize] += 1;
        if self.first_error.is_none() {
            self.first_error = Some(text.to_string());
        }
    }
}

/// One shard of the recording, shared by some workers: figures since measuring began, and in the current interval.
struct Shard {
    total: Stats,
    interval: Stats,
}

/// A run's figures, in shards, and when measuring begins (after the warm-up).
pub struct Recording {
    shards: Vec<Mutex<Shard>>,
    measure_from: Instant,
    paced: bool,
    flows_ended: Mutex<Option<Instant>>,
}

/// When an operation was due, sent and done.
#[derive(Clone, Copy)]
pub struct Timing {
    pub due: Instant,
    pub sent: Instant,
    pub done: Instant,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

impl Recording {
    pub fn new(measure_from: Instant, paced: bool) -> Recording {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    total: Stats::new(),
                    interval: Stats::new(),
                })
            })
            .collect();
        Recording {
            shards,
            measure_from,
            paced,
            flows_ended: Mutex::new(None),
        }
    }

    fn shard(&self, worker: usize) -> MutexGuard<'_, Shard> {
        self.shards[worker % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// An operation (a request, a connection, a write) of `size` bytes each way went well.
    pub fn ok(&self, worker: usize, timing: Timing, size: usize) {
        if timing.done < self.measure_from {
            return;
        }
        let latency = nanos(timing.done - timing.due);
        let service = nanos(timing.done - timing.sent);
        let mut recorder = self.shard(worker);
        let Shard { total, interval } = &mut *recorder;
        for stats in [total, interval] {
            stats.operations += 1;
            stats.sent += size as u64;
            stats.received += size as u64;
            let _ = stats.latency.record(latency);
            if self.paced {
                let _ = stats.service.record(service);
            }
        }
    }

    /// Bytes moved outside request/response (stream mode), counted but not timed.
    pub fn moved(&self, worker: usize, operations: u64, sent: u64, received: u64) {
        if Instant::now() < self.measure_from {
            return;
        }
        let mut recorder = self.shard(worker);
        let Shard { total, interval } = &mut *recorder;
        for stats in [total, interval] {
            stats.operations += operations;
            stats.sent += sent;
            stats.received += received;
        }
    }

    /// When measuring begins: the warm-up's end.
    pub fn measure_from(&self) -> Instant {
        self.measure_from
    }

    /// A UDP flow ended, with this account of its datagrams (counted in the total only: a
    /// flow's loss is known only at its end).
    /// `end`: when the flow was last busy.
    pub fn flow(&self, worker: usize, datagrams: Datagrams, end: Instant) {
        self.shard(worker).total.datagrams.add(&datagrams);
        let mut last = self
            .flows_ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *last = Some(last.map_or(end, |last| last.max(end)));
    }

    /// When the last UDP flow was last busy.
    pub fn flows_ended(&self) -> Option<Instant> {
        *self
            .flows_ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A TLS handshake that took `took`.
    pub fn handshake(&self, worker: usize, took: Duration, resumed: bool) {
        if Instant::now() < self.measure_from {
            return;
        }
        let mut recorder = self.shard(worker);
        let Shard { total, interval } = &mut *recorder;
        for stats in [total, interval] {
            stats.handshakes += 1;
            stats.resumed += u64::from(resumed);
            let _ = stats.handshake.record(nanos(took));
        }
    }

    pub fn error(&self, worker: usize, e: &io::Error) {
        if Instant::now() < self.measure_from {
            return;
        }
        let failure = Failure::of(e);
        let mut recorder = self.shard(worker);
        recorder.total.error(failure, e);
        recorder.interval.error(failure, e);
    }

    /// What was recorded since the last call, across all workers.
    pub fn take_interval(&self) -> Stats {
        let mut sum = Stats::new();
        for shard in 0..SHARDS {
            let mut recorder = self.shard(shard);
            sum.add(&recorder.interval);
            recorder.interval = Stats::new();
        }
        sum
    }

    /// Everything recorded since measuring began.
    pub fn total(&self) -> Stats {
        let mut sum = Stats::new();
        for shard in 0..SHARDS {
            sum.add(&self.shard(shard).total);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_kind_and_add_up() {
        let recording = Recording::new(Instant::now(), false);
        for kind in [
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionReset,
            ErrorKind::UnexpectedEof,
            ErrorKind::TimedOut,
            ErrorKind::InvalidData,
            ErrorKind::InvalidData,
        ] {
            recording.error(3, &io::Error::new(kind, "x"));
        }
        let total = recording.total();
        assert_eq!(total.errors(), 6);
        assert_eq!(total.errors[Failure::WrongBytes as usize], 2);
        assert_eq!(total.errors[Failure::Other as usize], 0);
    }

    #[test]
    fn nothing_before_the_warmup_ends_is_recorded() {
        let later = Instant::now() + Duration::from_secs(60);
        let recording = Recording::new(later, false);
        let now = Instant::now();
        let timing = Timing {
            due: now,
            sent: now,
            done: now,
        };
        recording.ok(0, timing, 64);
        recording.error(0, &io::Error::other("x"));
        assert_eq!(recording.total().operations, 0);
        assert_eq!(recording.total().errors(), 0);
    }

    #[test]
    fn an_open_loop_times_from_when_due() {
        let recording = Recording::new(Instant::now(), true);
        let due = Instant::now();
        let timing = Timing {
            due,
            sent: due + Duration::from_millis(900),
            done: due + Duration::from_millis(901),
        };
        recording.ok(0, timing, 64);
        let interval = recording.take_interval();
        assert!(interval.latency.max() >= 900_000_000);
        assert!(interval.service.max() < 2_000_000);
        assert_eq!(recording.take_interval().operations, 0, "taken once");
        assert_eq!(recording.total().operations, 1);
    }
}
