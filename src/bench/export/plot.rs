//! `--plot FILE.svg`: what a person would rather look at than read. Above, the latency by
//! percentile, the percentile axis scaled as HdrHistogram plots it (each step to the right a
//! tenth of what is left: 90%, 99%, 99.9%, 99.99%); below, latency over time, per interval.
//! Both latency axes are logarithmic, as HdrHistogram's plotter draws them, so one long
//! outlier does not flatten everything else onto the zero line. Drawn with plotters' SVG
//! backend, which needs no fonts: browsers render the text.

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::super::report::Interval;

/// Right edge of the percentile axis: 99.99%.
const NINES: f64 = 4.0;

/// `x` nines on the log axis as a percentile: 0 → 0%, 2 → 99%.
fn percentile_at(x: f64) -> f64 {
    100.0 * (1.0 - 10f64.powf(-x))
}

/// One format for every percentile: as many decimals as it needs (`90%`, `99.9%`).
fn label(x: &f64) -> String {
    let p = format!("{:.2}", percentile_at(*x));
    format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
}

/// Milliseconds as the latency axis shows them: `0.05`, `1`, `250`.
fn millis_label(ms: &f64) -> String {
    let text = format!("{ms:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub fn svg(title: &str, latency: &Histogram<u64>, intervals: &[Interval]) -> Result<String> {
    let mut svg = String::new();
    draw(&mut svg, title, latency, intervals).map_err(|e| anyhow!("cannot draw the plot: {e}"))?;
    Ok(svg)
}

fn draw(
    svg: &mut String,
    title: &str,
    latency: &Histogram<u64>,
    intervals: &[Interval],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (1000, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let (upper, lower) = root.split_vertically(430);
    by_percentile(&upper, latency)?;
    over_time(&lower, intervals)?;
    root.present()?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// The percentile spectrum, in milliseconds.
fn by_percentile(area: &Area, latency: &Histogram<u64>) -> Result<(), Box<dyn std::error::Error>> {
    let points: Vec<(f64, f64)> = latency
        .iter_quantiles(5)
        .map(|step| {
            let q = step.quantile_iterated_to().min(1.0 - 10f64.powf(-NINES));
            (-(1.0 - q).log10(), step.value_iterated_to() as f64 / 1e6)
        })
        .collect();
    let (bottom, top) = log_range(points.iter().map(|p| p.1));
    let mut chart = frame(area, "latency by percentile")
        .build_cartesian_2d(0f64..NINES, (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&label)
        .y_label_formatter(&millis_label)
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .draw()?;
    chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?;
    Ok(())
}

/// p50, p99 and max of each interval, max first so that p50 is drawn on top.
fn over_time(area: &Area, intervals: &[Interval]) -> Result<(), Box<dyn std::error::Error>> {
    let end = intervals
        .last()
        .map_or(1.0, |i| i.end.as_secs_f64())
        .max(0.001);
    let (bottom, top) = log_range(
        intervals
            .iter()
            .filter_map(|i| i.latency)
            .flat_map(|l| l.map(|ns| ns as f64 / 1e6)),
    );
    let mut chart = frame(area, "latency over time")
        .build_cartesian_2d(0f64..end, (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .y_label_formatter(&millis_label)
        .x_desc("time since measuring began (s)")
        .y_desc("latency (ms, log scale)")
        .draw()?;
    for (index, name, color) in [(2, "max", RED), (1, "p99", BLUE), (0, "p50", GREEN)] {
        let series = intervals.iter().filter_map(|i| {
            i.latency
                .map(|l| (i.end.as_secs_f64(), l[index] as f64 / 1e6))
        });
        chart
            .draw_series(LineSeries::new(series, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// One chart's frame: its caption, margins and room for the axis labels.
fn frame<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, plotters::coord::Shift>,
    caption: &'b str,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .margin_right(45)
        .x_label_area_size(45)
        .y_label_area_size(70);
    builder
}

/// A log latency axis around `values` (ms): from a little below the least to a little above
/// the largest, never zero.
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (least, most) = values.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let least = if least.is_finite() { least } else { 0.001 };
    let bottom = (least * 0.8).max(0.000_1);
    (bottom, most.max(bottom * 10.0) * 1.25)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_axis_reads_as_nines() {
        assert_eq!(label(&0.0), "0%");
        assert_eq!(label(&1.0), "90%");
        assert_eq!(label(&2.0), "99%");
        assert_eq!(label(&3.0), "99.9%");
        assert_eq!(label(&4.0), "99.99%");
        assert_eq!(millis_label(&0.05), "0.05");
        assert_eq!(millis_label(&250.0), "250");
    }
}
