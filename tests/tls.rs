//! TLS: the server, the client and bench with each other and with programs nobody here wrote
//! (openssl s_client, socat, HAProxy), certificates made by `openssl req` and rcgen.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// Runs `tcpdemo ARGS` with `stdin`, bounded in time.
/// Runs `tcpdemo ARGS` and checks that it succeeded and printed `expected`.
fn expect_echo(args: &[&str], stdin: &[u8], expected: &[u8]) -> Output {
    let out = run(args, stdin);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    assert!(out.stdout == expected, "{args:?}: the echo differs");
    out
}

fn run_openssl(args: &[&str]) {
    let output = Command::new("openssl").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        stderr(&output)
    );
}

/// Certificates made by `openssl req`: a CA, a server certificate it signed for localhost and
/// 127.0.0.1, and a client certificate for `alice`. Throwaway keys, made per test run.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(name: &str) -> Option<Certs> {
        if !have_openssl() {
            return None;
        }
        let dir = scratch(&format!("tls-{name}"));
        let d = |f: &str| dir.join(f).to_str().unwrap().to_string();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        let (ca_key, ca_pem) = (d("ca.key"), d("ca.pem"));
        ca.extend(["-keyout", &ca_key, "-out", &ca_pem, "-days", "2"]);
        ca.extend(["-subj", "/CN=tcpdemo test CA"]);
        run_openssl(&ca);
        for (who, cn, ext) in [
            (
                "server",
                "/CN=localhost",
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                 extendedKeyUsage=serverAuth\n",
            ),
            (
                "client",
                "/CN=alice",
                "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
            ),
        ] {
            let (key, csr, pem, extfile) = (
                d(&format!("{who}.key")),
                d(&format!("{who}.csr")),
                d(&format!("{who}.pem")),
                d(&format!("{who}.ext")),
            );
            std::fs::write(&extfile, ext).unwrap();
            let mut req = vec!["req"];
            req.extend(ec);
            req.extend(["-keyout", &key, "-out", &csr, "-subj", cn]);
            run_openssl(&req);
            run_openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ]);
        }
        Some(Certs { dir })
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_string()
    }

    /// The server's certificate and key in one file, as HAProxy and socat take them.
    fn server_combined(&self) -> String {
        let path = self.path("server-combined.pem");
        let mut both = std::fs::read(self.path("server.pem")).unwrap();
        both.extend(std::fs::read(self.path("server.key")).unwrap());
        std::fs::write(&path, both).unwrap();
        path
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn have_openssl() -> bool {
    let found = Command::new("openssl").arg("version").output().is_ok();
    if !found {
        cannot_run_here("openssl is not installed");
    }
    found
}

/// A TLS connection made by tcpdemo's own client code, trusting `cert`, reads bounded by 20 s.
fn connect_tls(
    server: &Server,
    cert: PathBuf,
) -> (
    tcpdemo::tls::Stream<rustls::ClientConnection>,
    std::sync::Arc<std::net::TcpStream>,
) {
    let options = tcpdemo::tls::ClientOptions {
        ca: Some(cert),
        ..Default::default()
    };
    let client = tcpdemo::tls::Client::new(&options, "localhost").unwrap();
    let socket = std::sync::Arc::new(server.connect());
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let stream = client
        .connect(socket.clone(), Instant::now() + Duration::from_secs(10))
        .unwrap();
    (stream, socket)
}

/// A `--tls` server with a temporary certificate, written to a file for `--tls-ca`.
fn temporary_tls_server(extra: &[&str]) -> (Server, PathBuf) {
    let dir = scratch("tls-written");
    let cert = dir.join(format!("cert-{}.pem", rand_suffix()));
    let mut args = vec!["--tls-write-cert", cert.to_str().unwrap()];
    args.extend(extra);
    (Server::start(&args), cert)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn a_tls_server_with_a_temporary_certificate_echoes_to_a_client_that_trusts_it() {
    let (server, cert) = temporary_tls_server(&[]);
    let port = server.port_arg();
    let out = expect_echo(
        &[
            "-v",
            "client",
            "--tls-ca",
            cert.to_str().unwrap(),
            "-p",
            &port,
            "Hello, Server!",
        ],
        b"",
        b"HELLO, SERVER!\n",
    );
    // -v: the session, then the certificate with the fingerprint the server logged.
    let said = stderr(&out);
    assert!(
        said.contains("TLS: TLSv1.3 TLS13_AES_128_GCM_SHA256"),
        "{said}"
    );
    let log = server.log.text();
    let fingerprint = log
        .split("SHA-256 ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no fingerprint logged:\n{log}"));
    assert!(
        said.contains(&format!("SHA-256 {fingerprint}")),
        "{said}\n{log}"
    );
    assert!(said.contains("expires 20"), "{said}");
    assert!(
        server.log.wait_for(
            "connected, TLSv1.3 TLS13_AES_128_GCM_SHA256",
            Duration::from_secs(10)
        ),
        "{}",
        server.log.text()
    );
    assert!(log.contains("localhost, 127.0.0.1, ::1"), "{log}");
}

#[test]
fn a_stream_of_megabytes_comes_back_exact_over_tls_both_ways_at_once() {
    let (server, cert) = temporary_tls_server(&[]);
    let data = random_bytes(5_000_000, 16);
    expect_echo(
        &[
            "client",
            "--tls-ca",
            cert.to_str().unwrap(),
            "-p",
            &server.port_arg(),
        ],
        &data,
        &data.to_ascii_uppercase(),
    );
}

#[test]
fn the_client_names_what_is_wrong_with_the_server_and_how_to_fix_it() {
    let (server, cert) = temporary_tls_server(&[]);
    let port = server.port_arg();
    let cert = cert.to_str().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--tls"],
            "not signed by a CA this system trusts (self-signed?): use --tls-ca FILE, or \
             --tls-insecure to skip verification",
        ),
        (
            &[
                "--tls-ca",
                cert,
                "-H",
                "127.0.0.1",
                "--tls-server-name",
                "example.org",
            ],
            "the certificate is for localhost, 127.0.0.1, ",
        ),
        (&["--tls-insecure", "-H", "127.0.0.1"], ""),
    ];
    for (flags, error) in cases {
        let mut args = vec!["client", "-p", &port];
        args.extend(flags);
        args.push("hi");
        let out = run(&args, b"");
        if error.is_empty() {
            assert!(out.status.success(), "{flags:?}: {}", stderr(&out));
            assert_eq!(out.stdout, b"HI\n");
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let said = stderr(&out);
        assert!(said.contains(error), "{flags:?}: {said}");
        assert_eq!(said.lines().count(), 1, "one line: {said}");
    }
    // A plain tcpdemo server echoes the ClientHello back.
    let plain = Server::start(&[]);
    let out = run(
        &["client", "--tls-insecure", "-p", &plain.port_arg(), "hi"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the server does not speak TLS"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_expired_certificate_is_refused_with_its_date() {
    let dir = scratch("tls-expired");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 3, 4);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("expired.pem"), dir.join("expired.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let server = Server::start(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let out = run(
        &[
            "client",
            "--tls-ca",
            cert_path.to_str().unwrap(),
            "-p",
            &server.port_arg(),
            "hi",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the server's certificate expired on 2021-03-04"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn plain_text_to_a_tls_port_is_closed_with_one_line_and_not_echoed() {
    let server = Server::start(&["--tls"]);
    let mut stream = server.connect();
    stream.write_all(b"hello, is this TLS?\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    assert!(reply.is_empty(), "echoed {reply:?}");
    assert!(
        server.log.wait_for(
            "not TLS: the client sent plain text",
            Duration::from_secs(10)
        ),
        "{}",
        server.log.text()
    );
}

#[test]
fn a_client_that_never_completes_its_handshake_is_closed_after_five_seconds() {
    let server = Server::start(&["--tls"]);
    let started = Instant::now();
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(4500)..Duration::from_secs(15)).contains(&took),
        "{took:?}"
    );
    assert!(
        server
            .log
            .wait_for("no TLS handshake in time", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
}

#[test]
fn certificate_flags_alone_or_unreadable_are_clear_errors() {
    let out = run(&["server", "--tls-cert", "x.pem"], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(&["client", "--tls-key", "x.key", "hi"], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(
        &[
            "server",
            "--port",
            "0",
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "k.pem",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains("cannot read certificates from /nonexistent/c.pem"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");
}

#[test]
fn every_usual_key_form_serves() {
    let Some(certs) = Certs::make("keys") else {
        return;
    };
    let ca = certs.path("ca.pem");
    // RSA (PKCS#8 and PKCS#1), ECDSA (PKCS#8 and SEC1), Ed25519: each signed by the CA.
    let forms: [(&str, &[&str], Option<&str>); 5] = [
        (
            "rsa8",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            None,
        ),
        (
            "rsa1",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Some("rsa"),
        ),
        (
            "ec8",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            None,
        ),
        (
            "sec1",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Some("ec"),
        ),
        ("ed", &["-algorithm", "ED25519"], None),
    ];
    for (name, genpkey, traditional) in forms {
        let key = certs.path(&format!("{name}.key"));
        let mut args = vec!["genpkey"];
        args.extend(genpkey);
        args.extend(["-out", &key]);
        run_openssl(&args);
        if let Some(kind) = traditional {
            // `openssl ec` writes SEC1 by itself; `openssl rsa` needs -traditional for PKCS#1.
            let mut args = vec![kind, "-in", &key, "-out", &key];
            if kind == "rsa" {
                args.push("-traditional");
            }
            run_openssl(&args);
            let text = std::fs::read_to_string(&key).unwrap();
            assert!(!text.contains("BEGIN PRIVATE KEY"), "{name}: {text}");
        }
        let (csr, pem) = (
            certs.path(&format!("{name}.csr")),
            certs.path(&format!("{name}.pem")),
        );
        run_openssl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ]);
        run_openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &certs.path("ca.key"),
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &certs.path("server.ext"),
        ]);
        let server = Server::start(&["--tls-cert", &pem, "--tls-key", &key]);
        expect_echo(
            &["client", "--tls-ca", &ca, "-p", &server.port_arg(), name],
            b"",
            format!("{}\n", name.to_uppercase()).as_bytes(),
        );
    }
}

#[test]
fn mutual_tls_asks_for_a_client_certificate_and_logs_whose_it_is() {
    let Some(certs) = Certs::make("mtls") else {
        return;
    };
    let ca = certs.path("ca.pem");
    let server = Server::start(&[
        "--tls-cert",
        &certs.path("server.pem"),
        "--tls-key",
        &certs.path("server.key"),
        "--tls-client-ca",
        &ca,
    ]);
    let port = server.port_arg();
    let out = run(&["client", "--tls-ca", &ca, "-p", &port, "hi"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "the server asked for a client certificate: use --tls-cert FILE --tls-key FILE"
        ),
        "{}",
        stderr(&out)
    );
    let (cert, key) = (certs.path("client.pem"), certs.path("client.key"));
    expect_echo(
        &[
            "client",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "-p",
            &port,
            "hi",
        ],
        b"",
        b"HI\n",
    );
    assert!(
        server.log.wait_for(
            "TLS13_AES_128_GCM_SHA256, client CN=alice",
            Duration::from_secs(10)
        ),
        "{}",
        server.log.text()
    );
}

#[test]
fn json_logs_carry_the_tls_version_and_suite_as_fields() {
    let mut command = tcpdemo();
    command.args(["--log-format", "json", "server", "--port", "0", "--tls"]);
    let server = Server::spawn(command);
    let out = run(
        &["client", "--tls-insecure", "-p", &server.port_arg(), "hi"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        server.log.wait_for(
            "\"tls\":\"TLSv1.3 TLS13_AES_128_GCM_SHA256\"",
            Duration::from_secs(10)
        ),
        "{}",
        server.log.text()
    );
}

#[test]
fn the_server_answers_a_close_notify_with_the_rest_of_the_echo_and_its_own() {
    // A client that half-closes with close_notify while the echo is still coming: the rest
    // arrives, then the server's close_notify (a clean end, not a truncation).
    let (server, cert) = temporary_tls_server(&[]);
    let (stream, socket) = connect_tls(&server, cert);
    let data = random_bytes(200_000, 3);
    (&stream).write_all(&data).unwrap();
    stream.close().unwrap();
    socket.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    let result = (&stream).read_to_end(&mut reply);
    assert!(result.is_ok(), "not a clean close_notify: {result:?}");
    assert!(reply == data.to_ascii_uppercase(), "the echo differs");
}

#[test]
fn a_stop_cuts_a_tls_connection_blocked_in_a_read() {
    let (server, cert) = temporary_tls_server(&["--grace", "1"]);
    let mut client = Client::start(&["--tls-ca", cert.to_str().unwrap(), "-p", &server.port_arg()]);
    client.write(b"held open\n");
    assert!(
        server
            .log
            .wait_for("connected, TLS", Duration::from_secs(10))
    );
    let stopped = Instant::now();
    if !server.stop() {
        return;
    }
    let mut server = server;
    let status = server
        .wait(Duration::from_secs(10))
        .expect("the server exits");
    assert!(status.success());
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    assert!(
        server.log.text().contains("cut at shutdown"),
        "{}",
        server.log.text()
    );
    drop(client);
}

#[test]
fn a_proxy_header_comes_first_then_the_handshake() {
    let server = Server::start(&["--proxy-protocol", "--tls"]);
    for version in ["v1", "v2"] {
        expect_echo(
            &[
                "client",
                "--tls-insecure",
                "-H",
                "127.0.0.1",
                "-p",
                &server.port_arg(),
                "--send-proxy",
                version,
                "proxied",
            ],
            b"",
            b"PROXIED\n",
        );
    }
}

#[test]
fn openssl_s_client_gets_the_echo() {
    if !have_openssl() {
        return;
    }
    let server = Server::start(&["--tls"]);
    let mut s_client = Guard(
        Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &server.addr.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = s_client.0.stdin.take().unwrap();
    stdin.write_all(b"hello from openssl\n").unwrap();
    let line = read_line_within(s_client.0.stdout.take().unwrap(), Duration::from_secs(20));
    assert_eq!(line.as_deref(), Some("HELLO FROM OPENSSL"));
}

/// The first line a reader gives, if it does within `timeout`.
fn read_line_within(reader: impl Read + Send + 'static, timeout: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(reader).read_line(&mut line);
        let _ = tx.send(line.trim_end().to_string());
    });
    rx.recv_timeout(timeout).ok()
}

#[test]
fn the_client_and_bench_check_socat_openssl_listen() {
    let Some(certs) = Certs::make("socat") else {
        return;
    };
    if !have("socat") {
        return;
    }
    let port = closed_port();
    let _socat = Guard(
        Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},verify=0",
                certs.server_combined()
            ))
            .arg("SYSTEM:tr a-z A-Z")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until_listening(addr);
    let ca = certs.path("ca.pem");
    let port = port.to_string();
    expect_echo(
        &["client", "--tls-ca", &ca, "-p", &port, "hello socat"],
        b"",
        b"HELLO SOCAT\n",
    );
    let out = run(
        &[
            "bench", "--tls-ca", &ca, "-p", &port, "-m", "connect", "-d", "1", "--json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        report["tls"]["handshakes"].as_u64().unwrap() > 0,
        "{report}"
    );
}

#[test]
fn bench_over_tls_reports_handshakes_and_the_share_resumed() {
    let (server, cert) = temporary_tls_server(&[]);
    let port = server.port_arg();
    let cert = cert.to_str().unwrap();
    for (flags, resumed) in [(&[][..], false), (&["--tls-resume"][..], true)] {
        let mut args = vec!["bench", "--tls-ca", cert, "-p", &port, "-m", "connect"];
        args.extend(["-c", "2", "-d", "1", "--json"]);
        args.extend(flags);
        let out = run(&args, b"");
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["errors"], 0, "{report}");
        let tls = &report["tls"];
        assert_eq!(tls["handshakes"], report["operations"], "{report}");
        let share = tls["resumed_share"].as_f64().unwrap();
        if resumed {
            assert!(share > 0.9, "{report}");
        } else {
            assert_eq!(share, 0.0, "{report}");
        }
        assert!(
            tls["handshake_us"]["p50"].as_f64().unwrap() > 0.0,
            "{report}"
        );
    }
    for mode in ["rr", "stream"] {
        let out = run(
            &[
                "bench", "--tls-ca", cert, "-p", &port, "-m", mode, "-c", "2", "-d", "1",
            ],
            b"",
        );
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("errors       0"), "{mode}: {table}");
        assert!(table.contains("handshakes   2 "), "{mode}: {table}");
    }
}

/// HAProxy in front and behind: terminating TLS for a plain tcpdemo, re-encrypting to a `--tls`
/// one (verifying it), and `send-proxy-v2` over TLS to a `--proxy-protocol --tls` one.
#[test]
fn haproxy_terminates_reencrypts_and_sends_proxy_v2_over_tls() {
    let Some(certs) = Certs::make("haproxy") else {
        return;
    };
    if !have("haproxy") {
        return;
    }
    let plain = Server::start(&[]);
    let (secure, written) = temporary_tls_server(&[]);
    let proxied = Server::start(&["--proxy-protocol", "--tls"]);
    let (front, again, with_header) = (closed_port(), closed_port(), closed_port());
    let config = certs.dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend terminate\n  bind 127.0.0.1:{front} ssl crt {crt}\n  default_backend plain\n\
             frontend reencrypt\n  bind 127.0.0.1:{again}\n  default_backend secure\n\
             frontend header\n  bind 127.0.0.1:{with_header}\n  default_backend proxied\n\
             backend plain\n  server s {plain}\n\
             backend secure\n  server s {secure} ssl verify required ca-file {written}\n\
             backend proxied\n  server s {proxied} ssl verify none send-proxy-v2\n",
            crt = certs.server_combined(),
            plain = plain.addr,
            secure = secure.addr,
            written = written.display(),
            proxied = proxied.addr,
        ),
    )
    .unwrap();
    let _haproxy = haproxy(&config);
    let ca = certs.path("ca.pem");
    for port in [front, again, with_header] {
        wait_until_listening(format!("127.0.0.1:{port}").parse().unwrap());
    }
    let data = random_bytes(300_000, 7);
    expect_echo(
        &["client", "--tls-ca", &ca, "-p", &front.to_string()],
        &data,
        &data.to_ascii_uppercase(),
    );
    for port in [again, with_header] {
        expect_echo(
            &["client", "-H", "127.0.0.1", "-p", &port.to_string()],
            &data,
            &data.to_ascii_uppercase(),
        );
    }
    assert!(
        secure
            .log
            .wait_for("connected, TLSv1.3", Duration::from_secs(10)),
        "{}",
        secure.log.text()
    );
    // The PROXY header named the client, and TLS followed it.
    assert!(
        proxied
            .log
            .wait_for(" via 127.0.0.1:", Duration::from_secs(10)),
        "{}",
        proxied.log.text()
    );
    assert!(
        proxied.log.text().contains("connected, TLS"),
        "{}",
        proxied.log.text()
    );
}

#[test]
fn a_tcp_health_check_on_a_tls_port_is_a_routine_close_not_a_warning() {
    // A load balancer's TCP check, `nc -z`: connect, then close without a byte.
    let server = Server::start(&["--tls"]);
    for _ in 0..3 {
        drop(server.connect());
    }
    assert!(
        server.log.wait_for_count(
            ": closed, closed by peer during the TLS handshake",
            3,
            Duration::from_secs(10)
        ),
        "{}",
        server.log.text()
    );
    assert!(!server.log.text().contains("WARN"), "{}", server.log.text());
}

#[test]
fn a_client_that_leaves_right_after_its_handshake_is_routine_not_a_warning() {
    // What `openssl s_time` and TLS health checks do: handshake, then a reset.
    let server = Server::start(&["--tls"]);
    let options = tcpdemo::tls::ClientOptions {
        insecure: true,
        ..Default::default()
    };
    let client = tcpdemo::tls::Client::new(&options, "localhost").unwrap();
    for _ in 0..3 {
        let socket = std::sync::Arc::new(server.connect());
        let stream = client
            .connect(socket.clone(), Instant::now() + Duration::from_secs(10))
            .unwrap();
        socket2::SockRef::from(&*socket)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream);
        drop(socket);
    }
    assert!(
        server
            .log
            .wait_for_count(": closed, ", 3, Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
    assert!(!server.log.text().contains("WARN"), "{}", server.log.text());
}

#[test]
fn the_idle_timeout_closes_a_silent_tls_connection_with_a_close_notify() {
    let (server, cert) = temporary_tls_server(&["--idle-timeout", "1"]);
    let (stream, _socket) = connect_tls(&server, cert);
    (&stream).write_all(b"then silence").unwrap();
    let mut reply = Vec::new();
    // The whole echo, then the server's close_notify: a clean end, not a truncation.
    let result = (&stream).read_to_end(&mut reply);
    assert!(result.is_ok(), "no close_notify: {result:?}");
    assert_eq!(reply, b"THEN SILENCE");
    assert!(
        server.log.wait_for("idle for 1s", Duration::from_secs(10)),
        "{}",
        server.log.text()
    );
}

#[test]
fn small_reads_of_a_large_tls_echo_lose_nothing() {
    // Records of 16 KiB read a few bytes at a time: what rustls holds is served first.
    let (server, cert) = temporary_tls_server(&[]);
    let (stream, socket) = connect_tls(&server, cert);
    let data = random_bytes(300_000, 5);
    let reply = {
        let socket = socket.clone();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                (&stream).write_all(&data).unwrap();
                stream.close().unwrap();
                socket.shutdown(std::net::Shutdown::Write).unwrap();
            });
            let mut reply = Vec::new();
            let mut buf = [0u8; 777];
            loop {
                match (&stream).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => reply.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("after {} bytes: {e}", reply.len()),
                }
            }
            writer.join().unwrap();
            reply
        })
    };
    assert!(reply == data.to_ascii_uppercase(), "the echo differs");
}

#[test]
fn tls_version_holds_the_client_to_tls_1_2_and_bench_resumes_its_sessions() {
    let (server, cert) = temporary_tls_server(&[]);
    let (port, cert) = (server.port_arg(), cert.to_str().unwrap().to_string());
    let out = run(
        &[
            "-v",
            "client",
            "--tls-ca",
            &cert,
            "--tls-version",
            "1.2",
            "-p",
            &port,
            "hi",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("TLS: TLSv1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        "{}",
        stderr(&out)
    );
    assert!(
        server
            .log
            .wait_for("connected, TLSv1.2", Duration::from_secs(10))
    );
    let out = run(
        &[
            "bench",
            "--tls-ca",
            &cert,
            "--tls-version",
            "1.2",
            "--tls-resume",
            "-p",
            &port,
            "-m",
            "connect",
            "-d",
            "1",
            "--json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["tls"]["resumed_share"].as_f64().unwrap() > 0.9,
        "{report}"
    );
}
