//! When each operation is due. A closed loop sends the next request as soon as the previous
//! reply is in, so a stalled server also stalls the clock: the requests that would have been
//! sent meanwhile are never sent, and never timed ("coordinated omission"). An open loop
//! (`--rate`, as wrk2 does it) fixes a schedule in advance and times each request from when it
//! was due, so a stall counts for every request it delayed.

use std::thread;
use std::time::{Duration, Instant};

/// The last stretch of a wait is spun rather than slept, for sub-millisecond pacing.
const SPIN: Duration = Duration::from_micros(50);
/// A long wait is slept in slices this long, so a stop request ends it soon.
const SLICE: Duration = Duration::from_millis(50);

/// One worker's share of an open loop.
pub struct Schedule {
    /// When the next operation is due; `None` once the schedule runs past what a clock holds.
    next: Option<Instant>,
    period: Duration,
}

impl Schedule {
    /// `workers` workers share a total `rate` per second, evenly: each is due every
    /// `workers / rate` seconds, worker `k` offset by `k / rate` from the start. A rate too low
    /// for a clock to hold its schedule (the command line refuses those) has nothing due.
    pub fn new(start: Instant, worker: u32, workers: u32, rate: f64) -> Schedule {
        let secs = |x: f64| Duration::try_from_secs_f64(x).ok();
        let period = secs(f64::from(workers) / rate).unwrap_or(Duration::MAX);
        let next = secs(f64::from(worker) / rate).and_then(|offset| start.checked_add(offset));
        Schedule {
            next,
            period: period.max(Duration::from_nanos(1)),
        }
    }

    /// Waits until the next operation is due and returns when it was due, or `None` once the
    /// run ends (`deadline`, or sooner when `stopped()`). A worker behind schedule does not
    /// wait, and does not skip: it catches up, but only until the run ends; what was due and
    /// not sent by then is `unsent`.
    pub fn next(&mut self, deadline: Instant, stopped: &dyn Fn() -> bool) -> Option<Instant> {
        let due = self.next?;
        loop {
            let now = Instant::now();
            if due >= deadline || now >= deadline || stopped() {
                return None;
            }
            if now >= due {
                break;
            }
            let left = due - now;
            if left > SPIN {
                thread::sleep((left - SPIN).min(SLICE));
            } else {
                std::hint::spin_loop();
            }
        }
        self.next = due.checked_add(self.period);
        Some(due)
    }

    /// How far behind its schedule the worker is at `now`.
    pub fn behind(&self, now: Instant) -> Duration {
        self.next
            .map_or(Duration::ZERO, |next| now.saturating_duration_since(next))
    }

    /// Operations due before `until` that were not sent.
    pub fn unsent(&self, until: Instant) -> u64 {
        let Some(next) = self.next.filter(|&next| next < until) else {
            return 0;
        };
        // Due at next, next + period, …: every one before `until`.
        let period = self.period.as_nanos();
        let late = (until - next).as_nanos().div_ceil(period);
        u64::try_from(late).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_share_the_rate_evenly() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut a = Schedule::new(start, 0, 2, 1000.0);
        let mut b = Schedule::new(start, 1, 2, 1000.0);
        assert_eq!(a.period, Duration::from_millis(2));
        assert_eq!(b.next.unwrap() - a.next.unwrap(), Duration::from_millis(1));
        assert_eq!(
            a.next(start, &|| false),
            None,
            "nothing is due before the run ends"
        );
        assert_eq!(b.next(start, &|| false), None);
    }

    #[test]
    fn a_late_worker_catches_up_without_skipping() {
        let start = Instant::now() - Duration::from_millis(10);
        let mut schedule = Schedule::new(start, 0, 1, 1000.0);
        let until = Instant::now() + Duration::from_secs(1);
        let first = schedule.next(until, &|| false).unwrap();
        let second = schedule.next(until, &|| false).unwrap();
        assert_eq!(first, start);
        assert_eq!(second - first, Duration::from_millis(1));
        assert!(schedule.behind(Instant::now()) >= Duration::from_millis(7));
    }

    #[test]
    fn nothing_is_sent_after_the_end_and_what_was_due_is_counted() {
        let start = Instant::now() - Duration::from_secs(1);
        let mut schedule = Schedule::new(start, 0, 1, 1000.0);
        let ended = Instant::now();
        assert_eq!(schedule.next(ended, &|| false), None, "the end has come");
        let mut stopped = Schedule::new(start, 0, 1, 1000.0);
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(stopped.next(later, &|| true), None, "a stop ends it too");
        assert_eq!(schedule.unsent(start + Duration::from_millis(500)), 500);
        assert_eq!(schedule.unsent(start + Duration::from_micros(500_001)), 501);
        assert_eq!(schedule.unsent(start), 0);
    }

    #[test]
    fn a_schedule_beyond_the_clock_has_nothing_due() {
        let start = Instant::now();
        let until = start + Duration::from_secs(1);
        for rate in [1e-300, f64::MIN_POSITIVE] {
            let mut schedule = Schedule::new(start, 3, 4, rate);
            assert_eq!(schedule.next(until, &|| false), None);
            assert_eq!(schedule.unsent(until), 0);
        }
    }
}
