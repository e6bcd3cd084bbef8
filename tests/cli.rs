//! At home for netcat users and Rust CLI users: completions, the man page, --version anywhere,
//! netcat's flags, -v that says what happens, JSON logs, byte-exact arguments.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::Command as AssertCommand;
use common::*;
use predicates::prelude::*;

fn tcpdemo_cmd() -> AssertCommand {
    let mut command = AssertCommand::new(BIN);
    command.env_remove("RUST_LOG").env_remove("JOURNAL_STREAM");
    command.timeout(Duration::from_secs(30));
    command
}

#[test]
fn completions_are_produced_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let output = tcpdemo_cmd().args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(
            script.contains("tcpdemo") && script.contains("proxy-protocol"),
            "{shell}"
        );
    }
}

#[cfg(unix)] // bash
#[test]
fn bash_completions_load() {
    let found = std::process::Command::new("bash").arg("--version").output();
    if found.is_err() {
        return cannot_run_here("bash is not installed");
    }
    let script = format!("source <('{BIN}' completions bash) && complete -p tcpdemo");
    let output = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("tcpdemo"));
}

#[test]
fn the_man_page_covers_every_subcommand_and_flag() {
    let output = tcpdemo_cmd().arg("man").output().unwrap();
    assert!(output.status.success());
    let page = String::from_utf8(output.stdout).unwrap();
    assert!(page.starts_with(".TH"), "{}", &page[..80.min(page.len())]);
    for needle in [
        "TCPDEMO SERVER",
        "TCPDEMO CLIENT",
        "TCPDEMO BENCH",
        "TCPDEMO COMPLETIONS",
        "TCPDEMO MAN",
        "proxy\\-protocol",
        "send\\-proxy",
        "drain\\-delay",
        "rate",
        "log\\-format",
        // The long explanations, not only synopsis and options.
        "More on tcpdemo server",
        "Operating limits",
        "More on tcpdemo client",
        "More on tcpdemo bench",
        "coordinated omission",
        "EXAMPLES AND EXIT STATUS",
        "\\-w SECS",
    ] {
        assert!(page.contains(needle), "man page lacks {needle:?}");
    }
}

#[test]
fn help_with_a_subcommand_gives_the_long_story_and_short_help_points_to_it() {
    let long = tcpdemo_cmd().args(["help", "server"]).output().unwrap();
    let long = String::from_utf8(long.stdout).unwrap();
    assert!(
        long.contains("Operating limits") && long.contains("SIGHUP"),
        "{long}"
    );
    let short = tcpdemo_cmd().args(["server", "-h"]).output().unwrap();
    let short = String::from_utf8(short.stdout).unwrap();
    assert!(!short.contains("Operating limits"), "{short}");
    assert!(short.contains("tcpdemo help server"), "{short}");
}

#[test]
fn version_works_after_any_subcommand() {
    for args in [
        &["--version"][..],
        &["server", "--version"],
        &["client", "--version"],
        &["bench", "--version"],
        &["client", "-V"],
    ] {
        tcpdemo_cmd()
            .args(args)
            .assert()
            .success()
            .stdout(predicate::str::starts_with("tcpdemo "));
    }
}

#[test]
fn help_lists_each_subcommand_s_own_flags_before_the_shared_ones() {
    let help = tcpdemo_cmd()
        .args(["server", "--help"])
        .output()
        .unwrap()
        .stdout;
    let help = String::from_utf8(help).unwrap();
    let own = help.find("--grace").unwrap();
    let shared = help.find("--verbose").unwrap();
    assert!(own < shared, "{help}");
    assert!(help.contains("every connection's lines"), "{help}");
    let help = tcpdemo_cmd()
        .args(["client", "--help"])
        .output()
        .unwrap()
        .stdout;
    let help = String::from_utf8(help).unwrap();
    assert!(help.contains("say what they do"), "{help}");
}

#[test]
fn w_bounds_the_wait_for_a_server_that_never_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let silent = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
        let _ = wait_done.recv();
    });
    let started = Instant::now();
    tcpdemo_cmd()
        .args([
            "client",
            "-H",
            "127.0.0.1",
            "-p",
            &port,
            "-w",
            "1",
            "anyone?",
        ])
        .assert()
        .code(1)
        .stderr("error: no reply from the server for 1s\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(done);
    silent.join().unwrap();
}

#[test]
fn four_and_six_keep_only_that_family() {
    let server = Server::start(&[]);
    tcpdemo_cmd()
        .args([
            "client",
            "-4",
            "-H",
            "localhost",
            "-p",
            &server.port_arg(),
            "v4",
        ])
        .assert()
        .success()
        .stdout("V4\n");
    tcpdemo_cmd()
        .args([
            "client",
            "-6",
            "-H",
            "127.0.0.1",
            "-p",
            &server.port_arg(),
            "x",
        ])
        .assert()
        .code(1)
        .stderr("error: cannot resolve 127.0.0.1: it has no IPv6 address\n");
    tcpdemo_cmd()
        .args([
            "bench",
            "-4",
            "-H",
            "localhost",
            "-p",
            &server.port_arg(),
            "-d",
            "0.2",
        ])
        .assert()
        .success();
    if TcpListener::bind("[::1]:0").is_err() {
        return cannot_run_here("no IPv6 loopback here");
    }
    let six = Server::start(&["-H", "::1"]);
    tcpdemo_cmd()
        .args(["client", "-6", "-H", "::1", "-p", &six.port_arg(), "v6"])
        .assert()
        .success()
        .stdout("V6\n");
}

#[test]
fn n_is_accepted_and_changes_nothing() {
    let server = Server::start(&[]);
    tcpdemo_cmd()
        .args([
            "client",
            "-N",
            "-H",
            "127.0.0.1",
            "-p",
            &server.port_arg(),
            "hi",
        ])
        .assert()
        .success()
        .stdout("HI\n");
    tcpdemo_cmd()
        .args(["client", "-N", "-H", "127.0.0.1", "-p", &server.port_arg()])
        .write_stdin("piped")
        .assert()
        .success()
        .stdout("PIPED");
}

#[test]
fn netcat_flags_that_mean_something_else_say_what_to_use() {
    tcpdemo_cmd()
        .args(["client", "-l", "-p", "1234"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tcpdemo server"))
        .stderr(predicate::str::contains("Usage: tcpdemo client [OPTIONS]"));
    tcpdemo_cmd()
        .args(["server", "-l", "-p", "1234"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tcpdemo server always listens"))
        .stderr(predicate::str::contains("Usage: tcpdemo server [OPTIONS]"));
    tcpdemo_cmd()
        .args(["client", "-k"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tcpdemo server"));
    tcpdemo_cmd()
        .args(["client", "-q", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("quiet"))
        .stderr(predicate::str::contains("Usage: tcpdemo client [OPTIONS]"));
    // After `--`, as the hint says, the number is the message.
    tcpdemo_cmd()
        .args(["client", "-p", &closed_port().to_string(), "-q", "--", "1"])
        .assert()
        .code(1);
}

#[test]
fn a_host_and_port_given_as_the_message_is_sent_with_a_warning() {
    let server = Server::start(&[]);
    tcpdemo_cmd()
        .args([
            "client",
            "-H",
            "127.0.0.1",
            "-p",
            &server.port_arg(),
            "localhost",
            "1234",
        ])
        .assert()
        .success()
        .stdout("LOCALHOST 1234\n")
        .stderr(predicate::str::contains("-H localhost -p 1234"));
}

#[test]
fn h_with_a_port_or_empty_is_a_usage_error_that_says_what_to_do() {
    tcpdemo_cmd()
        .args(["client", "-H", "127.0.0.1:1234", "hi"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("-H 127.0.0.1 -p 1234"));
    tcpdemo_cmd()
        .args(["client", "-H", "", "hi"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("needs a host"));
}

#[test]
fn client_v_names_the_address_it_connected_to_and_what_moved() {
    let server = Server::start(&[]);
    let output = tcpdemo_cmd()
        .args([
            "client",
            "-v",
            "-H",
            "localhost",
            "-p",
            &server.port_arg(),
            "hello",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("connected to {}", server.addr)),
        "{stderr}"
    );
    assert!(
        stderr.contains("sent 5 bytes, received 5 bytes in"),
        "{stderr}"
    );
}

#[cfg(unix)] // arguments that are not UTF-8
#[test]
fn a_message_that_is_not_utf8_is_sent_byte_for_byte() {
    use std::os::unix::ffi::OsStrExt;
    let server = Server::start(&[]);
    let message = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff");
    tcpdemo_cmd()
        .args(["client", "-H", "127.0.0.1", "-p", &server.port_arg()])
        .arg(message)
        .assert()
        .success()
        .stdout(&b"CAF\xe9 \xff\n"[..]);
}

#[test]
fn json_log_lines_parse_and_a_connection_s_lines_share_its_id() {
    let mut command = tcpdemo();
    command.args(["server", "--port", "0", "--log-format", "json"]);
    let mut server = Server::spawn(command);
    for _ in 0..3 {
        drop(server.connect_echoing(b"hi"));
    }
    assert!(
        server
            .log
            .wait_for_count("closed by peer", 3, Duration::from_secs(10))
    );
    if !server.stop() {
        return;
    }
    server.wait(Duration::from_secs(10));
    let lines: Vec<serde_json::Value> = server
        .log
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for line in &lines {
        for key in ["time", "level", "message"] {
            assert!(line[key].is_string(), "{line}");
        }
    }
    let opened: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"].as_str().unwrap().ends_with(": connected"))
        .collect();
    assert_eq!(opened.len(), 3);
    for open in opened {
        let id = open["conn"].as_u64().unwrap();
        let close = lines
            .iter()
            .find(|l| l["conn"] == id && l["reason"].is_string())
            .unwrap_or_else(|| panic!("no close line for conn {id}"));
        assert_eq!(close["peer"], open["peer"]);
        assert_eq!(close["bytes"], 2);
        assert!(close["duration_us"].is_u64());
    }
}

#[test]
fn under_the_journal_lines_carry_a_priority_and_no_timestamp() {
    let mut command = tcpdemo();
    command
        .args(["server", "--port", "0", "--max-connections", "0"])
        .env("JOURNAL_STREAM", "8:1234");
    // --max-connections 0 is refused at once: the usage error is clap's, not a log line.
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let mut command = tcpdemo();
    command
        .args(["server", "--port", "0"])
        .env("JOURNAL_STREAM", "8:1234");
    let server = Server::spawn(command);
    drop(server.connect_echoing(b"x"));
    assert!(
        server
            .log
            .wait_for("<6>#0 127.0.0.1:", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    assert!(
        !server.log.text().contains("Z INFO"),
        "{}",
        server.log.text()
    );
}

#[test]
fn text_log_durations_are_in_milliseconds_and_ascii() {
    let server = Server::start(&[]);
    drop(server.connect_echoing(b"x"));
    assert!(
        server
            .log
            .wait_for(" ms, closed by peer", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    assert!(server.log.text().is_ascii(), "{}", server.log.text());
}
