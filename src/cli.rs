//! The command line: every flag, its default and its help text, in one place.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "tcpdemo",
    version,
    about = "A TCP server that uppercases what it receives and echoes it back, its client, and a load generator",
    after_help = "Examples:\n  tcpdemo server --port 1234\n  tcpdemo client \"Hello, Server!\"\n  producer | tcpdemo client > out\n  tcpdemo bench --mode rr --connections 50"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less log output (-q hides info, -qq hides warnings); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accept connections and echo every byte back, ASCII-uppercased
    #[command(
        after_help = "Example:\n  tcpdemo server --port 0    # picks a free port and prints it"
    )]
    Server(ServerArgs),

    /// Send a message (or stdin) to a server and print its reply
    #[command(
        after_help = "A message that starts with '-' goes after '--': tcpdemo client -- -x\n\n\
                            Examples:\n  tcpdemo client \"Hello, Server!\"\n  \
                            tcpdemo client < file > out\n  printf 'abc' | tcpdemo client"
    )]
    Client(ClientArgs),

    /// Measure an echo server: requests/s and latency, throughput, or connections/s
    #[command(
        after_help = "Example:\n  tcpdemo bench --mode rr --connections 50 --size 64 --duration 5"
    )]
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on: an IP or a name; '::' also accepts IPv4 where the system allows
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
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

    /// Share the port with other servers (SO_REUSEPORT), for overlapping restarts or a process per core
    #[arg(long)]
    pub reuse_port: bool,

    /// Serve an HTTP health check on this port: 200 "ok" while serving, 503 "draining" once stopping
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub health_port: Option<u16>,

    /// At the first stop request, fail the health check at once but keep serving for this long
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = secs)]
    pub drain_delay: Duration,
}

/// A PROXY protocol header's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyVersion {
    V1,
    V2,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Server to connect to: an IP or a name (every address it resolves to is tried)
    #[arg(short = 'H', long, default_value = "localhost")]
    pub host: String,

    /// Server port
    #[arg(short, long, default_value_t = 1234, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Bound each connect attempt, each write the server does not take in, and, once all input is sent, each wait for the reply [default: connect 10s, others none]
    #[arg(short, long, value_name = "SECS", value_parser = positive_secs)]
    pub timeout: Option<Duration>,

    /// Expect the reply unchanged (an RFC 862 echo server) rather than uppercased
    #[arg(long, conflicts_with = "any_reply")]
    pub plain: bool,

    /// Accept any reply: print it without checking it against the echo (an HTTP server, say)
    #[arg(long)]
    pub any_reply: bool,

    /// Begin with a PROXY protocol header naming this connection's own addresses, as a load balancer would
    #[arg(long, value_name = "VERSION", value_enum)]
    pub send_proxy: Option<ProxyVersion>,

    /// Words to send, joined by single spaces; none (or '-') streams stdin instead
    #[arg(value_name = "MESSAGE")]
    pub message: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Request/response: send SIZE bytes, wait for the reply, repeat
    Rr,
    /// Stream both ways as fast as possible
    Stream,
    /// Connect, send SIZE bytes, half-close, read the reply, close; repeat
    Connect,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Server to measure
    #[arg(short = 'H', long, default_value = "localhost")]
    pub host: String,

    /// Server port
    #[arg(short, long, default_value_t = 1234, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// What to measure
    #[arg(short, long, value_enum, default_value_t = BenchMode::Rr)]
    pub mode: BenchMode,

    /// Connections (rr, stream) or workers (connect) running at once
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
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

    /// Report every SECS: operations/s, p50, p99, max and errors of that interval
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
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= 1e9 => Ok(rate),
        _ => Err(format!(
            "'{text}' is not a rate: a number of operations a second, above 0"
        )),
    }
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

fn positive_secs(text: &str) -> Result<Duration, String> {
    match secs(text)? {
        d if d.is_zero() => Err("must be more than 0 seconds".into()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
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
    fn durations_beyond_the_maximum_are_rejected() {
        assert!(secs("1e19").is_err());
        assert!(positive_secs("31536001").is_err());
        assert_eq!(secs("31536000"), Ok(Duration::from_secs(MAX_SECS)));
        assert!(keepalive_secs("32768").is_err());
        assert!(keepalive_secs("0.5").is_err());
        assert_eq!(keepalive_secs("0"), Ok(Duration::ZERO));
    }
}
