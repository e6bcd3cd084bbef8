//! A cache of connection threads.
//!
//! Every connection still has a thread of its own while it lives; a thread whose connection has
//! closed waits a while for the next one instead of exiting, so a stream of short connections
//! does not pay a thread's start and teardown each time.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Threads that each run `run` on one job at a time. A job is a value that reaches its thread
/// through the queue, a new thread's first job too, so it costs no allocation of its own: a
/// boxed closure stays allocated until its call returns, and anything the accepting thread
/// allocates and a connection thread frees lands in that thread's malloc cache for good (each
/// was some 150 bytes on every idle connection).
pub struct Workers<T> {
    shared: Arc<Shared<T>>,
    stack_size: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    job_ready: Condvar,
    keep_alive: Duration,
    run: fn(T),
}

/// Every queued job is promised to a thread: a waiting one (`idle` counts those not yet
/// promised one) or one being started for it. So `queue.len()` never exceeds the threads that
/// will take a job, and a queued job is always picked up at once.
struct State<T> {
    idle: usize,
    queue: VecDeque<T>,
}

impl<T: Send + 'static> Workers<T> {
    /// Threads run `run` on each job, get `stack_size` bytes of stack and exit after
    /// `keep_alive` without work.
    pub fn new(run: fn(T), stack_size: usize, keep_alive: Duration) -> Self {
        let shared = Shared {
            state: Mutex::new(State {
                idle: 0,
                queue: VecDeque::new(),
            }),
            job_ready: Condvar::new(),
            keep_alive,
            run,
        };
        Workers {
            shared: Arc::new(shared),
            stack_size,
        }
    }

    /// Runs `job` on an idle thread, or on a new one when none is idle. When the system refuses
    /// a new thread, a job comes back with the error, not run, so the caller can try again.
    pub fn execute(&self, job: T) -> Result<(), (io::Error, T)> {
        let mut state = self.shared.lock();
        state.queue.push_back(job);
        if state.idle > 0 {
            state.idle -= 1;
            drop(state);
            self.shared.job_ready.notify_one();
            return Ok(());
        }
        drop(state);
        let shared = Arc::clone(&self.shared);
        let started = thread::Builder::new()
            .name("conn".into())
            .stack_size(self.stack_size)
            .spawn(move || shared.serve_until_idle(false));
        match started {
            Ok(_) => Ok(()),
            // The thread that was promised a job will never take one, so one job too many is
            // queued (there is one: only promised threads take jobs). It may not be this one, if
            // another thread took it meanwhile; jobs are alike.
            Err(e) => match self.shared.lock().queue.pop_back() {
                Some(job) => Err((e, job)),
                None => Ok(()),
            },
        }
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Jobs run outside the lock, so a poisoned lock still guards consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs jobs until none comes for `keep_alive`; `idle`: whether the thread has no job
    /// promised yet (a new thread has one).
    fn serve_until_idle(&self, mut idle: bool) {
        while self.run_next(idle) {
            idle = true;
        }
    }

    /// Takes the next job and runs it in this one frame, the only one to hold the job: the
    /// frames above a job stay on the thread's stack while it runs, and a job held twice put a
    /// TLS connection's deepest frame on a third stack page (4 KiB more an idle connection).
    #[inline(never)]
    fn run_next(&self, idle: bool) -> bool {
        let Some(job) = self.next_job(idle) else {
            return false;
        };
        (self.run)(job);
        true
    }

    /// Its own frame: its lock and clock need no stack while the job runs.
    #[inline(never)]
    fn next_job(&self, idle: bool) -> Option<T> {
        let mut state = self.lock();
        if idle {
            state.idle += 1;
        }
        let deadline = Instant::now() + self.keep_alive;
        loop {
            if let Some(job) = state.queue.pop_front() {
                return Some(job);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // (A thread promised a job finds one queued, and never gets here.)
                state.idle -= usize::from(idle);
                return None;
            }
            state = self
                .job_ready
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    type Job = Box<dyn FnOnce() + Send>;

    fn call(job: Job) {
        job();
    }

    #[test]
    fn finished_threads_are_reused() {
        let workers = Workers::new(call, 64 * 1024, Duration::from_secs(10));
        let (tx, rx) = mpsc::channel();
        for _ in 0..20 {
            let tx = tx.clone();
            workers
                .execute(Box::new(move || tx.send(thread::current().id()).unwrap()))
                .map_err(|(e, _)| e)
                .unwrap();
            // Wait for the job, then for its thread to be idle again, before the next one.
            rx.recv_timeout(Duration::from_secs(10))
                .expect("the job ran");
            let deadline = Instant::now() + Duration::from_secs(10);
            while workers.shared.lock().idle == 0 {
                assert!(Instant::now() < deadline, "the thread never came back idle");
                thread::yield_now();
            }
        }
        assert_eq!(
            workers.shared.lock().idle,
            1,
            "one thread served all 20 jobs"
        );
    }

    #[test]
    fn busy_threads_do_not_delay_new_jobs() {
        let workers = Workers::new(call, 64 * 1024, Duration::from_secs(10));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let (done_tx, done_rx) = mpsc::channel();
        for _ in 0..8 {
            let (rx, tx) = (Arc::clone(&release_rx), done_tx.clone());
            workers
                .execute(Box::new(move || {
                    let _ = rx.lock().unwrap().recv();
                    tx.send(()).unwrap();
                }))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        // All eight block on the one release channel; a ninth job must still run.
        let (tx, rx) = mpsc::channel();
        workers
            .execute(Box::new(move || tx.send(()).unwrap()))
            .map_err(|(e, _)| e)
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("ninth job ran");
        drop(release_tx);
        for _ in 0..8 {
            done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
    }

    #[test]
    fn a_job_refused_a_thread_comes_back_to_be_tried_again() {
        // No system gives a thread this much stack.
        let workers = Workers::new(call, 1 << 60, Duration::from_secs(10));
        let (tx, rx) = mpsc::channel();
        let Err((_, job)) = workers.execute(Box::new(move || tx.send(()).unwrap())) else {
            panic!("a thread with an exabyte of stack started");
        };
        assert!(
            workers.shared.lock().queue.is_empty(),
            "the job stayed queued"
        );
        job();
        rx.try_recv()
            .expect("the job that came back is the one sent");
    }

    #[test]
    fn idle_threads_exit_after_keep_alive() {
        let workers = Workers::new(call, 64 * 1024, Duration::from_millis(50));
        let (tx, rx) = mpsc::channel();
        workers
            .execute(Box::new(move || tx.send(()).unwrap()))
            .map_err(|(e, _)| e)
            .unwrap();
        rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&workers.shared) > 1 {
            assert!(Instant::now() < deadline, "idle thread did not exit");
            thread::yield_now();
        }
        assert_eq!(workers.shared.lock().idle, 0);
    }
}
