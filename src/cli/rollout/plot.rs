//! The rollout timeline: successful calls per second and, on a panel and axis of their own,
//! failed calls per second, in 100 ms buckets, with every restart marked (signal sent, process
//! exited, node ready again). Written as an SVG and rasterized to a PNG beside it.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::RestartRecord;
use crate::cli::record::CallRecord;

const BUCKET_US: u64 = 100_000;
const SIZE: (u32, u32) = (1280, 680);
/// Width of the legend column, right of the panels (so it never covers data).
const LEGEND_W: u32 = 260;

const OK: RGBColor = RGBColor(30, 90, 200);
const FAILED: RGBColor = RGBColor(210, 0, 0);
const SIGNAL: RGBColor = RGBColor(200, 0, 120);
const EXITED: RGBColor = RGBColor(0, 0, 0);
const READY: RGBColor = RGBColor(0, 150, 0);
const WINDOW: RGBColor = RGBColor(255, 200, 120);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// Draws one legend row's marker at (x, y).
type Mark<'f> = &'f dyn Fn(i32, i32, &Area<'_>) -> Result<(), String>;

/// Draws the timeline to `path` (an SVG) and to the same path with `.png`; returns the PNG's.
pub fn write(
    path: &Path,
    calls: &[CallRecord],
    restarts: &[RestartRecord],
    title: &str,
) -> Result<PathBuf, String> {
    let (ok, failed) = buckets(calls);
    let x_max = (ok.len() as f64 * BUCKET_US as f64 / 1e6).max(0.1);
    {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
        let (panels, legend) = root.split_horizontally(SIZE.0 - LEGEND_W);
        let (top, bottom) = panels.split_vertically(410);
        let per_s = 1_000_000 / BUCKET_US;
        panel(
            &top,
            &ok,
            per_s,
            x_max,
            restarts,
            Panel {
                color: OK,
                y_desc: "successful calls/s",
                x_desc: None,
                failures_per_restart: None,
            },
        )?;
        panel(
            &bottom,
            &failed,
            per_s,
            x_max,
            restarts,
            Panel {
                color: FAILED,
                y_desc: "failed calls/s",
                x_desc: Some("time since the load started (s); 100 ms buckets"),
                failures_per_restart: Some(failures_per_restart(calls, restarts)),
            },
        )?;
        draw_legend(&legend)?;
        root.present().map_err(err)?;
    }
    let png = path.with_extension("png");
    rasterize(path, &png)?;
    Ok(png)
}

/// Successful and failed completions per 100 ms bucket. The last bucket is dropped: it is
/// partial (the load stopped inside it) and would read as a collapse.
fn buckets(calls: &[CallRecord]) -> (Vec<u64>, Vec<u64>) {
    let end_us = calls
        .iter()
        .map(|c| c.start_us + c.latency_us)
        .max()
        .unwrap_or(0);
    let full = (end_us / BUCKET_US) as usize;
    let mut ok = vec![0u64; full];
    let mut failed = vec![0u64; full];
    for c in calls {
        let b = ((c.start_us + c.latency_us) / BUCKET_US) as usize;
        let counts = if c.result.is_ok() {
            &mut ok
        } else {
            &mut failed
        };
        if let Some(slot) = counts.get_mut(b) {
            *slot += 1;
        }
    }
    (ok, failed)
}

/// How many calls failed from each restart's signal until the next restart's.
fn failures_per_restart(calls: &[CallRecord], restarts: &[RestartRecord]) -> Vec<usize> {
    restarts
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let until = restarts.get(k + 1).map_or(f64::MAX, |n| n.term_s);
            calls
                .iter()
                .filter(|c| c.result.is_err())
                .map(|c| (c.start_us + c.latency_us) as f64 / 1e6)
                .filter(|&t| t >= r.term_s && t < until)
                .count()
        })
        .collect()
}

struct Panel {
    color: RGBColor,
    y_desc: &'static str,
    x_desc: Option<&'static str>,
    /// Written above each restart (the failures panel).
    failures_per_restart: Option<Vec<usize>>,
}

/// A y range ending on a round number at least `max`, and a tick count that keeps the ticks
/// on whole numbers.
fn y_range(max: u64) -> (u64, usize) {
    let max = max.max(1);
    let top = max + max / 8 + 1;
    let magnitude = 10u64.pow(top.ilog10());
    let step = [1, 2, 5, 10]
        .iter()
        .map(|m| m * magnitude / 10)
        .find(|&s| s > 0 && top.div_ceil(s) <= 8)
        .unwrap_or(magnitude)
        .max(1);
    let top = top.div_ceil(step) * step;
    (top, (top / step) as usize + 1)
}

fn panel(
    area: &Area<'_>,
    counts: &[u64],
    per_s: u64,
    x_max: f64,
    restarts: &[RestartRecord],
    p: Panel,
) -> Result<(), String> {
    let mut y_peak = counts.iter().max().copied().unwrap_or(0) * per_s;
    if p.failures_per_restart.is_some() {
        // Headroom for the labels above the line.
        y_peak += y_peak / 2;
    }
    let (y_top, ticks) = y_range(y_peak);
    let y_max = y_top as f64;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(if p.x_desc.is_some() { 45 } else { 25 })
        .y_label_area_size(75)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(p.y_desc)
        .y_labels(ticks)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&|v| format!("{v:.1}"));
    if let Some(x) = p.x_desc {
        mesh.x_desc(x);
    }
    mesh.draw().map_err(err)?;

    // Each restart's window, signal to ready again, shaded behind the data.
    chart
        .draw_series(restarts.iter().map(|r| {
            Rectangle::new(
                [(r.term_s, 0.0), (r.ready_s.max(r.term_s + 0.01), y_max)],
                WINDOW.mix(0.35).filled(),
            )
        }))
        .map_err(err)?;
    let line = counts.iter().enumerate().map(|(i, &n)| {
        (
            (i as f64 + 0.5) * BUCKET_US as f64 / 1e6,
            (n * per_s) as f64,
        )
    });
    chart
        .draw_series(LineSeries::new(line, p.color.stroke_width(2)))
        .map_err(err)?;
    // The markers differ in shape and height as well as colour, since signal and exit are often
    // a few milliseconds apart: the signal a solid line with a triangle on top, the exit a
    // cross at two thirds of the height, ready again a dashed green line.
    for r in restarts {
        chart
            .draw_series(LineSeries::new(
                [(r.term_s, 0.0), (r.term_s, y_max)],
                SIGNAL.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(TriangleMarker::new(
                (r.term_s, y_max * 0.97),
                6,
                SIGNAL.filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Cross::new(
                (r.exit_s, y_max * 0.66),
                6,
                EXITED.stroke_width(2),
            )))
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(
                [(r.ready_s, 0.0), (r.ready_s, y_max)],
                5,
                4,
                READY.stroke_width(2),
            ))
            .map_err(err)?;
    }
    if let Some(failures) = &p.failures_per_restart {
        for (k, (r, n)) in restarts.iter().zip(failures).enumerate() {
            let color = if *n == 0 { READY } else { FAILED };
            let y = y_max * if k % 2 == 0 { 0.88 } else { 0.76 };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" node {}: {n} failed", r.node),
                    (r.term_s, y),
                    ("sans-serif", 13).into_font().color(&color),
                )))
                .map_err(err)?;
        }
    }
    Ok(())
}

fn draw_legend(area: &Area<'_>) -> Result<(), String> {
    let font = ("sans-serif", 14).into_font();
    let rows: [(&str, Mark<'_>); 6] = [
        ("successful calls/s", &|x, y, a| {
            a.draw(&PathElement::new([(x, y), (x + 24, y)], OK.stroke_width(2)))
                .map_err(err)
        }),
        ("failed calls/s (own axis)", &|x, y, a| {
            a.draw(&PathElement::new(
                [(x, y), (x + 24, y)],
                FAILED.stroke_width(2),
            ))
            .map_err(err)
        }),
        ("signal sent to a node", &|x, y, a| {
            a.draw(&PathElement::new(
                [(x + 12, y - 8), (x + 12, y + 8)],
                SIGNAL,
            ))
            .map_err(err)?;
            a.draw(&TriangleMarker::new((x + 12, y - 4), 6, SIGNAL.filled()))
                .map_err(err)
        }),
        ("node process exited", &|x, y, a| {
            a.draw(&Cross::new((x + 12, y), 6, EXITED.stroke_width(2)))
                .map_err(err)
        }),
        ("client sees it ready again", &|x, y, a| {
            a.draw(&PathElement::new(
                [(x + 12, y - 9), (x + 12, y - 3)],
                READY.stroke_width(2),
            ))
            .map_err(err)?;
            a.draw(&PathElement::new(
                [(x + 12, y + 2), (x + 12, y + 8)],
                READY.stroke_width(2),
            ))
            .map_err(err)
        }),
        ("restart window", &|x, y, a| {
            a.draw(&Rectangle::new(
                [(x, y - 8), (x + 24, y + 8)],
                WINDOW.mix(0.35).filled(),
            ))
            .map_err(err)
        }),
    ];
    for (i, (label, mark)) in rows.iter().enumerate() {
        let y = 60 + 30 * i as i32;
        mark(12, y, area)?;
        area.draw(&Text::new(*label, (44, y - 7), font.clone().color(&BLACK)))
            .map_err(err)?;
    }
    Ok(())
}

/// Renders the SVG at `svg` to a PNG at `png`, with the system's fonts.
fn rasterize(svg: &Path, png: &Path) -> Result<(), String> {
    use resvg::{tiny_skia, usvg};
    let data = std::fs::read(svg).map_err(|e| format!("{}: {e}", svg.display()))?;
    let mut opt = usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    for family in ["DejaVu Sans", "Liberation Sans", "Noto Sans"] {
        if opt
            .fontdb
            .faces()
            .any(|f| f.families.iter().any(|(n, _)| n == family))
        {
            opt.fontdb_mut().set_sans_serif_family(family);
            break;
        }
    }
    let tree = usvg::Tree::from_data(&data, &opt).map_err(|e| format!("{}: {e}", svg.display()))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| "empty picture".to_owned())?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .save_png(png)
        .map_err(|e| format!("{}: {e}", png.display()))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::y_range;

    #[test]
    fn y_ranges_end_on_round_numbers_with_whole_ticks() {
        for max in [0, 1, 7, 10, 95, 12_000, 18_340, 999_999] {
            let (top, ticks) = y_range(max);
            assert!(top > max, "{max}: {top}");
            let step = top / (ticks as u64 - 1);
            assert_eq!(step * (ticks as u64 - 1), top, "{max}: whole steps");
            assert!((2..=9).contains(&ticks), "{max}: {ticks} ticks");
        }
    }
}
