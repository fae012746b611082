//! The `--plot` figures: training curves (`train`), score bars (`probe`), histograms
//! (`refine`) and validation curves (`launch`), as SVG or PNG by the path's extension. Every
//! axis says what it shows and in which unit, accuracies are in percent as the tables print
//! them, and each legend sits in a strip under the charts, never over the data. Text is set in
//! DejaVu Sans, embedded in the binary, so a PNG looks the same on a machine without fonts.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use strata_nn::EpochStats;

/// `--plot`'s value: `.svg` or `.png`; any other name is refused while the command line is
/// read, before any work.
pub fn plot_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    match p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("svg" | "png") => Ok(p),
        _ => Err(format!("plots are written as SVG or PNG: name the file .svg or .png (got `{s}`)")),
    }
}

fn is_png(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// Registers the embedded font as "sans-serif" (once): plotters measures text with it in both
/// formats and rasterises it for PNG.
fn fonts() -> anyhow::Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    anyhow::ensure!(ok, "internal error (a bug in strata): the embedded font could not be loaded");
    Ok(())
}

/// Draws a figure into a temporary file beside `path` (same extension, so the bitmap encoder
/// knows the format) and renames it into place. `|root| body` draws the charts on `root`, a
/// `width` × `height` area; the legend strip under it holds `legend`. The body is compiled once
/// per backend.
macro_rules! render {
    ($path:expr, ($width:expr, $height:expr), $legend:expr, |$root:ident| $body:block) => {{
        fonts()?;
        let (path, legend): (&Path, &[Entry]) = ($path, $legend);
        let (width, height): (u32, u32) = ($width, $height);
        let size = (width, height + legend_height(legend, width));
        let ext = if is_png(path) { "png" } else { "svg" };
        let tmp = path.with_extension(format!("tmp.{ext}"));
        if is_png(path) {
            let area = BitMapBackend::new(&tmp, size).into_drawing_area();
            render!(@draw area, height, legend, $root, $body);
        } else {
            let area = SVGBackend::new(&tmp, size).into_drawing_area();
            render!(@draw area, height, legend, $root, $body);
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }};
    (@draw $area:ident, $height:expr, $legend:expr, $root:ident, $body:block) => {{
        $area.fill(&WHITE)?;
        let (charts, strip) = $area.split_vertically($height);
        {
            let $root = &charts;
            $body
        }
        draw_legend(&strip, $legend)?;
        $area.present()?;
    }};
}

const PALETTE: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

/// How a legend entry shows its series.
enum Mark {
    Line(RGBColor, u32),
    Dashed(RGBColor, u32),
    Box(RGBColor),
}

struct Entry {
    label: String,
    mark: Mark,
}

fn entry(label: impl Into<String>, mark: Mark) -> Entry {
    Entry { label: label.into(), mark }
}

const ROW: i32 = 20;

/// Each entry's top-left corner in a strip `width` pixels wide (rows wrap).
fn legend_layout(entries: &[Entry], width: u32) -> Vec<(i32, i32)> {
    let (mut x, mut y) = (16, 6);
    entries
        .iter()
        .map(|e| {
            let w = 36 + 7 * e.label.chars().count() as i32 + 18;
            if x > 16 && x + w > width as i32 - 16 {
                (x, y) = (16, y + ROW);
            }
            let at = (x, y);
            x += w;
            at
        })
        .collect()
}

/// The strip's height for `entries`.
fn legend_height(entries: &[Entry], width: u32) -> u32 {
    legend_layout(entries, width).last().map_or(0, |&(_, y)| (y + ROW + 4) as u32)
}

fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[Entry]) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let (width, _) = area.dim_in_pixel();
    for (e, (x, y)) in entries.iter().zip(legend_layout(entries, width)) {
        let mid = y + ROW / 2;
        match e.mark {
            Mark::Line(c, w) => area.draw(&PathElement::new(vec![(x, mid), (x + 28, mid)], c.stroke_width(w)))?,
            Mark::Dashed(c, w) => {
                area.draw(&DashedPathElement::new(vec![(x, mid), (x + 28, mid)], 5, 3, c.stroke_width(w)))?
            }
            Mark::Box(c) => area.draw(&Rectangle::new([(x + 6, mid - 6), (x + 22, mid + 6)], c.mix(0.5).filled()))?,
        }
        let style = ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(e.label.clone(), (x + 36, mid), style))?;
    }
    Ok(())
}

/// Training and validation accuracy (left, percent) and loss (right) per epoch, one colour per
/// seed; solid lines train, dashed lines validation.
pub fn training_curves(path: &Path, title: &str, runs: &[(u64, Vec<EpochStats>)]) -> anyhow::Result<()> {
    let max_epoch = runs.iter().flat_map(|r| r.1.iter().map(|e| e.epoch)).max().unwrap_or(0).max(1) as f64;
    let max_loss = runs
        .iter()
        .flat_map(|r| r.1.iter().flat_map(|e| [e.train_loss, e.val_loss]))
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let mut legend: Vec<Entry> = runs
        .iter()
        .enumerate()
        .map(|(i, (seed, _))| entry(format!("seed {seed}"), Mark::Line(PALETTE[i % 6], 2)))
        .collect();
    legend.push(entry("training (solid)", Mark::Line(BLACK, 1)));
    legend.push(entry("validation (dashed)", Mark::Dashed(BLACK, 2)));
    render!(path, (1100, 420), &legend, |root| {
        let root = root.titled(title, ("sans-serif", 20))?;
        let (left, right) = root.split_horizontally(550);
        for (area, is_acc) in [(left, true), (right, false)] {
            let mut chart = ChartBuilder::on(&area)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..max_epoch, 0f64..if is_acc { 100.0 } else { max_loss * 1.05 })?;
            chart
                .configure_mesh()
                .x_desc("epoch (0 is the first)")
                .y_desc(if is_acc { "accuracy (%)" } else { "cross-entropy loss" })
                .draw()?;
            for (i, (_, curve)) in runs.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let points = |train: bool| -> Vec<(f64, f64)> {
                    curve
                        .iter()
                        .map(|e| {
                            let y = match (is_acc, train) {
                                (true, true) => e.train_accuracy * 100.0,
                                (true, false) => e.val_accuracy * 100.0,
                                (false, true) => e.train_loss,
                                (false, false) => e.val_loss,
                            };
                            (e.epoch as f64, y)
                        })
                        .filter(|p| p.1.is_finite())
                        .collect()
                };
                chart.draw_series(LineSeries::new(points(true), color.stroke_width(1)))?;
                chart.draw_series(DashedLineSeries::new(points(false), 4, 3, color.stroke_width(2)))?;
            }
        }
    })
}

/// A bar chart of named scores in `[lo, 1]`, each bar labelled with its name and value, with a
/// dashed line at the chance floor `lo`.
pub fn score_bars(path: &Path, title: &str, bars: &[(String, f64)], lo: f64) -> anyhow::Result<()> {
    let legend = [
        entry("NetInfoF score of the component", Mark::Box(BLUE)),
        entry(format!("chance ({lo:.2})"), Mark::Dashed(RED, 1)),
    ];
    render!(path, (640, 420), &legend, |root| {
        let n = bars.len().max(1) as u32;
        let floor = (lo - 0.05).max(0.0);
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .caption(title, ("sans-serif", 18))
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n - 1).into_segmented(), floor..1.05)?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len() + 1)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc("component")
            .y_desc("NetInfoF score (validation)")
            .draw()?;
        let value_style = ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (i, (_, v)) in bars.iter().enumerate() {
            let v = if v.is_finite() { *v } else { floor };
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i as u32), floor), (SegmentValue::Exact(i as u32 + 1), v)],
                BLUE.mix(0.5).filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            chart.draw_series([bar])?;
            chart.draw_series([Text::new(
                format!("{v:.3}"),
                (SegmentValue::CenterOf(i as u32), v + 0.005),
                value_style.clone(),
            )])?;
        }
        chart.draw_series(DashedLineSeries::new(
            [(SegmentValue::Exact(0), lo), (SegmentValue::Last, lo)],
            5,
            4,
            RED.stroke_width(1),
        ))?;
    })
}

/// Overlaid normalised histograms of several samples in [-1, 1], with a vertical marker.
pub fn histograms(path: &Path, title: &str, samples: &[(&str, Vec<f64>)], marker: f64) -> anyhow::Result<()> {
    let palette = [BLUE, RED, GREEN];
    let mut legend: Vec<Entry> = samples
        .iter()
        .enumerate()
        .map(|(i, (name, xs))| entry(format!("{name} ({})", xs.len()), Mark::Box(palette[i % palette.len()])))
        .collect();
    legend.push(entry(format!("pruning threshold ({marker})"), Mark::Dashed(BLACK, 1)));
    render!(path, (720, 420), &legend, |root| {
        let bins = 40usize;
        let (lo, hi) = (-1.0f64, 1.0f64);
        let width = (hi - lo) / bins as f64;
        let hist: Vec<Vec<f64>> = samples
            .iter()
            .map(|(_, xs)| {
                let mut h = vec![0.0; bins];
                xs.iter().filter(|x| x.is_finite()).for_each(|&x| {
                    h[(((x - lo) / width).max(0.0) as usize).min(bins - 1)] += 1.0;
                });
                let total = xs.len().max(1) as f64;
                h.iter().map(|c| 100.0 * c / total).collect()
            })
            .collect();
        let top = hist.iter().flatten().fold(0.0f64, |a, &b| a.max(b)).max(1e-3) * 1.1;
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .caption(title, ("sans-serif", 18))
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("cosine similarity of the endpoints' embeddings")
            .y_desc("edges of the kind (%)")
            .draw()?;
        for (i, h) in hist.iter().enumerate() {
            let color = palette[i % palette.len()];
            chart.draw_series(h.iter().enumerate().map(|(b, &v)| {
                Rectangle::new(
                    [(lo + b as f64 * width, 0.0), (lo + (b + 1) as f64 * width, v)],
                    color.mix(0.35).filled(),
                )
            }))?;
        }
        chart.draw_series(DashedLineSeries::new([(marker, 0.0), (marker, top)], 5, 4, BLACK.stroke_width(1)))?;
    })
}

/// One run's validation curve: its label and (epochs trained, seconds of training so far,
/// accuracy as a fraction) at each evaluated epoch.
pub struct ValCurve {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// Validation accuracy (percent) against epoch (left) and against seconds of training (right),
/// one line per run, overlaid: how soon each run gets where.
pub fn validation_curves(path: &Path, title: &str, runs: &[ValCurve]) -> anyhow::Result<()> {
    let legend: Vec<Entry> =
        runs.iter().enumerate().map(|(i, r)| entry(r.label.clone(), Mark::Line(PALETTE[i % 6], 2))).collect();
    render!(path, (1100, 440), &legend, |root| {
        let root = root.titled(title, ("sans-serif", 20))?;
        let (left, right) = root.split_horizontally(550);
        let top = |f: fn(&(f64, f64, f64)) -> f64| {
            runs.iter().flat_map(|r| r.points.iter().map(f)).filter(|x| x.is_finite()).fold(0.0f64, f64::max).max(1e-9)
        };
        let (max_epoch, max_s, max_acc) = (top(|p| p.0), top(|p| p.1), top(|p| p.2));
        for (area, by_time) in [(left, false), (right, true)] {
            let x_max = if by_time { max_s * 1.02 } else { max_epoch.max(1.0) };
            let mut chart = ChartBuilder::on(&area)
                .margin(12)
                .caption(if by_time { "against training time" } else { "against epochs" }, ("sans-serif", 16))
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..x_max, 0f64..(max_acc * 110.0).min(100.0))?;
            chart
                .configure_mesh()
                .x_desc(if by_time { "training time (seconds)" } else { "epochs trained" })
                .y_desc("validation accuracy (%)")
                .draw()?;
            for (i, run) in runs.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                chart.draw_series(LineSeries::new(
                    run.points.iter().map(|p| (if by_time { p.1 } else { p.0 }, p.2 * 100.0)),
                    color.stroke_width(2),
                ))?;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svg(draw: impl FnOnce(&Path) -> anyhow::Result<()>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        draw(&path).unwrap();
        std::fs::read_to_string(&path).unwrap()
    }

    /// `text` is one of the SVG's text elements.
    fn has(text: &str, svg: &str) {
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
            .collect();
        assert!(texts.contains(&text), "`{text}` is not a text of the plot: {texts:?}");
    }

    /// Five seeds: a legend entry per seed and per line style, axes with their units.
    #[test]
    fn training_curves_name_axes_seeds_and_line_styles() {
        let curve = |s: u64| -> (u64, Vec<EpochStats>) {
            let e = |epoch: usize, val: f64| EpochStats {
                epoch,
                train_loss: 1.0 / (epoch + 1) as f64,
                val_loss: val,
                train_accuracy: 0.5,
                val_accuracy: val,
                test_accuracy: val,
                step_ms: 1.0,
            };
            (s, vec![e(0, 0.4), e(1, f64::NAN), e(2, 0.6)])
        };
        let s = svg(|p| training_curves(p, "t", &(0..5).map(curve).collect::<Vec<_>>()));
        for t in [
            "accuracy (%)",
            "cross-entropy loss",
            "epoch (0 is the first)",
            "seed 0",
            "seed 4",
            "training (solid)",
            "validation (dashed)",
        ] {
            has(t, &s);
        }
        assert!(!s.contains("NaN"), "an unvalidated epoch is left out, not drawn at NaN");
    }

    #[test]
    fn score_bars_label_every_bar() {
        let bars: Vec<(String, f64)> = ["U", "R", "F", "P", "S"].iter().map(|n| (n.to_string(), 0.7)).collect();
        let s = svg(|p| score_bars(p, "scores", &bars, 0.5));
        for t in ["U", "R", "F", "P", "S", "0.700", "NetInfoF score (validation)", "component", "chance (0.50)"] {
            has(t, &s);
        }
    }

    /// A `.png` path gets a PNG (the same drawing, rasterised with the embedded font).
    #[test]
    fn a_png_path_gets_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.png");
        score_bars(&path, "scores", &[("U".into(), 0.6)], 0.5).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000, "not a PNG");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        assert!(plot_path("curves.PNG").is_ok() && plot_path("curves.svg").is_ok());
        assert!(plot_path("curves.pdf").unwrap_err().contains(".svg or .png"));
    }

    #[test]
    fn histograms_and_validation_curves_name_their_axes_and_series() {
        let s =
            svg(|p| histograms(p, "h", &[("normal edges", vec![0.5, 0.9]), ("adversarial edges", vec![-0.2])], 0.1));
        for t in ["edges of the kind (%)", "normal edges (2)", "adversarial edges (1)", "pruning threshold (0.1)"] {
            has(t, &s);
        }
        let run = ValCurve { label: "pipeline P = 2".into(), points: vec![(0.0, 0.5, 0.3), (1.0, 1.0, 0.6)] };
        let s = svg(|p| validation_curves(p, "v", &[run]));
        for t in ["validation accuracy (%)", "training time (seconds)", "epochs trained", "pipeline P = 2"] {
            has(t, &s);
        }
    }
}
