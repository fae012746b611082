//! `strata train`: single-process, full-batch node classification over one or more seeds, by
//! backprop or by a ForwardGNN trainer (`--trainer sf|ff-la|ff-vn|sf-topdown-loss|sf-topdown-input`).

use crate::report::{progress, table};
use crate::reports::{OverSeeds, TrainReport};
use crate::source::GraphSource;
use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use strata_forward::{ForwardConfig, Trainer};
use strata_graph::{Dataset, Split};
use strata_nn::{Kernel, ModelConfig, ModelKind, ModelOverrides, NodeTask};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The graph (default: the registered `cora`).
    #[command(flatten)]
    pub graph: GraphSource,
    /// Poisoned adjacency for Pro-GNN datasets: meta:0.05..0.25 or nettack:1..5.
    #[arg(long)]
    pub attack: Option<String>,
    /// Model: mlp, gcn, sage, gat, gin, appnp, sgc, gcnii, dgmlp (ForwardGNN trainers: gcn,
    /// sage, gat).
    #[arg(long, default_value = "gcn")]
    pub model: String,
    /// bp (backprop), or a ForwardGNN trainer: sf, ff-la, ff-vn, sf-topdown-loss,
    /// sf-topdown-input (each layer trained locally; the paper's settings by default).
    #[arg(long, default_value = "bp")]
    pub trainer: String,
    /// Hyper-parameters from a TOML file (keys as in `ModelConfig`); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Layers (message-passing layers; GCNII: its convolutions between the input and output
    /// maps). Default: the model's paper setting (`ModelConfig::defaults`, e.g. GCN 2, GCNII 64).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Hidden width (per head for GAT). Default: the model's paper setting.
    #[arg(long)]
    pub hidden: Option<i64>,
    /// Attention heads of GAT's hidden layers (default 8).
    #[arg(long)]
    pub heads: Option<i64>,
    /// Most epochs to train (default: the model's, e.g. 200; early stopping may end sooner).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Adam learning rate (default: the model's, e.g. 0.01).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Dropout on every layer's input (default: the model's, e.g. 0.5).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// L2 penalty (coupled weight decay) on the first parameter group (default: the model's,
    /// e.g. 5e-4).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Stop after this many validations without improvement (0 = never; default: the model's).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Number of seeds (0..S); with several official splits, seed i uses split i mod count.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub seeds: u64,
    /// public (the dataset's own split), or random (stratified, seeded).
    #[arg(long, default_value = "public")]
    pub split: String,
    #[command(flatten)]
    pub compute: crate::source::ComputeArgs,
    /// Input feature normalisation: auto (row-sum when no feature is negative, as for
    /// bag-of-words; none for real-valued features), none, row-sum or standardize.
    #[arg(long, value_name = "HOW")]
    pub normalize_features: Option<strata_graph::FeatureNorm>,
    /// Sparse kernel: auto (csr from 100k edges, where the edge list's per-edge messages
    /// dominate memory; edge-list below), edge-list or csr.
    #[arg(long, default_value = "auto")]
    pub kernel: String,
    /// Recompute each GCNII layer's aggregation in the backward pass instead of keeping it:
    /// about 4/9 less activation memory for one sparse product more per layer (CSR kernel).
    #[arg(long)]
    pub checkpoint_activations: bool,
    /// Vertex order for the sparse products' cache locality: auto (partition from 100k nodes),
    /// none, or partition (a multilevel partition's parts as contiguous id ranges). Splits are
    /// drawn on the order as given, so results do not depend on it beyond rounding.
    #[arg(long, default_value = "auto", value_name = "HOW")]
    pub reorder: strata_graph::Reorder,
    /// Write a JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw train/validation curves (.svg or .png).
    #[arg(long, value_parser = crate::plot::plot_path)]
    pub plot: Option<PathBuf>,
    /// Save the last seed's best weights here for PyTorch Geometric: safetensors with PyG's
    /// parameter names and torch.nn.Linear's [out, in] layout, the model, activation and
    /// applied feature normalisation in its metadata (docs/training.md). For a model `strata
    /// predict` loads, use --out.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Write the last seed's model (its best validation epoch) as a model directory for
    /// `strata predict`: manifest.json and model.safetensors, replaced atomically.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write the last seed's predictions for every node (.csv or .npy, as `strata predict
    /// --out` writes them).
    #[arg(long, value_name = "PATH")]
    pub predictions: Option<PathBuf>,
}

pub(crate) fn split_for(d: &Dataset, how: &str, seed: u64) -> anyhow::Result<Split> {
    let split = split_by(d, how, seed)?;
    crate::source::check_split(d, &split)?;
    Ok(split)
}

fn split_by(d: &Dataset, how: &str, seed: u64) -> anyhow::Result<Split> {
    match how {
        "public" if !d.splits.is_empty() => Ok(d.splits[(seed as usize) % d.splits.len()].clone()),
        "public" => {
            tracing::info!("{} has no official split: using a stratified 10/10/80 split per seed", d.name);
            Ok(crate::source::default_split(d, seed))
        }
        "random" => Ok(Split::random_per_class(&d.labels, 20, 500, 1000, seed)),
        other => bail!("--split {other}: expected public or random"),
    }
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let outputs: Vec<(&str, &std::path::Path)> = [
        ("--json", &a.json),
        ("--plot", &a.plot),
        ("--save", &a.save),
        ("--out", &a.out),
        ("--predictions", &a.predictions),
    ]
    .into_iter()
    .filter_map(|(f, p)| Some((f, p.as_deref()?)))
    .collect();
    let mut inputs: Vec<(&str, &std::path::Path)> = a.config.iter().map(|p| ("--config", p.as_path())).collect();
    inputs.extend(a.graph.inputs());
    crate::report::distinct_paths(&outputs, &inputs)?;
    if let Some(out) = &a.out {
        crate::predict::check_out(out)?;
    }
    if let Some(p) = &a.predictions {
        crate::predict::check_predictions_path("--predictions", p)?;
    }
    let device = a.compute.start()?;
    let kind: ModelKind = a.model.parse()?;
    let trainer: Trainer = a.trainer.parse()?;
    if trainer != Trainer::Bp {
        return run_forward(&a, kind, trainer, device);
    }
    let cfg = model_config(&a, kind)?;
    if a.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let dataset = a.graph.load("cora", a.attack.as_deref())?;
    if dataset.num_classes < 2 {
        bail!("{}: node classification needs labels with at least two classes", dataset.name);
    }
    // Splits come from the order as given (a seeded split then picks the same nodes either way).
    let splits = (0..a.seeds).map(|seed| split_for(&dataset, &a.split, seed)).collect::<anyhow::Result<Vec<_>>>()?;
    // What a model directory records of the graph, as given (before any renumbering).
    let graph_record = a.out.as_ref().map(|_| crate::model_dir::GraphRecord::of(&a.graph, "cora", &dataset));
    let (dataset, splits, reorder, order) = reorder_for_locality(dataset, splits, a.reorder);
    eprintln!(
        "strata train: {} ({} nodes, {} edges, {} features, {} classes) · {} ({} layers) · {} · {} seed(s)",
        dataset.name,
        dataset.num_nodes(),
        dataset.graph.num_undirected_edges(),
        dataset.features.dim(),
        dataset.num_classes,
        kind.name(),
        cfg.layers,
        strata_nn::device_name(device),
        a.seeds
    );
    let kernel = match a.kernel.as_str() {
        "csr" => Kernel::Csr,
        "edge-list" => Kernel::EdgeList,
        "auto" => Kernel::for_graph(&dataset.graph),
        k => bail!("--kernel {k}: expected auto, csr or edge-list"),
    };
    eprintln!("strata train: {} kernel{}", kernel.name(), if a.kernel == "auto" { " (auto)" } else { "" });
    let task = NodeTask::new(&dataset, device, cfg.normalize_features, kernel);
    let why = match (cfg.normalize_features, task.feature_norm) {
        (strata_graph::FeatureNorm::Auto, strata_graph::FeatureNorm::RowSum) => " (auto: no feature is negative)",
        (strata_graph::FeatureNorm::Auto, _) => " (auto: real-valued features)",
        _ => "",
    };
    eprintln!("strata train: feature normalisation {}{why}", task.feature_norm);
    let (runs, last_model, peak_memory) = train_seeds(&task, &cfg, &splits, a.seeds, device)?;
    let report = TrainReport::backprop(&dataset.name, kind, &cfg, &runs, &task, reorder, peak_memory, device);
    print_runs(&runs, &report, last_model.num_parameters());
    if let Some(path) = &a.save {
        let vars: Vec<(String, tch::Tensor)> = last_model.vs.variables().into_iter().collect();
        let meta = strata_nn::export::metadata(
            &cfg,
            dataset.features.dim() as i64,
            dataset.num_classes as i64,
            task.feature_norm.name(),
            &dataset.name,
        )?;
        strata_nn::export::save_pyg(kind, &vars, meta, path)?;
        println!("saved weights to {}", path.display());
    }
    if let Some(out) = &a.out {
        let manifest = crate::predict::Manifest::single_process(
            &last_model,
            graph_record.expect("recorded when --out is given"),
            a.attack.clone(),
            dataset.features.dim(),
            dataset.num_classes,
            task.feature_norm,
            a.split.clone(),
            runs.last().expect("at least one seed"),
        );
        let weights: Vec<(String, tch::Tensor)> = last_model.vs.variables().into_iter().collect();
        crate::predict::save(out, manifest, &weights)?;
        println!("saved the model to {} (strata predict {0} …)", out.display());
    }
    if let Some(path) = &a.predictions {
        let p = crate::predict::infer(&last_model, &task);
        // Rows follow the training order; each is written under the node's id as given.
        let n = dataset.num_nodes();
        let (rows, ids): (Vec<i64>, Vec<i64>) = match &order {
            Some(order) => {
                let mut inverse = vec![0i64; n];
                order.iter().enumerate().for_each(|(new, &old)| inverse[old] = new as i64);
                (inverse, (0..n as i64).collect())
            }
            None => ((0..n as i64).collect(), (0..n as i64).collect()),
        };
        crate::predict::write_predictions(path, &p, &rows, &ids)?;
        println!("wrote the predictions to {}", path.display());
    }
    if let Some(path) = &a.plot {
        let curves: Vec<_> = runs.iter().map(|r| (r.seed, r.curve.clone())).collect();
        let title = format!("{} · {} ({} layers)", dataset.name, kind.name(), cfg.layers);
        crate::plot::training_curves(path, &title, &curves)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.json {
        crate::reports::write(path, &report)?;
    }
    Ok(())
}

/// The model's defaults, then the `--config` file, then the flags.
fn model_config(a: &TrainArgs, kind: ModelKind) -> anyhow::Result<ModelConfig> {
    let mut cfg = ModelConfig::defaults(kind);
    if let Some(path) = &a.config {
        let text = strata_graph::files::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let o: ModelOverrides =
            toml::from_str(&text).with_context(|| format!("{}: invalid model configuration", path.display()))?;
        cfg = cfg.with(&o);
    }
    cfg = cfg.with(&ModelOverrides {
        layers: a.layers,
        hidden: a.hidden,
        heads: a.heads,
        epochs: a.epochs,
        lr: a.lr,
        dropout: a.dropout,
        weight_decay: a.weight_decay,
        patience: a.patience,
        normalize_features: a.normalize_features,
        checkpoint_activations: a.checkpoint_activations.then_some(true),
        ..Default::default()
    });
    cfg.validate()?;
    Ok(cfg)
}

/// One run per seed (seed `s` on `splits[s]`): the reports, the last model, the peak memory.
fn train_seeds(
    task: &NodeTask,
    cfg: &ModelConfig,
    splits: &[Split],
    seeds: u64,
    device: tch::Device,
) -> anyhow::Result<(Vec<strata_nn::RunReport>, strata_nn::Model, u64)> {
    let pb = progress(seeds * cfg.epochs as u64, "train");
    let (mut runs, mut last_model, mut peak_memory) = (Vec::new(), None, 0u64);
    for seed in 0..seeds {
        let meter = strata_nn::memory::MemoryMeter::start(device);
        let (model, report) = strata_nn::train_node_classifier(task, cfg, &splits[seed as usize], seed, |e| {
            pb.inc(1);
            pb.set_message(format!("seed {seed} epoch {} val {:.3}", e.epoch, e.val_accuracy));
        })?;
        // Early stopping skips epochs: keep the bar's total honest.
        pb.inc((cfg.epochs - report.epochs_run) as u64);
        peak_memory = peak_memory.max(meter.peak_bytes());
        runs.push(report);
        last_model = Some(model);
    }
    pb.finish_and_clear();
    Ok((runs, last_model.expect("at least one seed"), peak_memory))
}

/// The per-seed table, the mean row and the step time.
fn print_runs(runs: &[strata_nn::RunReport], report: &TrainReport, parameters: i64) {
    let mut rows =
        vec![vec!["seed".to_string(), "epochs".into(), "best epoch".into(), "val acc".into(), "test acc".into()]];
    for r in runs {
        rows.push(vec![
            r.seed.to_string(),
            r.epochs_run.to_string(),
            (r.best_epoch + 1).to_string(),
            if r.val_accuracy.is_finite() { format!("{:.2}", r.val_accuracy * 100.0) } else { "-".into() },
            format!("{:.2}", r.test_accuracy * 100.0),
        ]);
    }
    let (t, v) = (&report.test_accuracy, &report.val_accuracy);
    rows.push(vec![
        "mean".into(),
        "".into(),
        "".into(),
        v.as_ref().map_or("-".into(), OverSeeds::percent),
        t.percent(),
    ]);
    print!("{}", table(&rows));
    println!("epoch time (train step, median): {:.2} ms · parameters: {parameters}", report.epoch_ms_median);
}

/// Renumbers the vertices for locality when `how` says so (the dataset and every seed's split
/// move together); returns what was done, for the log and the JSON report, and the order (new
/// node `i` is node `order[i]` as given) when it renumbered.
fn reorder_for_locality(
    dataset: Dataset,
    splits: Vec<Split>,
    how: strata_graph::Reorder,
) -> (Dataset, Vec<Split>, serde_json::Value, Option<Vec<usize>>) {
    let resolved = how.resolve(dataset.num_nodes());
    if resolved != strata_graph::Reorder::Partition {
        return (dataset, splits, json!({"how": resolved.name(), "requested": how.name()}), None);
    }
    let t = std::time::Instant::now();
    let order = strata_graph::locality_order(&dataset.graph, 0);
    let mut d = dataset;
    let parts = order.offsets.len() - 1;
    d.splits = splits;
    let mut d = { d }.permuted(&order.order);
    let splits = std::mem::take(&mut d.splits);
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let cut = strata_graph::edge_cut(&d.graph, &order.part_ids());
    eprintln!("strata train: vertices renumbered for locality ({parts} parts of a multilevel partition, {:.1} % of edges cut, {ms:.0} ms)", 100.0 * cut as f64 / d.graph.num_undirected_edges().max(1) as f64);
    strata_nn::memory::release_free_heap();
    let json = json!({"how": "partition", "requested": how.name(), "parts": parts, "edges_cut": cut, "ms": ms});
    (d, splits, json, Some(order.order))
}

/// `--trainer` other than bp: a ForwardGNN trainer with the paper's settings, overridden by the
/// flags that apply (layers, hidden, epochs, lr, weight decay, patience in validations).
// Long on purpose: the forward trainers' subcommand in the order the user sees it (settings, data, one run per seed, table, JSON), each step a few lines.
fn run_forward(a: &TrainArgs, conv: ModelKind, trainer: Trainer, device: tch::Device) -> anyhow::Result<()> {
    let backprop_only =
        [a.config.is_some(), a.dropout.is_some(), a.heads.is_some(), a.plot.is_some(), a.save.is_some()];
    if backprop_only.contains(&true) || a.out.is_some() || a.predictions.is_some() {
        bail!(
            "--trainer {}: --config, --dropout, --heads, --plot, --save, --out and --predictions apply to backprop training only",
            trainer.name()
        );
    }
    if a.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let d = ForwardConfig::default();
    let cfg = ForwardConfig {
        conv,
        layers: a.layers.unwrap_or(d.layers),
        hidden: a.hidden.unwrap_or(d.hidden),
        epochs: a.epochs.unwrap_or(d.epochs),
        lr: a.lr.unwrap_or(d.lr),
        weight_decay: a.weight_decay.unwrap_or(d.weight_decay),
        patience: a.patience.unwrap_or(d.patience),
        ..d
    };
    cfg.validate()?;
    let dataset = a.graph.load("cora", a.attack.as_deref())?;
    eprintln!(
        "strata train: {} ({} nodes, {} classes) · {} trainer, {} ({} layers, hidden {}) · {} · {} seed(s)",
        dataset.name,
        dataset.num_nodes(),
        dataset.num_classes,
        trainer.name(),
        conv.name(),
        cfg.layers,
        cfg.hidden,
        strata_nn::device_name(device),
        a.seeds
    );
    let pb = progress(a.seeds, "train");
    let mut runs = Vec::new();
    for seed in 0..a.seeds {
        let split = split_for(&dataset, &a.split, seed)?;
        pb.set_message(format!("seed {seed}"));
        runs.push(strata_forward::train_node(&dataset, &split, trainer, &cfg, seed, device)?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let report = TrainReport::forward(&dataset.name, &cfg, trainer, &runs, device);
    let mut rows = vec![vec![
        "seed".to_string(),
        "epochs".into(),
        "val acc".into(),
        "test acc".into(),
        "per layer (test)".into(),
        "peak MiB".into(),
    ]];
    let pct = |xs: &[f64]| xs.iter().map(|x| format!("{:.1}", x * 100.0)).collect::<Vec<_>>().join(" ");
    for r in &runs {
        rows.push(vec![
            r.seed.to_string(),
            format!("{:?}", r.epochs),
            format!("{:.2}", r.val_accuracy * 100.0),
            format!("{:.2}", r.test_accuracy * 100.0),
            pct(&r.per_layer_accuracy),
            format!("{:.1}", r.peak_memory_bytes as f64 / 1048576.0),
        ]);
    }
    let (t, v) = (&report.test_accuracy, &report.val_accuracy);
    rows.push(vec![
        "mean".into(),
        "".into(),
        v.as_ref().map_or("-".into(), OverSeeds::percent),
        t.percent(),
        pct(&report.per_layer_accuracy),
        format!("{:.1}", report.peak_memory_bytes as f64 / 1048576.0),
    ]);
    print!("{}", table(&rows));
    println!(
        "epoch time (one step of every layer, median over seeds): {:.2} ms · peak memory {:.1} MiB ({})",
        report.epoch_ms_median,
        report.peak_memory_bytes as f64 / 1048576.0,
        runs[0].memory_method
    );
    if let Some(path) = &a.json {
        crate::reports::write(path, &report)?;
    }
    Ok(())
}
