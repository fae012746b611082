//! SVG training curves.

use plotters::prelude::*;
use std::path::Path;
use strata_nn::EpochStats;

/// Draws train/validation accuracy (left) and loss (right) per epoch for each run.
/// `--plot`'s value: plots are SVG, so a path that names another format (`curves.png`) is
/// refused while the command line is read, before any work.
pub fn svg_path(s: &str) -> Result<std::path::PathBuf, String> {
    let p = std::path::PathBuf::from(s);
    match p.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => Ok(p),
        _ => Err(format!("plots are written as SVG: name the file .svg (got `{s}`)")),
    }
}

pub fn training_curves(path: &Path, title: &str, runs: &[(u64, Vec<EpochStats>)]) -> anyhow::Result<()> {
    let tmp = path.with_extension("svg.tmp");
    {
        let root = SVGBackend::new(&tmp, (1100, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 20))?;
        let (left, right) = root.split_horizontally(550);
        let max_epoch = runs.iter().map(|r| r.1.len()).max().unwrap_or(1) as f64;
        let max_loss = runs
            .iter()
            .flat_map(|r| r.1.iter().flat_map(|e| [e.train_loss, e.val_loss]))
            .fold(0.0f64, f64::max)
            .max(1e-3);
        let palette = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
        for (area, is_acc) in [(left, true), (right, false)] {
            let mut chart = ChartBuilder::on(&area)
                .margin(12)
                .caption(if is_acc { "accuracy" } else { "loss" }, ("sans-serif", 16))
                .x_label_area_size(30)
                .y_label_area_size(45)
                .build_cartesian_2d(1f64..max_epoch, 0f64..if is_acc { 1.0 } else { max_loss * 1.05 })?;
            chart.configure_mesh().x_desc("epoch").draw()?;
            for (i, (seed, curve)) in runs.iter().enumerate() {
                let color = palette[i % palette.len()];
                let pick = |e: &EpochStats, train: bool| match (is_acc, train) {
                    (true, true) => e.train_accuracy,
                    (true, false) => e.val_accuracy,
                    (false, true) => e.train_loss,
                    (false, false) => e.val_loss,
                };
                chart
                    .draw_series(LineSeries::new(
                        curve.iter().map(|e| (e.epoch as f64, pick(e, true))),
                        color.stroke_width(1),
                    ))?
                    .label(format!("seed {seed} train"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(1)));
                chart
                    .draw_series(DashedLineSeries::new(
                        curve.iter().map(|e| (e.epoch as f64, pick(e, false))),
                        4,
                        3,
                        color.stroke_width(2),
                    ))?
                    .label(format!("seed {seed} val"))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
            }
            if runs.len() <= 3 {
                chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
            }
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A bar chart of named scores in `[lo, 1]` with a dashed line at the chance floor `lo`.
pub fn score_bars(path: &Path, title: &str, bars: &[(String, f64)], lo: f64) -> anyhow::Result<()> {
    let tmp = path.with_extension("svg.tmp");
    {
        let root = SVGBackend::new(&tmp, (640, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = bars.len().max(1) as f64;
        let floor = (lo - 0.05).max(0.0);
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .caption(title, ("sans-serif", 18))
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..n, floor..1.0)?;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len())
            .x_label_formatter(&|x| {
                names.get(x.floor() as usize).filter(|_| (x.fract() - 0.5).abs() < 1e-9).cloned().unwrap_or_default()
            })
            .y_desc("NetInfoF score")
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let v = if v.is_finite() { *v } else { floor };
            Rectangle::new([(i as f64 + 0.15, floor), (i as f64 + 0.85, v)], BLUE.mix(0.7).filled())
        }))?;
        chart
            .draw_series(DashedLineSeries::new([(0.0, lo), (n, lo)], 5, 4, RED.stroke_width(1)))?
            .label("chance")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        root.present()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Overlaid normalised histograms of several samples in [-1, 1], with a vertical marker.
pub fn histograms(path: &Path, title: &str, samples: &[(&str, Vec<f64>)], marker: f64) -> anyhow::Result<()> {
    let tmp = path.with_extension("svg.tmp");
    {
        let root = SVGBackend::new(&tmp, (720, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let bins = 40usize;
        let (lo, hi) = (-1.0f64, 1.0f64);
        let width = (hi - lo) / bins as f64;
        let hist: Vec<Vec<f64>> = samples
            .iter()
            .map(|(_, xs)| {
                let mut h = vec![0.0; bins];
                xs.iter().for_each(|&x| h[(((x - lo) / width) as usize).min(bins - 1)] += 1.0);
                let total = xs.len().max(1) as f64;
                h.iter().map(|c| c / total).collect()
            })
            .collect();
        let top = hist.iter().flatten().fold(0.0f64, |a, &b| a.max(b)).max(1e-3) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .caption(title, ("sans-serif", 18))
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("cosine similarity of the endpoints' embeddings")
            .y_desc("fraction of edges")
            .draw()?;
        let palette = [&BLUE, &RED, &GREEN];
        for (i, ((name, xs), h)) in samples.iter().zip(&hist).enumerate() {
            let color = palette[i % palette.len()];
            chart
                .draw_series(h.iter().enumerate().map(|(b, &v)| {
                    Rectangle::new(
                        [(lo + b as f64 * width, 0.0), (lo + (b + 1) as f64 * width, v)],
                        color.mix(0.35).filled(),
                    )
                }))?
                .label(format!("{name} ({})", xs.len()))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.5).filled()));
        }
        chart
            .draw_series(DashedLineSeries::new([(marker, 0.0), (marker, top)], 5, 4, BLACK.stroke_width(1)))?
            .label("pruning threshold")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        root.present()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// One run's validation curve: its label and (epoch, seconds of training so far, accuracy) at
/// each evaluated epoch.
pub struct ValCurve {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// Validation accuracy against epoch (left) and against seconds of training (right), one line
/// per run, overlaid: how soon each run gets where.
pub fn validation_curves(path: &Path, title: &str, runs: &[ValCurve]) -> anyhow::Result<()> {
    let tmp = path.with_extension("svg.tmp");
    {
        let root = SVGBackend::new(&tmp, (1100, 440)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 20))?;
        let (left, right) = root.split_horizontally(550);
        let top = |f: fn(&(f64, f64, f64)) -> f64| {
            runs.iter().flat_map(|r| r.points.iter().map(f)).fold(0.0f64, f64::max).max(1e-9)
        };
        let (max_epoch, max_s, max_acc) = (top(|p| p.0), top(|p| p.1), top(|p| p.2));
        let palette = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
        for (area, by_time) in [(left, false), (right, true)] {
            let x_max = if by_time { max_s * 1.02 } else { max_epoch };
            let mut chart = ChartBuilder::on(&area)
                .margin(12)
                .caption(if by_time { "against training time" } else { "against epochs" }, ("sans-serif", 16))
                .x_label_area_size(35)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..x_max, 0f64..(max_acc * 1.1).min(1.0))?;
            chart
                .configure_mesh()
                .x_desc(if by_time { "seconds" } else { "epoch" })
                .y_desc("validation accuracy")
                .draw()?;
            for (i, run) in runs.iter().enumerate() {
                let color = palette[i % palette.len()];
                chart
                    .draw_series(LineSeries::new(
                        run.points.iter().map(|p| (if by_time { p.1 } else { p.0 }, p.2)),
                        color.stroke_width(2),
                    ))?
                    .label(run.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}
