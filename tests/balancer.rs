//! Behind a load balancer (the PROXY protocol, with the real HAProxy; health and drain;
//! SO_REUSEPORT) and as a service (systemd's socket activation and readiness).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use assert_cmd::Command as AssertCommand;
use common::*;

/// Sends `message` from `source` to `to`, half-closes, and returns the whole reply.
fn exchange_from(source: &str, to: SocketAddr, message: &[u8]) -> Vec<u8> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&to.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A server that refuses the connection may close it, and reset it on the unread message,
    // before the message or the half-close is sent: what came back is what counts.
    let _ = stream.write_all(message);
    let _ = stream.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

fn free_port() -> u16 {
    closed_port()
}

#[test]
fn behind_haproxy_the_reply_is_exact_and_the_log_names_the_real_client() {
    if !have("haproxy") {
        return;
    }
    let server = Server::start(&["--proxy-protocol"]);
    let (v1, v2) = (free_port(), free_port());
    let dir = scratch("haproxy");
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend v1\n  bind 127.0.0.1:{v1}\n  default_backend v1\n\
             frontend v2\n  bind 127.0.0.1:{v2}\n  default_backend v2\n\
             backend v1\n  server echo {addr} send-proxy\n\
             backend v2\n  server echo {addr} send-proxy-v2\n",
            addr = server.addr
        ),
    )
    .unwrap();
    let _haproxy = haproxy(&config);
    for (port, source) in [(v1, "127.0.0.5"), (v2, "127.0.0.6")] {
        let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_until_listening(to);
        let data = random_bytes(300_000, u64::from(port));
        assert_eq!(exchange_from(source, to, &data), data.to_ascii_uppercase());
        assert!(
            server
                .log
                .wait_for(&format!("{source}:"), Duration::from_secs(10)),
            "the log does not name {source}:\n{}",
            server.log.text()
        );
    }
    assert!(
        server.log.text().contains(" via 127.0.0.1:"),
        "{}",
        server.log.text()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn client_send_proxy_talks_to_a_proxy_protocol_server_and_a_bare_connection_is_refused_service() {
    let server = Server::start(&["--proxy-protocol"]);
    for version in ["v1", "v2"] {
        AssertCommand::new(BIN)
            .args(["client", "-H", "127.0.0.1", "-p", &server.port_arg()])
            .args(["--send-proxy", version, "Hello"])
            .timeout(Duration::from_secs(30))
            .assert()
            .success()
            .stdout("HELLO\n");
    }
    // No header: closed without a byte echoed, and the log says why.
    let mut bare = server.connect();
    bare.write_all(b"hello there\r\n").unwrap();
    assert_eq!(read_upto(&mut bare, 100, Duration::from_secs(10)), b"");
    assert!(
        server
            .log
            .wait_for("closed without echoing anything", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
}

#[cfg(target_os = "linux")] // all of 127.0.0.0/8 is this host's
#[test]
fn proxy_from_believes_only_its_proxies_and_json_logs_keep_peer_and_via_apart() {
    let server = Server::start(&[
        "--proxy-protocol",
        "--proxy-from",
        "127.0.0.2/32",
        "--log-format",
        "json",
    ]);
    // From a trusted proxy: the header's client is the peer.
    let header = format!(
        "PROXY TCP4 1.2.3.4 127.0.0.1 1111 {}\r\nhello",
        server.port()
    );
    assert_eq!(
        exchange_from("127.0.0.2", server.addr, header.as_bytes()),
        b"HELLO"
    );
    // From anyone else: closed unanswered, however well formed the header.
    assert_eq!(
        exchange_from("127.0.0.3", server.addr, header.as_bytes()),
        b""
    );
    assert!(
        server.log.wait_for(
            "not a trusted proxy (see --proxy-from)",
            Duration::from_secs(10)
        ),
        "{}",
        server.log.text()
    );
    let log = server.log.text();
    let connected: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|l: &serde_json::Value| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("connected"))
        })
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(connected["peer"], "1.2.3.4:1111", "{connected}");
    assert!(
        connected["via"]
            .as_str()
            .is_some_and(|v| v.starts_with("127.0.0.2:")),
        "{connected}"
    );
    let warning = log
        .lines()
        .find(|l| l.contains("not a trusted proxy"))
        .unwrap();
    assert!(
        warning.contains("\"level\":\"WARN\"") && warning.contains("127.0.0.3"),
        "{warning}"
    );
}

#[test]
fn without_proxy_from_a_public_listener_says_it_believes_every_header() {
    let public = Server::start(&["--proxy-protocol", "-H", "0.0.0.0"]);
    let loopback = Server::start(&["--proxy-protocol"]);
    let _ = loopback.connect_echoing(b"");
    assert!(
        public
            .log
            .wait_for("believes every PROXY header", Duration::from_secs(10)),
        "{}",
        public.log.text()
    );
    assert!(
        !loopback.log.text().contains("believes every"),
        "{}",
        loopback.log.text()
    );
}

#[test]
fn a_v1_header_cut_anywhere_by_the_network_is_still_accepted() {
    let server = Server::start(&["--proxy-protocol"]);
    let header = format!("PROXY TCP4 1.2.3.4 127.0.0.1 1111 {}\r\n", server.port());
    // Cut right after the source port (three of four headers failed there), and one byte at a
    // time; the pause lets the server read each part on its own.
    let source_port_end = header.find("1111 ").unwrap() + 5;
    let cuts: Vec<Vec<usize>> = vec![vec![source_port_end], (1..header.len()).collect()];
    for cut in cuts {
        let mut stream = server.connect();
        let mut from = 0;
        for to in cut.into_iter().chain([header.len()]) {
            stream.write_all(&header.as_bytes()[from..to]).unwrap();
            from = to;
            std::thread::sleep(Duration::from_millis(20));
        }
        stream.write_all(b"hello").unwrap();
        assert_eq!(read_upto(&mut stream, 5, Duration::from_secs(10)), b"HELLO");
    }
}

#[cfg(unix)] // SIGTERM
#[test]
fn a_connection_cut_at_shutdown_while_sending_its_header_is_routine() {
    let mut server = Server::start(&["--proxy-protocol", "--grace", "0.2"]);
    let mut slow = server.connect();
    slow.write_all(b"PROXY TCP4 ").unwrap();
    assert!(server.stop());
    assert!(
        server
            .wait(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    let log = server.log.text();
    let line = log
        .lines()
        .find(|l| l.contains("cut at shutdown"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("INFO"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}

/// `GET /` on `port`: the status code and the body.
fn health(port: u16) -> (u16, String) {
    let response = health_raw(port, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    let code = response[9..12].parse().unwrap();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

/// Sends `request` to the health check on `port` and returns the whole response.
fn health_raw(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn health_answers_odd_requests_as_http_says_and_bounds_each_request_as_a_whole() {
    let port = free_port();
    let _server = Server::start(&["--health-port", &port.to_string()]);
    let post = health_raw(port, b"POST / HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
    assert!(post.ends_with("GET or HEAD only\n"), "{post}");
    let head = health_raw(port, b"HEAD / HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let long = [
        b"GET / HTTP/1.1\r\nX: ".as_slice(),
        &[b'a'; 8000],
        b"\r\n\r\n",
    ]
    .concat();
    let too_long = health_raw(port, &long);
    assert!(too_long.starts_with("HTTP/1.1 431"), "{too_long}");

    // A request trickled a byte at a time, each well within 2 s of the last, is still cut
    // 2 s after it began (each read had its own 2 s before: 8 bytes held a thread 12.9 s).
    let mut trickle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    let mut cut = None;
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" {
        if trickle.write_all(&[*byte]).is_err() {
            cut = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let cut = cut.unwrap_or_else(|| started.elapsed());
    assert!(cut < Duration::from_secs(5), "cut after {cut:?}");
    let mut rest = Vec::new();
    trickle
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = trickle.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[cfg(target_os = "linux")] // /proc
#[test]
fn health_port_abuse_takes_no_threads_from_the_echo_port() {
    let port = free_port();
    let server = Server::start(&["--health-port", &port.to_string(), "-q"]);
    let threads_before = server.threads();
    // Connections that never finish a request: each took a thread of its own before. (Fewer
    // than its listen queue holds: more would wait in connect.)
    let silent: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for i in 0..20 {
        let _ = server.connect_echoing(format!("echo {i}").as_bytes());
    }
    let threads = server.threads();
    assert!(
        threads <= threads_before + 20,
        "{threads} threads with {} health connections open (before: {threads_before})",
        silent.len()
    );
    drop(silent);
    assert_eq!(health(port), (200, "ok\n".into()));
}

#[test]
fn health_turns_503_at_the_stop_while_serving_on_until_the_drain_delay_ends() {
    let port = free_port();
    let mut server = Server::start(&["--health-port", &port.to_string(), "--drain-delay", "1.5"]);
    assert_eq!(health(port), (200, "ok\n".into()));
    if !server.stop() {
        return;
    }
    assert!(
        server.log.wait_for("draining", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    assert_eq!(health(port), (503, "draining\n".into()));
    let _still = server.connect_echoing(b"still serving");
    // After the delay the echo port closes: new connects are refused.
    assert!(
        server
            .log
            .wait_for("no longer accepting", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    assert!(TcpStream::connect(server.addr).is_err());
    drop(_still);
    let status = server.wait(Duration::from_secs(20)).expect("exited");
    assert!(status.success(), "{status:?}");
}

#[cfg(unix)] // SO_REUSEPORT
#[test]
fn two_reuse_port_servers_share_a_port_and_both_serve() {
    let first = Server::start(&["--reuse-port"]);
    let port = first.port_arg();
    let mut command = tcpdemo();
    command.args(["server", "--reuse-port", "--port", &port]);
    let second = Server::spawn(command);
    assert_eq!(first.addr, second.addr);
    // The kernel spreads connections by their address hash: a few dozen reach both.
    for i in 0..64 {
        let _ = first.connect_echoing(format!("c{i}").as_bytes());
    }
    for server in [&first, &second] {
        assert!(
            server.log.wait_for(": connected", Duration::from_secs(10)),
            "one server served nothing:\n{}",
            server.log.text()
        );
    }
    // Without --reuse-port the port is taken.
    let taken = tcpdemo()
        .args(["server", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(taken.status.code(), Some(1));
}

#[cfg(target_os = "linux")]
/// Clients one after another, each a whole exchange, until `stop`; returns how many went well
/// and the failures.
fn client_loop(
    addr: SocketAddr,
    stop: &std::sync::atomic::AtomicBool,
    done: &std::sync::atomic::AtomicU64,
) -> (u64, Vec<String>) {
    let (mut ok, mut failed) = (0, Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let result = (|| -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(b"hello")?;
            stream.shutdown(Shutdown::Write)?;
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply)?;
            Ok(reply)
        })();
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(reply) if reply == b"HELLO" => ok += 1,
            Ok(reply) => failed.push(format!("reply {:?}", String::from_utf8_lossy(&reply))),
            Err(e) => failed.push(e.to_string()),
        }
    }
    (ok, failed)
}

/// Linux: with `net.ipv4.tcp_migrate_req` on (as the README's restart recipe says), what is
/// still queued at a closing listener moves to the other server; off, a client that lands there
/// in the moment between the last accept and the close is reset. The test sets it in a network
/// namespace of its own, so as not to change the machine's.
#[cfg(target_os = "linux")]
#[test]
fn an_overlapping_restart_on_a_shared_port_stops_the_old_server_and_drops_no_client() {
    let setup = own_network_namespace()
        .and_then(|()| run_here(&["sysctl", "-qw", "net.ipv4.tcp_migrate_req=1"]));
    if let Err(why) = setup {
        return cannot_run_here(&why);
    }
    let stays = Server::start(&["--reuse-port"]);
    let port = stays.port_arg();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let done = std::sync::atomic::AtomicU64::new(0);
    let mut logs = Vec::new();
    std::thread::scope(|scope| {
        let clients = scope.spawn(|| client_loop(stays.addr, &stop, &done));
        for round in 0..5 {
            let mut command = tcpdemo();
            command.args(["server", "--reuse-port", "--grace", "1", "--port", &port]);
            let mut old = Server::spawn(command);
            // It takes its share of clients before it is stopped.
            assert!(
                old.log.wait_for(": connected", Duration::from_secs(20)),
                "round {round}: the second server served nothing:\n{}",
                old.log.text()
            );
            // Clients keep coming while it stops: at least 30 exchanges a round.
            let target = done.load(std::sync::atomic::Ordering::Relaxed) + 30;
            let deadline = Instant::now() + Duration::from_secs(20);
            while done.load(std::sync::atomic::Ordering::Relaxed) < target {
                assert!(Instant::now() < deadline, "the client loop is stuck");
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(old.stop());
            let stopped = Instant::now();
            let status = old.wait(Duration::from_secs(10));
            // The stop once woke the accept loop by connecting to the shared port, which the
            // kernel could hand to the other server: this one then ran on.
            assert!(
                status.is_some_and(|s| s.success()),
                "round {round}: {status:?} after {:?}:\n{}",
                stopped.elapsed(),
                old.log.text()
            );
            logs.push(old.log.text());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = clients.join().unwrap();
        assert!(ok > 100, "{ok} exchanges");
        // The old stop failed 2 to 4 clients a run here. Under `stress-ng --cpu 2`, about one
        // run in 25 still sees one reset (1 in about 12,000 exchanges) that no tcpdemo process
        // logged: the namespace's counters then read TcpOutRsts 1 beside TCPMigrateReqSuccess
        // 1, a reset from the kernel's hand-over itself. One is allowed; two is a failure.
        assert!(
            failed.len() <= 1,
            "{} of {} failed: {failed:?}\nthe stopped servers' logs:\n{}",
            failed.len(),
            ok + failed.len() as u64,
            logs.join("\n")
        );
    });
    assert!(
        !stays.log.text().contains("closed, 0 bytes echoed"),
        "the server that stays saw a wake-up call as a client:\n{}",
        stays.log.text()
    );
}

/// `tcpdemo server` with `socket` handed over as systemd does it: fd 3, `LISTEN_FDS=1`, and
/// `LISTEN_PID` the server's own.
#[cfg(unix)]
fn server_handed(socket: std::os::fd::RawFd) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" server", BIN])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    // SAFETY: dup2 and fcntl are async-signal-safe; the descriptor stays open until the child
    // exits. A socket that is already descriptor 3 only needs to survive exec: dup2 onto
    // itself would leave its close-on-exec flag set.
    unsafe {
        command.pre_exec(move || {
            let status = match socket {
                3 => libc::fcntl(3, libc::F_SETFD, 0),
                _ => libc::dup2(socket, 3),
            };
            match status {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        })
    };
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        // It used to announce itself and log "accept failed" every second, forever.
        assert!(started.elapsed() < Duration::from_secs(10), "still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
#[test]
fn a_handed_over_socket_that_is_not_listening_is_one_error_at_start_up() {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let connected = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let unlistening =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    for (socket, says) in [
        (
            connected.as_raw_fd(),
            "is a TCP connection (from 127.0.0.1:",
        ),
        (
            unlistening.as_raw_fd(),
            "is a TCP socket that is not listening",
        ),
    ] {
        let output = server_handed(socket);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(output.stdout.is_empty(), "{output:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(says) && stderr.contains("Accept=no"),
            "{stderr}"
        );
    }
}

#[cfg(target_os = "linux")] // systemd
#[test]
fn systemd_socket_activate_hands_over_the_listening_socket() {
    if !have("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new("systemd-socket-activate")
        .args(["-l", &listen, BIN, "server", "--port", "1"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stderr = child.stderr.take().unwrap();
    let _guard = Guard(child);
    // It listens at once and starts the server on the first connection.
    let addr: SocketAddr = listen.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        if let Ok(mut stream) = TcpStream::connect(addr) {
            stream.write_all(b"activated").unwrap();
            break read_upto(&mut stream, 9, Duration::from_secs(10));
        }
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(reply, b"ACTIVATED");
    // systemd-socket-activate's own line comes first, then the server's.
    let mut stderr = std::io::BufReader::new(stderr);
    let mut seen = String::new();
    while !line.contains("handed over") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(n > 0, "the server never said it used the socket:\n{seen}");
        seen.push_str(&line);
    }
}

#[cfg(unix)] // sd_notify's datagram socket
#[test]
fn readiness_and_stopping_are_told_to_notify_socket() {
    use std::os::unix::net::UnixDatagram;
    let dir = scratch("notify");
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut command = tcpdemo();
    command
        .args(["server", "--port", "0"])
        .env("NOTIFY_SOCKET", &path);
    let mut server = Server::spawn(command);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    server.signal(libc::SIGTERM);
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    assert!(server.wait(Duration::from_secs(10)).unwrap().success());
    std::fs::remove_dir_all(dir).unwrap();
}
