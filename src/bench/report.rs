//! What a run measured, and the table a person reads.

use std::fmt::Write as _;
use std::time::Duration;

use super::Options;
use super::hold::Held;
use super::modes::Lag;
use super::recording::{Failure, Stats};
use crate::cli::BenchMode;
use crate::numbers::thousands;

pub const MIB: f64 = 1024.0 * 1024.0;

/// A `max` this many times p99.9 (and at least a millisecond) means one long wait that a closed
/// loop timed once, though it held up many requests.
const HIDDEN_STALL: u64 = 10;

/// One interval's figures, for `--interval` and the latency-over-time plot.
#[derive(Debug, Clone)]
pub struct Interval {
    /// The interval's end, from when measuring began.
    pub end: Duration,
    pub seconds: f64,
    pub operations: u64,
    pub errors: u64,
    /// p50, p99 and max latency in ns; `None` without operations.
    pub latency: Option<[u64; 3]>,
}

impl Interval {
    pub fn of(stats: &Stats, end: Duration, seconds: f64) -> Interval {
        let h = &stats.latency;
        Interval {
            end,
            seconds,
            operations: stats.operations,
            errors: stats.errors(),
            latency: (!h.is_empty())
                .then(|| [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()]),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.operations as f64 / self.seconds.max(f64::EPSILON)
    }

    /// One line of `--interval` output.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:7.1}s  {:>10} ops/s",
            self.end.as_secs_f64(),
            thousands(self.per_second().round() as u64)
        );
        if let Some([p50, p99, max]) = self.latency {
            let _ = write!(
                line,
                "  p50 {}  p99 {}  max {}",
                micros(p50 as f64 / 1e3),
                micros(p99 as f64 / 1e3),
                micros(max as f64 / 1e3)
            );
        }
        let _ = write!(line, "  errors {}", self.errors);
        line
    }
}

/// The pace of an open loop: what was asked for and what the server allowed.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub target: f64,
    /// How far behind its schedule the furthest-behind worker ended, and what all of them left
    /// unsent.
    pub lag: Lag,
}

/// How many connections were open at once.
#[derive(Debug, Clone, Copy)]
pub struct Open {
    pub peak: u64,
    /// When the warm-up ended, if there was one.
    pub after_warmup: Option<u64>,
}

pub struct Report {
    pub elapsed: Duration,
    pub total: Stats,
    pub intervals: Vec<Interval>,
    pub pace: Option<Pace>,
    pub open: Open,
    /// bench's own CPU time over the run, where the system tells.
    pub cpu: Option<Duration>,
    /// Ctrl-C ended the run early.
    pub interrupted: bool,
    /// `--mode hold`: the opening, and what was open at the end.
    pub held: Option<Held>,
}

/// (name in the table and JSON, quantile); `None` is the mean, apart.
pub const QUANTILES: [(&str, f64); 7] = [
    ("min", 0.0),
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
    ("max", 1.0),
];

/// A histogram's `QUANTILES`, then its mean and standard deviation, in µs; empty when it is.
pub fn quantiles_micros(h: &hdrhistogram::Histogram<u64>) -> Vec<(&'static str, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(&str, f64)> = QUANTILES
        .iter()
        .map(|&(name, q)| {
            let nanos = match q {
                0.0 => h.min(),
                1.0 => h.max(),
                q => h.value_at_quantile(q),
            };
            (name, nanos as f64 / 1e3)
        })
        .collect();
    out.push(("mean", h.mean() / 1e3));
    out.push(("stdev", h.stdev() / 1e3));
    out
}

impl Report {
    pub fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The latency (or, with `service`, the service time) at each of `QUANTILES`, then the mean
    /// and the standard deviation, in µs; empty without operations.
    pub fn latency_micros(&self, service: bool) -> Vec<(&'static str, f64)> {
        quantiles_micros(if service {
            &self.total.service
        } else {
            &self.total.latency
        })
    }

    /// TLS: handshakes/s, the share that resumed, and the handshakes' latency.
    fn handshakes_cell(&self) -> Option<String> {
        let t = &self.total;
        if t.handshakes == 0 {
            return None;
        }
        let latency: Vec<String> = quantiles_micros(&t.handshake)
            .into_iter()
            .filter(|(name, _)| ["p50", "p99", "max"].contains(name))
            .map(|(name, us)| format!("{name} {}", micros(us)))
            .collect();
        Some(format!(
            "{} ({:.0}/s), {} resumed ({:.0}%); took {}",
            thousands(t.handshakes),
            self.per_second(t.handshakes),
            thousands(t.resumed),
            t.resumed as f64 * 100.0 / t.handshakes as f64,
            latency.join("  ")
        ))
    }

    /// UDP: what happened to the datagrams, their jitter, and the goodput (what came back in
    /// time), in bits/s too, as iperf3 states it.
    fn datagram_rows(&self) -> Vec<(&'static str, String)> {
        let d = &self.total.datagrams;
        let received = self.per_second(self.total.received);
        vec![
            (
                "delivery",
                format!(
                    "sent {}, echoed {}, lost {} ({:.2}%), late {}, duplicated {}, reordered {}",
                    thousands(d.sent),
                    thousands(d.echoed),
                    thousands(d.lost),
                    d.lost_percent(),
                    thousands(d.late),
                    thousands(d.duplicated),
                    thousands(d.reordered)
                ),
            ),
            (
                "jitter",
                format!(
                    "{} (RFC 3550, of the round trip; the mean of {} {})",
                    micros(d.jitter_micros()),
                    thousands(d.flows),
                    if d.flows == 1 { "flow" } else { "flows" }
                ),
            ),
            (
                "goodput",
                format!(
                    "{:.1} MiB/s each way ({:.1} Mbit/s)",
                    received / MIB,
                    received * 8.0 / 1e6
                ),
            ),
        ]
    }

    /// bench's own CPU time per operation, in µs.
    pub fn cpu_per_operation(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.total.operations > 0).then(|| cpu.as_secs_f64() * 1e6 / self.total.operations as f64)
    }

    /// Notes on what the figures mean: the loop, a hidden stall, a rate not held.
    pub fn notes(&self, options: &Options) -> Vec<String> {
        let mut notes = Vec::new();
        if options.mode == BenchMode::Stream {
            return notes;
        }
        match self.pace {
            // Hold mode's bytes go on a schedule: no closed loop.
            None if options.mode == BenchMode::Hold => {}
            None => {
                notes.push(
                    "closed loop: each request waits for the previous reply, so latency leaves \
                     out the time requests would have waited while the server stalled; use \
                     --rate for latency under a fixed load"
                        .into(),
                );
                let h = &self.total.latency;
                let p999 = h.value_at_quantile(0.999);
                if !h.is_empty() && h.max() >= 1_000_000 && h.max() > HIDDEN_STALL * p999 {
                    notes.push(format!(
                        "max is {}x p99.9: a stall was probably hidden; --rate would count it \
                         for every request it held up",
                        h.max() / p999.max(1)
                    ));
                }
            }
            Some(pace) => {
                let achieved = self.per_second(self.total.operations);
                if pace.lag.unsent > 0 {
                    notes.push(format!(
                        "{} {} due but not sent: bench fell behind its schedule ({}/s achieved \
                         of {}/s asked); the server, or bench itself, did not keep up",
                        thousands(pace.lag.unsent),
                        operation_name(options.mode),
                        thousands(achieved.round() as u64),
                        thousands(pace.target.round() as u64),
                    ));
                } else if pace.lag.behind > Duration::from_millis(10) {
                    notes.push(format!(
                        "the run ended {:.3?} behind its schedule",
                        pace.lag.behind
                    ));
                }
            }
        }
        if let Some(short) = self.connections_short(options) {
            notes.push(short);
        }
        notes
    }

    /// What to say when fewer connections were open at once than `--connections` asked for.
    pub fn connections_short(&self, options: &Options) -> Option<String> {
        let asked = u64::from(options.connections);
        if options.mode == BenchMode::Connect || options.udp.is_some() || self.open.peak >= asked {
            return None;
        }
        Some(format!(
            "only {} of {} connections were open at once: the rest were still being opened \
             (or failed); the figures are for fewer connections than asked (--warmup gives \
             them time to open)",
            thousands(self.open.peak),
            thousands(asked)
        ))
    }

    /// The report a person reads: a heading, then a row a figure, then the notes.
    pub fn to_table(&self, options: &Options) -> String {
        let mut rows = vec![self.operations_row(options)];
        if let Some(held) = self.held {
            rows.push((
                "opening",
                format!(
                    "{} connections in {:.2}s ({}/s)",
                    thousands(held.opened),
                    held.opening.as_secs_f64(),
                    thousands(
                        (held.opened as f64 / held.opening.as_secs_f64().max(1e-9)).round() as u64
                    )
                ),
            ));
            rows.push((
                "open",
                format!(
                    "{} at most, {} at the end",
                    thousands(self.open.peak),
                    thousands(held.at_end)
                ),
            ));
        } else if options.mode != BenchMode::Connect && options.udp.is_none() {
            let mut open = format!("{} at most", thousands(self.open.peak));
            if let Some(n) = self.open.after_warmup {
                open += &format!(", {} when the warm-up ended", thousands(n));
            }
            rows.push(("open", open));
        }
        if options.udp.is_some() {
            rows.extend(self.datagram_rows());
        } else {
            rows.push((
                "throughput",
                format!(
                    "sent {:.1} MiB/s, received {:.1} MiB/s",
                    self.per_second(self.total.sent) / MIB,
                    self.per_second(self.total.received) / MIB
                ),
            ));
        }
        for (name, service) in [("latency", false), ("service time", true)] {
            let cells: Vec<String> = self
                .latency_micros(service)
                .into_iter()
                .map(|(name, us)| format!("{name} {}", micros(us)))
                .collect();
            if !cells.is_empty() {
                rows.push((name, cells.join("  ")));
            }
        }
        if let Some(cell) = self.handshakes_cell() {
            rows.push(("handshakes", cell));
        }
        rows.push(("errors", self.errors_cell()));
        if let Some(us) = self.cpu_per_operation() {
            let share = self.cpu.unwrap_or_default().as_secs_f64() / self.elapsed.as_secs_f64();
            let per = match operations_name(options) {
                "echoes" => "echo",
                plural => plural.trim_end_matches('s'),
            };
            let cell = format!(
                "{} per {per} ({:.0}% of one core)",
                micros(us),
                share * 100.0
            );
            rows.push(("bench CPU", cell));
        }
        let mut out = self.heading(options);
        for (name, cell) in rows {
            let _ = writeln!(out, "  {name:<12} {cell}");
        }
        for note in self.notes(options) {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }

    /// What was run, for a picture's title: mode, connections, size and the loop.
    pub fn title(&self, options: &Options) -> String {
        let pace = match self.pace {
            Some(pace) => format!("open loop at {}/s", thousands(pace.target as u64)),
            None => "closed loop".into(),
        };
        format!("tcpdemo bench --mode {}, {pace}", what_ran(options))
    }

    /// What was run, against what, for how long.
    fn heading(&self, options: &Options) -> String {
        let mut out = format!("{}, {:.1}s", what_ran(options), self.elapsed.as_secs_f64());
        if let Some(pace) = self.pace {
            let _ = write!(out, ", open loop at {}/s", thousands(pace.target as u64));
        }
        if self.interrupted {
            out += " (interrupted)";
        }
        out.push('\n');
        out
    }

    fn operations_row(&self, options: &Options) -> (&'static str, String) {
        let cell = format!(
            "{} ({}/s)",
            thousands(self.total.operations),
            thousands(self.per_second(self.total.operations).round() as u64)
        );
        (operations_name(options), cell)
    }

    /// The count of errors, then each kind that occurred.
    fn errors_cell(&self) -> String {
        let mut cell = thousands(self.total.errors());
        let kinds: Vec<String> = Failure::ALL
            .iter()
            .filter(|&&f| self.total.errors[f as usize] > 0)
            .map(|&f| format!("{} {}", f.name(), thousands(self.total.errors[f as usize])))
            .collect();
        if !kinds.is_empty() {
            cell += &format!(" ({})", kinds.join(", "));
        }
        cell
    }
}

/// `rr against localhost:1234: 50 connections, 64 bytes`; over UDP, `50 flows`.
fn what_ran(options: &Options) -> String {
    let (over, connections) = match (options.udp, options.connections) {
        (Some(_), 1) => (" over UDP", "flow"),
        (Some(_), _) => (" over UDP", "flows"),
        (None, n) => ("", connections_name(options.mode, n)),
    };
    let what = match options.mode {
        BenchMode::Hold => format!(
            "1 byte each every {:?}",
            options.interval.unwrap_or(Duration::from_secs(1))
        ),
        _ => format!("{} bytes", thousands(options.size as u64)),
    };
    format!(
        "{}{over} against {}:{}: {} {connections}, {what}",
        mode_name(options.mode),
        options.host,
        options.port,
        thousands(u64::from(options.connections)),
    )
}

/// What one operation of this run is, in the plural: over UDP, a request or a datagram.
fn operations_name(options: &Options) -> &'static str {
    match (options.udp, options.mode) {
        (Some(_), BenchMode::Stream) => "datagrams",
        _ => operation_name(options.mode),
    }
}

/// µs below a millisecond, ms above, plain ASCII.
pub fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}us")
    } else {
        format!("{:.2}ms", us / 1000.0)
    }
}

/// What `-c` counts in `mode`: connections held open (rr, stream), or workers that each open
/// a connection per request (connect).
pub fn connections_name(mode: BenchMode, n: u32) -> &'static str {
    match (mode, n) {
        (BenchMode::Connect, 1) => "worker",
        (BenchMode::Connect, _) => "workers",
        (_, 1) => "connection",
        _ => "connections",
    }
}

/// What one operation of `mode` is, in the plural.
pub fn operation_name(mode: BenchMode) -> &'static str {
    match mode {
        BenchMode::Rr => "requests",
        BenchMode::Stream => "writes",
        BenchMode::Connect => "connections",
        BenchMode::Hold => "echoes",
    }
}

/// The mode as the command line spells it.
pub fn mode_name(mode: BenchMode) -> String {
    use clap::ValueEnum;
    mode.to_possible_value()
        .map_or_else(|| format!("{mode:?}"), |v| v.get_name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::BenchMode;

    fn options(mode: BenchMode, connections: u32) -> Options {
        Options {
            host: "localhost".into(),
            port: 1234,
            family: crate::addr::Family::Any,
            mode,
            connections,
            size: 64,
            duration: Duration::from_secs(1),
            echo: crate::echo::Echo::Uppercase,
            json: false,
            rate: None,
            interval: None,
            warmup: Duration::ZERO,
            hist: None,
            plot: None,
            tls: None,
            udp: None,
        }
    }

    fn report(peak: u64) -> Report {
        Report {
            elapsed: Duration::from_secs(1),
            total: Stats::new(),
            intervals: Vec::new(),
            pace: None,
            open: Open {
                peak,
                after_warmup: None,
            },
            cpu: None,
            interrupted: false,
            held: None,
        }
    }

    #[test]
    fn fewer_connections_open_than_asked_is_said() {
        let short = report(631).connections_short(&options(BenchMode::Stream, 5000));
        assert!(
            short
                .as_deref()
                .is_some_and(|s| s.starts_with("only 631 of 5,000 connections")),
            "{short:?}"
        );
        let notes = report(631).notes(&options(BenchMode::Rr, 5000));
        assert!(notes.iter().any(|n| n.starts_with("only 631")), "{notes:?}");
        assert_eq!(
            report(50).connections_short(&options(BenchMode::Rr, 50)),
            None
        );
        // connect mode's -c counts workers, whose connections come and go.
        assert_eq!(
            report(1).connections_short(&options(BenchMode::Connect, 50)),
            None
        );
    }
}
