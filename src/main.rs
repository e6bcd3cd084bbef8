use std::ffi::{OsStr, OsString};
use std::io;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use log::{LevelFilter, warn};

use tcpdemo::addr::Family;
use tcpdemo::cli::{
    self, BenchArgs, BenchMode, Cli, ClientArgs, Command, ServerArgs, TlsClientArgs,
};
use tcpdemo::echo::Echo;
use tcpdemo::output::write_out;
use tcpdemo::{bench, client, logger, server, tls};

/// How long the last log lines may take to reach stderr at exit; a stderr nobody reads does
/// not keep the process from exiting.
const LOG_FLUSH: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = cli::parse();
    let writer = match cli.command {
        Command::Server(_) => logger::Writer::Now,
        _ => logger::Writer::OnFirstLine,
    };
    let result = logger::init(log_level(&cli), cli.log_format, writer).and_then(|()| dispatch(cli));
    logger::flush(LOG_FLUSH);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tcpdemo::output::end_line_before_error();
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => server::run(server_config(args), exit_server_now),
        Command::Client(args) => client::run(client_options(args)),
        Command::Bench(args) => bench::run(bench_options(args), exit_bench_now),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli::command(), "tcpdemo", &mut script);
            write_out(io::stdout().lock(), &script).map(drop)
        }
        Command::Man => {
            let page = cli::man_page().context("cannot render the man page")?;
            write_out(io::stdout().lock(), &page).map(drop)
        }
    }
}

fn server_config(args: ServerArgs) -> server::Config {
    server::Config {
        host: args.host,
        port: args.port,
        backlog: args.backlog,
        max_connections: args.max_connections,
        idle_timeout: args.idle_timeout,
        keepalive: Some(args.keepalive).filter(|d| !d.is_zero()),
        proxy_protocol: args.proxy_protocol,
        proxy_from: args.proxy_from,
        reuse_port: args.reuse_port,
        health_port: args.health_port,
        drain_delay: args.drain_delay,
        grace: args.grace,
        udp: args.udp.then_some(server::UdpOptions {
            rate: args.udp_rate,
        }),
        tls: (args.tls
            || args.tls_cert.is_some()
            || args.tls_write_cert.is_some()
            || args.tls_client_ca.is_some())
        .then(|| tls::ServerOptions {
            identity: args.tls_cert.zip(args.tls_key),
            write_cert: args.tls_write_cert,
            client_ca: args.tls_client_ca,
        }),
    }
}

/// The client's and bench's TLS flags; any of them implies --tls.
fn tls_client_options(args: TlsClientArgs, resume: bool) -> Option<tls::ClientOptions> {
    let wanted = args.tls
        || resume
        || args.tls_ca.is_some()
        || args.tls_server_name.is_some()
        || args.tls_insecure
        || args.tls_version.is_some()
        || args.tls_cert.is_some();
    wanted.then(|| tls::ClientOptions {
        ca: args.tls_ca,
        server_name: args.tls_server_name,
        insecure: args.tls_insecure,
        identity: args.tls_cert.zip(args.tls_key),
        version: args.tls_version,
        resume,
    })
}

fn client_options(args: ClientArgs) -> client::Options {
    let message = match args.message.as_slice() {
        [] => None,
        [dash] if dash == "-" => None,
        words => {
            warn_if_host_and_port(words);
            Some(words.join(OsStr::new(" ")).into_encoded_bytes())
        }
    };
    client::Options {
        host: args.host,
        port: args.port,
        family: Family::from_flags(args.ipv4, args.ipv6),
        timeout: args.timeout,
        message,
        send_proxy: args.send_proxy,
        tls: tls_client_options(args.tls, false),
        udp: args.udp.then_some(args.retries),
        expect: match (args.plain, args.any_reply) {
            (_, true) => client::Expect::Any,
            (true, false) => client::Expect::Echo(Echo::Plain),
            (false, false) => client::Expect::Echo(Echo::Uppercase),
        },
    }
}

fn bench_options(args: BenchArgs) -> bench::Options {
    if args.udp {
        match args.mode {
            BenchMode::Connect | BenchMode::Hold => cli::usage_error(
                "bench",
                "UDP has no connections: use --udp with --mode rr, or stream with --rate",
            ),
            BenchMode::Stream if args.rate.is_none() => cli::usage_error(
                "bench",
                "--udp --mode stream needs --rate N: UDP has no flow control, so bench sends N \
                 datagrams a second (as iperf3 -u -b does)",
            ),
            _ => {}
        }
        if let Some(size) = args.size
            && !(bench::UDP_HEADER as u32..=server::MAX_DATAGRAM as u32).contains(&size)
        {
            cli::usage_error(
                "bench",
                &format!(
                    "--udp --size is {} to {} bytes: each datagram carries its sequence number \
                     and times, and fits in one UDP datagram",
                    bench::UDP_HEADER,
                    server::MAX_DATAGRAM
                ),
            );
        }
    } else if args.mode != BenchMode::Hold && args.connections > 10_000 {
        cli::usage_error(
            "bench",
            "more than 10,000 connections take a thread each in this mode: use --mode hold",
        );
    } else if args.rate.is_some() && args.mode == BenchMode::Stream {
        cli::usage_error(
            "bench",
            "--rate paces requests or connections: use it with --mode rr or connect",
        );
    }
    let default_size = if args.mode == BenchMode::Stream && !args.udp {
        64 * 1024
    } else if args.mode == BenchMode::Stream {
        1_400
    } else {
        64
    };
    bench::Options {
        host: args.host,
        port: args.port,
        family: Family::from_flags(args.ipv4, args.ipv6),
        mode: args.mode,
        connections: args.connections,
        size: args.size.map_or(default_size, |s| s as usize),
        duration: args.duration,
        echo: if args.plain {
            Echo::Plain
        } else {
            Echo::Uppercase
        },
        json: args.json,
        rate: args.rate,
        interval: args.interval,
        warmup: args.warmup,
        hist: args.hist,
        plot: args.plot,
        tls: tls_client_options(args.tls, args.tls_resume),
        udp: args.udp.then_some(bench::UdpOptions {
            timeout: args.udp_timeout,
            max_loss: args.max_loss,
        }),
    }
}

/// A deliberate second stop request: the server exits at once with 1, its connections cut.
fn exit_server_now() -> ! {
    logger::flush(Duration::from_millis(100));
    std::process::exit(1)
}

/// A deliberate second stop request: bench exits at once with 130, as a shell reports an
/// interrupted command.
fn exit_bench_now() -> ! {
    logger::flush(Duration::from_millis(100));
    std::process::exit(130)
}

/// `tcpdemo client localhost 1234` sends "localhost 1234": say so, as netcat users expect
/// host and port there.
fn warn_if_host_and_port(words: &[OsString]) {
    let [host, port] = words else { return };
    let (Some(host), Some(port)) = (host.to_str(), port.to_str()) else {
        return;
    };
    let hostlike = host == "localhost"
        || host.parse::<std::net::IpAddr>().is_ok()
        || (host.contains('.') && !host.contains(char::is_whitespace));
    if hostlike && port.parse::<u16>().is_ok() {
        warn!(
            "sending \"{host} {port}\" as the message; to connect to {host} port {port}, use \
             -H {host} -p {port}"
        );
    }
}

/// The server reports its connections by default; the client and bench speak only of trouble.
fn log_level(cli: &Cli) -> LevelFilter {
    const LEVELS: [LevelFilter; 6] = [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ];
    let default = match cli.command {
        Command::Server(_) => 3,
        _ => 2,
    };
    let index = (default + cli.verbosity()).clamp(0, LEVELS.len() as i16 - 1);
    LEVELS[index as usize]
}
