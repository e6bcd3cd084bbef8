use std::process::ExitCode;

use clap::Parser;
use log::LevelFilter;

use tcpdemo::cli::{Cli, Command};
use tcpdemo::{bench, client, server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match dispatch(cli) {
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
            })
        }
        Command::Bench(args) => bench::run(bench::Options::from(args)),
    }
}

/// The server reports its connections by default; the client and bench speak only of trouble.
fn init_logging(cli: &Cli) {
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
    let level = LEVELS[index.min(LEVELS.len() - 1)];
    env_logger::Builder::new()
        .filter_level(level)
        .format_target(false)
        .format_timestamp_millis()
        .parse_default_env()
        .init();
}
