use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use log::LevelFilter;

use tcpdemo::cli::{BenchMode, Cli, Command, ProxyVersion};
use tcpdemo::{bench, client, logger, proxy, server};

/// How long the last log lines may take to reach stderr at exit; a stderr nobody reads does
/// not keep the process from exiting.
const LOG_FLUSH: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = logger::init(log_level(&cli)).and_then(|()| dispatch(cli));
    logger::flush(LOG_FLUSH);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => server::run(server::Config {
            host: args.host,
            port: args.port,
            backlog: args.backlog,
            max_connections: args.max_connections,
            idle_timeout: args.idle_timeout,
            keepalive: Some(args.keepalive).filter(|d| !d.is_zero()),
            proxy_protocol: args.proxy_protocol,
            reuse_port: args.reuse_port,
            health_port: args.health_port,
            drain_delay: args.drain_delay,
            grace: args.grace,
        }),
        Command::Client(args) => {
            let message = match args.message.as_slice() {
                [] => None,
                [dash] if dash == "-" => None,
                words => Some(words.join(" ").into_bytes()),
            };
            client::run(client::Options {
                host: args.host,
                port: args.port,
                timeout: args.timeout,
                message,
                send_proxy: args.send_proxy.map(|v| match v {
                    ProxyVersion::V1 => proxy::HeaderVersion::V1,
                    ProxyVersion::V2 => proxy::HeaderVersion::V2,
                }),
                expect: match (args.plain, args.any_reply) {
                    (_, true) => client::Expect::Any,
                    (true, false) => client::Expect::Plain,
                    (false, false) => client::Expect::Uppercase,
                },
            })
        }
        Command::Bench(args) => {
            if args.rate.is_some() && args.mode == BenchMode::Stream {
                Cli::command()
                    .error(
                        clap::error::ErrorKind::ArgumentConflict,
                        "--rate paces requests or connections: use it with --mode rr or connect",
                    )
                    .exit();
            }
            bench::run(bench::Options::from(args))
        }
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
        Command::Client(_) | Command::Bench(_) => 2,
    };
    let index = (default + usize::from(cli.verbose)).saturating_sub(usize::from(cli.quiet));
    LEVELS[index.min(LEVELS.len() - 1)]
}
