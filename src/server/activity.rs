//! What the server's log says about its connections, kept readable at any connection rate.
//!
//! A person who connects a few clients sees each connection's open and close line. When lines
//! come faster than a person reads (about 20 connections a second), the per-connection lines
//! give way to one summary line a second until a whole second is quiet again; `-v` keeps them
//! all. The budget is handed out a quarter of a second at a time, so a burst shows at most a
//! handful of lines before its summary. Repeated
//! warnings get a line a second with a count of the rest. Deciding costs a few atomic operations
//! per connection, so the default log level costs next to nothing over `-q`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::udp::Counts;
use crate::numbers::{size, thousands};

/// About 20 connections a second, two lines each.
const LINES_PER_SECOND: u64 = 40;
/// The budget of each quarter second.
const LINES_PER_QUARTER: u64 = LINES_PER_SECOND / 4;
/// How often `refill` is due.
const QUARTER: Duration = Duration::from_millis(250);
/// Repeated warnings are logged at most this often.
pub const WARN_INTERVAL: Duration = Duration::from_secs(1);

pub struct Activity {
    /// `-v`: every connection's lines, however many.
    all_lines: bool,
    summarizing: AtomicBool,
    /// Per-connection lines logged this quarter second.
    lines: AtomicU64,
    /// This second's totals, for the summary line.
    opened: AtomicU64,
    closed: AtomicU64,
    closed_bytes: AtomicU64,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            all_lines: log::log_enabled!(log::Level::Debug),
            summarizing: AtomicBool::new(false),
            lines: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            closed_bytes: AtomicU64::new(0),
        }
    }

    /// A connection opened; true if its `connected` line should be logged.
    pub fn opened(&self) -> bool {
        self.opened.fetch_add(1, Relaxed);
        self.admit()
    }

    /// A connection closed after echoing `echoed` bytes; true if its close line should be logged.
    pub fn closed(&self, echoed: u64) -> bool {
        self.closed.fetch_add(1, Relaxed);
        self.closed_bytes.fetch_add(echoed, Relaxed);
        self.admit()
    }

    /// A UDP peer sent its first datagram; true if its line should be logged.
    pub fn new_peer(&self) -> bool {
        self.admit()
    }

    fn admit(&self) -> bool {
        if self.all_lines {
            return true;
        }
        if self.summarizing.load(Relaxed) {
            return false;
        }
        if self.lines.fetch_add(1, Relaxed) < LINES_PER_QUARTER {
            return true;
        }
        self.summarizing.store(true, Relaxed);
        false
    }

    /// Called every `QUARTER`: a new quarter second's budget of lines.
    pub fn refill(&self) {
        self.lines.store(0, Relaxed);
    }

    /// Called once a second: logs the summary while summarizing, and ends it after a quiet
    /// second; `datagrams`: this second's UDP, summarized when it was more than a person reads
    /// line by line, or when some were dropped.
    pub fn tick(&self, open: usize, datagrams: Counts) {
        let opened = self.opened.swap(0, Relaxed);
        let closed = self.closed.swap(0, Relaxed);
        let echoed = self.closed_bytes.swap(0, Relaxed);
        let summarizing = self.summarizing.load(Relaxed);
        if summarizing && opened + closed < LINES_PER_SECOND {
            self.summarizing.store(false, Relaxed);
        }
        let mut parts = Vec::new();
        if summarizing && opened + closed > 0 {
            parts.push(format!(
                "{} connections opened, {} closed ({} echoed), {} open; per-connection lines \
                 resume when it is quieter, -v shows them all",
                thousands(opened),
                thousands(closed),
                size(echoed),
                thousands(open as u64),
            ));
        }
        if datagrams.received >= LINES_PER_SECOND || datagrams.dropped() > 0 {
            parts.push(format!(
                "UDP: {} datagrams in, {} echoed ({}){}",
                thousands(datagrams.received),
                thousands(datagrams.echoed),
                size(datagrams.bytes),
                datagrams.dropped_by_reason(),
            ));
        }
        if !parts.is_empty() {
            info!("last 1s: {}", parts.join("; "));
        }
    }
}

/// Runs the log's clock, forever: a new budget every quarter second, the summary every second
/// (with `open()` connections open, and `datagrams()` so far).
pub fn keep_time(activity: &Activity, open: impl Fn() -> usize, datagrams: impl Fn() -> Counts) {
    let mut before = datagrams();
    loop {
        for _ in 0..4 {
            std::thread::sleep(QUARTER);
            activity.refill();
        }
        let now = datagrams();
        activity.tick(open(), now.since(before));
        before = now;
    }
}

/// A warning that may repeat fast (accept failures, thread limits, failing connections, the
/// connection limit): logged at most once per interval (`WARN_INTERVAL` by default), with a
/// count of those held back. The one rate limit of the server's log.
pub struct RateLimit {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit::every(WARN_INTERVAL)
    }
}

impl RateLimit {
    pub fn every(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            state: Mutex::default(),
        }
    }

    /// Logs `message(held_back)` unless one was logged within the interval; `held_back` is
    /// empty or says how many were held back since the last. Returns whether it logged.
    pub fn warn(&self, message: impl FnOnce(String) -> String) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|t| t.elapsed() < self.interval) {
            *suppressed += 1;
            return false;
        }
        let held_back = match *suppressed {
            0 => String::new(),
            n => format!(" ({} more since the last report)", thousands(n)),
        };
        *last = Some(Instant::now());
        *suppressed = 0;
        drop(state);
        warn!("{}", message(held_back));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_summarized_and_a_quiet_second_ends_the_summary() {
        let activity = Activity {
            all_lines: false,
            ..Activity::new()
        };
        let logged = (0..1000).filter(|_| activity.opened()).count() as u64;
        assert_eq!(logged, LINES_PER_QUARTER);
        activity.refill();
        assert!(!activity.opened(), "a new quarter does not end the summary");
        assert!(activity.summarizing.load(Relaxed));
        activity.tick(1000, Counts::default());
        assert!(activity.summarizing.load(Relaxed), "a busy second goes on");
        assert!(!activity.closed(10), "still summarizing");
        activity.tick(999, Counts::default());
        assert!(
            !activity.summarizing.load(Relaxed),
            "a quiet second ends it"
        );
        assert!(activity.opened());
    }

    #[test]
    fn a_rate_limited_warning_is_logged_once_per_interval_with_a_count() {
        let limit = RateLimit::every(Duration::from_secs(60));
        assert!(limit.warn(|held_back| held_back));
        assert!(!limit.warn(|_| unreachable!("held back")));
        assert!(!limit.warn(|_| unreachable!("held back")));
        let fast = RateLimit::every(Duration::ZERO);
        assert!(fast.warn(|held_back| held_back));
        let mut said = String::new();
        assert!(fast.warn(|held_back| {
            said = held_back.clone();
            held_back
        }));
        assert_eq!(said, "");
    }

    #[test]
    fn with_all_lines_nothing_is_held_back() {
        let activity = Activity {
            all_lines: true,
            ..Activity::new()
        };
        assert!((0..1000).all(|_| activity.opened()));
    }
}
