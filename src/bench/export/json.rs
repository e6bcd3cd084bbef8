//! `--json`: one object per interval (JSON Lines), then the summary object as the last line.

use serde_json::{Map, Value, json};

use super::super::Options;
use super::super::recording::Failure;
use super::super::report::{Interval, MIB, Report, mode_name, quantiles_micros};

/// Latency figures keyed as JSON likes them: `p99_9`, not `p99.9`.
fn latency_object(figures: Vec<(&str, f64)>) -> Value {
    let map: Map<String, Value> = figures
        .into_iter()
        .map(|(name, us)| (name.replace('.', "_"), us.into()))
        .collect();
    Value::Object(map)
}

pub fn interval(interval: &Interval) -> Value {
    let latency = match interval.latency {
        Some([p50, p99, max]) => json!({
            "p50": p50 as f64 / 1e3,
            "p99": p99 as f64 / 1e3,
            "max": max as f64 / 1e3,
        }),
        None => json!({}),
    };
    json!({
        "type": "interval",
        "seconds": interval.end.as_secs_f64(),
        "operations": interval.operations,
        "operations_per_second": interval.per_second(),
        "latency_us": latency,
        "errors": interval.errors,
    })
}

pub fn summary(report: &Report, options: &Options) -> Value {
    let by_kind: Map<String, Value> = Failure::ALL
        .iter()
        .map(|&f| (f.name().to_string(), report.total.errors[f as usize].into()))
        .collect();
    let mut summary = json!({
        "type": "summary",
        "mode": mode_name(options.mode),
        "connections": options.connections,
        "size": options.size,
        "seconds": report.elapsed.as_secs_f64(),
        "loop": if report.pace.is_some() { "open" } else { "closed" },
        "operations": report.total.operations,
        "operations_per_second": report.per_second(report.total.operations),
        "sent_mib_per_second": report.per_second(report.total.sent) / MIB,
        "received_mib_per_second": report.per_second(report.total.received) / MIB,
        "latency_us": latency_object(report.latency_micros(false)),
        "errors": report.total.errors(),
        "errors_by_kind": by_kind,
        "first_error": report.total.first_error,
        "interrupted": report.interrupted,
        "connections_open": {
            "peak": report.open.peak,
            "after_warmup": report.open.after_warmup,
        },
        "bench_cpu_us_per_operation": report.cpu_per_operation(),
        "notes": report.notes(options),
    });
    let t = &report.total;
    if t.handshakes > 0 {
        summary["tls"] = json!({
            "handshakes": t.handshakes,
            "handshakes_per_second": report.per_second(t.handshakes),
            "resumed": t.resumed,
            "resumed_share": t.resumed as f64 / t.handshakes as f64,
            "handshake_us": latency_object(quantiles_micros(&t.handshake)),
        });
    }
    if let Some(held) = report.held {
        summary["hold"] = json!({
            "opened": held.opened,
            "opening_seconds": held.opening.as_secs_f64(),
            "open_at_end": held.at_end,
        });
    }
    if options.udp.is_some() {
        let d = &t.datagrams;
        summary["udp"] = json!({
            "sent": d.sent,
            "echoed": d.echoed,
            "lost": d.lost,
            "lost_percent": d.lost_percent(),
            "late": d.late,
            "duplicated": d.duplicated,
            "reordered": d.reordered,
            "jitter_us": d.jitter_micros(),
            "goodput_bits_per_second": report.per_second(t.received) * 8.0,
        });
    }
    if let Some(pace) = report.pace {
        summary["service_us"] = latency_object(report.latency_micros(true));
        summary["rate"] = json!({
            "target": pace.target,
            "achieved": report.per_second(report.total.operations),
            "behind_seconds": pace.lag.behind.as_secs_f64(),
            "due_not_sent": pace.lag.unsent,
        });
    }
    summary
}
