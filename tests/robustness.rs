//! The server under load, faults and hostile clients, and its clean stop.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
#[cfg(unix)]
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Tests here hold many sockets; a machine's default soft limit (often 1024) is too low.
#[cfg(unix)]
fn allow_many_sockets() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(65_536);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// Windows has no such limit.
#[cfg(windows)]
fn allow_many_sockets() {}

fn open_idle(server: &Server, count: usize) -> Vec<TcpStream> {
    (0..count).map(|_| server.connect()).collect()
}

fn ask(server: &Server, message: &[u8], timeout: Duration) -> Vec<u8> {
    let mut stream = server.connect();
    stream.write_all(message).unwrap();
    read_upto(&mut stream, message.len(), timeout)
}

#[test]
fn a_new_client_is_served_promptly_while_1000_idle_connections_are_open() {
    allow_many_sockets();
    let server = Server::start(&["-q"]);
    let idle = open_idle(&server, 1000);
    let started = Instant::now();
    assert_eq!(
        ask(&server, b"still here?", Duration::from_secs(10)),
        b"STILL HERE?"
    );
    // Generous for a loaded CI machine; a server stuck behind its idle connections takes forever.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    drop(idle);
}

#[test]
fn at_max_connections_a_new_client_waits_and_is_served_when_a_slot_frees() {
    let server = Server::start(&["--max-connections", "10"]);
    let mut idle = open_idle(&server, 10);
    // Each is known to the server once it echoes; then all ten slots are taken.
    for stream in &mut idle {
        stream.write_all(b"x").unwrap();
        assert_eq!(read_upto(stream, 1, Duration::from_secs(10)), b"X");
    }
    let mut waiting = server.connect(); // completes in the kernel's listen queue
    waiting.write_all(b"eleventh").unwrap();
    assert!(
        server
            .log
            .wait_for("connection limit reached", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    assert_eq!(
        read_upto(&mut waiting, 8, Duration::from_millis(500)),
        b"",
        "served beyond the limit"
    );

    drop(idle.pop());
    assert_eq!(
        read_upto(&mut waiting, 8, Duration::from_secs(10)),
        b"ELEVENTH"
    );
    assert!(
        server
            .log
            .wait_for("accepting again", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
}

#[test]
fn idle_timeout_closes_a_silent_connection_but_not_a_slow_one() {
    let server = Server::start(&["--idle-timeout", "1"]);
    // Timed from before the connect: the server's clock starts later, so however late this
    // thread runs, the close cannot seem early.
    let started = Instant::now();
    let mut silent = server.connect();
    let mut slow = server.connect();
    let trickle = thread::spawn(move || {
        // One byte every 300 ms for 3 s: slower than the data, never idle for a whole second.
        let mut echoed = Vec::new();
        for _ in 0..10 {
            slow.write_all(b"z").unwrap();
            echoed.extend(read_upto(&mut slow, 1, Duration::from_secs(5)));
            thread::sleep(Duration::from_millis(300));
        }
        slow.write_all(b"!").unwrap();
        echoed.extend(read_upto(&mut slow, 1, Duration::from_secs(5)));
        echoed
    });

    assert_eq!(
        read_upto(&mut silent, 1, Duration::from_secs(10)),
        b"",
        "silent one was closed"
    );
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed too early: {closed_after:?}"
    );
    assert!(
        closed_after < Duration::from_secs(5),
        "closed too late: {closed_after:?}"
    );
    assert_eq!(
        trickle.join().unwrap(),
        b"ZZZZZZZZZZ!",
        "slow one was served throughout"
    );
    assert!(
        server.log.wait_for("idle for 1s", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
}

#[test]
fn idle_timeout_disconnects_a_client_that_sends_but_never_reads() {
    let server = Server::start(&["--idle-timeout", "1"]);
    let mut hog = server.connect();
    hog.set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let started = Instant::now();
    let error = loop {
        // Bounded: a server that never cut us off would fail the assertion, not hang.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never disconnected"
        );
        if let Err(e) = hog.write_all(&chunk) {
            break e;
        }
    };
    assert!(
        matches!(
            error.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{error:?}"
    );
    // One second without progress, plus the time to fill the buffers on both sides.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The close line is logged by the connection's thread as it finishes: the thread is free.
    assert!(
        server
            .log
            .wait_for("peer stopped reading for 1s", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    assert_eq!(ask(&server, b"next", Duration::from_secs(10)), b"NEXT");
}

#[test]
fn a_reset_mid_stream_does_not_disturb_another_client() {
    let server = Server::start(&[]);
    let data = random_bytes(8 << 20, 7);
    let addr = server.addr;
    let checked = thread::spawn(move || round_trip(addr, &data) == data.to_ascii_uppercase());

    let rude = server.connect();
    let writer = rude.try_clone().unwrap();
    let sent = thread::spawn(move || {
        let _ = (&writer).write_all(&random_bytes(1 << 20, 8));
    });
    let mut first = [0u8; 1];
    (&rude).read_exact(&mut first).unwrap();
    socket2::SockRef::from(&rude)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    rude.shutdown(Shutdown::Read).unwrap();
    drop(rude); // RST, with the server mid-echo
    sent.join().unwrap();

    assert!(checked.join().unwrap(), "8 MiB round trip differs");
    assert!(server.log.wait_for("closed", Duration::from_secs(10)));
    assert!(
        !server.log.text().contains("WARN"),
        "a reset is routine:\n{}",
        server.log.text()
    );
    assert_eq!(ask(&server, b"ok", Duration::from_secs(10)), b"OK");
}

#[cfg(unix)] // ulimit
#[test]
fn a_server_started_with_ulimit_n_256_holds_1000_connections() {
    allow_many_sockets();
    let mut command = Command::new("sh");
    command.env_remove("RUST_LOG").args([
        "-c",
        r#"ulimit -S -n 256 && exec "$0" -v server --port 0"#,
        BIN,
    ]);
    let server = Server::spawn(command);
    assert!(
        server
            .log
            .wait_for("open-file limit", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    assert!(
        server.log.text().contains("(was 256)"),
        "{}",
        server.log.text()
    );
    let mut held = open_idle(&server, 1000);
    for (i, stream) in held.iter_mut().enumerate() {
        let message = format!("c{i}.");
        stream.write_all(message.as_bytes()).unwrap();
        assert_eq!(
            read_upto(stream, message.len(), Duration::from_secs(10)),
            message.to_uppercase().as_bytes()
        );
    }
    assert!(
        !server.log.text().contains("accept failed"),
        "{}",
        server.log.text()
    );
}

#[test]
fn a_stop_lets_open_connections_finish_then_exits_0_and_frees_the_port() {
    let mut server = Server::start(&["--grace", "10"]);
    let mut open = server.connect_echoing(b"before");
    if !server.stop() {
        return;
    }
    assert!(
        server
            .log
            .wait_for(" received: no longer accepting", Duration::from_secs(10))
    );

    // New connects are refused at once (the listening socket is closed, not left queueing);
    // the open connection still works.
    let refused = TcpStream::connect_timeout(&server.addr, Duration::from_secs(5));
    assert!(
        matches!(&refused, Err(e) if e.kind() == ErrorKind::ConnectionRefused),
        "a connect after the stop: {refused:?}"
    );
    open.write_all(b"during").unwrap();
    assert_eq!(read_upto(&mut open, 6, Duration::from_secs(10)), b"DURING");

    let started = Instant::now();
    open.shutdown(Shutdown::Write).unwrap();
    let status = server.wait(Duration::from_secs(20)).expect("server exited");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not exit when the last connection closed"
    );
    assert!(
        server
            .log
            .text()
            .contains("shutdown: connections served: 1, bytes echoed: 12, cut at shutdown: 0"),
        "{}",
        server.log.text()
    );
    assert_eq!(
        server.more_stdout, "",
        "stdout holds only the listening line"
    );
    TcpListener::bind(server.addr).expect("port free again");
}

#[test]
fn after_the_grace_period_idle_connections_are_cut_and_the_server_exits_0() {
    let mut server = Server::start(&["--grace", "0.5"]);
    let mut idle = server.connect_echoing(b"hi");
    let started = Instant::now();
    if !server.stop() {
        return;
    }
    let status = server.wait(Duration::from_secs(20)).expect("server exited");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        read_upto(&mut idle, 1, Duration::from_secs(5)),
        b"",
        "cut connection sees EOF"
    );
    assert!(
        server.log.text().contains("cut at shutdown: 1"),
        "{}",
        server.log.text()
    );
    assert!(
        server.log.text().contains("cut at shutdown\n"),
        "its close line says why"
    );
    TcpListener::bind(server.addr).expect("port free again");
}

#[cfg(unix)] // signals
#[test]
fn a_second_signal_exits_at_once() {
    let mut server = Server::start(&["--grace", "60"]);
    let _idle = server.connect_echoing(b"hi"); // held open through both signals
    server.signal(libc::SIGTERM);
    assert!(
        server
            .log
            .wait_for("waiting up to", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    // A deliberate second signal: a person pressing Ctrl-C again, not a doubled delivery.
    thread::sleep(Duration::from_millis(1100));
    server.signal(libc::SIGTERM);
    let status = server
        .wait(Duration::from_secs(10))
        .expect("exited well before the 60 s grace");
    assert_eq!(status.code(), Some(1));
}

#[cfg(unix)] // signals
#[test]
fn a_doubled_signal_is_one_stop_with_its_grace_period() {
    // What `timeout` does: SIGTERM to the process, then at once to its process group.
    let mut server = Server::start(&["--grace", "10"]);
    let mut open = server.connect_echoing(b"hi");
    server.signal(libc::SIGTERM);
    server.signal(libc::SIGTERM);
    assert!(
        server
            .log
            .wait_for("waiting up to", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    open.write_all(b"still served").unwrap();
    assert_eq!(
        read_upto(&mut open, 12, Duration::from_secs(10)),
        b"STILL SERVED"
    );
    open.shutdown(Shutdown::Write).unwrap();
    let status = server.wait(Duration::from_secs(20)).expect("server exited");
    assert!(status.success(), "{status:?}\n{}", server.log.text());
    assert!(server.log.text().contains("cut at shutdown: 0"));
}

#[test]
fn a_hundred_clients_with_random_binary_payloads_all_get_exact_replies() {
    let server = Server::start(&["-q"]);
    let addr = server.addr;
    let clients: Vec<_> = (0..100u64)
        .map(|i| {
            thread::spawn(move || {
                // Sizes spread from 1 byte to 1 MiB, pseudo-random but reproducible.
                let size = 1
                    + (random_bytes(3, i + 100)
                        .iter()
                        .fold(0usize, |a, &b| a << 8 | b as usize)
                        % (1 << 20));
                let data = random_bytes(size, i);
                round_trip(addr, &data) == data.to_ascii_uppercase()
            })
        })
        .collect();
    for (i, client) in clients.into_iter().enumerate() {
        assert!(client.join().unwrap(), "client {i} got a wrong reply");
    }
}

#[cfg(target_os = "linux")] // ulimit, and the server's CPU time from /proc
#[test]
fn out_of_descriptors_the_server_pauses_warns_rarely_and_resumes_by_itself() {
    let mut command = Command::new("sh");
    // Soft and hard limit both 40: raising cannot help, accept runs into EMFILE.
    command.env_remove("RUST_LOG").args([
        "-c",
        r#"ulimit -n 40 && exec "$0" server --port 0"#,
        BIN,
    ]);
    let server = Server::spawn(command);
    assert!(server.log.wait_for(
        "exceeds what the open-file limit of 40 allows",
        Duration::from_secs(10)
    ));

    let mut streams = open_idle(&server, 60);
    assert!(
        server
            .log
            .wait_for("accept failed", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    let cpu_before = server.cpu_time();
    let sat = Instant::now();
    thread::sleep(Duration::from_secs(2)); // let the server sit out of descriptors for a while
    let cpu_used = server.cpu_time() - cpu_before;
    assert!(
        cpu_used < Duration::from_millis(500),
        "spinning: {cpu_used:?} of CPU in 2 s"
    );
    // At most one a second, counted over the time that really passed on a loaded machine.
    let warnings = server.log.text().matches("accept failed").count() as u64;
    let allowed = sat.elapsed().as_secs() + 2;
    assert!(
        warnings <= allowed,
        "{warnings} accept warnings in {:?}:\n{}",
        sat.elapsed(),
        server.log.text()
    );

    // Free descriptors: the connections that waited in the queue are served, in turn.
    let last = streams.pop().unwrap();
    streams.truncate(5);
    let mut last = last;
    last.write_all(b"finally").unwrap();
    assert_eq!(read_upto(&mut last, 7, Duration::from_secs(10)), b"FINALLY");
}

/// The keepalive timer of the server's side of `client`, from /proc/net/tcp: `None` when no
/// keepalive timer runs, else the time left until the first probe.
#[cfg(target_os = "linux")]
fn server_side_keepalive(server: &Server, client: &TcpStream) -> Option<Duration> {
    let (server_port, client_port) = (server.port(), client.local_addr().unwrap().port());
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    for line in table.lines().skip(1) {
        // sl local rem st tx:rx tr:when ...; addresses are hex IP:port.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port =
            |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap(), 16).unwrap();
        if port(fields[1]) != server_port || port(fields[2]) != client_port {
            continue;
        }
        let (timer, when) = fields[5].split_once(':').unwrap();
        // Timer 2 is keepalive; `when` counts clock ticks (USER_HZ, 100 a second).
        return (timer == "02")
            .then(|| Duration::from_millis(u64::from_str_radix(when, 16).unwrap() * 10));
    }
    panic!("no socket of the server's for port {client_port} in /proc/net/tcp");
}

#[cfg(target_os = "linux")] // /proc/net/tcp
#[test]
fn keepalive_is_on_by_default_and_keepalive_sets_or_disables_it() {
    let server = Server::start(&[]);
    let client = server.connect_echoing(b"hi");
    let left = server_side_keepalive(&server, &client).expect("a keepalive timer by default");
    assert!(
        left > Duration::from_secs(50) && left <= Duration::from_secs(60),
        "first probe in {left:?}, not about 60 s"
    );

    let server = Server::start(&["--keepalive", "5"]);
    let client = server.connect_echoing(b"hi");
    let left = server_side_keepalive(&server, &client).expect("a keepalive timer");
    assert!(left <= Duration::from_secs(5), "first probe in {left:?}");

    let server = Server::start(&["--keepalive", "0"]);
    let client = server.connect_echoing(b"hi");
    assert_eq!(server_side_keepalive(&server, &client), None);
}

#[cfg(target_os = "linux")] // net.core.somaxconn from /proc
#[test]
fn the_listen_queue_is_as_long_as_the_system_allows() {
    allow_many_sockets();
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The old default was 1,024: more than that must wait in the queue.
    let waiting = 1500;
    if somaxconn < waiting + 1 {
        return cannot_run_here(&format!(
            "net.core.somaxconn is {somaxconn}, below the {waiting} tried here"
        ));
    }
    let server = Server::start(&["--max-connections", "1", "-q"]);
    let _served = server.connect_echoing(b"only one");
    // Each completes its handshake in the kernel's queue; past its end, connect would hang.
    let started = Instant::now();
    let queued: Vec<TcpStream> = (0..waiting)
        .map(|i| {
            TcpStream::connect_timeout(&server.addr, Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("connect {i} of {waiting} failed: {e}"))
        })
        .collect();
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(queued);
}

/// Runs `tcpdemo server` as user `nobody` with at most `tasks` threads for that user, as
/// systemd's TasksMax or a container's pids limit would allow. Root only: RLIMIT_NPROC binds
/// every user but root, so the server must run as another.
#[cfg(target_os = "linux")]
fn server_with_thread_limit(tasks: u64, args: &[&str]) -> Option<Server> {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        cannot_run_here("limiting another user's threads needs root");
        return None;
    }
    // A copy that `nobody` may run, whatever the permissions of the build directory.
    let dir = std::env::temp_dir().join(format!("tcpdemo-nproc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("tcpdemo");
    std::fs::copy(BIN, &bin).unwrap();
    let mut command = Command::new(&bin);
    command
        .env_remove("RUST_LOG")
        .args(["server", "--port", "0"])
        .args(args)
        .uid(65534)
        .gid(65534);
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: tasks,
                rlim_max: tasks,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Some(Server::spawn(command))
}

#[cfg(target_os = "linux")] // RLIMIT_NPROC, root, another user
#[test]
fn out_of_threads_the_server_stops_accepting_for_a_moment_and_drops_no_one() {
    let Some(server) = server_with_thread_limit(24, &[]) else {
        return;
    };
    // More clients than threads: each sends a byte and waits for its echo.
    let clients: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut stream = server.connect();
            stream.write_all(b"x").unwrap();
            stream
        })
        .collect();
    assert!(
        server
            .log
            .wait_for("cannot start a thread", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    let sat = Instant::now();
    thread::sleep(Duration::from_secs(2)); // let it sit at the limit for a while
    let warnings = server.log.text().matches("cannot start a thread").count() as u64;
    let allowed = sat.elapsed().as_secs() + 2;
    assert!(
        warnings <= allowed,
        "{warnings} warnings in {:?}:\n{}",
        sat.elapsed(),
        server.log.text()
    );
    // Some were served; the rest wait, none was accepted and dropped. The first client is
    // surely served, however long a loaded machine takes; a served one read as waiting here
    // is still checked below.
    let (mut served, mut waiting) = (Vec::new(), Vec::new());
    for (i, mut stream) in clients.into_iter().enumerate() {
        let wait = if i == 0 { 10_000 } else { 100 };
        match read_upto(&mut stream, 1, Duration::from_millis(wait)).as_slice() {
            b"X" => served.push(stream),
            b"" => waiting.push(stream),
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert!(
        !served.is_empty() && !waiting.is_empty(),
        "{} served, {} waiting",
        served.len(),
        waiting.len()
    );
    // As threads free up, the waiting clients are served in turn.
    drop(served);
    for (i, mut stream) in waiting.into_iter().enumerate() {
        assert_eq!(
            read_upto(&mut stream, 1, Duration::from_secs(10)),
            b"X",
            "waiting client {i} was not served"
        );
    }
    assert!(
        server
            .log
            .wait_for("threads available again", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
}

#[cfg(unix)] // SIGHUP
#[test]
fn sighup_is_a_stop_request_with_grace_and_summary() {
    let mut server = Server::start(&["--grace", "10"]);
    let mut open = server.connect_echoing(b"before");
    server.signal(libc::SIGHUP);
    assert!(
        server.log.wait_for(
            "SIGHUP received: no longer accepting",
            Duration::from_secs(10)
        ),
        "{}",
        server.log.text()
    );
    // The grace: the open connection is still served.
    open.write_all(b"during").unwrap();
    assert_eq!(read_upto(&mut open, 6, Duration::from_secs(10)), b"DURING");
    open.shutdown(Shutdown::Write).unwrap();
    let status = server.wait(Duration::from_secs(20)).expect("server exited");
    // It used to die of the signal at once: exit 129, no grace, no summary.
    assert!(status.success(), "{status:?}");
    assert!(
        server
            .log
            .text()
            .contains("shutdown: connections served: 1"),
        "{}",
        server.log.text()
    );
}

/// An IPv6 link-local address carries its interface (`%lo`): the stop, and the health check's
/// address derived from the echo port's, must keep it. The test gives its own loopback such an
/// address, in a network namespace of its own.
#[cfg(target_os = "linux")]
#[test]
fn a_link_local_server_stops_on_request_and_serves_health_checks() {
    let setup = own_network_namespace().and_then(|()| {
        run_here(&[
            "ip",
            "-6",
            "addr",
            "add",
            "fe80::1/64",
            "dev",
            "lo",
            "nodad",
        ])
    });
    if let Err(why) = setup {
        return cannot_run_here(&why);
    }
    let health_port = closed_port().to_string();
    let mut server = Server::start(&["-H", "fe80::1%lo", "--health-port", &health_port]);
    let reply = tcpdemo()
        .args([
            "client",
            "-H",
            "fe80::1%lo",
            "-p",
            &server.port_arg(),
            "hello",
        ])
        .output()
        .unwrap();
    assert_eq!(reply.stdout, b"HELLO\n", "{reply:?}");
    let mut health_addr = server.addr;
    health_addr.set_port(health_port.parse().unwrap());
    let mut health = TcpStream::connect(health_addr).expect("connect to the health check");
    health.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let answer = read_upto(&mut health, 1000, Duration::from_secs(10));
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(server.stop());
    // The wake-up connect lost the scope: the server ran on until a client came.
    let status = server.wait(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        server.log.text()
    );
}

/// `--idle-timeout` also bounds a write the peer does not read. With std's `write_all` under
/// `SO_SNDTIMEO`, Linux handed back a few KiB after each full wait and the write waited again:
/// clients that never read were cut after about four times the timeout.
#[test]
fn idle_timeout_bounds_a_write_the_peer_does_not_read() {
    let server = Server::start(&["--idle-timeout", "2", "-v"]);
    let hogs: Vec<TcpStream> = (0..20).map(|_| server.connect()).collect();
    thread::scope(|scope| {
        for hog in &hogs {
            scope.spawn(move || {
                let chunk = vec![b'a'; 64 * 1024];
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(30) {
                    if (&*hog).write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    assert!(
        server
            .log
            .wait_for_count("peer stopped reading for 2s", 20, Duration::from_secs(30)),
        "{}",
        server.log.text()
    );
    // Each close line says how long its connection lived: the timeout, plus the moment it
    // takes to fill the buffers, plus room for a loaded machine; not four timeouts.
    for line in server
        .log
        .text()
        .lines()
        .filter(|l| l.contains("peer stopped reading"))
    {
        let ms: f64 = line
            .split(" echoed in ")
            .nth(1)
            .and_then(|rest| rest.split(" ms").next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no duration in {line}"));
        assert!(ms < 4_500.0, "{line}");
    }
}
