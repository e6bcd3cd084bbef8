//! Stopping: the first stop request (see `crate::stop`) stops accepting and lets open
//! connections finish; a deliberate second one exits at once.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::{info, warn};

use super::{Phase, Shared};
use crate::platform::{self, ServiceState, Waker};
use crate::stop::{ExitNow, Next, Request, Requests};

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
        self.shared.advance(Phase::Draining);
        platform::notify_service_manager(ServiceState::Stopping);
    }

    /// Stops accepting at once: the accept loop wakes, takes in what is already queued,
    /// closes the listening socket, so new connects are refused rather than queued, and logs
    /// `why` as it ends (so the line always comes before the drain's). Open connections carry
    /// on.
    pub fn stop(&self, why: &str) {
        let guard = self.shared.lock();
        let _ = self.shared.stop_reason.set(why.to_string());
        self.shared.advance(Phase::Stopping);
        drop(guard);
        self.shared.changed.notify_all();
        self.waker.wake();
    }
}

/// Handles stop requests on a thread of their own from now on. With a `drain_delay`, the first
/// request turns the health check to 503 at once and stops accepting only after the delay, so
/// a load balancer moves traffic away first. A deliberate second request calls `exit_now`.
pub fn on_stop_requests(stopper: Stopper, drain_delay: Duration, exit_now: ExitNow) -> Result<()> {
    let mut requests = Requests::install()?;
    thread::Builder::new()
        .name("stop".into())
        .spawn(move || {
            // After the first request, with a drain delay: when to stop accepting, and why.
            let mut stop_at: Option<(Instant, String)> = None;
            loop {
                match requests.next(stop_at.as_ref().map(|(at, _)| *at)) {
                    Next::Request(Request::First(name)) => {
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
                    Next::Request(Request::Again(name)) => {
                        warn!("{name} received again: exiting now");
                        exit_now();
                    }
                    Next::TimedOut => {
                        if let Some((_, why)) = stop_at.take() {
                            stopper.stop(&why);
                        }
                    }
                    Next::Closed => return,
                }
            }
        })
        .context("cannot start the stop thread")?;
    Ok(())
}
