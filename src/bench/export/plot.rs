//! `--plot FILE.svg`: what a person would rather look at than read. Above, the latency by
//! percentile, the percentile axis scaled as HdrHistogram plots it (each step to the right a
//! tenth of what is left: 90%, 99%, 99.9%, 99.99%); below, latency over time, per interval.
//! Drawn with plotters' SVG backend, which needs no fonts: browsers render the text.

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

fn label(x: &f64) -> String {
    let p = percentile_at(*x);
    if p < 99.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.2}%")
    }
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
    let root = root.titled(title, ("sans-serif", 22))?;
    let (upper, lower) = root.split_vertically(430);

    // Percentile spectrum, in milliseconds.
    let points: Vec<(f64, f64)> = latency
        .iter_quantiles(5)
        .map(|step| {
            let q = step.quantile_iterated_to().min(1.0 - 10f64.powf(-NINES));
            (-(1.0 - q).log10(), step.value_iterated_to() as f64 / 1e6)
        })
        .collect();
    let top = headroom(points.iter().map(|p| p.1));
    let mut chart =
        frame(&upper, "latency by percentile").build_cartesian_2d(0f64..NINES, 0f64..top)?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&label)
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()?;
    chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?;

    // Latency over time.
    let end = intervals
        .last()
        .map_or(1.0, |i| i.end.as_secs_f64())
        .max(0.001);
    let top = headroom(
        intervals
            .iter()
            .filter_map(|i| i.latency.map(|l| l[2] as f64 / 1e6)),
    );
    let mut chart = frame(&lower, "latency over time").build_cartesian_2d(0f64..end, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("time since measuring began (s)")
        .y_desc("latency (ms)")
        .draw()?;
    for (index, name, color) in [(0, "p50", GREEN), (1, "p99", BLUE), (2, "max", RED)] {
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
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
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

/// The top of a latency axis: the largest value and a tenth more, never zero.
fn headroom(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, f64::max).max(0.001) * 1.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_axis_reads_as_nines() {
        assert_eq!(label(&0.0), "0%");
        assert_eq!(label(&1.0), "90%");
        assert_eq!(label(&3.0), "99.90%");
        assert_eq!(label(&4.0), "99.99%");
    }
}
