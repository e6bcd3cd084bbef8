//! When each operation is due. A closed loop sends the next request as soon as the previous
//! reply is in, so a stalled server also stalls the clock: the requests that would have been
//! sent meanwhile are never sent, and never timed ("coordinated omission"). An open loop
//! (`--rate`, as wrk2 does it) fixes a schedule in advance and times each request from when it
//! was due, so a stall counts for every request it delayed.

use std::thread;
use std::time::{Duration, Instant};

/// The last stretch of a wait is spun rather than slept, for sub-millisecond pacing.
const SPIN: Duration = Duration::from_micros(50);

/// One worker's share of an open loop.
pub struct Schedule {
    next: Instant,
    period: Duration,
}

impl Schedule {
    /// `workers` workers share a total `rate` per second, evenly: each is due every
    /// `workers / rate` seconds, worker `k` offset by `k / rate` from the start.
    pub fn new(start: Instant, worker: u32, workers: u32, rate: f64) -> Schedule {
        let period = Duration::from_secs_f64(f64::from(workers) / rate);
        let offset = Duration::from_secs_f64(f64::from(worker) / rate);
        Schedule {
            next: start + offset,
            period,
        }
    }

    /// Waits until the next operation is due, unless `until` comes first, and returns when it
    /// was due. A worker behind schedule does not wait, and does not skip: it catches up.
    pub fn next(&mut self, until: Instant) -> Option<Instant> {
        let due = self.next;
        if due >= until {
            return None;
        }
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            let left = due - now;
            if left > SPIN {
                thread::sleep(left - SPIN);
            } else {
                std::hint::spin_loop();
            }
        }
        self.next += self.period;
        Some(due)
    }

    /// How far behind its schedule the worker is at `now`.
    pub fn behind(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.next)
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
        assert_eq!(b.next - a.next, Duration::from_millis(1));
        let until = start;
        assert_eq!(a.next(until), None, "nothing is due before the run ends");
        assert_eq!(b.next(until), None);
    }

    #[test]
    fn a_late_worker_catches_up_without_skipping() {
        let start = Instant::now() - Duration::from_millis(10);
        let mut schedule = Schedule::new(start, 0, 1, 1000.0);
        let until = Instant::now() + Duration::from_secs(1);
        let first = schedule.next(until).unwrap();
        let second = schedule.next(until).unwrap();
        assert_eq!(first, start);
        assert_eq!(second - first, Duration::from_millis(1));
        assert!(schedule.behind(Instant::now()) >= Duration::from_millis(7));
    }
}
