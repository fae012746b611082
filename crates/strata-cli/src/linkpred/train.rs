//! `strata linkpred train`: GAE-style, ForwardGNN (`--trainer sf|ff`) and NetInfoF encoders.

use super::args::TrainLinkArgs;
use super::model_dir::*;
use super::scorer::Scorer;
use crate::report::progress;
use crate::reports::{About, LinkTrainConfig, LinkTrainReport, NetinfofFit};
use anyhow::bail;
use serde_json::json;
use strata_forward::{train_links, ForwardConfig, LinkTrainer};
use strata_graph::LinkSplit;
use strata_netinfo::{probe_links, train_act, ActConfig, EmbedConfig, PairFeatures};
use strata_nn::{train_link_predictor, Kernel, LinkConfig, LinkMetrics, LinkTask, ModelKind};
use tch::Device;

pub(super) fn check_split(a: &TrainLinkArgs) -> anyhow::Result<()> {
    if a.split.len() != 3
        || a.split.iter().any(|&f| !(0.0..1.0).contains(&f))
        || (a.split.iter().sum::<f64>() - 1.0).abs() > 1e-6
    {
        bail!("--split {:?}: expected three fractions train,val,test in [0, 1) summing to 1", a.split);
    }
    Ok(())
}

pub(super) fn train(mut a: TrainLinkArgs) -> anyhow::Result<()> {
    let outputs: Vec<(&str, &std::path::Path)> =
        std::iter::once(("--out", a.out.as_path())).chain(a.json.iter().map(|p| ("--json", p.as_path()))).collect();
    crate::report::distinct_paths(&outputs, &a.graph.inputs())?;
    strata_nn::set_threads(a.compute.threads);
    if a.split.is_empty() {
        a.split = if a.trainer == "bp" { vec![0.85, 0.05, 0.10] } else { vec![0.64, 0.16, 0.20] };
    }
    check_split(&a)?;
    a.staging = crate::model_dir::staging_for(&a.out, FORMAT, "linkpred")?;
    let staging = a.staging.clone();
    let result = train_into_staging(a);
    if staging.exists() {
        let _ = std::fs::remove_dir_all(&staging); // a failed run leaves nothing behind
    }
    result
}

pub(super) fn train_into_staging(a: TrainLinkArgs) -> anyhow::Result<()> {
    if a.encoder == "netinfof" {
        return train_netinfof(a);
    }
    if a.trainer != "bp" {
        let trainer: LinkTrainer = a.trainer.parse()?;
        return train_forward(a, trainer);
    }
    let device = strata_nn::parse_device(&a.compute.device)?;
    let encoder: ModelKind = a.encoder.parse()?;
    let mut cfg = LinkConfig::defaults(encoder);
    cfg.decoder = a.decoder.parse()?;
    let set = |dst: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *dst = v
        }
    };
    set(&mut cfg.epochs, a.epochs);
    set(&mut cfg.layers, a.layers);
    set(&mut cfg.patience, a.patience);
    set(&mut cfg.hits_k, a.hits_k);
    cfg.hidden = a.hidden.unwrap_or(cfg.hidden);
    cfg.out = a.out_dim.unwrap_or(cfg.out);
    cfg.lr = a.lr.unwrap_or(cfg.lr);
    cfg.dropout = a.dropout.unwrap_or(cfg.dropout);
    cfg.validate()?;
    let (graph, features, rec) = load_graph(&a.graph)?;
    let split = LinkSplit::new(&graph, a.split[1], a.split[2], a.seed)?;
    announce(&rec, &split, &format!("{} + {:?}", cfg.encoder.name(), cfg.decoder));
    let kernel = Kernel::for_graph(&split.train_graph);
    let task = LinkTask::new(split, &features, device, strata_graph::FeatureNorm::Auto, kernel);
    let pb = progress(cfg.epochs as u64, "linkpred");
    let t0 = std::time::Instant::now();
    let (model, report) = train_link_predictor(&task, &cfg, a.seed, |e| {
        pb.inc(1);
        pb.set_message(format!("loss {:.4} val hits@{} {:.3}", e.loss, cfg.hits_k, e.val_hits));
    })?;
    pb.finish_and_clear();
    save_split(&a.staging, &task.split)?;
    strata_nn::checkpoint::save_checkpoint(
        model.vs(),
        &a.staging.join("model.safetensors"),
        &json!({"format": FORMAT}),
    )?;
    // Final embeddings, so `predict` answers without running the encoder again.
    let z = tch::no_grad(|| model.embed(&task.input, false)).to(Device::Cpu);
    strata_nn::checkpoint::save_tensors(&a.staging.join("embeddings.safetensors"), &[("z", &z)])?;
    let mut manifest = Manifest {
        format: FORMAT.into(),
        encoder: cfg.encoder.name().into(),
        config: Some(cfg.clone()),
        netinfof: None,
        forward: None,
        seed: a.seed,
        split: a.split.clone(),
        graph: rec,
        feature_dim: features.dim(),
        best_epoch: Some(report.best_epoch),
        epochs_run: report.epochs_run,
        val: report.val,
        test: report.test,
        files: Default::default(),
    };
    eprintln!("best epoch {} of {}", report.best_epoch + 1, report.epochs_run);
    let step_ms: Vec<f64> = report.curve.iter().map(|e| e.step_ms).collect();
    let json = LinkTrainReport {
        epoch_ms_median: Some(strata_nn::metrics::median(&step_ms)),
        train_seconds: t0.elapsed().as_secs_f64(),
        curve: report.curve,
        config: Some(LinkTrainConfig::Gnn(cfg)),
        ..base_report("bp", &manifest)
    };
    finish_training(&a, &mut manifest, json)
}

/// `--trainer sf|ff`: ForwardGNN layers trained one at a time on the training graph.
pub(super) fn train_forward(a: TrainLinkArgs, trainer: LinkTrainer) -> anyhow::Result<()> {
    if a.decoder != "dot" || a.dropout.is_some() || a.out_dim.is_some() {
        bail!("--trainer {}: the decoder is the trainer's own and there is no dropout or separate output width (use --hidden)", trainer.name());
    }
    let device = strata_nn::parse_device(&a.compute.device)?;
    let d = ForwardConfig::default();
    let cfg = ForwardConfig {
        conv: a.encoder.parse()?,
        layers: a.layers.unwrap_or(d.layers),
        hidden: a.hidden.unwrap_or(d.hidden),
        epochs: a.epochs.unwrap_or(d.epochs),
        lr: a.lr.unwrap_or(d.lr),
        patience: a.patience.unwrap_or(d.patience),
        ..d
    };
    cfg.validate()?;
    let (graph, features, rec) = load_graph(&a.graph)?;
    let split = LinkSplit::new(&graph, a.split[1], a.split[2], a.seed)?;
    announce(&rec, &split, &format!("{} layers trained by {} (ForwardGNN)", cfg.conv.name(), trainer.name()));
    let kernel = Kernel::for_graph(&split.train_graph);
    let task = LinkTask::new(split, &features, device, strata_graph::FeatureNorm::Auto, kernel);
    let (model, run) = train_links(&task, trainer, &cfg, a.seed)?;
    save_split(&a.staging, &task.split)?;
    model.save(&a.staging.join("model.safetensors"))?;
    // Saved for scoring held-out pairs: messages over the training + validation edges, the
    // graph train_links scored the test pairs on.
    let z = model.embed_on(&task.input.to_dense(), &train_val_tensors(&task)?).to(Device::Cpu);
    strata_nn::checkpoint::save_tensors(&a.staging.join("embeddings.safetensors"), &[("z", &z)])?;
    let mut manifest = Manifest {
        format: FORMAT.into(),
        encoder: cfg.conv.name().into(),
        config: None,
        netinfof: None,
        forward: Some(ForwardRecord { trainer, config: cfg.clone() }),
        seed: a.seed,
        split: a.split.clone(),
        graph: rec,
        feature_dim: features.dim(),
        best_epoch: None,
        epochs_run: run.epochs.iter().sum(),
        val: run.val,
        test: run.test,
        files: Default::default(),
    };
    eprintln!(
        "layer epochs {:?}, test ROC-AUC by depth {:.4?}, peak memory {:.1} MiB",
        run.epochs,
        run.per_layer_auc,
        run.peak_memory_bytes as f64 / 1048576.0
    );
    let json = LinkTrainReport {
        epoch_ms_median: Some(run.epoch_ms),
        train_seconds: run.train_seconds,
        per_layer_auc: Some(run.per_layer_auc),
        peak_memory_bytes: Some(run.peak_memory_bytes),
        config: Some(LinkTrainConfig::Forward(cfg)),
        ..base_report(trainer.name(), &manifest)
    };
    finish_training(&a, &mut manifest, json)
}

pub(super) fn announce(rec: &GraphRecord, split: &LinkSplit, what: &str) {
    eprintln!(
        "strata linkpred: {} nodes, {} edges → {} train / {} val / {} test (+ as many negatives) · {what}",
        rec.nodes,
        rec.undirected_edges,
        split.train_pos.len(),
        split.val_pos.len(),
        split.test_pos.len()
    );
}

/// `--encoder netinfof`: the NetInfoF probe on the training graph, then NetInfoF_Act.
pub(super) fn train_netinfof(a: TrainLinkArgs) -> anyhow::Result<()> {
    let device = strata_nn::parse_device(&a.compute.device)?;
    let (graph, features, rec) = load_graph(&a.graph)?;
    let split = LinkSplit::new(&graph, a.split[1], a.split[2], a.seed)?;
    announce(&rec, &split, "NetInfoF_Act");
    let t0 = std::time::Instant::now();
    let hits_k = a.hits_k.unwrap_or(100);
    let probe = probe_links(&split, &features, &EmbedConfig { seed: a.seed, ..Default::default() }, hits_k, device);
    let feats = PairFeatures::new(&probe.parts);
    let cfg = ActConfig { seed: a.seed, hits_k, ..Default::default() };
    let (act, report) =
        train_act(&feats, graph.num_nodes(), &split.train_pos, (&split.val_pos, &split.val_neg), &cfg, device);
    let scorer = Scorer::NetInfoF { feats, act };
    let metrics = |pos: &[(usize, usize)], neg: &[(usize, usize)]| {
        let f = |p: &[(usize, usize)]| scorer.score(p).into_iter().map(|x| x as f32).collect::<Vec<_>>();
        LinkMetrics::of(&f(pos), &f(neg))
    };
    let (val, test) = (metrics(&split.val_pos, &split.val_neg), metrics(&split.test_pos, &split.test_neg));
    let Scorer::NetInfoF { feats, act } = &scorer else { unreachable!() };
    save_split(&a.staging, &split)?;
    strata_nn::checkpoint::save_tensors(
        &a.staging.join("model.safetensors"),
        &[("params", &act.params.to(Device::Cpu))],
    )?;
    let (plain, adjusted) = feats.tensors();
    strata_nn::checkpoint::save_tensors(
        &a.staging.join("embeddings.safetensors"),
        &[("plain", &plain.to(Device::Cpu)), ("adjusted", &adjusted.to(Device::Cpu))],
    )?;
    let mut manifest = Manifest {
        format: FORMAT.into(),
        encoder: "netinfof".into(),
        config: None,
        forward: None,
        netinfof: Some(NetinfofRecord {
            components: feats.components,
            dim: feats.dim,
            lambda1: report.lambda1,
            lambda2: report.lambda2,
            scores: probe.components.iter().map(|c| (c.name.to_string(), c.score)).collect(),
        }),
        seed: a.seed,
        split: a.split.clone(),
        graph: rec,
        feature_dim: features.dim(),
        best_epoch: None,
        epochs_run: report.steps,
        val,
        test,
        files: Default::default(),
    };
    eprintln!(
        "NetInfoF_Act: {} L-BFGS steps over the penalty grid, best λ1 {} λ2 {}, {:.1} s",
        report.steps,
        report.lambda1,
        report.lambda2,
        t0.elapsed().as_secs_f64()
    );
    let fit = manifest.netinfof.as_ref().map(|r| NetinfofFit {
        components: r.components,
        dim: r.dim,
        lambda1: r.lambda1,
        lambda2: r.lambda2,
        scores: r.scores.iter().cloned().collect(),
        component_norms: act.component_norms(),
    });
    let json = LinkTrainReport {
        train_seconds: t0.elapsed().as_secs_f64(),
        netinfof: fit,
        ..base_report("netinfof", &manifest)
    };
    finish_training(&a, &mut manifest, json)
}

/// The report's keys every trainer fills the same way; `finish_training` sets the directory.
fn base_report(trainer: &str, m: &Manifest) -> LinkTrainReport {
    LinkTrainReport {
        about: About::of("linkpred-train"),
        model_dir: Default::default(),
        encoder: m.encoder.clone(),
        trainer: trainer.to_string(),
        val: m.val,
        test: m.test,
        best_epoch: m.best_epoch,
        epochs_run: m.epochs_run,
        epoch_ms_median: None,
        train_seconds: 0.0,
        curve: Vec::new(),
        per_layer_auc: None,
        peak_memory_bytes: None,
        config: None,
        netinfof: None,
    }
}
