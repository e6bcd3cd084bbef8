//! What a run measured, and the table a person reads.

use std::fmt::Write as _;
use std::time::Duration;

use super::Options;
use super::recording::{Failure, Record};
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
    pub fn of(record: &Record, end: Duration, seconds: f64) -> Interval {
        let h = &record.latency;
        Interval {
            end,
            seconds,
            operations: record.operations,
            errors: record.errors(),
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
    /// How far behind its schedule the furthest-behind worker ended.
    pub behind: Duration,
}

pub struct Report {
    pub elapsed: Duration,
    pub total: Record,
    pub intervals: Vec<Interval>,
    pub pace: Option<Pace>,
    /// bench's own CPU time over the run, where the system tells.
    pub cpu: Option<Duration>,
    /// Ctrl-C ended the run early.
    pub interrupted: bool,
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

impl Report {
    pub fn per_second(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The latency (or, with `service`, the service time) at each of `QUANTILES`, then the mean
    /// and the standard deviation, in µs; empty without operations.
    pub fn latency_micros(&self, service: bool) -> Vec<(&'static str, f64)> {
        let h = if service {
            &self.total.service
        } else {
            &self.total.latency
        };
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
                if pace.behind > Duration::from_millis(10) || achieved < pace.target * 0.99 {
                    notes.push(format!(
                        "the server did not keep up: {}/s achieved of {}/s asked, and the run \
                         ended {:.3?} behind its schedule",
                        thousands(achieved.round() as u64),
                        thousands(pace.target.round() as u64),
                        pace.behind
                    ));
                }
            }
        }
        notes
    }

    pub fn to_table(&self, options: &Options) -> String {
        let mut out = format!(
            "{} against {}:{}: {} connection{}, {} bytes, {:.1}s",
            mode_name(options.mode),
            options.host,
            options.port,
            options.connections,
            if options.connections == 1 { "" } else { "s" },
            options.size,
            self.elapsed.as_secs_f64()
        );
        if let Some(pace) = self.pace {
            let _ = write!(out, ", open loop at {}/s", thousands(pace.target as u64));
        }
        if self.interrupted {
            out += " (interrupted)";
        }
        out.push('\n');
        let what = match options.mode {
            BenchMode::Rr => "requests",
            BenchMode::Stream => "writes",
            BenchMode::Connect => "connections",
        };
        let _ = writeln!(
            out,
            "  {what:<12} {} ({:.0}/s)",
            self.total.operations,
            self.per_second(self.total.operations)
        );
        let _ = writeln!(
            out,
            "  {:<12} sent {:.1} MiB/s, received {:.1} MiB/s",
            "throughput",
            self.per_second(self.total.sent) / MIB,
            self.per_second(self.total.received) / MIB
        );
        for (row, service) in [("latency", false), ("service time", true)] {
            let cells: Vec<String> = self
                .latency_micros(service)
                .into_iter()
                .map(|(name, us)| format!("{name} {}", micros(us)))
                .collect();
            if !cells.is_empty() {
                let _ = writeln!(out, "  {row:<12} {}", cells.join("  "));
            }
        }
        let _ = write!(out, "  {:<12} {}", "errors", self.total.errors());
        let kinds: Vec<String> = Failure::ALL
            .iter()
            .filter(|&&f| self.total.errors[f as usize] > 0)
            .map(|&f| format!("{} {}", f.name(), self.total.errors[f as usize]))
            .collect();
        if !kinds.is_empty() {
            let _ = write!(out, " ({})", kinds.join(", "));
        }
        out.push('\n');
        if let Some(us) = self.cpu_per_operation() {
            let share = self.cpu.unwrap_or_default().as_secs_f64() / self.elapsed.as_secs_f64();
            let _ = writeln!(
                out,
                "  {:<12} {} per {} ({:.0}% of one core)",
                "bench CPU",
                micros(us),
                what.trim_end_matches('s'),
                share * 100.0
            );
        }
        for note in self.notes(options) {
            let _ = writeln!(out, "  note: {note}");
        }
        out
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

pub fn mode_name(mode: BenchMode) -> &'static str {
    match mode {
        BenchMode::Rr => "rr",
        BenchMode::Stream => "stream",
        BenchMode::Connect => "connect",
    }
}
