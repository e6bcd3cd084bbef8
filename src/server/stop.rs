//! Stopping: the first stop request (SIGINT or SIGTERM; Ctrl-C, Ctrl-Break or closing the
//! console on Windows) stops accepting and lets open connections finish; a deliberate second
//! one exits at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::{debug, info, warn};

use super::Shared;
use crate::logger;
use crate::platform::{self, SAME_REQUEST, ServiceState};

/// How long waking the accept loop may take: a listen queue so full that our connect waits
/// means the loop is busy accepting and sees the stop by itself.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// Stops a running server from another thread (the stop requests' thread).
pub struct Stopper {
    pub(super) shared: Arc<Shared>,
    /// Where to connect to wake the accept loop.
    pub(super) wake: SocketAddr,
}

impl Stopper {
    pub(super) fn new(shared: Arc<Shared>, listening: SocketAddr) -> Stopper {
        let ip = match listening.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Stopper {
            shared,
            wake: SocketAddr::new(ip, listening.port()),
        }
    }

    /// The first step of a stop: the health check fails from now on, and the service manager
    /// is told.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        platform::notify_service_manager(ServiceState::Stopping);
    }

    /// Stops accepting at once: the accept loop wakes, closes the listening socket, so new
    /// connects are refused rather than queued, and logs `why` as it ends (so the line always
    /// comes before the drain's). Open connections carry on.
    ///
    /// A blocked `accept` is woken by connecting to it: that works the same on every system.
    /// Shutting the listening socket down wakes it only on Linux (macOS, the BSDs and Windows
    /// answer ENOTCONN), and a non-blocking listener polled beside a wake-up would cost a
    /// system call more per connection.
    pub fn stop(&self, why: &str) {
        let guard = self.shared.lock();
        let _ = self.shared.stop_reason.set(why.to_string());
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(guard);
        self.shared.changed.notify_all();
        if let Err(e) = TcpStream::connect_timeout(&self.wake, WAKE_TIMEOUT) {
            debug!("cannot wake the accept loop through {}: {e}", self.wake);
        }
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
