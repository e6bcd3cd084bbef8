//! `tcpdemo bench` against our server and against deliberately odd ones.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use assert_cmd::Command as AssertCommand;
use common::*;

fn bench(port: u16, args: &[&str]) -> std::process::Output {
    bench_for(port, "0.5", args)
}

/// `tcpdemo bench` for `seconds`.
fn bench_for(port: u16, seconds: &str, args: &[&str]) -> std::process::Output {
    AssertCommand::new(BIN)
        .env_remove("RUST_LOG")
        .args([
            "bench",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--duration",
            seconds,
        ])
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap()
}

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {output:?}"))
}

/// The summary: the last line, after any --interval lines.
fn summary(output: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {output:?}"))
}

#[test]
fn every_mode_runs_against_the_server_without_errors() {
    let server = Server::start(&["-q"]);
    for (mode, connections) in [("rr", "4"), ("stream", "2"), ("connect", "2")] {
        let output = bench(
            server.port(),
            &["--mode", mode, "--connections", connections, "--json"],
        );
        assert!(output.status.success(), "{mode}: {output:?}");
        let report = json(&output);
        assert_eq!(report["mode"], mode);
        assert_eq!(report["errors"], 0, "{report}");
        assert!(report["operations"].as_u64().unwrap() > 0, "{report}");
        assert!(
            report["received_mib_per_second"].as_f64().unwrap() > 0.0,
            "{report}"
        );
        if mode != "stream" {
            let latency = &report["latency_us"];
            assert!(
                latency["min"].as_f64().unwrap() <= latency["p50"].as_f64().unwrap(),
                "{report}"
            );
            assert!(
                latency["p99_9"].as_f64().unwrap() <= latency["max"].as_f64().unwrap(),
                "{report}"
            );
        }
    }
}

#[test]
fn large_requests_do_not_deadlock_and_the_table_is_readable() {
    let server = Server::start(&["-q"]);
    let output = bench(server.port(), &["--mode", "rr", "--size", "1000000"]);
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout);
    for row in [
        "requests",
        "throughput",
        "latency",
        "p99.9",
        "errors       0",
    ] {
        assert!(table.contains(row), "table lacks {row:?}:\n{table}");
    }
}

/// Serves each connection with `reply`, applied to each chunk read and the stream offset.
fn odd_server(reply: fn(&[u8], usize) -> Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buf = vec![0; 64 * 1024];
                let mut offset = 0;
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&reply(&buf[..n], offset)).is_err() {
                        break;
                    }
                    offset += n;
                }
            });
        }
    });
    port
}

/// Loses the byte at offset 10 of every connection.
fn drop_a_byte(chunk: &[u8], offset: usize) -> Vec<u8> {
    let mut out = chunk.to_ascii_uppercase();
    if (offset..offset + chunk.len()).contains(&10) {
        out.remove(10 - offset);
    }
    out
}

#[test]
fn a_server_that_drops_a_byte_makes_bench_exit_1() {
    let port = odd_server(drop_a_byte);
    for mode in ["connect", "stream"] {
        let output = bench(port, &["--mode", mode, "--json"]);
        assert_eq!(output.status.code(), Some(1), "{mode}: {output:?}");
        assert!(json(&output)["errors"].as_u64().unwrap() > 0);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains("errors during the run"),
            "{stderr}"
        );
    }
}

#[test]
fn plain_mode_measures_an_unmodified_echo() {
    let port = odd_server(|chunk, _| chunk.to_vec());
    let output = bench(port, &["--plain", "--json"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(json(&output)["errors"], 0);
    // The same server is wrong for the default, uppercasing, expectation, and bench says why.
    let output = bench(port, &["--json"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("expected 'A', got 'a'")
            && stderr.contains("the server echoes unchanged (use --plain)"),
        "{stderr}"
    );
}

#[cfg(target_os = "linux")] // /dev/full
#[test]
fn a_stdout_that_fails_is_one_error_and_one_that_closed_is_a_quiet_end() {
    let server = Server::start(&["-q"]);
    let args = [
        "bench",
        "-H",
        "127.0.0.1",
        "-p",
        &server.port_arg(),
        "-d",
        "0.2",
    ];
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let output = tcpdemo().args(args).stdout(full).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: cannot write to stdout: No space left on device (os error 28)\n"
    );

    // A reader that is gone before the report: `tcpdemo bench | true`.
    let mut child = tcpdemo()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(output.stderr, b"");
}

#[test]
fn a_stalled_server_is_named_as_such() {
    // Takes in the requests and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let output = bench(port, &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("first: no reply from the server for 10s"),
        "{stderr}"
    );
}

#[test]
fn no_server_is_one_clear_error() {
    let port = closed_port();
    let output = bench(port, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: cannot connect to 127.0.0.1:{port}: {}: is tcpdemo server running there? \
             (tcpdemo server --port {port})\n",
            refused_text()
        )
    );
}

/// `tcpdemo bench` as a child whose stdout the test reads as it comes.
#[cfg(unix)]
fn bench_child(port: u16, args: &[&str]) -> std::process::Child {
    tcpdemo()
        .args(["bench", "-H", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn rate_holds_its_rate_against_the_server() {
    let server = Server::start(&["-q"]);
    for mode in ["rr", "connect"] {
        let output = bench_for(
            server.port(),
            "1",
            &["--mode", mode, "--rate", "2000", "-c", "2", "--json"],
        );
        assert!(output.status.success(), "{mode}: {output:?}");
        let summary = json(&output);
        assert_eq!(summary["loop"], "open");
        let ops = summary["operations"].as_u64().unwrap();
        let unsent = summary["rate"]["due_not_sent"].as_u64().unwrap();
        // 2,000 are due in the second: each one was either done or counted as not sent (a
        // loaded machine may fall behind), and nothing more was sent.
        assert_eq!(ops + unsent, 2000, "{mode}: {summary}");
        // How many were done is the machine's speed (883 connections under Wine), not a promise.
        assert!(ops > 0, "{mode}: {summary}");
        assert!(summary["service_us"]["p50"].as_f64().unwrap() > 0.0);
    }
}

#[cfg(unix)] // SIGSTOP and SIGCONT
#[test]
fn a_frozen_server_shows_in_the_open_loop_p99() {
    let server = Server::start(&["-q"]);
    let mut child = bench_child(
        server.port(),
        &["--rate", "500", "-d", "3", "--interval", "0.5", "--json"],
    );
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Once the first interval is out, the run is under way: freeze the server for 1 s.
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("\"interval\""), "{first}");
    server.signal(libc::SIGSTOP);
    thread::sleep(Duration::from_secs(1));
    server.signal(libc::SIGCONT);
    let last = lines.map(Result::unwrap).last().unwrap();
    assert!(child.wait().unwrap().success());
    let summary: serde_json::Value = serde_json::from_str(&last).unwrap();
    let p99 = summary["latency_us"]["p99"].as_f64().unwrap();
    // Requests due during the stall waited up to its whole length; a closed loop would time
    // only the one in flight.
    assert!(
        p99 >= 400_000.0,
        "p99 {p99} us after a 1 s stall:\n{summary}"
    );
}

#[test]
fn intervals_and_the_summary_are_json_lines() {
    let server = Server::start(&["-q"]);
    let output = bench(
        server.port(),
        &["--interval", "0.1", "--warmup", "0.2", "--json"],
    );
    assert!(output.status.success(), "{output:?}");
    let objects: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let (summary, intervals) = objects.split_last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert!(intervals.len() >= 3, "{} intervals", intervals.len());
    assert!(intervals.iter().all(|i| i["type"] == "interval"));
    let counted: u64 = intervals
        .iter()
        .map(|i| i["operations"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, summary["operations"].as_u64().unwrap());
    for key in ["mean", "stdev", "p99_99"] {
        assert!(summary["latency_us"][key].is_number(), "{key}: {summary}");
    }
}

#[test]
fn hist_and_plot_files_are_well_formed() {
    let server = Server::start(&["-q"]);
    let dir = std::env::temp_dir().join(format!("tcpdemo-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (hist, plot) = (dir.join("run.hgrm"), dir.join("run.svg"));
    let output = bench(
        server.port(),
        &[
            "--hist",
            hist.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let hist = std::fs::read_to_string(&hist).unwrap();
    assert!(hist.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    assert!(hist.contains("#[Mean    = ") && hist.contains("#[Max     = "));
    let rows = hist.lines().skip(2).take_while(|l| !l.starts_with('#'));
    assert!(
        rows.map(|r| r.split_whitespace().count())
            .all(|n| n == 3 || n == 4)
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for label in [
        "latency by percentile",
        "latency over time",
        "99.99%",
        "99.9%",
        "latency (ms, log scale)",
        "rr against 127.0.0.1",
        "closed loop",
    ] {
        assert!(svg.contains(label), "plot lacks {label:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn errors_by_kind_add_up_to_errors() {
    let port = odd_server(drop_a_byte);
    let output = bench(port, &["--mode", "connect", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let summary = json(&output);
    let by_kind = summary["errors_by_kind"].as_object().unwrap();
    let sum: u64 = by_kind.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(sum, summary["errors"].as_u64().unwrap());
    assert!(by_kind["wrong_bytes"].as_u64().unwrap() > 0, "{summary}");
}

#[cfg(unix)] // SIGINT
#[test]
fn ctrl_c_ends_the_run_early_with_a_report() {
    let server = Server::start(&["-q"]);
    let mut child = bench_child(server.port(), &["-d", "60", "--interval", "0.2"]);
    use std::io::BufRead;
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("ops/s"), "{first}");
    // SAFETY: kill has no memory effects; the pid is our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{rest}");
    assert!(
        rest.contains("(interrupted)") && rest.contains("requests"),
        "{rest}"
    );
}

#[test]
fn duration_bounds_a_run_that_cannot_keep_up_and_what_was_due_is_counted() {
    let server = Server::start(&["-q"]);
    let started = std::time::Instant::now();
    let output = bench_for(server.port(), "1", &["-c", "2", "--rate", "1e9", "--json"]);
    let took = started.elapsed();
    assert!(output.status.success(), "{output:?}");
    // It ran for minutes before: a worker behind its schedule kept sending what fell due.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let summary = json(&output);
    let seconds = summary["seconds"].as_f64().unwrap();
    assert!(seconds >= 1.0, "{summary}");
    let ops = summary["operations"].as_f64().unwrap();
    // The achieved rate divides by the time measured, not the time asked for.
    let achieved = summary["rate"]["achieved"].as_f64().unwrap();
    assert!((achieved - ops / seconds).abs() < 1.0, "{summary}");
    let unsent = summary["rate"]["due_not_sent"].as_u64().unwrap();
    assert!(unsent > 100_000_000, "{summary}");
    let notes = summary["notes"].to_string();
    assert!(notes.contains("due but not sent"), "{notes}");
}

#[cfg(unix)] // SIGTERM
#[test]
fn a_stop_ends_a_run_behind_its_schedule_at_once_with_its_report() {
    let server = Server::start(&["-q"]);
    let mut child = bench_child(server.port(), &["-d", "60", "--rate", "1e9", "-i", "0.2"]);
    use std::io::BufRead;
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("ops/s"), "{first}");
    // SAFETY: kill has no memory effects; the pid is our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let stopped = std::time::Instant::now();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let took = stopped.elapsed();
    assert!(status.success(), "{status:?}\n{rest}");
    assert!(took < Duration::from_secs(3), "took {took:?} to stop");
    assert!(rest.contains("(interrupted)"), "{rest}");
    assert!(rest.contains("due but not sent"), "{rest}");
}

#[cfg(unix)] // wait4
#[test]
fn an_idle_bench_is_idle_whatever_its_stderr() {
    let server = Server::start(&["-q"]);
    for extra in [&[][..], &["--interval", "0.5"]] {
        let mut child = tcpdemo()
            .args(["bench", "-H", "127.0.0.1", "-p", &server.port_arg()])
            .args(["--rate", "20", "-d", "2"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (status, cpu) = wait_with_cpu(&mut child);
        assert!(status.success(), "{status:?}");
        // A watch loop that spins takes a whole core: about 2 s of CPU here.
        assert!(
            cpu < Duration::from_millis(400),
            "{extra:?}: {cpu:?} of CPU"
        );
    }
}

#[test]
fn rates_a_schedule_cannot_hold_are_usage_errors() {
    for rate in ["1e-300", "0", "2e9"] {
        let output = bench(closed_port(), &["--rate", rate]);
        assert_eq!(output.status.code(), Some(2), "{rate}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("rate"), "{stderr}");
    }
}

#[test]
fn the_report_says_how_many_connections_were_open_at_once() {
    let server = Server::start(&["-q"]);
    let output = bench(server.port(), &["-c", "3", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let summary = json(&output);
    assert_eq!(summary["connections_open"]["peak"], 3, "{summary}");
    let output = bench(server.port(), &["-c", "3", "--warmup", "0.3"]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("open         3 at most, 3 when the warm-up ended"),
        "{table}"
    );
}

#[test]
fn hold_mode_holds_every_connection_and_checks_each_echo() {
    let server = Server::start(&["-q"]);
    let output = bench_for(
        server.port(),
        "1.5",
        &["--mode", "hold", "-c", "300", "--interval", "0.5", "--json"],
    );
    assert!(output.status.success(), "{output:?}");
    let report = summary(&output);
    assert_eq!(report["hold"]["opened"], 300, "{report}");
    assert_eq!(report["hold"]["open_at_end"], 300, "{report}");
    assert_eq!(report["connections_open"]["peak"], 300, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    // Three intervals' worth each, give or take the first and the last.
    let echoes = report["operations"].as_u64().unwrap();
    assert!((600..=1200).contains(&echoes), "{echoes} echoes: {report}");
}

#[test]
fn hold_mode_counts_connections_the_server_never_answers() {
    // Ten are served; the other five wait, connected, in the listen queue.
    let server = Server::start(&["-q", "--max-connections", "10"]);
    let output = bench_for(
        server.port(),
        "1.5",
        &["--mode", "hold", "-c", "15", "--interval", "0.5", "--json"],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = summary(&output);
    assert_eq!(report["errors_by_kind"]["stalled"], 5, "{report}");
    assert_eq!(report["hold"]["open_at_end"], 10, "{report}");
}
