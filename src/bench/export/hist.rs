//! `--hist FILE`: the whole latency distribution in HdrHistogram's percentile-distribution text
//! format (as `outputPercentileDistribution` writes it, values in milliseconds), which
//! HdrHistogram's plotter and other tools read, so runs can be compared.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Rows per halving of the distance to 100%, as HdrHistogram's tools default to.
const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Our values are nanoseconds; the file's are milliseconds.
const NANOS_PER_MILLI: f64 = 1e6;

pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for step in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += step.count_since_last_iteration();
        let value = step.value_iterated_to() as f64 / NANOS_PER_MILLI;
        let q = step.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let sub_buckets = (2.0 * 10f64.powi(i32::from(h.sigfig())))
        .log2()
        .ceil()
        .exp2() as u64;
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / NANOS_PER_MILLI,
        h.stdev() / NANOS_PER_MILLI
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / NANOS_PER_MILLI,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_the_header_rows_and_footer_hdrhistogram_tools_read() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for i in 1..=1000u64 {
            h.record(i * 1_000).unwrap(); // 1 µs .. 1 ms
        }
        let text = percentile_distribution(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].split_whitespace().eq([
            "Value",
            "Percentile",
            "TotalCount",
            "1/(1-Percentile)"
        ]));
        assert_eq!(lines[1], "");
        let rows: Vec<Vec<f64>> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20);
        assert!(
            rows.windows(2)
                .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1])
        );
        let last = rows.last().unwrap();
        assert_eq!((last[1], last[2]), (1.0, 1000.0));
        assert!((last[0] - 1.0).abs() < 0.01, "max about 1 ms: {}", last[0]);
        assert!(text.contains("#[Mean    =        0.50"), "{text}");
        assert!(text.contains("Total count    =         1000]"));
    }
}
