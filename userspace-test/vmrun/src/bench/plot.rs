//! The SVG charts of the results.

use super::MIB;
use super::stats::{Set, Stats};
use super::table::case_bytes;
use anyhow::Result;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// A log-log line chart of a mapping metric's medians against the size,
/// one line per contender.
pub(super) fn plot_by_size(sets: &[Set], metric: &str, title: &str, path: &Path) -> Result<()> {
    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for s in sets
        .iter()
        .filter(|s| s.bench == "mapping" && s.metric == metric)
    {
        if let (Some(b), Some(st)) = (case_bytes(&s.case), Stats::of(&s.samples)) {
            series
                .entry(&s.contender)
                .or_default()
                .push((b as f64 / MIB as f64, st.median / 1e3));
        }
    }
    if series.is_empty() {
        return Ok(());
    }
    let pts = || series.values().flatten();
    let (x0, x1) = pts().fold((f64::MAX, 0f64), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (y0, y1) = pts().fold((f64::MAX, 0f64), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x0 / 1.5..x1 * 1.5).log_scale(),
            (y0 / 1.5..y1 * 1.5).log_scale(),
        )
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("mapping size (MiB)")
        .y_desc("median (µs)")
        .draw()
        .map_err(drawing)?;
    for (i, (name, mut pts)) in series.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(drawing)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(drawing)?;
    }
    finish(chart, &root, SeriesLabelPosition::UpperLeft)
}

/// A bar chart of the doorbell latency percentiles, per contender.
pub(super) fn plot_latency(sets: &[Set], path: &Path) -> Result<()> {
    let metrics = ["p50", "p99", "p99.9"];
    let mut contenders: Vec<&str> = Vec::new();
    let mut bars = Vec::new();
    for s in sets
        .iter()
        .filter(|s| s.bench == "doorbell" && s.unit == "ns")
    {
        let Some(mi) = metrics.iter().position(|m| *m == s.metric) else {
            continue;
        };
        let ci = match contenders.iter().position(|c| *c == s.contender) {
            Some(i) => i,
            None => {
                contenders.push(&s.contender);
                contenders.len() - 1
            }
        };
        if let Some(st) = Stats::of(&s.samples) {
            bars.push((ci, mi, st.median / 1e3));
        }
    }
    if bars.is_empty() {
        return Ok(());
    }
    let ymax = bars.iter().map(|b| b.2).fold(0.0, f64::max) * 1.15;
    let root = canvas(path)?;
    let n = contenders.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ring-to-wake latency (half a round trip), median over rounds",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, 0.0..ymax)
        .map_err(drawing)?;
    let names = contenders.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(contenders.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.26 {
                names.get(i).map(|s| s.to_string()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("µs")
        .draw()
        .map_err(drawing)?;
    for (mi, m) in metrics.iter().enumerate() {
        let color = Palette99::pick(mi).to_rgba();
        chart
            .draw_series(bars.iter().filter(|b| b.1 == mi).map(|&(ci, _, v)| {
                let x = ci as f64 + 0.1 + 0.27 * mi as f64;
                Rectangle::new([(x, 0.0), (x + 0.25, v)], color.filled())
            }))
            .map_err(drawing)?
            .label(*m)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    finish(chart, &root, SeriesLabelPosition::UpperRight)
}

/// A plotters error, as an error of ours.
fn drawing(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// A blank chart-sized SVG drawing at `path`.
fn canvas(path: &Path) -> Result<DrawingArea<SVGBackend<'_>, Shift>> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    Ok(root)
}

/// Draws the legend of `chart` at `position` and writes the drawing.
fn finish<'a, CT: CoordTranslate>(
    mut chart: ChartContext<'a, SVGBackend<'a>, CT>,
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(drawing)?;
    root.present().map_err(drawing)?;
    Ok(())
}
