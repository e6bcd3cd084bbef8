//! Stopping: the first stop request (SIGINT or SIGTERM; Ctrl-C, Ctrl-Break or closing the
//! console on Windows) stops accepting and lets open connections finish; a deliberate second
//! one exits at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::{debug, info, warn};

use super::Shared;
use crate::logger;
use crate::platform::{self, SAME_REQUEST, ServiceState, Waker};

/// Stops a running server from another thread (the stop requests' thread).
pub struct Stopper {
    pub(super) shared: Arc<Shared>,
    /// Wakes the accept loop from its wait for a connection.
    pub(super) waker: Arc<Waker>,
}

impl Stopper {
    /// The first step of a stop: the health check fails from now on, and the service manager
    /// is told.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        platform::notify_service_manager(ServiceState::Stopping);
    }

    /// Stops accepting at once: the accept loop wakes, takes in what is already queued,
    /// closes the listening socket, so new connects are refused rather than queued, and logs
    /// `why` as it ends (so the line always comes before the drain's). Open connections carry
    /// on.
    pub fn stop(&self, why: &str) {
        let guard = self.shared.lock();
        let _ = self.shared.stop_reason.set(why.to_string());
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(guard);
        self.shared.changed.notify_all();
        self.waker.wake();
    }
}

/// Handles stop requests on a thread of their own from now on. With a `drain_delay`, the first
/// request turns the health check to 503 at once and stops accepting only after the delay, so
/// a load balancer moves traffic away first.
pub fn on_stop_requests(stopper: Stopper, drain_delay: Duration) -> Result<()> {
    let requests = platform::stop_requests().context("cannot install signal handlers")?;
    thread::Builder::new()
        .name("stop".into())
        .spawn(move || {
            let mut first: Option<Instant> = None;
            let mut stop_at: Option<(Instant, String)> = None;
            loop {
                let name = match &stop_at {
                    Some((at, why)) => {
                        let left = at.saturating_duration_since(Instant::now());
                        match requests.recv_timeout(left) {
                            Ok(name) => name,
                            Err(RecvTimeoutError::Timeout) => {
                                stopper.stop(why);
                                stop_at = None;
                                continue;
                            }
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    None => match requests.recv() {
                        Ok(name) => name,
                        Err(_) => return,
                    },
                };
                match first {
                    None => {
                        first = Some(Instant::now());
                        let why = format!("{name} received");
                        stopper.drain();
                        if drain_delay.is_zero() {
                            stopper.stop(&why);
                        } else {
                            info!(
                                "{why}: draining: the health check fails from now on; still \
                                 accepting for {drain_delay:?}"
                            );
                            stop_at = Some((Instant::now() + drain_delay, why));
                        }
                    }
                    Some(at) if at.elapsed() < SAME_REQUEST => {
                        debug!("{name} received again within {SAME_REQUEST:?}: the same request");
                    }
                    Some(_) => {
                        warn!("{name} received again: exiting now");
                        logger::flush(Duration::from_millis(100));
                        std::process::exit(1);
                    }
                }
            }
        })
        .context("cannot start the stop thread")?;
    Ok(())
}
