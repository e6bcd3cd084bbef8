//! The client's exit 0 means the echo came back whole, and `--timeout` bounds every wait.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::Command as AssertCommand;
use common::*;

/// A one-connection server on a free port that runs `serve` on its connection.
fn misbehaving(serve: impl FnOnce(TcpStream) + Send + 'static) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        serve(stream);
    });
    (port, handle)
}

fn client(port: &str, args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut command = AssertCommand::new(BIN);
    command
        .env_remove("RUST_LOG")
        .args(["client", "-H", "127.0.0.1", "-p", port])
        .args(args)
        .timeout(Duration::from_secs(60));
    if let Some(stdin) = stdin {
        command.write_stdin(stdin);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Reads and throws away everything until the client closes.
fn drain(mut stream: &TcpStream) {
    let mut sink = vec![0; 64 * 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

#[test]
fn a_reply_cut_in_half_is_written_out_then_exit_1_says_where() {
    let (port, server) = misbehaving(|mut stream| {
        let mut buf = [0u8; 10];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(&buf[..5].to_ascii_uppercase()).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        drain(&stream);
    });
    let output = client(&port, &["helloworld"], None);
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(output.stdout, b"HELLO");
    assert_eq!(
        stderr(&output),
        "error: the server closed the connection after 5 of 10 bytes\n"
    );
}

#[test]
fn a_server_that_echoes_64_kib_and_closes_is_an_error_not_a_success() {
    let (port, server) = misbehaving(|mut stream| {
        let mut buf = vec![0u8; 64 * 1024];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(&buf.to_ascii_uppercase()).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        drain(&stream);
    });
    let input = random_bytes(10_000_000, 5);
    let output = client(&port, &[], Some(input.clone()));
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(output.stdout, input[..64 * 1024].to_ascii_uppercase());
    let stderr = stderr(&output);
    assert!(
        stderr.starts_with("error: the server closed the connection after 65,536 of "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_wrong_byte_is_named_by_its_position() {
    let (port, server) = misbehaving(|mut stream| {
        let mut data = Vec::new();
        stream.read_to_end(&mut data).unwrap();
        let mut reply = data.to_ascii_uppercase();
        reply[4096] ^= 0x01;
        stream.write_all(&reply).unwrap();
    });
    let output = client(&port, &[], Some(vec![b'a'; 10_000]));
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: the reply differs from the echo at byte 4,096: expected 'A', got '@'\n"
    );
    assert!(
        output.stdout.starts_with(&[b'A'; 4096]),
        "what arrived is written out"
    );
}

#[test]
fn a_reply_longer_than_the_echo_is_an_error() {
    let (port, server) = misbehaving(|mut stream| {
        let mut data = Vec::new();
        stream.read_to_end(&mut data).unwrap();
        stream.write_all(&data.to_ascii_uppercase()).unwrap();
        stream.write_all(b"!").unwrap();
    });
    let output = client(&port, &["hi"], None);
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: the reply is longer than the echo"),
        "{}",
        stderr(&output)
    );
}

/// RFC 862: the bytes come back unchanged.
fn plain_echo() -> (String, thread::JoinHandle<()>) {
    misbehaving(|mut stream| {
        let mut data = Vec::new();
        stream.read_to_end(&mut data).unwrap();
        stream.write_all(&data).unwrap();
    })
}

#[test]
fn an_unchanged_echo_points_at_plain_and_plain_accepts_it() {
    let (port, server) = plain_echo();
    let output = client(&port, &["hello"], None);
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("(use --plain)"),
        "{}",
        stderr(&output)
    );

    let (port, server) = plain_echo();
    let output = client(&port, &["--plain", "hello"], None);
    server.join().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"hello\n");
}

#[test]
fn any_reply_prints_whatever_the_server_answers() {
    let (port, server) = misbehaving(|mut stream| {
        let mut request = Vec::new();
        stream.read_to_end(&mut request).unwrap();
        stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .unwrap();
    });
    let output = client(&port, &["--any-reply", "GET /"], None);
    server.join().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"HTTP/1.1 400 Bad Request\r\n\r\n\n");
}

#[test]
fn a_server_stopped_mid_transfer_is_exit_1() {
    let mut server = Server::start(&["--grace", "0"]);
    let port = server.port_arg();
    let mut client = Client::start(&["-H", "127.0.0.1", "-p", &port]);
    let mut stdin = client.child.stdin.take().unwrap();
    let feeder = thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..256 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    // Once a MiB has come back, stop the server: the rest of the echo never comes.
    let mut stdout = client.child.stdout.take().unwrap();
    let mut received = 0;
    let mut buf = vec![0; 64 * 1024];
    while received < 1 << 20 {
        received += stdout.read(&mut buf).unwrap();
    }
    if !server.stop() {
        return;
    }
    server
        .wait(Duration::from_secs(10))
        .expect("server stopped");
    let reader = thread::spawn(move || {
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).unwrap();
    });
    let output = client.finish();
    reader.join().unwrap();
    feeder.join().unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = stderr(&output);
    assert!(
        stderr.starts_with("error: the server closed the connection after ")
            || stderr.starts_with("error: the server reset the connection after "),
        "{stderr}"
    );
}

#[test]
fn timeout_bounds_a_write_the_server_never_reads() {
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let (port, server) = misbehaving(move |_stream| {
        // Holds the connection open and never reads it.
        let _ = wait_done.recv();
    });
    let mut client = Client::start(&["-H", "127.0.0.1", "-p", &port, "-t", "1"]);
    let mut stdin = client.child.stdin.take().unwrap();
    let feeder = thread::spawn(move || {
        // 100 MB, far more than the socket buffers hold; ends when the client stops reading.
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..100 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let output = client.finish();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        stderr(&output),
        "error: the server stopped reading for 1s\n"
    );
    feeder.join().unwrap();
    drop(done);
    server.join().unwrap();
}

/// At a terminal, an error after a reply that does not end its line starts a line of its own
/// (it used to run on: `helloerror: …`); in a pipe, stdout stays byte-exact.
#[cfg(target_os = "linux")] // script(1) gives the client a terminal
#[test]
fn at_a_terminal_an_error_starts_on_a_line_of_its_own() {
    let plain_echo = |mut stream: TcpStream| {
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(&buf).unwrap();
    };
    let (port, server) = misbehaving(plain_echo);
    let command = format!("{BIN} client -H 127.0.0.1 -p {port} hello");
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => return cannot_run_here(&format!("cannot run script(1): {e}")),
    };
    server.join().unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains("hello\r\nerror: the reply differs from the echo at byte 0"),
        "{screen:?}"
    );
    // In a pipe: the reply as it came, nothing added.
    let (port, server) = misbehaving(plain_echo);
    let piped = client(&port, &["hello"], None);
    server.join().unwrap();
    assert_eq!(piped.stdout, b"hello");
}
