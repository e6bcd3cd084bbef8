//! The command line: every flag, its default and its help text, in one place; `long_help.rs`
//! holds each subcommand's longer explanation.

mod long_help;

use std::path::PathBuf;
use std::time::Duration;

use std::ffi::OsString;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "tcpdemo",
    version,
    propagate_version = true,
    about = "A TCP server that uppercases what it receives and echoes it back, its client, and a load generator",
    after_help = "Examples:\n  tcpdemo server --port 1234\n  tcpdemo client \"Hello, Server!\"\n  producer | tcpdemo client > out\n  tcpdemo bench --mode rr --connections 50",
    after_long_help = long_help::TOP
)]
pub struct Cli {
    /// More log output, anywhere on the line: the server logs every connection's lines at any rate, and health checks; the client and bench say what they do (the address, bytes, time). -vv more. RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count, display_order = 900)]
    pub verbose: u8,

    /// Less log output: -q warnings and errors only (the client and bench: errors only), -qq errors only. An error still ends a run with one line
    #[arg(short, long, global = true, action = clap::ArgAction::Count, display_order = 901)]
    pub quiet: u8,

    /// How log lines look: text for people, json (one object per line) for jq and log pipelines
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, display_order = 902)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    /// -v minus -q.
    pub fn verbosity(&self) -> i16 {
        i16::from(self.verbose) - i16::from(self.quiet)
    }
}

/// The one CLI definition: parsing, completions and the man page all come from it.
pub fn command() -> clap::Command {
    Cli::command()
}

/// The man page: the command's own page, then each subcommand's synopsis and options, so one
/// page covers every subcommand and flag.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let command = command();
    let mut rendered = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut rendered)?;
    // The title first, then the string definitions clap_mangen puts before it.
    let rendered = String::from_utf8_lossy(&rendered);
    let rendered = rendered.replace(".SH EXTRA", ".SH \"EXAMPLES AND EXIT STATUS\"");
    let (title, rest): (Vec<&str>, Vec<&str>) =
        rendered.lines().partition(|l| l.starts_with(".TH"));
    let mut page = Vec::new();
    for line in title.into_iter().chain(rest) {
        page.extend_from_slice(line.as_bytes());
        page.push(b'\n');
    }
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("tcpdemo {}", sub.get_name());
        let sub = sub
            .clone()
            .bin_name(name.clone())
            .display_name(name.clone());
        let man = clap_mangen::Man::new(sub.clone());
        // Synopsis, what it does, its options, then the long story.
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        if let Some(about) = sub.get_about() {
            part.extend_from_slice(format!(".PP\n{about}\n").as_bytes());
        }
        man.render_options_section(&mut part)?;
        man.render_extra_section(&mut part)?;
        let part = String::from_utf8_lossy(&part)
            .replace(".SH SYNOPSIS", &format!(".SH \"{}\"", name.to_uppercase()))
            .replace(".SH OPTIONS", &format!(".SS \"Options of {name}\""))
            .replace(".SH EXTRA", &format!(".SS \"More on {name}\""));
        page.extend_from_slice(part.as_bytes());
    }
    Ok(page)
}

/// Parses the command line (exiting with 2 on a usage error, as clap does).
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    let matches = command().get_matches_from(&args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(message) = netcat_mistake(&cli, &args) {
        usage_error(matches.subcommand_name().unwrap_or_default(), &message);
    }
    cli
}

/// Exits with 2 and `message`, followed by the usage of `subcommand` (as clap's own errors).
pub fn usage_error(subcommand: &str, message: &str) -> ! {
    let mut command = command();
    command.build();
    let mut command = command
        .find_subcommand_mut(subcommand)
        .map_or_else(self::command, |sub| sub.clone());
    command
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

/// Netcat habits that mean something else here, with what to use instead.
fn netcat_mistake(cli: &Cli, args: &[OsString]) -> Option<String> {
    if let Command::Server(server) = &cli.command {
        return server.listen.then(|| {
            "-l: tcpdemo server always listens (and keeps listening): drop -l".to_string()
        });
    }
    let Command::Client(client) = &cli.command else {
        return None;
    };
    if client.listen {
        return Some(
            "-l: tcpdemo listens with its own subcommand: tcpdemo server --port PORT".into(),
        );
    }
    if client.keep_listening {
        return Some("-k: tcpdemo server keeps accepting connections by itself".into());
    }
    // netcat's `-q SECS` (quit after EOF): here -q is "quiet", and SECS would become the message.
    // Read from the words as typed: after `--`, a number is meant as the message.
    if let [first, ..] = client.message.as_slice()
        && first.to_str().is_some_and(|w| w.parse::<u32>().is_ok())
        && args.windows(2).any(|w| w[0] == "-q" && w[1] == *first)
    {
        return Some(
            "-q here is quiet, not netcat's -q SECS: the client ends by itself once the reply is \
             complete (to send a number as the message, put it after --)"
                .into(),
        );
    }
    None
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accept connections and echo every byte back, ASCII-uppercased
    #[command(
        display_name = "tcpdemo",
        after_help = "Example:\n  tcpdemo server --port 0    # picks a free port and prints it\n\nMore: tcpdemo help server, or man tcpdemo",
        after_long_help = long_help::SERVER
    )]
    Server(ServerArgs),

    /// Send a message (or stdin) to a server and print its reply
    #[command(
        display_name = "tcpdemo",
        after_help = "A message that starts with '-' goes after '--': tcpdemo client -- -x\n\n\
                            Examples:\n  tcpdemo client \"Hello, Server!\"\n  \
                            tcpdemo client < file > out\n  printf 'abc' | tcpdemo client\n\n\
                            More: tcpdemo help client, or man tcpdemo",
        after_long_help = long_help::CLIENT
    )]
    Client(ClientArgs),

    /// Measure an echo server: requests/s and latency, throughput, or connections/s
    #[command(
        display_name = "tcpdemo",
        after_help = "Example:\n  tcpdemo bench --mode rr --connections 50 --size 64 --duration 5\n\n\
                      More: tcpdemo help bench, or man tcpdemo",
        after_long_help = long_help::BENCH
    )]
    Bench(BenchArgs),

    /// Print a shell completion script: bash, zsh, fish, powershell or elvish
    #[command(after_help = "Examples:\n  source <(tcpdemo completions bash)\n  \
                      tcpdemo completions zsh > ~/.zfunc/_tcpdemo\n  \
                      tcpdemo completions fish > ~/.config/fish/completions/tcpdemo.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff): tcpdemo man > tcpdemo.1; man ./tcpdemo.1
    Man,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// netcat's listen flag: the server always listens
    #[arg(short = 'l', hide = true)]
    pub listen: bool,

    /// Address to listen on: an IP or a name; '::' also accepts IPv4 where the system allows
    #[arg(short = 'H', long, default_value = "127.0.0.1", value_parser = host)]
    pub host: String,

    /// Port to listen on; 0 picks a free one
    #[arg(short, long, default_value_t = 1234)]
    pub port: u16,

    /// Length of the kernel's queue of connections not yet accepted [default: the system's maximum]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub backlog: Option<u32>,

    /// Connections served at once; further clients wait in the listen queue until one closes
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Close a connection that sends nothing, or reads nothing we send, for this long [default: none]
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    pub idle_timeout: Option<Duration>,

    /// Probe a connection silent for this long, to find peers that vanished (then every 10s, 6 times); 0 turns it off
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = keepalive_secs)]
    pub keepalive: Duration,

    /// On a stop request (Ctrl-C, SIGTERM), let open connections finish for this long before cutting them
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = secs)]
    pub grace: Duration,

    /// Every connection begins with a PROXY protocol header (v1 or v2), as a load balancer sends with send-proxy
    #[arg(long)]
    pub proxy_protocol: bool,

    /// With --proxy-protocol: believe PROXY headers only from these addresses (a CIDR such as 10.0.0.0/8, or one address; repeatable), and close other connections unanswered [default: every address]
    #[arg(long, value_name = "CIDR", requires = "proxy_protocol", value_parser = cidr)]
    pub proxy_from: Vec<ipnet::IpNet>,

    /// Share the port with other servers (SO_REUSEPORT), for overlapping restarts or a process per core
    #[arg(long)]
    pub reuse_port: bool,

    /// Serve an HTTP health check on this port: 200 "ok" while serving, 503 "draining" once stopping
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub health_port: Option<u16>,

    /// At the first stop request, fail the health check at once but keep serving for this long
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = secs)]
    pub drain_delay: Duration,

    /// Serve TLS (1.2 and 1.3); without --tls-cert, with a temporary self-signed certificate for localhost, 127.0.0.1, ::1 and --host
    #[arg(long, help_heading = "TLS")]
    pub tls: bool,

    /// Also serve the echo over UDP, on the same address and port number: each datagram comes back to its sender, uppercased
    #[arg(long, help_heading = "UDP")]
    pub udp: bool,

    /// With --udp: answer at most N datagrams a second from any one address, and drop (and count) the rest
    #[arg(long, value_name = "N", default_value_t = 100_000, requires = "udp", value_parser = clap::value_parser!(u32).range(1..), help_heading = "UDP")]
    pub udp_rate: u32,

    /// The certificate chain to serve, PEM, leaf first (implies --tls)
    #[arg(long, value_name = "FILE", requires = "tls_key", help_heading = "TLS")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert, PEM: RSA, ECDSA or Ed25519 (PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert", help_heading = "TLS")]
    pub tls_key: Option<PathBuf>,

    /// Write the temporary certificate to FILE (PEM), for clients' --tls-ca FILE (implies --tls)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "tls_cert",
        help_heading = "TLS"
    )]
    pub tls_write_cert: Option<PathBuf>,

    /// Require a client certificate signed by a CA in FILE (mutual TLS; implies --tls)
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub tls_client_ca: Option<PathBuf>,
}

/// How a client or bench speaks TLS to the server; any of these implies --tls.
#[derive(Debug, Args)]
pub struct TlsClientArgs {
    /// Speak TLS, verifying the server against the system's trusted CAs and --tls-ca
    #[arg(long, help_heading = "TLS")]
    pub tls: bool,

    /// Trust the CAs (or the self-signed certificate) in FILE, PEM, besides the system's
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub tls_ca: Option<PathBuf>,

    /// The name to send (SNI) and to verify the certificate against [default: --host]
    #[arg(long, value_name = "NAME", help_heading = "TLS")]
    pub tls_server_name: Option<String>,

    /// Do not verify the server's certificate (testing only: anyone in the path can read and change the traffic)
    #[arg(long, conflicts_with = "tls_ca", help_heading = "TLS")]
    pub tls_insecure: bool,

    /// Offer only this TLS version (to test a path with TLS 1.2, or its resumption) [default: both]
    #[arg(long, value_name = "VERSION", value_enum, help_heading = "TLS")]
    pub tls_version: Option<crate::tls::Version>,

    /// Present this client certificate chain, PEM (mutual TLS)
    #[arg(long, value_name = "FILE", requires = "tls_key", help_heading = "TLS")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert, PEM
    #[arg(long, value_name = "FILE", requires = "tls_cert", help_heading = "TLS")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Server to connect to: an IP or a name (every address it resolves to is tried)
    #[arg(short = 'H', long, default_value = "localhost", value_parser = host)]
    pub host: String,

    /// Server port
    #[arg(short, long, default_value_t = 1234, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Bound each connect attempt, each write the server does not take in, and, once all input is sent, each wait for the reply; -w SECS is the same, as in netcat [default: connect 10s, others none]
    #[arg(short, long, visible_short_alias = 'w', value_name = "SECS", value_parser = positive_secs)]
    pub timeout: Option<Duration>,

    /// Use only the IPv4 addresses of --host
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Use only the IPv6 addresses of --host
    #[arg(short = '6')]
    pub ipv6: bool,

    /// Accepted for netcat's sake and does nothing: the client always half-closes when its input ends
    #[arg(short = 'N')]
    pub half_close: bool,

    /// netcat's listen mode: here it is `tcpdemo server`
    #[arg(short = 'l', hide = true)]
    pub listen: bool,

    /// netcat's keep-listening: `tcpdemo server` does that by itself
    #[arg(short = 'k', hide = true)]
    pub keep_listening: bool,

    /// Expect the reply unchanged (an RFC 862 echo server) rather than uppercased
    #[arg(long, conflicts_with = "any_reply")]
    pub plain: bool,

    /// Accept any reply: print it without checking it against the echo (an HTTP server, say)
    #[arg(long)]
    pub any_reply: bool,

    /// Begin with a PROXY protocol header naming this connection's own addresses, as a load balancer would
    #[arg(long, value_name = "VERSION", value_enum)]
    pub send_proxy: Option<crate::proxy::ProxyVersion>,

    #[command(flatten)]
    pub tls: TlsClientArgs,

    /// Send UDP datagrams instead: the message as one, or stdin a line at a time; --timeout is then each wait for a reply [default: 1s]
    #[arg(short = 'u', long, conflicts_with_all = ["send_proxy", "tls", "tls_ca", "tls_server_name", "tls_insecure", "tls_version", "tls_cert", "tls_key"], help_heading = "UDP")]
    pub udp: bool,

    /// With --udp: send a message again this many times when no reply comes in --timeout
    #[arg(
        long,
        value_name = "N",
        default_value_t = 2,
        requires = "udp",
        help_heading = "UDP"
    )]
    pub retries: u32,

    /// Words to send, joined by single spaces, byte for byte; none (or '-') streams stdin instead
    #[arg(value_name = "MESSAGE")]
    pub message: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Request/response: send SIZE bytes, wait for the reply, repeat
    Rr,
    /// Stream both ways as fast as possible
    Stream,
    /// Connect, send SIZE bytes, half-close, read the reply, close; repeat
    Connect,
    /// Open CONNECTIONS and hold them for DURATION, each echoing one byte every INTERVAL (1s)
    Hold,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Server to measure
    #[arg(short = 'H', long, default_value = "localhost", value_parser = host)]
    pub host: String,

    /// Use only the IPv4 addresses of --host
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Use only the IPv6 addresses of --host
    #[arg(short = '6')]
    pub ipv6: bool,

    /// Server port
    #[arg(short, long, default_value_t = 1234, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// What to measure
    #[arg(short, long, value_enum, default_value_t = BenchMode::Rr)]
    pub mode: BenchMode,

    /// Connections (rr, stream; up to 10,000) or workers (connect) running at once, or connections held (hold: up to the open-file limit)
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,

    /// Bytes per request (rr, connect) or per write (stream) [default: 64; stream: 65536]
    #[arg(short, long, value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    pub size: Option<u32>,

    /// How long to run
    #[arg(short, long, value_name = "SECS", default_value = "5", value_parser = positive_secs)]
    pub duration: Duration,

    /// Expect an unmodified echo (RFC 862) instead of an uppercased one
    #[arg(long)]
    pub plain: bool,

    /// Print JSON instead of a table: one object per interval (with --interval), then the summary
    #[arg(long)]
    pub json: bool,

    /// Open loop: send N requests (rr) or connections (connect) a second in all, on a fixed schedule, and time each from when it was due [default: closed loop]
    #[arg(short, long, value_name = "N", value_parser = positive_rate)]
    pub rate: Option<f64>,

    /// Report every SECS: operations/s, p50, p99, max and errors of that interval (hold: also how often each connection echoes a byte [default: 1s])
    #[arg(short, long, value_name = "SECS", value_parser = positive_secs)]
    pub interval: Option<Duration>,

    /// Run this long first without counting it
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = secs)]
    pub warmup: Duration,

    /// Write the latency distribution to FILE in HdrHistogram's percentile text format
    #[arg(long, value_name = "FILE")]
    pub hist: Option<PathBuf>,

    /// Draw latency by percentile and over time to FILE, an SVG picture
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    #[command(flatten)]
    pub tls: TlsClientArgs,

    /// With --tls: resume sessions (TLS 1.3 tickets, TLS 1.2 session IDs) instead of a full handshake per connection; the report gives the share that resumed (implies --tls)
    #[arg(long, help_heading = "TLS")]
    pub tls_resume: bool,

    /// Send UDP datagrams instead (rr, or stream with --rate), each with a sequence number: lost, late, duplicated and reordered ones are counted, and jitter measured
    #[arg(short = 'u', long, conflicts_with_all = ["tls", "tls_ca", "tls_server_name", "tls_insecure", "tls_version", "tls_cert", "tls_key", "tls_resume"], help_heading = "UDP")]
    pub udp: bool,

    /// With --udp: a reply later than this after its request is late, and one that never comes is lost
    #[arg(long, value_name = "SECS", default_value = "1", requires = "udp", value_parser = positive_secs, help_heading = "UDP")]
    pub udp_timeout: Duration,

    /// With --udp: fail (exit 1) if more than PCT percent of the datagrams got no reply
    #[arg(long, value_name = "PCT", requires = "udp", value_parser = percent, help_heading = "UDP")]
    pub max_loss: Option<f64>,
}

/// The highest rate: one operation a nanosecond, the finest step a schedule can take.
const MAX_RATE: f64 = 1e9;

/// A rate whose schedule a clock can hold: at least one operation in the longest duration any
/// flag takes, at most one a nanosecond.
fn positive_rate(text: &str) -> Result<f64, String> {
    let min_rate = 1.0 / MAX_SECS as f64;
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (min_rate..=MAX_RATE).contains(&rate) => Ok(rate),
        Ok(rate) if rate > 0.0 && rate < min_rate => Err(format!(
            "'{text}' is too low a rate: at least one operation a year ({min_rate:.1e}/s)"
        )),
        _ => Err(format!(
            "'{text}' is not a rate: a number of operations a second, above 0 and at most \
             1e9"
        )),
    }
}

/// A network for --proxy-from: `10.0.0.0/8`, `2001:db8::/32`, or one address.
fn cidr(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("'{text}' is not an address or a network such as 10.0.0.0/8"))
}

/// A host for -H: a name or an address, without a port (that is -p).
fn host(text: &str) -> Result<String, String> {
    let bare = crate::addr::bare(text);
    if bare.trim().is_empty() {
        return Err("-H needs a host name or an address, e.g. -H localhost or -H 127.0.0.1".into());
    }
    let with_port = match text.rsplit_once(':') {
        // "[::1]:80", or "name:80" / "1.2.3.4:80" (one colon: not an IPv6 address)
        Some((head, port)) if port.parse::<u16>().is_ok() => {
            (head.starts_with('[') && head.ends_with(']')) || !head.contains(':')
        }
        _ => false,
    };
    if with_port {
        let (head, port) = text.rsplit_once(':').unwrap_or_default();
        return Err(format!(
            "-H takes a host only; give the port with -p: -H {head} -p {port}"
        ));
    }
    Ok(text.to_string())
}

/// The longest duration any flag takes: far beyond any real use, and well inside what a clock
/// can add to the current time everywhere.
const MAX_SECS: u64 = 365 * 24 * 60 * 60;
/// The longest idle time systems take for a keepalive probe (Linux: `MAX_TCP_KEEPIDLE`).
const MAX_KEEPALIVE_SECS: u64 = 32_767;

fn secs_up_to(text: &str, max: u64) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if value.is_nan() || value < 0.0 {
        return Err(format!("'{text}' is not a valid duration"));
    }
    if value > max as f64 {
        return Err(format!(
            "'{text}' is more than the maximum of {max} seconds"
        ));
    }
    Duration::try_from_secs_f64(value).map_err(|_| format!("'{text}' is not a valid duration"))
}

fn secs(text: &str) -> Result<Duration, String> {
    secs_up_to(text, MAX_SECS)
}

fn keepalive_secs(text: &str) -> Result<Duration, String> {
    let value = secs_up_to(text, MAX_KEEPALIVE_SECS)?;
    if !value.is_zero() && value < Duration::from_secs(1) {
        return Err("keepalive probes are timed in whole seconds: 0 (off) or at least 1".into());
    }
    Ok(value)
}

/// A percentage, 0 to 100.
fn percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("'{text}' is not a percentage from 0 to 100")),
    }
}

fn positive_secs(text: &str) -> Result<Duration, String> {
    match secs(text)? {
        d if d.is_zero() => Err("must be more than 0 seconds".into()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn seconds_accept_fractions_and_reject_zero_and_garbage() {
        assert_eq!(positive_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(positive_secs("0").is_err());
        assert!(positive_secs("-1").is_err());
        assert!(positive_secs("soon").is_err());
        assert!(positive_secs("inf").is_err());
        assert_eq!(secs("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn hosts_with_a_port_or_empty_are_refused_with_what_to_do() {
        assert_eq!(host("localhost"), Ok("localhost".into()));
        assert_eq!(host("::1"), Ok("::1".into()));
        assert_eq!(host("[::1]"), Ok("[::1]".into()));
        assert_eq!(host("fe80::1:2"), Ok("fe80::1:2".into()));
        assert_eq!(
            host("127.0.0.1:1234"),
            Err("-H takes a host only; give the port with -p: -H 127.0.0.1 -p 1234".into())
        );
        assert!(host("[::1]:80").unwrap_err().contains("-H [::1] -p 80"));
        assert!(host("").unwrap_err().contains("needs a host"));
    }

    #[test]
    fn rates_whose_schedule_a_clock_cannot_hold_are_rejected() {
        assert_eq!(positive_rate("2000"), Ok(2000.0));
        assert_eq!(positive_rate("1e9"), Ok(1e9));
        assert!(positive_rate("1e-300").unwrap_err().contains("too low"));
        assert!(positive_rate("1e-8").is_err());
        assert!(positive_rate("1.1e9").is_err());
        assert!(positive_rate("0").is_err());
        assert!(positive_rate("nan").is_err());
    }

    #[test]
    fn durations_beyond_the_maximum_are_rejected() {
        assert!(secs("1e19").is_err());
        assert!(positive_secs("31536001").is_err());
        assert_eq!(secs("31536000"), Ok(Duration::from_secs(MAX_SECS)));
        assert!(keepalive_secs("32768").is_err());
        assert!(keepalive_secs("0.5").is_err());
        assert_eq!(keepalive_secs("0"), Ok(Duration::ZERO));
    }
}
