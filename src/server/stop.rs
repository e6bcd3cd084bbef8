//! Stopping: the first SIGINT or SIGTERM stops accepting and lets open connections finish; a
//! deliberate second one exits at once.

use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::{debug, warn};
use socket2::Socket;

use super::Shared;
use crate::logger;

/// A second signal this soon after the first is the same request: `timeout` (coreutils) sends
/// SIGTERM to the process and then to its group, so one stop can arrive twice at once.
const SAME_REQUEST: Duration = Duration::from_secs(1);

/// Stops a running server from another thread (the signal handler's).
pub struct Stopper {
    pub(super) shared: Arc<Shared>,
    pub(super) listener: Socket,
}

impl Stopper {
    /// Stops accepting at once: the listening socket is shut down, so new connects are refused
    /// rather than queued, and the blocked `accept` wakes up. Open connections carry on. The
    /// accept loop logs `why` as it ends, so the line always comes before the drain's.
    pub fn stop(&self, why: &str) {
        let guard = self.shared.lock();
        let _ = self.shared.stop_reason.set(why.to_string());
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(guard);
        self.shared.changed.notify_all();
        if let Err(e) = self.listener.shutdown(Shutdown::Both) {
            warn!("cannot shut down the listening socket: {e}");
        }
    }
}

/// Handles SIGINT and SIGTERM on a thread of their own from now on.
pub fn on_signals(stopper: Stopper) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM])
        .context("cannot install signal handlers")?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut first: Option<Instant> = None;
            for signal in signals.forever() {
                let name = if signal == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                match first {
                    None => {
                        first = Some(Instant::now());
                        stopper.stop(&format!("{name} received"));
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
        .context("cannot start the signal thread")?;
    Ok(())
}
