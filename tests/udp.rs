//! `--udp`: the server's datagram echo and its reflection rules, the client's retries and its
//! report of what UDP did on the way, bench's count of it, and peers nobody here wrote.

mod common;

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, cannot_run_here, have, run, stderr};

fn udp_server(args: &[&str]) -> Server {
    let mut all = vec!["--udp"];
    all.extend_from_slice(args);
    Server::start(&all)
}

fn socket_to(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

/// A UDP peer run by the test, answering each datagram as `answer` says (given the datagram
/// and how many came before it); stopped when dropped.
struct Peer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Peer {
    fn start(answer: impl Fn(&UdpSocket, SocketAddr, &[u8], usize) + Send + 'static) -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            let mut buf = vec![0u8; 70_000];
            let mut count = 0;
            while !stopped.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    answer(&socket, from, &buf[..n], count);
                    count += 1;
                }
            }
        });
        Peer { addr, stop }
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn upper(datagram: &[u8]) -> Vec<u8> {
    datagram.to_ascii_uppercase()
}

#[test]
fn datagrams_of_0_1_1472_and_65507_bytes_come_back_uppercased_and_whole() {
    let server = udp_server(&[]);
    let socket = socket_to(server.addr);
    let mut buf = vec![0u8; 70_000];
    for len in [0, 1, 1472, 65_507] {
        let sent: Vec<u8> = (0..len).map(|i| b"aZ\x00\xffq"[i % 5]).collect();
        socket.send(&sent).unwrap();
        let n = socket.recv(&mut buf).expect("a reply");
        assert_eq!(n, len, "the reply is the request's size");
        assert_eq!(buf[..n], upper(&sent));
    }
}

#[test]
fn datagrams_from_echo_and_chargen_ports_get_no_answer() {
    let server = udp_server(&["-v"]);
    for port in [7, 19] {
        let socket = match UdpSocket::bind(("127.0.0.1", port)) {
            Ok(socket) => socket,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return cannot_run_here(&format!("cannot bind UDP port {port} (root only): {e}"));
            }
            Err(e) => panic!("cannot bind UDP port {port}: {e}"),
        };
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        socket.send_to(b"loop?", server.addr).unwrap();
        let mut buf = [0u8; 16];
        assert!(
            socket.recv(&mut buf).is_err(),
            "an answer to port {port} could start a loop"
        );
        assert!(server.log.wait_for(
            &format!("127.0.0.1:{port}: dropped 5 bytes: source port {port}"),
            Duration::from_secs(5)
        ));
    }
    // Anyone else is answered.
    let socket = socket_to(server.addr);
    socket.send(b"still here").unwrap();
    let mut buf = [0u8; 16];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STILL HERE");
}

#[test]
fn each_address_is_answered_at_most_its_rate_and_the_drops_are_counted() {
    let mut server = udp_server(&["--udp-rate", "5"]);
    let socket = socket_to(server.addr);
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for _ in 0..20 {
        socket.send(b"x").unwrap();
    }
    let mut answered = 0;
    let mut buf = [0u8; 4];
    while socket.recv(&mut buf).is_ok() {
        answered += 1;
    }
    // Five at once, and a few more as the bucket refills while the test sends.
    assert!((5..=7).contains(&answered), "answered {answered} of 20");
    assert!(
        server
            .log
            .wait_for("over --udp-rate", Duration::from_secs(5))
    );
    if server.stop() {
        assert!(
            server
                .wait(Duration::from_secs(10))
                .is_some_and(|s| s.success())
        );
        let log = server.log.text();
        assert!(
            log.contains(&format!(
                "datagrams echoed: {answered}, {} dropped",
                20 - answered
            )),
            "{log}"
        );
    }
}

#[test]
fn a_new_peer_is_logged_once_and_a_stop_ends_the_idle_udp_thread() {
    let mut server = udp_server(&[]);
    let socket = socket_to(server.addr);
    let mut buf = [0u8; 8];
    for _ in 0..3 {
        socket.send(b"hi").unwrap();
        socket.recv(&mut buf).unwrap();
    }
    let me = socket.local_addr().unwrap();
    assert!(
        server
            .log
            .wait_for(&format!("UDP {me}: new peer"), Duration::from_secs(5))
    );
    // The UDP thread is waiting for a datagram when the stop comes.
    thread::sleep(Duration::from_millis(100));
    if !server.stop() {
        return;
    }
    let stopped = Instant::now();
    let status = server
        .wait(Duration::from_secs(10))
        .expect("the server exits");
    assert!(status.success());
    assert!(stopped.elapsed() < Duration::from_secs(5));
    let log = server.log.text();
    assert_eq!(log.matches("new peer").count(), 1, "{log}");
    assert!(log.contains("datagrams echoed: 3"), "{log}");
}

#[test]
fn a_client_that_vanishes_before_its_reply_does_not_stop_the_server() {
    let server = udp_server(&[]);
    // Each reply meets a closed port: an ICMP port unreachable, which Windows would hand the
    // server's next receive as a reset.
    for _ in 0..5 {
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        gone.send_to(b"bye", server.addr).unwrap();
        drop(gone);
    }
    let socket = socket_to(server.addr);
    let mut buf = [0u8; 8];
    for _ in 0..5 {
        socket.send(b"ok?").unwrap();
        let n = socket.recv(&mut buf).expect("an answer");
        assert_eq!(&buf[..n], b"OK?");
    }
}

#[test]
fn the_client_sends_a_message_as_one_datagram_and_prints_its_echo() {
    let server = udp_server(&[]);
    let port = server.port_arg();
    let out = run(&["client", "-u", "-p", &port, "Hello,", "Server!"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"HELLO, SERVER!\n");
    let out = run(&["client", "--udp", "-p", &port], b"one\ntwo\nthree");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"ONE\nTWO\nTHREE");
}

#[test]
fn the_client_sends_again_when_no_reply_comes() {
    // Answers only every third datagram.
    let peer = Peer::start(|socket, from, datagram, i| {
        if i % 3 == 2 {
            socket.send_to(&upper(datagram), from).unwrap();
        }
    });
    let port = peer.port();
    let out = run(
        &["client", "-u", "-p", &port, "-t", "0.2", "third time"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"THIRD TIME\n");
    let out = run(
        &[
            "client",
            "-u",
            "-p",
            &port,
            "-t",
            "0.2",
            "--retries",
            "1",
            "lost",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: no reply after 2 tries, 200ms each (UDP does not retransmit: the request or the \
         reply may have been lost)\n"
    );
}

#[test]
fn the_client_reports_what_was_lost_duplicated_and_reordered() {
    // b is lost, c comes back twice, d comes back after e.
    let held = Arc::new(std::sync::Mutex::new(None));
    let peer = Peer::start(move |socket, from, datagram, _| {
        let reply = upper(datagram);
        match datagram {
            b"b\n" => {}
            b"c\n" => {
                socket.send_to(&reply, from).unwrap();
                socket.send_to(&reply, from).unwrap();
            }
            b"d\n" => *held.lock().unwrap() = Some(reply),
            b"e\n" => {
                socket.send_to(&reply, from).unwrap();
                if let Some(d) = held.lock().unwrap().take() {
                    socket.send_to(&d, from).unwrap();
                }
            }
            _ => {
                socket.send_to(&reply, from).unwrap();
            }
        }
    });
    let out = run(
        &["client", "-u", "-p", &peer.port(), "-t", "0.3"],
        b"a\nb\nc\nd\ne\n",
    );
    assert_eq!(out.stdout, b"A\nC\nC\nE\nD\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: 1 of 5 datagrams got no reply; 1 came back out of order; 1 came back more than \
         once\n"
    );
}

#[test]
fn the_client_says_when_nothing_listens_and_when_a_line_is_too_long() {
    let port = {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port().to_string()
    };
    let out = run(&["client", "-u", "-H", "127.0.0.1", "-p", &port, "hi"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("error: nothing is listening on UDP 127.0.0.1:{port}\n")
    );
    let server = udp_server(&[]);
    let long = vec![b'x'; 70_000];
    let out = run(&["client", "-u", "-p", &server.port_arg()], &long);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: line 1 is 70,000 bytes, longer than the largest UDP datagram (65,507 bytes)\n"
    );
}

#[test]
fn bench_counts_every_datagram_of_a_clean_run() {
    let server = udp_server(&[]);
    let port = server.port_arg();
    for extra in [&[][..], &["--rate", "2000", "-c", "4"][..]] {
        let mut args = vec!["bench", "--udp", "-p", &port, "-d", "1", "--json"];
        args.extend_from_slice(extra);
        let out = run(&args, b"");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let udp = &json["udp"];
        assert!(udp["sent"].as_u64().unwrap() > 100, "{udp}");
        assert_eq!(udp["echoed"], udp["sent"], "{udp}");
        assert_eq!(udp["lost"], 0, "{udp}");
        assert_eq!(udp["duplicated"], 0, "{udp}");
        assert_eq!(json["errors"], 0, "{json}");
        assert_eq!(json["operations"], udp["echoed"], "{json}");
    }
}

#[test]
fn bench_measures_loss_and_max_loss_fails_the_run() {
    // Drops every tenth datagram (after the first few, which bench uses to find the server).
    let peer = Peer::start(|socket, from, datagram, i| {
        if i < 5 || i % 10 != 0 {
            socket.send_to(&upper(datagram), from).unwrap();
        }
    });
    let port = peer.port();
    let args = [
        "bench",
        "--udp",
        "-p",
        &port,
        "-d",
        "1",
        "--udp-timeout",
        "0.1",
        "--json",
    ];
    let out = run(&args, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lost = json["udp"]["lost_percent"].as_f64().unwrap();
    assert!((9.0..=11.0).contains(&lost), "lost {lost}%");
    let out = run(&[&args[..], &["--max-loss", "5"]].concat(), b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("of the datagrams got no reply: more than --max-loss 5%"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_calls_a_wrong_byte_an_error() {
    let peer = Peer::start(|socket, from, datagram, i| {
        let mut reply = upper(datagram);
        if i > 3 && reply.len() > 60 {
            reply[60] ^= 0x01;
        }
        socket.send_to(&reply, from).unwrap();
    });
    let out = run(&["bench", "--udp", "-p", &peer.port(), "-d", "0.5"], b"");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("wrong_bytes"), "{text}");
    assert!(
        stderr(&out).contains("differs from the echo at byte 60"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn netcat_and_socat_get_the_echo_over_udp() {
    let server = udp_server(&[]);
    let port = server.port_arg();
    if have("nc") {
        let mut nc = Command::new("nc");
        nc.args(["-u", "-w1", "127.0.0.1", &port]);
        assert_eq!(output_of(nc, b"hello nc\n"), b"HELLO NC\n");
    }
    if have("socat") {
        let mut socat = Command::new("socat");
        socat.args(["-t", "1", "-", &format!("UDP:127.0.0.1:{port}")]);
        assert_eq!(output_of(socat, b"hello socat"), b"HELLO SOCAT");
    }
}

/// Runs `command` with `input` on stdin, for at most 10 s; its stdout.
fn output_of(mut command: Command, input: &[u8]) -> Vec<u8> {
    let child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = common::Guard(child);
    let mut stdin = child.0.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, input).unwrap();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "{command:?} is still running after 10s"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let mut out = Vec::new();
    if let Some(mut stdout) = child.0.stdout.take() {
        let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
    }
    out
}

#[test]
fn udp_answers_through_the_drain_and_stops_with_the_server() {
    let mut server = udp_server(&["--drain-delay", "2"]);
    let socket = socket_to(server.addr);
    let mut buf = [0u8; 8];
    if !server.stop() {
        return;
    }
    assert!(server.log.wait_for("draining", Duration::from_secs(5)));
    socket.send(b"still?").unwrap();
    let n = socket.recv(&mut buf).expect("an answer while draining");
    assert_eq!(&buf[..n], b"STILL?");
    let status = server
        .wait(Duration::from_secs(10))
        .expect("the server exits");
    assert!(status.success());
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let _ = socket.send(b"gone?");
    assert!(socket.recv(&mut buf).is_err(), "no answer once stopped");
}

#[test]
fn a_dual_stack_server_answers_ipv4_and_ipv6() {
    let server = Server::start(&["--udp", "-H", "::"]);
    let port = server.port();
    let mut buf = [0u8; 8];
    for (local, remote) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")] {
        let socket = match UdpSocket::bind(local) {
            Ok(socket) => socket,
            Err(e) => return cannot_run_here(&format!("no {remote} here: {e}")),
        };
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket.connect((remote, port)).unwrap();
        socket.send(b"both?").unwrap();
        let n = socket.recv(&mut buf).expect("an answer");
        assert_eq!(&buf[..n], b"BOTH?", "from {remote}");
    }
}
