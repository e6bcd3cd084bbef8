//! `--health-port`: the HTTP health check a load balancer polls. `200 ok` while serving, `503
//! draining` from the first stop request on, so the balancer moves traffic away before the
//! echo port closes.
//!
//! Answering a request line with one of a few fixed responses is a screen of code; an HTTP
//! crate (tiny_http, say) would bring a thread pool, a parser and four dependencies for it.
//! The port must never cost the echo port anything, whatever is sent to it: a few threads take
//! turns at it (further checks wait in its listen queue), each request has one deadline from
//! accept to answer, and its size is capped.

use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use log::debug;

use super::{Phase, RESOURCE_PAUSE, Shared};
use crate::stall;

/// Health checks answered at once; a balancer sends one every few seconds.
const THREADS: usize = 4;
/// From accept to the end of the answer, however the request arrives.
const DEADLINE: Duration = Duration::from_secs(2);
/// A request line and headers longer than this are not a health check: `431`.
const MAX_REQUEST: usize = 4 * 1024;

/// Serves health checks on `listener` until the process exits.
pub fn serve(listener: TcpListener, shared: &Arc<Shared>) -> Result<()> {
    for _ in 0..THREADS {
        let listener = listener
            .try_clone()
            .context("cannot share the health check's listening socket")?;
        let shared = Arc::clone(shared);
        thread::Builder::new()
            .name("health".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                loop {
                    match listener.accept() {
                        Ok((stream, peer)) => answer(stream, peer, &shared),
                        // Out of descriptors, say: the echo port's warnings tell.
                        Err(e) => {
                            debug!("health check: accept failed: {e}");
                            thread::sleep(RESOURCE_PAUSE);
                        }
                    }
                }
            })
            .context("cannot start the health check's threads")?;
    }
    Ok(())
}

/// What a request gets.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: &'static str,
    body: &'static str,
    /// `HEAD`: the headers alone.
    head_only: bool,
}

fn answer(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let deadline = Instant::now() + DEADLINE;
    let request = match read_head(&stream, deadline) {
        Ok(request) => request,
        Err(e) => {
            debug!("health check from {peer}: {e}");
            return;
        }
    };
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    // Read once the request is in (up to 2 s after accept): a stop may have come meanwhile.
    let response = respond(&request, shared.phase() >= Phase::Draining);
    debug!(
        "health check from {peer}: \"{}\": {}",
        line.trim_ascii().escape_ascii(),
        response.status
    );
    let mut head = format!(
        "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    if response.status.starts_with("405") {
        head += "Allow: GET, HEAD\r\n";
    }
    head += "\r\n";
    let mut bytes = head.into_bytes();
    if !response.head_only {
        bytes.extend_from_slice(response.body.as_bytes());
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = stream
        .set_write_timeout(Some(left.max(Duration::from_millis(1))))
        .and_then(|()| (&stream).write_all(&bytes));
}

/// The response to `request` (up to its blank line, or the first `MAX_REQUEST` bytes of it).
fn respond(request: &[u8], draining: bool) -> Response {
    let method = request
        .split(|b| b.is_ascii_whitespace())
        .next()
        .unwrap_or_default();
    let head_only = method == b"HEAD";
    let (status, body) = if !complete(request) {
        ("431 Request Header Fields Too Large", "request too long\n")
    } else if method != b"GET" && method != b"HEAD" {
        ("405 Method Not Allowed", "GET or HEAD only\n")
    } else if draining {
        ("503 Service Unavailable", "draining\n")
    } else {
        ("200 OK", "ok\n")
    };
    Response {
        status,
        body,
        head_only,
    }
}

fn complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// The request up to its blank line, or its first `MAX_REQUEST` bytes if it runs longer, all
/// by `deadline`.
fn read_head(stream: &TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !complete(&head) && head.len() <= MAX_REQUEST {
        match stall::read_by(stream, &mut buf, deadline) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed before the end of the request",
                ));
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!("no whole request within {DEADLINE:?}"),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_gets_its_status_and_head_gets_no_body() {
        let get = respond(b"GET / HTTP/1.1\r\n\r\n", false);
        assert_eq!((get.status, get.head_only), ("200 OK", false));
        assert_eq!(
            respond(b"GET / HTTP/1.1\r\n\r\n", true).status,
            "503 Service Unavailable"
        );
        assert!(respond(b"HEAD / HTTP/1.1\r\n\r\n", false).head_only);
        // A method that merely starts like HEAD is not HEAD: it gets its body.
        let other = respond(b"HEADX / HTTP/1.1\r\n\r\n", false);
        assert_eq!(
            (other.status, other.head_only),
            ("405 Method Not Allowed", false)
        );
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 5000]].concat();
        assert!(respond(&long, false).status.starts_with("431"));
    }
}
