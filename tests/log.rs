//! The server's log: it never blocks serving or stopping, and stays readable at any rate.

mod common;

use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::*;

/// `count` clients one after another, each echoed and closed.
fn serve_one_after_another(server: &Server, count: usize) {
    for i in 0..count {
        let stream = server.connect_echoing(format!("client {i}").as_bytes());
        stream.shutdown(Shutdown::Write).unwrap();
    }
}

fn start_unread(args: &[&str]) -> Server {
    let mut command = tcpdemo();
    command.args(["server", "--port", "0"]).args(args);
    Server::spawn_unread(command)
}

#[test]
fn a_stderr_nobody_reads_neither_stalls_serving_nor_stopping() {
    // -v logs every connection: 1,500 of them write far more than a pipe's 64 KiB.
    let mut server = start_unread(&["-v"]);
    let started = Instant::now();
    serve_one_after_another(&server, 1500);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    if !server.stop() {
        return;
    }
    let status = server
        .wait(Duration::from_secs(10))
        .expect("stopped on SIGTERM with its stderr full");
    assert!(status.success(), "{status:?}");
}

#[test]
fn lines_lost_to_an_unread_stderr_are_counted_once_it_is_read_again() {
    // Enough lines to fill the pipe and the server's queue of 4,096 lines both.
    let mut server = start_unread(&["-v"]);
    serve_one_after_another(&server, 3000);
    server.read_log();
    // The writer says what it lost as soon as its stalled write returns.
    assert!(
        server.log.wait_for(
            "log lines dropped: stderr was not being read",
            Duration::from_secs(10)
        ),
        "{}",
        server.log.text()
    );
    // And the log goes on as before.
    let _next = server.connect_echoing(b"after");
    assert!(
        server
            .log
            .wait_for_count(": connected", 2, Duration::from_secs(10))
    );
}

#[test]
fn a_burst_of_connections_is_summarized_and_a_few_are_each_logged() {
    let mut server = Server::start(&[]);
    // A person connecting by hand sees every line.
    serve_one_after_another(&server, 3);
    assert!(
        server
            .log
            .wait_for_count("closed by peer", 3, Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    // Faster than a person reads: one summary line a second instead.
    serve_one_after_another(&server, 1000);
    assert!(
        server.log.wait_for("last 1s: ", Duration::from_secs(5)),
        "{}",
        server.log.text()
    );
    let per_connection = server.log.text().matches(": connected").count();
    assert!(
        per_connection < 60,
        "{per_connection} per-connection lines for 1,003 connections"
    );
    // After a quiet second, each connection is logged again: a client now and then, until
    // one is (a loaded machine may take longer than a second to say so).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let quiet = server.connect_echoing(b"quiet");
        let port = quiet.local_addr().unwrap().port();
        if server
            .log
            .wait_for(&format!(":{port}: connected"), Duration::from_millis(500))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "per-connection lines never came back:\n{}",
            server.log.text()
        );
    }
    if !server.stop() {
        return;
    }
    assert!(server.wait(Duration::from_secs(10)).unwrap().success());
}

#[cfg(unix)] // names the signal
#[test]
fn the_stop_line_is_always_logged_before_the_summary() {
    // The race this guards against lost the line in about 4 stops of 10.
    for _ in 0..10 {
        let mut server = Server::start(&[]);
        server.signal(libc::SIGINT);
        let status = server.wait(Duration::from_secs(10)).expect("server exited");
        assert!(status.success());
        let log = server.log.text();
        let stop = log.find("SIGINT received: no longer accepting");
        let summary = log.find("shutdown: connections served");
        assert!(
            matches!((stop, summary), (Some(a), Some(b)) if a < b),
            "{log}"
        );
    }
}
