//! The load generator: measures any echo server in one of three modes, checking every reply.
//!
//! `modes.rs` holds what the workers do, `pacing.rs` when (closed or open loop), `recording.rs`
//! what they record, `report.rs` the table, and `export/` the other forms of the results.

mod export;
mod hold;
mod modes;
mod pacing;
mod pattern;
mod recording;
mod report;
mod udp;

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cli::BenchMode;
use crate::echo::Echo;
use crate::numbers::thousands;
use crate::output::write_out;
use crate::stop::{ExitNow, Next, Request, Requests};
use crate::{client, platform};
use modes::{Lag, Progress, READ_BUF, Run, WORKER_STACK};
use pattern::Pattern;
use recording::Recording;
use report::{Interval, MIB, Open, Pace, Report};
pub use udp::{HEADER as UDP_HEADER, UdpOptions};

/// Bounds every wait on the server, so a stalled server ends the run instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Without `--interval`, intervals are still kept for `--plot`: a twentieth of the run, between
/// these bounds, so a short run still draws a line over time rather than a single point.
const PLOT_INTERVAL: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

pub struct Options {
    pub host: String,
    pub port: u16,
    pub family: crate::addr::Family,
    pub mode: BenchMode,
    pub connections: u32,
    pub size: usize,
    pub duration: Duration,
    /// The echo the server is expected to give.
    pub echo: Echo,
    pub json: bool,
    /// Operations per second in all: an open loop.
    pub rate: Option<f64>,
    /// Print a report line (or JSON object) this often.
    pub interval: Option<Duration>,
    pub warmup: Duration,
    pub hist: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    /// Speak TLS.
    pub tls: Option<crate::tls::ClientOptions>,
    /// Send datagrams instead.
    pub udp: Option<UdpOptions>,
}

/// Measures, prints the report, writes the files asked for; a deliberate second stop request
/// calls `exit_now`.
pub fn run(options: Options, exit_now: ExitNow) -> Result<()> {
    let stop = stop_on_request(exit_now)?;
    let mut stdout = io::stdout().lock();
    let report = measure(&options, stop, &mut |interval| {
        let line = if options.json {
            export::json::interval(interval).to_string()
        } else {
            interval.line()
        };
        // A reader that went away is handled at the end, with the report.
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    })?;
    let text = if options.json {
        format!("{}\n", export::json::summary(&report, &options))
    } else {
        report.to_table(&options)
    };
    // A reader that went away (`| head -1`) has what it wanted; the exit status still tells.
    write_out(&mut stdout, text.as_bytes())?;
    drop(stdout);
    if let Some(path) = &options.hist {
        fs::write(
            path,
            export::hist::percentile_distribution(&report.total.latency),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &options.plot {
        let title = report.title(&options);
        let svg = export::plot::svg(&title, &report.total.latency, &report.intervals)?;
        fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if report.total.errors() > 0 {
        bail!(
            "{} errors during the run; first: {}",
            report.total.errors(),
            report.total.first_error.as_deref().unwrap_or("unknown")
        );
    }
    if let Some(max) = options.udp.and_then(|udp| udp.max_loss) {
        let lost = report.total.datagrams.lost_percent();
        if lost > max {
            bail!("{lost:.2}% of the datagrams got no reply: more than --max-loss {max}%");
        }
    }
    Ok(())
}

/// The first stop request (Ctrl-C) ends the run early, with its report; a deliberate second
/// one calls `exit_now`.
fn stop_on_request(exit_now: ExitNow) -> Result<&'static AtomicBool> {
    static STOP: AtomicBool = AtomicBool::new(false);
    let mut requests = Requests::install()?;
    thread::Builder::new()
        .name("stop".into())
        .spawn(move || {
            loop {
                match requests.next(None) {
                    Next::Request(Request::First(_)) => STOP.store(true, Ordering::Relaxed),
                    Next::Request(Request::Again(_)) => exit_now(),
                    Next::TimedOut => {}
                    Next::Closed => return,
                }
            }
        })
        .context("cannot start the stop thread")?;
    Ok(&STOP)
}

/// Runs the workers, calling `on_interval` with each interval as it ends (with `--interval`),
/// and returns the report.
pub(crate) fn measure(
    options: &Options,
    stop: &AtomicBool,
    on_interval: &mut dyn FnMut(&Interval),
) -> Result<Report> {
    let tls = match &options.tls {
        Some(tls) => Some(Arc::new(crate::tls::Client::new(tls, &options.host)?)),
        None => None,
    };
    open_files(options)?;
    let addr = match options.udp {
        Some(udp) => reach_udp(options, udp)?,
        None => reach(options, tls.as_deref())?,
    };
    let pattern = Pattern::new(options.size.max(READ_BUF), options.echo);
    let progress = Progress::default();
    let start = Instant::now();
    let measure_from = start + options.warmup;
    // Hold mode's --rate paces connects.
    let hold = options.mode == BenchMode::Hold;
    let recording = Recording::new(measure_from, options.rate.is_some() && !hold);
    let run = Run {
        addr,
        size: options.size,
        pattern: &pattern,
        start,
        deadline: measure_from + options.duration,
        stop,
        recording: &recording,
        progress: &progress,
        rate: options.rate,
        workers: options.connections,
        tls,
    };
    let (lags, watched) = run_workers(options, &run, on_interval)?;
    let held = progress
        .held
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let mut total = recording.total();
    if options.mode == BenchMode::Stream && options.udp.is_none() {
        total.latency.reset();
    }
    // UDP flows wait for replies that may never come; the run ended when they were last busy.
    let ended = recording.flows_ended().unwrap_or(watched.ended);
    let report = Report {
        elapsed: ended.saturating_duration_since(measure_from),
        total,
        pace: options
            .rate
            .filter(|_| !hold)
            .map(|target| Pace { target, lag: lags }),
        open: Open {
            peak: progress.peak_open.load(Ordering::Relaxed),
            after_warmup: watched.open_after_warmup,
        },
        cpu: watched
            .cpu_at_start
            .zip(platform::cpu_time())
            .map(|(before, after)| after.saturating_sub(before)),
        intervals: watched.intervals,
        interrupted: stop.load(Ordering::Relaxed),
        held,
    };
    if let Some(short) = report.connections_short(options) {
        log::warn!("{short}");
    }
    Ok(report)
}

/// Raises the open-file limit as far as it goes; hold mode needs a descriptor a connection.
fn open_files(options: &Options) -> Result<()> {
    let limit = platform::raise_open_files()
        .ok()
        .flatten()
        .map(|(_, after)| after);
    if let Some(limit) = limit
        && options.mode == BenchMode::Hold
        && u64::from(options.connections) + 32 > limit
    {
        bail!(
            "cannot hold {} connections: the open-file limit is {} (raise the hard limit, or \
             run several bench processes)",
            thousands(u64::from(options.connections)),
            thousands(limit)
        );
    }
    Ok(())
}

/// Resolves and reaches the server once: a server that is not there is one clear error, not
/// thousands, and workers connect to the address that worked without resolving again.
/// With TLS, the probe's handshake says the same of a certificate that will not do.
fn reach(options: &Options, tls: Option<&crate::tls::Client>) -> Result<SocketAddr> {
    let probe = client::connect(&options.host, options.port, options.family, IO_TIMEOUT)?;
    let addr = probe
        .peer_addr()
        .context("cannot read the server's address")?;
    if let Some(tls) = tls {
        let stream = tls.connect(Arc::new(probe), Instant::now() + IO_TIMEOUT)?;
        for line in stream.with(crate::tls::describe_server) {
            log::info!("{line}");
        }
        // Not a measured connection: it ends at once, as TLS allows.
        let _ = stream.close();
    }
    measuring(options, addr);
    Ok(addr)
}

/// `reach` over UDP: one datagram must come back, as the client would send it.
fn reach_udp(options: &Options, udp: UdpOptions) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> =
        crate::addr::resolve_only(&options.host, options.port, options.family)?.collect();
    let expect = client::Expect::Echo(options.echo);
    let addr = client::udp::reach(&addrs, b"tcpdemo bench", expect, udp.timeout)?;
    measuring(options, addr);
    Ok(addr)
}

fn measuring(options: &Options, addr: SocketAddr) {
    log::info!(
        "measuring {addr}{}: {} mode, {} {}, {:?}{}",
        if options.udp.is_some() {
            " over UDP"
        } else {
            ""
        },
        report::mode_name(options.mode),
        options.connections,
        report::connections_name(options.mode, options.connections),
        options.duration,
        options
            .rate
            .map_or(String::new(), |r| format!(", open loop at {r}/s"))
    );
}

/// Starts a worker per connection, watches them to the end of the run, and returns their lag
/// and what the watch saw.
fn run_workers(
    options: &Options,
    run: &Run,
    on_interval: &mut dyn FnMut(&Interval),
) -> Result<(Lag, Watched)> {
    let measure_from = run.deadline - options.duration;
    // Taken before the workers start: thousands of them take a while to start, and work
    // meanwhile.
    let cpu_at_start = options.warmup.is_zero().then(platform::cpu_time).flatten();
    let (lags, watched) = thread::scope(|scope| -> Result<_> {
        let mut handles = Vec::new();
        // Hold mode: one poll loop for every connection.
        let workers = match options.mode {
            BenchMode::Hold => 1,
            _ => options.connections,
        };
        for worker in 0..workers {
            let work = move || match (options.mode, options.udp) {
                (BenchMode::Hold, _) => {
                    let (lag, held) = hold::hold(run, hold_options(options));
                    *run.progress
                        .held
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(held);
                    lag
                }
                (_, Some(udp)) => udp::flow(run, worker, udp),
                (BenchMode::Rr, None) => modes::request_response(run, worker),
                (BenchMode::Stream, None) => modes::stream(run, worker),
                (BenchMode::Connect, None) => modes::connect(run, worker),
            };
            let handle = thread::Builder::new()
                .name("bench".into())
                .stack_size(WORKER_STACK)
                .spawn_scoped(scope, work)
                .context("cannot start a worker thread")?;
            handles.push(handle);
        }
        let mut watched = watch(options, run, &handles, cpu_at_start, on_interval);
        let lags: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        // The run's real length: replies in flight at the deadline, and a stop, end it later
        // or sooner than planned, and every rate divides by what it really took.
        watched.ended = Instant::now().max(measure_from);
        finish(options, run, &mut watched, on_interval);
        Ok((lags, watched))
    })?;
    Ok((combine(lags)?, watched))
}

fn hold_options(options: &Options) -> hold::HoldOptions {
    hold::HoldOptions {
        connections: options.connections,
        every: options.interval.unwrap_or(Duration::from_secs(1)),
        hold: options.duration,
    }
}

/// The workers' lags in one: the furthest behind, and everything unsent. A worker that
/// panicked makes the run a failure, never a report of what the others did.
fn combine(workers: Vec<thread::Result<Lag>>) -> Result<Lag> {
    let mut lag = Lag::default();
    for worker in workers {
        // The panic's own message is on stderr already, from the panic hook.
        let Ok(worker) = worker else {
            bail!("a bench worker panicked (a bug in tcpdemo): the results are incomplete");
        };
        lag.behind = lag.behind.max(worker.behind);
        lag.unsent += worker.unsent;
    }
    Ok(lag)
}

/// What `watch` saw.
struct Watched {
    intervals: Vec<Interval>,
    /// The end of the last interval taken.
    last: Instant,
    /// When the run ended: when the last worker finished, after the deadline or a stop.
    ended: Instant,
    /// bench's CPU time when measuring began, after the warm-up.
    cpu_at_start: Option<Duration>,
    /// Connections open when the warm-up ended, with a warm-up.
    open_after_warmup: Option<u64>,
}

/// While the workers run: intervals as they end, and a progress line on a terminal.
fn watch<T>(
    options: &Options,
    run: &Run,
    workers: &[thread::ScopedJoinHandle<'_, T>],
    cpu_at_start: Option<Duration>,
    on_interval: &mut dyn FnMut(&Interval),
) -> Watched {
    let every = options
        .interval
        .unwrap_or((options.duration / 20).clamp(PLOT_INTERVAL.0, PLOT_INTERVAL.1));
    let measure_from = run.deadline - options.duration;
    let mut progress = ProgressLine::new(options, run);
    let mut watched = Watched {
        intervals: Vec::new(),
        last: measure_from,
        // Set once the workers have finished.
        ended: measure_from,
        cpu_at_start,
        open_after_warmup: None,
    };
    let mut next = measure_from + every;
    let mut warmed_up = options.warmup.is_zero();
    while !workers.iter().all(|h| h.is_finished()) {
        let mut wake = next.min(run.deadline).min(progress.due());
        if !warmed_up {
            wake = wake.min(measure_from);
        }
        let now = Instant::now();
        if wake > now {
            thread::sleep((wake - now).min(Duration::from_millis(50)));
        }
        let now = Instant::now();
        if !warmed_up && now >= measure_from {
            warmed_up = true;
            watched.cpu_at_start = platform::cpu_time();
            watched.open_after_warmup = Some(run.progress.open.load(Ordering::Relaxed));
        }
        // The last interval is taken once the workers are done (`finish`), so that what
        // completes after the deadline (a reply in flight, an open loop catching up) is in one.
        if run.stop.load(Ordering::Relaxed) || now >= run.deadline {
            break;
        }
        if now >= next {
            let stats = run.recording.take_interval();
            let interval = Interval::of(
                &stats,
                now - measure_from,
                (now - watched.last).as_secs_f64(),
            );
            if options.interval.is_some() {
                on_interval(&interval);
            }
            watched.intervals.push(interval);
            watched.last = now;
            next += every;
        }
        progress.draw(now, run);
    }
    progress.clear();
    watched
}

/// The line on a terminal that shows a run going on, once a second, where no `--interval`
/// lines do.
struct ProgressLine {
    /// When it is next due; `None` where it is not drawn.
    next: Option<Instant>,
}

impl ProgressLine {
    fn new(options: &Options, run: &Run) -> ProgressLine {
        let drawn = options.interval.is_none() && io::stderr().is_terminal();
        ProgressLine {
            next: drawn.then(|| run.start + Duration::from_secs(1)),
        }
    }

    /// When it wants drawing; far off where it is not drawn (a past time would spin).
    fn due(&self) -> Instant {
        self.next
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    fn draw(&mut self, now: Instant, run: &Run) {
        let Some(next) = self.next.filter(|&next| now >= next) else {
            return;
        };
        let _ = write!(
            io::stderr(),
            "\r{:5.1}s  {:>12} ops  {:>10.1} MiB received",
            (now - run.start).as_secs_f64(),
            run.progress.operations.load(Ordering::Relaxed),
            run.progress.received.load(Ordering::Relaxed) as f64 / MIB
        );
        self.next = Some(next + Duration::from_secs(1));
    }

    fn clear(&self) {
        if self.next.is_some() {
            let _ = write!(io::stderr(), "\r{:60}\r", "");
        }
    }
}

/// The last interval, from the last one taken to the end of the run, with everything the
/// workers recorded until they finished.
fn finish(
    options: &Options,
    run: &Run,
    watched: &mut Watched,
    on_interval: &mut dyn FnMut(&Interval),
) {
    let measure_from = run.deadline - options.duration;
    let stats = run.recording.take_interval();
    if watched.ended <= watched.last && stats.operations == 0 && stats.errors() == 0 {
        return;
    }
    let seconds = (watched.ended.max(watched.last) - watched.last).as_secs_f64();
    let interval = Interval::of(&stats, watched.ended - measure_from, seconds);
    if options.interval.is_some() {
        on_interval(&interval);
    }
    watched.intervals.push(interval);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_panicked_fails_the_run() {
        let ok = |unsent| {
            Ok(Lag {
                behind: Duration::from_millis(unsent),
                unsent,
            })
        };
        let lag = combine(vec![ok(3), ok(4)]).unwrap();
        assert_eq!((lag.unsent, lag.behind), (7, Duration::from_millis(4)));
        let panicked = std::thread::spawn(|| -> Lag { panic!("boom") }).join();
        let error = combine(vec![ok(1), panicked]).unwrap_err();
        assert!(error.to_string().contains("panicked"), "{error}");
    }
}
