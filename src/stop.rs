//! Stop requests, as the server and bench both take them: SIGINT, SIGTERM and SIGHUP on Unix;
//! Ctrl-C, Ctrl-Break and closing the console on Windows. The first asks to stop gracefully; a
//! deliberate second one asks to exit at once, which `main` carries out (it alone decides exit
//! codes and exits).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::debug;

use crate::platform;

/// A second request this soon after the first is the same request: `timeout` (coreutils) sends
/// SIGTERM to the process and then to its group, so one stop can arrive twice at once. Only a
/// later one is a deliberate second request.
const SAME_REQUEST: Duration = Duration::from_secs(1);

/// What `main` does on a deliberate second request: flush the log and exit with its code.
pub type ExitNow = fn() -> !;

/// A stop request, named as the person sent it (`SIGINT`, `Ctrl-C`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    First(&'static str),
    /// A deliberate second request: exit at once.
    Again(&'static str),
}

/// What waiting for a request gave.
pub(crate) enum Next {
    Request(Request),
    TimedOut,
    /// No more requests can come.
    Closed,
}

/// The stop requests sent to this process from now on.
pub(crate) struct Requests {
    received: Receiver<&'static str>,
    first: Option<Instant>,
}

impl Requests {
    pub(crate) fn install() -> Result<Requests> {
        Ok(Requests {
            received: platform::stop_requests().context("cannot install signal handlers")?,
            first: None,
        })
    }

    /// The next request, by `deadline` if one is given; a doubled delivery of the first is
    /// passed over.
    pub(crate) fn next(&mut self, deadline: Option<Instant>) -> Next {
        loop {
            let name = match deadline {
                None => match self.received.recv() {
                    Ok(name) => name,
                    Err(_) => return Next::Closed,
                },
                Some(at) => {
                    match self
                        .received
                        .recv_timeout(at.saturating_duration_since(Instant::now()))
                    {
                        Ok(name) => name,
                        Err(RecvTimeoutError::Timeout) => return Next::TimedOut,
                        Err(RecvTimeoutError::Disconnected) => return Next::Closed,
                    }
                }
            };
            match self.first {
                None => {
                    self.first = Some(Instant::now());
                    return Next::Request(Request::First(name));
                }
                Some(at) if at.elapsed() < SAME_REQUEST => {
                    debug!("{name} received again within {SAME_REQUEST:?}: the same request");
                }
                Some(_) => return Next::Request(Request::Again(name)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_doubled_delivery_is_one_request_and_a_later_one_is_a_second() {
        let (send, received) = mpsc::channel();
        let mut requests = Requests {
            received,
            first: None,
        };
        send.send("SIGTERM").unwrap();
        send.send("SIGTERM").unwrap();
        let soon = || Some(Instant::now() + Duration::from_millis(50));
        assert!(matches!(
            requests.next(soon()),
            Next::Request(Request::First("SIGTERM"))
        ));
        assert!(matches!(requests.next(soon()), Next::TimedOut));
        requests.first = Some(Instant::now() - SAME_REQUEST);
        send.send("SIGINT").unwrap();
        assert!(matches!(
            requests.next(None),
            Next::Request(Request::Again("SIGINT"))
        ));
        drop(send);
        assert!(matches!(requests.next(None), Next::Closed));
    }
}
