//! The rollout timeline as an SVG: successful and failed calls per second in 100 ms buckets, with
//! every restart marked (SIGTERM sent, node exited, node ready again).

use std::path::Path;

use plotters::prelude::*;

use super::RestartRecord;
use crate::cli::load::CallRecord;

const BUCKET_US: u64 = 100_000;

pub fn write(
    path: &Path,
    calls: &[CallRecord],
    restarts: &[RestartRecord],
    title: &str,
) -> Result<(), String> {
    let end_us = calls
        .iter()
        .map(|c| c.start_us + c.latency_us)
        .max()
        .unwrap_or(0);
    let buckets = (end_us / BUCKET_US + 1) as usize;
    let mut ok = vec![0u64; buckets];
    let mut failed = vec![0u64; buckets];
    for c in calls {
        let b = ((c.start_us + c.latency_us) / BUCKET_US) as usize;
        if let Some(slot) = if c.result.is_ok() {
            ok.get_mut(b)
        } else {
            failed.get_mut(b)
        } {
            *slot += 1;
        }
    }
    let per_s = |n: u64| n * (1_000_000 / BUCKET_US);
    let y_max = ok
        .iter()
        .chain(&failed)
        .map(|&n| per_s(n))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.15;
    let x_max = (end_us as f64 / 1e6).max(0.1);

    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("time since load started (s)")
        .y_desc("calls per second (100 ms buckets)")
        .draw()
        .map_err(|e| e.to_string())?;

    let marker = |chart: &mut ChartContext<'_, SVGBackend<'_>, _>,
                  xs: Vec<f64>,
                  color: RGBColor,
                  label: &str| {
        let mut first = true;
        for x in xs {
            let series = chart
                .draw_series(LineSeries::new(
                    vec![(x, 0.0), (x, y_max)],
                    color.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
            if std::mem::take(&mut first) {
                series.label(label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
        }
        Ok::<(), String>(())
    };
    marker(
        &mut chart,
        restarts.iter().map(|r| r.term_s).collect(),
        RGBColor(200, 0, 0),
        "SIGTERM/SIGKILL sent to a node",
    )?;
    marker(
        &mut chart,
        restarts.iter().map(|r| r.exit_s).collect(),
        RGBColor(240, 150, 0),
        "node process exited",
    )?;
    marker(
        &mut chart,
        restarts.iter().map(|r| r.ready_s).collect(),
        RGBColor(0, 150, 0),
        "client sees the node ready again",
    )?;

    // Above each restart, how many calls failed until the next one: the number a reader wants.
    for (k, r) in restarts.iter().enumerate() {
        let until = restarts.get(k + 1).map_or(f64::MAX, |n| n.term_s);
        let failed = calls
            .iter()
            .filter(|c| c.result.is_err())
            .map(|c| (c.start_us + c.latency_us) as f64 / 1e6)
            .filter(|&t| t >= r.term_s && t < until)
            .count();
        let color = if failed == 0 {
            RGBColor(0, 120, 0)
        } else {
            RGBColor(200, 0, 0)
        };
        let y = y_max * if k % 2 == 0 { 0.95 } else { 0.89 };
        let label = format!("node {}: {failed} failed", r.node);
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (r.term_s, y),
                ("sans-serif", 13).into_font().color(&color),
            )))
            .map_err(|e| e.to_string())?;
    }

    let line = |v: &[u64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, &n)| ((i as f64 + 0.5) * BUCKET_US as f64 / 1e6, per_s(n) as f64))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(line(&ok), BLUE.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("successful calls/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(line(&failed), RED.stroke_width(3)))
        .map_err(|e| e.to_string())?
        .label("failed calls/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(3)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
