//! `--health-port`: the HTTP health check a load balancer polls. `200 ok` while serving, `503
//! draining` from the first stop request on, so the balancer moves traffic away before the
//! echo port closes.
//!
//! Answering a request line with one of two fixed responses is a screen of code; an HTTP
//! crate (tiny_http, say) would bring a thread pool, a parser and four dependencies for it.
//! Each check gets a thread and a 2 s timeout, so a slow or garbage request holds up nothing.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use log::debug;

use super::Shared;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A request line and headers longer than this are not a health check.
const MAX_REQUEST: usize = 8 * 1024;

/// Serves health checks on `listener` until the process exits.
pub fn serve(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("health".into())
            .stack_size(64 * 1024)
            .spawn(move || answer(stream, shared.draining.load(Ordering::SeqCst)));
        if let Err(e) = spawned {
            debug!("health check dropped: cannot start a thread: {e}");
        }
    }
}

fn answer(mut stream: TcpStream, draining: bool) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let request = match read_head(&mut stream) {
        Ok(request) => request,
        Err(why) => {
            debug!("health check from {peer}: {why}");
            return;
        }
    };
    let line = request.lines().next().unwrap_or_default();
    let (status, body) = match line.split_whitespace().next() {
        Some("GET" | "HEAD") if draining => ("503 Service Unavailable", "draining\n"),
        Some("GET" | "HEAD") => ("200 OK", "ok\n"),
        _ => ("405 Method Not Allowed", "GET only\n"),
    };
    debug!("health check from {peer}: {line:?}: {status}");
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut response = head.into_bytes();
    if !line.starts_with("HEAD") {
        response.extend_from_slice(body.as_bytes());
    }
    let _ = stream.write_all(&response);
}

/// The request up to its blank line.
fn read_head(stream: &mut TcpStream) -> Result<String, String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut buf) {
            Ok(0) => return Err("closed before the end of the request".into()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("no whole request within {REQUEST_TIMEOUT:?}: {e}")),
        }
        if head.len() > MAX_REQUEST {
            return Err("request too long".into());
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
