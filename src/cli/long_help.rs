//! The long explanations of each subcommand: what `tcpdemo help SUBCOMMAND` (or `--help`) and
//! the man page show after the options. The README keeps only what a newcomer needs first.

pub const TOP: &str = "\
Examples:
  tcpdemo server --port 1234
  tcpdemo client \"Hello, Server!\"
  producer | tcpdemo client > out
  tcpdemo bench --mode rr --connections 50

Exit status:
  0    client: the whole echo came back and the server closed (or the reader of its output
       went away); server: a clean shutdown; bench: a run without errors, also one ended
       early by Ctrl-C
  1    a runtime error, as one line on stderr; for the client also a reply that is not the
       echo, a reset or a timeout; for bench any error during the run; for the server a
       deliberate second stop request
  2    a usage error
  130  bench: a deliberate second Ctrl-C

Durations take fractions (0.5) and at most a year (--keepalive: whole seconds up to 32,767).

More on each: tcpdemo help server (client, bench), or man tcpdemo.";

pub const SERVER: &str = "\
Examples:
  tcpdemo server                          # 127.0.0.1:1234
  tcpdemo server --port 0                 # a free port, printed on stdout
  tcpdemo server --host :: --port 8080    # IPv6 and, where the system allows, IPv4 too

Output: once listening, one line on stdout, flushed, for scripts to read the port from
(`listening on 127.0.0.1:43117`, an IPv6 address in brackets). Everything else goes to stderr
as log lines: one when a connection opens and one when it closes, with its id, the peer, the
bytes echoed, the duration in ms and how it ended.

The echo: each chunk is written back as soon as it is read, before reading more, so a client
that sends and waits without closing gets its reply. Only a-z change; every other byte (NUL,
0xFF, UTF-8) passes through, so how the stream is cut never matters. When the client
half-closes, the server finishes writing and closes its side. TCP_NODELAY is set.

Operating limits: the server is meant to be left running.
  --max-connections   at the limit it stops accepting; new clients wait in the listen queue
                      and are served in order when a connection closes (one warn line when
                      reached, one info line when accepting resumes).
  --backlog           the listen queue (default: the system's maximum: Linux
                      net.core.somaxconn, macOS kern.ipc.somaxconn). Beyond it Linux drops
                      handshakes, which clients retry after 1 s, 3 s, ... (nstat -az
                      TcpExtListenOverflows counts them).
  threads             when the system refuses a thread (systemd TasksMax, ulimit -u), the
                      server stops accepting 100 ms at a time; none is dropped.
  --idle-timeout      closes a connection that sends nothing, or reads nothing sent to it,
                      for that long; a slow but steady peer is never cut off.
  --keepalive         finds peers that vanished without a FIN or a reset: a probe after SECS
                      of silence, then every 10 s, giving up after 6 (about 2 min).
  open files          the soft limit is raised to the hard one at start-up (macOS:
                      kern.maxfilesperproc); a warn line if --max-connections exceeds it.
  memory mappings     a thread takes four (Linux: vm.max_map_count, 65,530 by default, some
                      15,800 threads) and one started past the limit would abort the
                      process: the server serves at most what fits (a warn line at start-up
                      says how many) and the rest wait in the listen queue.
  out of descriptors  a failed accept is logged at most once a second and retried after
                      100 ms, without spinning.
A thread per connection (64 KiB stack, 512 KiB with --tls; kept 20 s for the next
connection): about 10 KiB resident per idle connection, 27 KiB with TLS (each handshake runs
on a short-lived thread of its own, so what it frees goes back to the allocator).

Stopping: SIGINT (Ctrl-C), SIGTERM or SIGHUP (its terminal closed); on Windows Ctrl-C,
Ctrl-Break or closing the console. What is queued is taken in, the listening socket closes
(new connects are refused), open connections get --grace seconds, the rest are cut; then one
summary line and exit 0. A deliberate second request, a second or more later, exits at once
with 1; a second one within a second (timeout(1) signals the process and its group) is the
same request. With --drain-delay, the first request turns the health check to 503 while the
echo port keeps serving for that long.

Logging: -v and -q anywhere, RUST_LOG overrides. Above about 20 connections a second the
per-connection lines give way to one `last 1s: ...` line a second until a quiet second; -v
keeps them all. Warnings are rate-limited with a count of those held back. Lines go through a
4,096-line queue and one writer thread: a stderr nobody reads drops and counts lines, never
holds up serving or stopping, and one line says how many were lost. --log-format json writes
one object a line (time, level, message, conn, peer, via, bytes, duration_us, reason). Under
systemd's journal, lines carry the <N> priority instead of a timestamp.

PROXY protocol: with --proxy-protocol every connection must begin with a v1 or v2 header
within 5 s; it is stripped, never echoed, and the log names the client and the proxy. Without
--proxy-from every source is believed (a server listening beyond loopback says so); with it,
connections from other addresses are closed unanswered, with a warning.

TLS: --tls serves TLS 1.2 and 1.3 (rustls, ring), with --tls-cert and --tls-key (PEM: a
chain, leaf first; RSA, ECDSA or Ed25519 keys as PKCS#8, PKCS#1 or SEC1), or without them a
temporary self-signed ECDSA certificate for localhost, 127.0.0.1, ::1 and --host, valid a
year; its SHA-256 fingerprint is logged, and --tls-write-cert FILE writes it for clients'
--tls-ca FILE. --tls-client-ca FILE requires a client certificate signed by a CA in FILE. The
handshake must complete within 5 s of the accept (after the PROXY header, within the same
5 s); plain text is closed unanswered (`not TLS: the client sent plain text`). The open line
names the version and suite (and the client certificate's subject; JSON: tls, client_cert).
A close_notify from the client is answered with the rest of the echo, then the server's own
close_notify and FIN. Session tickets (stateless, one per handshake) allow resumption.

UDP: --udp also serves the echo over UDP on the same address and port number (with --port 0,
one free for both): each datagram goes back to its sender uppercased, the same size (up to
65,507 bytes), on one thread. Never answered, so that the echo cannot be turned on others or
made to loop (CVE-1999-0103): source ports 0, 7, 13, 17, 19 and 37; beyond --udp-rate N
datagrams a second from one address (100,000; token bucket). Drops are counted by reason in
the per-second summary (logged when more than 40 datagrams a second came, or any was dropped)
and the shutdown line; a new peer gets an info line, each datagram a debug line. Listening
beyond loopback, it warns. The UDP thread stops with the accept loop (after --drain-delay).

Health check (--health-port): GET or HEAD get 200 `ok` while serving and 503 `draining` from
the first stop request on; other methods 405 (Allow: GET, HEAD); over 4 KiB 431. Four checks
are answered at once (more wait in the queue), each within 2 s of its connect.

Service managers: a socket handed over by systemd (LISTEN_FDS, LISTEN_PID) is used instead of
binding, and must be a listening TCP socket (Accept=no); READY=1 and STOPPING=1 go to
NOTIFY_SOCKET. --reuse-port lets servers share the port (not on Windows); on Linux set
net.ipv4.tcp_migrate_req=1 so a stopping server's queue moves to the others.

Platforms: SO_REUSEADDR is set on Unix (a restarted server binds while old connections linger)
and not on Windows (where it would let another program take the port). Windows before 10 1703
has no keepalive probe count: its own (10) applies. Closing the console window leaves the
server about 5 s (Windows' limit) to stop.";

pub const CLIENT: &str = "\
A message that starts with '-' goes after '--': tcpdemo client -- -x

Examples:
  tcpdemo client \"Hello, Server!\"         # prints HELLO, SERVER!
  tcpdemo client hello world              # words joined by single spaces
  printf 'abc' | tcpdemo client           # prints ABC, no newline added
  tcpdemo client < file > out             # byte for byte, any size
  tcpdemo client -v -w 2 -H localhost hi  # say what happens; give up after 2 s of silence

With a message, it is sent exactly (no newline), the client half-closes, and prints the reply
and one newline, like echo. With no message (or `-`) it streams stdin to the server while it
streams the reply to stdout, byte-exact.

The reply is checked as it streams: it must be exactly the echo of what was sent, no more and
no less. What arrives is always written out; if it is not the echo, the client exits 1 with
one line saying where:
  error: the server closed the connection after 1,048,576 of 3,000,000 bytes
  error: the reply differs from the echo at byte 4,096: expected 'A', got 'a'; the server
         echoes unchanged (use --plain)
  error: the server reset the connection after 1,024 of 3,000 bytes
That catches a proxy that drops half-close, a server stopped mid-transfer, or one that echoes
part. Only what is in flight is kept (at most 16 MiB). At a terminal, an error after a reply
that ends mid-line starts a line of its own.

--timeout (-w) bounds each connect attempt, each write the server does not take in (`the
server stopped reading for 2s`), and, once all input is sent, each wait for the reply; it
never fires while stdin is slow or a person is typing. When the server closes having echoed
everything while stdin is idle, the client exits 0. A reader of its output that goes away
(`| head -c1`) ends it quietly with 0.

TLS: --tls verifies the server against the system's CAs (SSL_CERT_FILE and SSL_CERT_DIR
override them; macOS: /etc/ssl/cert.pem, not keychain additions) and --tls-ca FILE; any --tls-*
flag implies --tls. --tls-server-name NAME is sent (SNI) and checked instead of --host;
--tls-insecure checks nothing about the certificate (testing only); --tls-cert and --tls-key
present a client certificate; --tls-version 1.2 (or 1.3) offers only that version. The
handshake is bounded by --timeout (10 s without). -v prints the version and suite, then the
certificate's subject, issuer, expiry and SHA-256 fingerprint. A failed handshake says why and
what to do: an untrusted or self-signed certificate (use --tls-ca FILE, or --tls-insecure), a
name mismatch (the names it is for), an expired one (the date), a server that wants a client
certificate, a server that does not speak TLS (a plain echo server sends the handshake back).
The echo check applies to the decrypted bytes; input's end is sent as close_notify, then FIN.

UDP: -u (--udp) sends the message as one datagram and waits --timeout (1 s without) for its
reply, sending again up to --retries times (2): UDP never resends by itself. Only an exact
echo is printed. With stdin, each line (its newline included) is one datagram, replies are
printed as they come, and once stdin ends and --timeout passes without a reply, the client
says what came back missing, twice or out of order (matched by content) and exits 1 if any
reply is missing or wrong. `nothing is listening on UDP ADDR` means an ICMP port unreachable
came back; a name's addresses are tried in turn until one does not refuse.

From netcat: `nc -N -w 2 host 1234` is `tcpdemo client -N -w 2 -H host -p 1234`. Host and port
are flags, so `tcpdemo client localhost 1234` sends that text (with a warning). -l and -k
belong to `tcpdemo server`; -q means quiet here. Each says so.";

pub const BENCH: &str = "\
Examples:
  tcpdemo bench --mode rr -c 50 -d 3        # requests/s and latency percentiles
  tcpdemo bench --mode rr -c 50 --rate 20000  # latency under a fixed load: the open loop
  tcpdemo bench --mode stream               # MiB/s each way
  tcpdemo bench --mode connect -c 4         # connect, send, half-close, read, close: conns/s
  tcpdemo bench --interval 1 --warmup 2 --json
  tcpdemo bench --rate 10000 --hist run.hgrm --plot run.svg

The report: operations and their rate; connections open at once (peak, and when the warm-up
ended; a warning when fewer than -c ever were); throughput; latency min, p50, p90, p99, p99.9,
p99.99, max, mean, stdev (3 significant digits); errors by kind (refused, reset, closed_early,
stalled, wrong_bytes, tls, other: they add up); bench's own CPU per operation and share of a core,
so you can tell when bench is the limit (on loopback the kernel's receive work is charged to
the sender; with --rate it includes up to 50 us of spin per operation). Every reply is
checked; a wrong byte, a 10 s stall or a dropped connection is an error, the report is printed
anyway, and bench exits 1 naming the first. A worker whose connection failed waits 10 ms,
doubling up to 1 s, before it tries again.

Closed and open loop: without --rate each connection sends its next request when the reply is
in, so a stalled server also stalls the clock and a 1 s stall shows as one slow request
(coordinated omission; a note says so, and warns when max is over 10 times p99.9). With --rate
N, requests are due on a fixed schedule, N a second in all, each timed from when it was due
(wrk2's model); the service time (from the send) is shown beside it. The run ends at
--duration even when bench falls behind: what was due and not sent is counted (`N requests due
but not sent`; JSON rate.due_not_sent), and rates divide by the time the run really took.

Ctrl-C (or SIGTERM) ends a run at once with the report, marked (interrupted); a second one, a
second or more later, exits at once with 130. A reader of the report that goes away ends bench
quietly.

TLS: --tls (with --tls-ca, --tls-insecure, --tls-server-name, --tls-cert and --tls-key as for
the client) in every mode; the certificate is checked once before the run, so a bad one is one
error. Each connection's handshake is timed: the report adds handshakes, handshakes/s, their
p50, p99 and max, and how many resumed (JSON: tls). In connect mode every connection is a full
handshake, unless --tls-resume resumes sessions (TLS 1.3 tickets, TLS 1.2 session IDs). A
failed handshake counts as a tls error.

UDP: -u (--udp), in rr (closed loop, or --rate) and in stream with --rate N (N datagrams a
second of --size bytes, 1,400 by default), each connection a flow with a socket of its own.
Each datagram starts with 48 bytes of uppercase hex (sequence number, due and sent times),
which either echo leaves alone; the rest is the pattern, checked. The report adds: sent,
echoed, lost (%), late (replies after --udp-timeout, 1 s), duplicated, reordered (after a
later one's reply), the RFC 3550 jitter of the round trip (the mean of the flows'; iperf3
gives it for one way), and goodput in MiB/s and Mbit/s (JSON: udp). A closed loop sends the
next datagram when the reply comes or --udp-timeout passes. Loss is measured, not an error:
--max-loss PCT makes more than PCT% lost exit 1. Against Linux loopback flows come from
127.0.1.1 to 127.0.1.64, each a peer of its own to the server's --udp-rate.

Hold: --mode hold opens -c connections (at --rate a second, or as fast as the server takes
them) and holds them for --duration once all are open, each sending one byte every --interval
(1 s) and checking its echo. One thread runs a poll loop (mio) over all of them, so -c goes up
to the open-file limit (some 19,900 here), not to 10,000 threads. The report adds how long the
opening took, how many were open at the most and at the end (a connection the server never
took in waits in its listen queue, open but mute: stalled), and the echoes' latency from their
send, counted once all were open (JSON: hold).

--plot draws latency by percentile (HdrHistogram's nines axis) and p50, p99 and max over time
(per --interval, or a twentieth of the run), both on log latency axes. --hist writes
HdrHistogram's percentile text. In connect mode against Linux loopback, connections come from
127.0.1.1 to 127.0.1.64 in turn, so TIME_WAIT ports do not slow bench down.";
