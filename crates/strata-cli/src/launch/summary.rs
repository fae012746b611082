//! The end of `strata launch`: the table, the `--json` report and the plots.

use crate::report::table;
use crate::reports::{About, ByKind, BytesPerEpoch, LaunchReport};
use strata_nn::metrics::median;
use strata_pipe::{Breakdown, PipelineConfig};

use super::args::LaunchArgs;

// Long on purpose: the end-of-run table and the JSON report read the same numbers; one place keeps them in step.
pub(super) fn summarize(
    a: &LaunchArgs,
    cfg: &PipelineConfig,
    data: &strata_graph::Dataset,
    report: &strata_pipe::launcher::LaunchReport,
    split_desc: Vec<String>,
) -> anyhow::Result<()> {
    // Warm-up epochs are left out, but never all of them (a short run at scale has two epochs).
    let ms: Vec<f64> =
        report.epochs.iter().skip(2.min(report.epochs.len().saturating_sub(1))).map(|e| e.epoch_ms).collect();
    let med = |f: &dyn Fn(&strata_pipe::launcher::LaunchEpoch) -> u64| {
        median(&report.epochs.iter().map(|e| f(e) as f64).collect::<Vec<_>>())
    };
    let measured = med(&|e| e.bytes);
    let mib = |b: f64| format!("{:.3}", b / (1 << 20) as f64);
    let pred = &report.predicted;
    let wire = med(&|e| e.wire_bytes);
    // Each worker's peak over the run (a resumed run's earlier epochs may not carry it).
    let per_worker = |f: &dyn Fn(&strata_pipe::launcher::LaunchEpoch) -> &Vec<u64>| -> Vec<u64> {
        (0..cfg.workers())
            .map(|r| report.epochs.iter().filter_map(|e| f(e).get(r).copied()).max().unwrap_or(0))
            .collect()
    };
    let memory = per_worker(&|e| &e.memory_bytes_per_worker);
    let cuda = per_worker(&|e| &e.cuda_peak_bytes_per_worker);
    let mem_text = memory.iter().map(|b| format!("{:.0}", *b as f64 / 1048576.0)).collect::<Vec<_>>().join(" / ");
    let rows = vec![
        vec![
            "mode".to_string(),
            "ways×stages".into(),
            "chunks".into(),
            "epochs".into(),
            "test acc (best val)".into(),
            "epoch ms (median)".into(),
            "MiB/epoch measured".into(),
            "MiB/epoch predicted".into(),
            "wire MiB/epoch".into(),
            "peak RSS MiB per worker".into(),
        ],
        vec![
            cfg.mode.name().into(),
            format!("{}×{}", cfg.ways, cfg.stages),
            cfg.num_chunks().to_string(),
            cfg.epochs.to_string(),
            format!("{:.2} (epoch {})", report.test_accuracy * 100.0, report.best_epoch + 1),
            format!("{:.1}", median(&ms)),
            format!(
                "{} (layer {} · halo {} · weights {})",
                mib(measured),
                mib(med(&|e| e.layer_bytes)),
                mib(med(&|e| e.halo_bytes)),
                mib(med(&|e| e.weight_bytes))
            ),
            format!(
                "{} (layer {} · halo {} · weights {})",
                mib(pred.total),
                mib(pred.layer),
                mib(pred.halo),
                mib(pred.weight)
            ),
            format!("{} (×{:.3})", mib(wire), if measured > 0.0 { wire / measured } else { 0.0 }),
            mem_text,
        ],
    ];
    print!("{}", table(&rows));
    let skip = 2.min(report.epochs.len().saturating_sub(1));
    let phases = median_phases(&report.epochs[skip..], cfg.workers());
    let activations = report.epochs.first().map(|e| e.activations_per_worker.clone()).unwrap_or_default();
    print!("{}", phase_table(cfg, &phases, &activations, median(&ms)));
    if let Some(path) = &a.json {
        let by_kind = |layer, halo, weight| ByKind { layer, halo, weight };
        let r = LaunchReport {
            about: About::of("launch"),
            mode: cfg.mode.name(),
            dataset: &data.name,
            model: &a.model,
            layers: a.layers,
            stages: cfg.stages,
            ways: cfg.ways,
            workers: cfg.workers(),
            stage_slots: split_desc,
            chunks: cfg.num_chunks(),
            epochs: cfg.epochs,
            best_epoch: report.best_epoch,
            test_accuracy: report.test_accuracy,
            best_val_accuracy: report.best_val_accuracy,
            epoch_ms_median: median(&ms),
            warm_start_ms: report.warm_start_ms,
            bytes_per_epoch: BytesPerEpoch {
                measured,
                predicted: pred.total,
                measured_by_kind: by_kind(med(&|e| e.layer_bytes), med(&|e| e.halo_bytes), med(&|e| e.weight_bytes)),
                predicted_by_kind: by_kind(pred.layer, pred.halo, pred.weight),
                boundary_vertices: pred.boundary,
                parameters: pred.parameters,
                wire,
                wire_overhead_ratio: if measured > 0.0 { wire / measured } else { 0.0 },
            },
            memory_bytes_per_worker: memory,
            cuda_peak_bytes_per_worker: cuda,
            phases_median_per_worker: phases,
            activations_per_worker: activations,
            config: cfg,
            curve: &report.epochs,
        };
        crate::reports::write(path, &r)?;
    }
    if let Some(path) = &a.plot {
        let mut runs = vec![val_curve(
            run_label(cfg.mode.name(), cfg.ways, cfg.stages, cfg.num_chunks(), report.warm_start_ms.is_some()),
            report.warm_start_ms,
            report.epochs.iter().map(|e| (e.epoch, e.epoch_ms, e.val_accuracy)),
        )];
        for other in &a.plot_with {
            runs.push(curve_from_report(other)?);
        }
        let title = format!("{} · {} with {} layers · validation accuracy", data.name, a.model, a.layers);
        crate::plot::validation_curves(path, &title, &runs)?;
    }
    Ok(())
}

fn run_label(mode: &str, ways: usize, stages: usize, chunks: usize, warm: bool) -> String {
    let chunks = if chunks == 1 { "1 chunk".to_string() } else { format!("{chunks} chunks") };
    format!("{mode} {ways}×{stages}, {chunks}{}", if warm { ", warm start" } else { "" })
}

/// The evaluated epochs of a run as (epoch, seconds of training so far, accuracy): training
/// time is the warm start plus the training epochs, without the evaluations.
fn val_curve(
    label: String,
    warm_ms: Option<f64>,
    epochs: impl Iterator<Item = (u64, f64, Option<f64>)>,
) -> crate::plot::ValCurve {
    let mut ms = warm_ms.unwrap_or(0.0);
    let mut points = Vec::new();
    for (epoch, epoch_ms, val) in epochs {
        ms += epoch_ms;
        if let Some(v) = val {
            points.push(((epoch + 1) as f64, ms / 1e3, v));
        }
    }
    crate::plot::ValCurve { label, points }
}

/// Another run's validation curve from its `--json` report.
pub(super) fn curve_from_report(path: &std::path::Path) -> anyhow::Result<crate::plot::ValCurve> {
    let text = strata_graph::files::read_to_string(path).map_err(|e| anyhow::anyhow!("--plot-with: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--plot-with {}: not JSON ({e})", path.display()))?;
    let bad =
        |key: &str| anyhow::anyhow!("--plot-with {}: not a `strata launch --json` report (no {key})", path.display());
    let uint = |key: &str| v[key].as_u64().map(|x| x as usize).ok_or_else(|| bad(key));
    let mode = v["mode"].as_str().ok_or_else(|| bad("mode"))?;
    let curve = v["curve"].as_array().ok_or_else(|| bad("curve"))?;
    let mut epochs = Vec::with_capacity(curve.len());
    for e in curve {
        let epoch = e["epoch"].as_u64().ok_or_else(|| bad("curve[].epoch"))?;
        let ms = e["epoch_ms"].as_f64().ok_or_else(|| bad("curve[].epoch_ms"))?;
        epochs.push((epoch, ms, e["val_accuracy"].as_f64()));
    }
    let warm = v["warm_start_ms"].as_f64();
    let label = run_label(mode, uint("ways")?, uint("stages")?, uint("chunks")?, warm.is_some());
    Ok(val_curve(label, warm, epochs.into_iter()))
}

/// Each worker's per-phase median over `epochs` (phase by phase).
fn median_phases(epochs: &[strata_pipe::launcher::LaunchEpoch], workers: usize) -> Vec<Breakdown> {
    (0..workers)
        .map(|r| {
            let of = |f: fn(&Breakdown) -> f64| {
                median(&epochs.iter().filter_map(|e| e.phases_per_worker.get(r)).map(f).collect::<Vec<_>>())
            };
            Breakdown {
                forward: of(|b| b.forward),
                recompute: of(|b| b.recompute),
                backward: of(|b| b.backward),
                recv_wait: of(|b| b.recv_wait),
                send: of(|b| b.send),
                all_reduce: of(|b| b.all_reduce),
                step: of(|b| b.step),
                evaluate: of(|b| b.evaluate),
            }
        })
        .collect()
}

/// Where a training epoch goes on each worker: median milliseconds per phase, and whether a
/// pipeline stage kept its activations, e.g. "kept (310 of 5870 MiB)" (estimate of budget).
fn phase_table(
    cfg: &PipelineConfig,
    phases: &[Breakdown],
    activations: &[Option<strata_pipe::Activations>],
    epoch_ms: f64,
) -> String {
    let mut rows = vec![["worker".to_string(), "way·stage".into()]
        .into_iter()
        .chain(Breakdown::default().phases().iter().filter(|p| p.0 != "evaluate").map(|p| format!("{} ms", p.0)))
        .chain(["sum ms".to_string(), "epoch ms".into(), "activations (estimate of budget)".into()])
        .collect::<Vec<_>>()];
    let stages = if cfg.mode == strata_pipe::Mode::Graph { 1 } else { cfg.stages };
    for (rank, b) in phases.iter().enumerate() {
        let mut row = vec![rank.to_string(), format!("{}·{}", rank / stages, rank % stages)];
        row.extend(b.phases().iter().filter(|p| p.0 != "evaluate").map(|p| format!("{:.1}", p.1 * 1e3)));
        row.push(format!("{:.1}", b.total() * 1e3));
        row.push(format!("{epoch_ms:.1}"));
        row.push(match activations.get(rank).copied().flatten() {
            Some(a) => format!(
                "{} ({} of {} MiB)",
                if a.kept { "kept" } else { "recomputed" },
                a.estimate_bytes >> 20,
                a.budget_bytes >> 20
            ),
            None => "-".into(),
        });
        rows.push(row);
    }
    format!("training epoch by phase (median per worker):\n{}", table(&rows))
}
