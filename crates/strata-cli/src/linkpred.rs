//! `strata linkpred`: train a link predictor on a dataset or an edge list, evaluate it on its
//! held-out edges, and ask it for the missing links around a node.
//!
//! MODEL_DIR holds `model.safetensors` (weights), `split.npz` (the exact train/val/test pairs),
//! `embeddings.safetensors` (the final node embeddings, so `predict` need not run the encoder)
//! and `manifest.json` (configuration, where the graph came from, its fingerprint, metrics);
//! `eval` and `predict` refuse a graph whose fingerprint differs from the one trained on.
//! With `--encoder netinfof` the weights are NetInfoF_Act's and `embeddings.safetensors` holds
//! the components' pair features (`plain`, `adjusted`). With `--trainer sf|ff` (ForwardGNN)
//! every layer is trained on its own and `embeddings.safetensors` holds all layers' embeddings
//! side by side; a pair's score averages the layers' probabilities.

use crate::report::{progress, table, write_json};
use crate::source::GraphSource;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use strata_forward::{train_links, ForwardConfig, ForwardLinkModel, LinkTrainer};
use strata_graph::npz::{Npz, NpzWriter};
use strata_graph::{CsrGraph, Features, LinkSplit};
use strata_netinfo::{probe_links, train_act, Act, ActConfig, EmbedConfig, PairFeatures};
use strata_nn::{train_link_predictor, Kernel, LinkConfig, LinkMetrics, LinkModel, LinkTask, ModelKind};
use tch::{Device, Kind};

#[derive(Args, Debug)]
pub struct LinkpredArgs {
    #[command(subcommand)]
    command: LinkCommand,
}

#[derive(Subcommand, Debug)]
enum LinkCommand {
    /// Split the edges, train, keep the best validation Hits@K, save to --out.
    Train(Box<TrainLinkArgs>),
    /// Test-set ROC-AUC, AP, Hits@20/50/100 and MRR of a saved model.
    Eval(EvalArgs),
    /// The highest-scoring non-neighbours of a node, or the scores of given pairs.
    Predict(PredictArgs),
}

#[derive(Args, Debug)]
struct TrainLinkArgs {
    #[command(flatten)]
    graph: GraphSource,
    /// gcn, sage, gat, or netinfof (NetInfoF_Act: closed-form embeddings and a linear model
    /// trained by L-BFGS; the GNN options do not apply).
    #[arg(long, default_value = "gcn")]
    encoder: String,
    /// dot or hadamard-mlp.
    #[arg(long, default_value = "dot")]
    decoder: String,
    /// bp (backprop through encoder and decoder), or a ForwardGNN trainer: sf (per-layer
    /// dot-product BCE) or ff (per-layer forward-forward goodness); the decoder is then the
    /// trainer's own.
    #[arg(long, default_value = "bp")]
    trainer: String,
    /// Train, validation and test fractions of the undirected edges (default 0.85,0.05,0.10,
    /// the GAE protocol; 0.64,0.16,0.20 with a ForwardGNN trainer, as its paper ran them).
    #[arg(long, value_delimiter = ',')]
    split: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The model directory. Written as a new directory beside it and renamed into place once
    /// complete, so an existing model there is replaced whole or not at all.
    #[arg(long)]
    out: PathBuf,
    /// Where this run writes before the rename (set by `train`).
    #[arg(skip)]
    staging: PathBuf,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long)]
    hidden: Option<i64>,
    /// Embedding width.
    #[arg(long)]
    out_dim: Option<i64>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    dropout: Option<f64>,
    #[arg(long)]
    patience: Option<usize>,
    /// K of the validation Hits@K that selects the epoch.
    #[arg(long)]
    hits_k: Option<usize>,
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct EvalArgs {
    model_dir: PathBuf,
    #[command(flatten)]
    graph: GraphSource,
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PredictArgs {
    model_dir: PathBuf,
    /// List the best candidates for this node.
    #[arg(long, required_unless_present = "pairs")]
    node: Option<usize>,
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Score the pairs in this file (`src dst` per line) instead.
    #[arg(long, conflicts_with = "node")]
    pairs: Option<PathBuf>,
    /// Run the encoder again instead of using the embeddings saved at training time.
    #[arg(long)]
    recompute: bool,
    #[command(flatten)]
    graph: GraphSource,
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long)]
    csv: Option<PathBuf>,
}

/// `manifest.json`.
#[derive(Serialize, Deserialize, Debug)]
struct Manifest {
    format: String,
    /// gcn, sage, gat or netinfof.
    encoder: String,
    /// The GNN's settings (absent for NetInfoF and ForwardGNN models).
    config: Option<LinkConfig>,
    netinfof: Option<NetinfofRecord>,
    #[serde(default)]
    forward: Option<ForwardRecord>,
    seed: u64,
    split: Vec<f64>,
    graph: GraphRecord,
    feature_dim: usize,
    best_epoch: usize,
    epochs_run: usize,
    val: LinkMetrics,
    test: LinkMetrics,
    /// SHA-256 of every other file of the directory; `eval` and `predict` refuse a mismatch.
    files: std::collections::BTreeMap<String, String>,
}

/// The files of a model directory besides the manifest.
const MODEL_FILES: [&str; 3] = ["model.safetensors", "split.npz", "embeddings.safetensors"];

/// What a NetInfoF_Act model needs besides its weights.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct NetinfofRecord {
    components: usize,
    dim: i64,
    lambda1: f64,
    lambda2: f64,
    /// Validation NetInfoF score of each component.
    scores: Vec<(String, f64)>,
}

/// A ForwardGNN link model: its trainer and layer settings.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct ForwardRecord {
    trainer: LinkTrainer,
    config: ForwardConfig,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct GraphRecord {
    /// Where the graph was read from (older manifests: `dataset`, `edges`, `features`).
    #[serde(flatten)]
    source: GraphSource,
    nodes: usize,
    undirected_edges: usize,
    fingerprint: String,
}

const FORMAT: &str = "strata-linkpred/1";

/// Loads the graph as undirected and simple (self loops dropped, reversed edges merged) with
/// its features.
fn load_graph(g: &GraphSource) -> anyhow::Result<(CsrGraph, Features, GraphRecord)> {
    if !g.is_given() {
        bail!("give the graph with --dataset NAME, --npz FILE, --edges FILE or --ogb DIR");
    }
    let d = g.load("", None)?;
    let graph = d.graph.symmetrized().without_self_loops();
    let rec = GraphRecord {
        source: g.clone(),
        nodes: graph.num_nodes(),
        undirected_edges: graph.num_undirected_edges(),
        fingerprint: graph.fingerprint(),
    };
    Ok((graph, d.features, rec))
}

fn pairs_array(w: &mut NpzWriter, key: &str, pairs: &[(usize, usize)]) {
    let flat: Vec<i64> = pairs.iter().flat_map(|&(u, v)| [u as i64, v as i64]).collect();
    w.i64s(key, &[pairs.len(), 2], &flat);
}

fn read_pairs(npz: &mut Npz, key: &str) -> anyhow::Result<Vec<(usize, usize)>> {
    let v = npz.i64s(key, "an [E, 2] array of node pairs")?;
    Ok(v.chunks(2).map(|p| (p[0] as usize, p[1] as usize)).collect())
}

pub fn run(a: LinkpredArgs) -> anyhow::Result<()> {
    match a.command {
        LinkCommand::Train(t) => train(*t),
        LinkCommand::Eval(e) => eval(e),
        LinkCommand::Predict(p) => predict(p),
    }
}

fn check_split(a: &TrainLinkArgs) -> anyhow::Result<()> {
    if a.split.len() != 3
        || a.split.iter().any(|&f| !(0.0..1.0).contains(&f))
        || (a.split.iter().sum::<f64>() - 1.0).abs() > 1e-6
    {
        bail!("--split {:?}: expected three fractions train,val,test in [0, 1) summing to 1", a.split);
    }
    Ok(())
}

fn save_split(dir: &Path, s: &LinkSplit) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut w = NpzWriter::new();
    for (k, p) in [
        ("train_pos", &s.train_pos),
        ("val_pos", &s.val_pos),
        ("val_neg", &s.val_neg),
        ("test_pos", &s.test_pos),
        ("test_neg", &s.test_neg),
    ] {
        pairs_array(&mut w, k, p);
    }
    strata_nn::checkpoint::write_atomic(&dir.join("split.npz"), &w.to_bytes())?;
    Ok(())
}

/// Prints the metrics, writes the manifest (last, so a directory with one is complete) and the
/// JSON report.
fn finish_training(a: &TrainLinkArgs, manifest: &mut Manifest, extra: serde_json::Value) -> anyhow::Result<()> {
    for f in MODEL_FILES {
        let p = a.staging.join(f);
        let bytes = std::fs::read(&p).with_context(|| format!("reading back {}", p.display()))?;
        manifest.files.insert(f.to_string(), strata_pipe::checkpoint::sha256_hex(&bytes));
    }
    strata_nn::checkpoint::write_atomic(
        &a.staging.join("manifest.json"),
        serde_json::to_string_pretty(manifest)?.as_bytes(),
    )?;
    replace_dir(&a.staging, &a.out)?;
    print!("{}", metrics_table(&[("val", &manifest.val), ("test", &manifest.test)]));
    eprintln!("saved to {}", a.out.display());
    if let Some(p) = &a.json {
        let mut v = json!({"encoder": manifest.encoder, "val": manifest.val, "test": manifest.test, "best_epoch": manifest.best_epoch,
            "epochs_run": manifest.epochs_run, "model_dir": a.out});
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        write_json(p, &v)?;
    }
    Ok(())
}

/// Refuses an `--out` that holds something other than a linkpred model (replacing it would
/// destroy it); returns the staging directory beside it.
fn staging_for(out: &Path) -> anyhow::Result<PathBuf> {
    if out.exists() {
        let empty = std::fs::read_dir(out).with_context(|| format!("--out {}", out.display()))?.next().is_none();
        let is_model = std::fs::read_to_string(out.join("manifest.json")).is_ok_and(|t| t.contains(FORMAT));
        if !empty && !is_model {
            bail!("--out {}: exists and is not a linkpred model directory (no {FORMAT} manifest.json); refusing to replace it", out.display());
        }
    }
    let name =
        out.file_name().with_context(|| format!("--out {}: not a directory name", out.display()))?.to_string_lossy();
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    Ok(parent.join(format!(".{name}.partial-{}", std::process::id())))
}

/// Moves the complete `staging` directory to `out`: the old model (if any) is renamed aside
/// first and deleted after, so `out` holds the old model or the new one, never a mix.
fn replace_dir(staging: &Path, out: &Path) -> anyhow::Result<()> {
    let sync_parent = || {
        if let Some(d) = out
            .parent()
            .and_then(|p| std::fs::File::open(if p.as_os_str().is_empty() { Path::new(".") } else { p }).ok())
        {
            let _ = d.sync_all();
        }
    };
    let old = staging.with_file_name(format!("{}.old", staging.file_name().unwrap_or_default().to_string_lossy()));
    let had_old = out.exists();
    if had_old {
        std::fs::rename(out, &old).with_context(|| format!("moving the previous model {} aside", out.display()))?;
    }
    std::fs::rename(staging, out).with_context(|| format!("moving the new model into {}", out.display()))?;
    sync_parent();
    if had_old {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("deleting the previous model (now at {})", old.display()))?;
    }
    Ok(())
}

fn train(mut a: TrainLinkArgs) -> anyhow::Result<()> {
    strata_nn::set_threads(a.threads);
    if a.split.is_empty() {
        a.split = if a.trainer == "bp" { vec![0.85, 0.05, 0.10] } else { vec![0.64, 0.16, 0.20] };
    }
    check_split(&a)?;
    a.staging = staging_for(&a.out)?;
    let staging = a.staging.clone();
    let result = train_into_staging(a);
    if staging.exists() {
        let _ = std::fs::remove_dir_all(&staging); // a failed run leaves nothing behind
    }
    result
}

fn train_into_staging(a: TrainLinkArgs) -> anyhow::Result<()> {
    if a.encoder == "netinfof" {
        return train_netinfof(a);
    }
    if a.trainer != "bp" {
        let trainer: LinkTrainer = a.trainer.parse()?;
        return train_forward(a, trainer);
    }
    let device = strata_nn::parse_device(&a.device)?;
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
        best_epoch: report.best_epoch,
        epochs_run: report.epochs_run,
        val: report.val,
        test: report.test,
        files: Default::default(),
    };
    eprintln!("best epoch {} of {}", report.best_epoch + 1, report.epochs_run);
    let step_ms: Vec<f64> = report.curve.iter().map(|e| e.step_ms).collect();
    finish_training(
        &a,
        &mut manifest,
        json!({"epoch_ms_median": strata_nn::metrics::median(&step_ms), "config": cfg, "curve": report.curve}),
    )
}

/// The training + validation edges of `task`'s split on its device and kernel.
fn train_val_tensors(task: &LinkTask) -> anyhow::Result<strata_nn::GraphTensors> {
    Ok(strata_nn::GraphTensors::new(&task.split.train_val_graph()?, task.graph.device, task.graph.kernel))
}

/// `--trainer sf|ff`: ForwardGNN layers trained one at a time on the training graph.
fn train_forward(a: TrainLinkArgs, trainer: LinkTrainer) -> anyhow::Result<()> {
    if a.decoder != "dot" || a.dropout.is_some() || a.out_dim.is_some() {
        bail!("--trainer {}: the decoder is the trainer's own and there is no dropout or separate output width (use --hidden)", trainer.name());
    }
    let device = strata_nn::parse_device(&a.device)?;
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
        best_epoch: run.epochs.iter().sum(),
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
    finish_training(
        &a,
        &mut manifest,
        json!({"trainer": trainer.name(), "per_layer_auc": run.per_layer_auc, "peak_memory_bytes": run.peak_memory_bytes, "epoch_ms": run.epoch_ms, "train_seconds": run.train_seconds, "config": cfg}),
    )
}

fn announce(rec: &GraphRecord, split: &LinkSplit, what: &str) {
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
fn train_netinfof(a: TrainLinkArgs) -> anyhow::Result<()> {
    let device = strata_nn::parse_device(&a.device)?;
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
        best_epoch: report.steps,
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
    let extra = json!({"seconds": t0.elapsed().as_secs_f64(), "netinfof": manifest.netinfof, "component_norms": act.component_norms()});
    finish_training(&a, &mut manifest, extra)
}

fn metrics_table(rows: &[(&str, &LinkMetrics)]) -> String {
    let mut t = vec![["set", "roc_auc", "ap", "hits@20", "hits@50", "hits@100", "mrr"].map(String::from).to_vec()];
    for (name, m) in rows {
        let f = |x: f64| format!("{x:.4}");
        t.push(vec![name.to_string(), f(m.roc_auc), f(m.ap), f(m.hits_20), f(m.hits_50), f(m.hits_100), f(m.mrr)]);
    }
    table(&t)
}

/// How a saved model scores pairs.
enum Scorer {
    Gnn { task: Box<LinkTask>, model: Box<LinkModel>, z: tch::Tensor },
    NetInfoF { feats: PairFeatures, act: Act },
    Forward { task: Box<LinkTask>, model: Box<ForwardLinkModel>, z: tch::Tensor },
}

impl Scorer {
    /// Logits of the pairs.
    fn score(&self, pairs: &[(usize, usize)]) -> Vec<f64> {
        if pairs.is_empty() {
            return Vec::new();
        }
        tch::no_grad(|| {
            let t = match self {
                Scorer::Gnn { model, z, .. } => {
                    let (s, d) = strata_nn::linkpred::pair_tensors(pairs, z.device());
                    model.score(z, &s, &d, false)
                }
                Scorer::NetInfoF { feats, act } => {
                    let (s, d) = strata_nn::linkpred::pair_tensors(pairs, act.params.device());
                    act.logits(&feats.of(&s, &d))
                }
                // The logit of the layers' mean probability, so σ(score) is that probability.
                Scorer::Forward { model, z, .. } => {
                    let (s, d) = strata_nn::linkpred::pair_tensors(pairs, z.device());
                    model.score(z, &s, &d).clamp(1e-7, 1.0 - 1e-7).logit(None)
                }
            };
            Vec::<f64>::try_from(t.to_kind(Kind::Double).to(Device::Cpu)).unwrap_or_default()
        })
    }
}

/// A saved model with its split, on the graph it was trained on.
struct Loaded {
    manifest: Manifest,
    split: LinkSplit,
    scorer: Scorer,
    graph: CsrGraph,
}

/// Loads MODEL_DIR. `cached`: use the embeddings saved at training time instead of running the
/// encoder (GNN models; NetInfoF's pair features are always the saved ones).
fn load_model(dir: &Path, graph_args: &GraphSource, device: &str, cached: bool) -> anyhow::Result<Loaded> {
    let device = strata_nn::parse_device(device)?;
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath)
        .with_context(|| format!("{} is not a linkpred model directory (no readable manifest.json)", dir.display()))?;
    let manifest: Manifest =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid manifest", mpath.display()))?;
    if manifest.format != FORMAT {
        bail!("{}: format `{}`, expected `{FORMAT}`", mpath.display(), manifest.format);
    }
    for f in MODEL_FILES {
        let p = dir.join(f);
        let expected = manifest.files.get(f).with_context(|| format!("{}: no checksum for {f}", mpath.display()))?;
        let bytes = std::fs::read(&p).with_context(|| format!("{}: missing or unreadable", p.display()))?;
        if &strata_pipe::checkpoint::sha256_hex(&bytes) != expected {
            bail!("{}: SHA-256 differs from the manifest's: the file was altered or torn. Retrain with `strata linkpred train`.", p.display());
        }
    }
    // The graph: as given on the command line, else where the manifest says it came from.
    let args = if graph_args.is_given() { graph_args.clone() } else { manifest.graph.source.clone() };
    let (graph, features, rec) = load_graph(&args)?;
    if rec.fingerprint != manifest.graph.fingerprint {
        let what = args.describe("");
        bail!(
            "{what} is not the graph this model was trained on: it has {} nodes and {} edges (fingerprint {}), the model's graph had {} nodes and {} edges (fingerprint {}). Refusing to score a different graph; retrain with `strata linkpred train`.",
            rec.nodes,
            rec.undirected_edges,
            &rec.fingerprint[..12],
            manifest.graph.nodes,
            manifest.graph.undirected_edges,
            &manifest.graph.fingerprint[..12]
        );
    }
    if features.dim() != manifest.feature_dim {
        bail!("the features have {} columns but the model was trained on {}", features.dim(), manifest.feature_dim);
    }
    let spath = dir.join("split.npz");
    let mut npz = Npz::open(&spath)?;
    let train_pos = read_pairs(&mut npz, "train_pos")?;
    let n = graph.num_nodes();
    let both: Vec<(i64, i64)> =
        train_pos.iter().flat_map(|&(u, v)| [(u as i64, v as i64), (v as i64, u as i64)]).collect();
    let split = LinkSplit {
        train_graph: CsrGraph::from_edges(&spath.display().to_string(), n, &both, None)?,
        val_pos: read_pairs(&mut npz, "val_pos")?,
        val_neg: read_pairs(&mut npz, "val_neg")?,
        test_pos: read_pairs(&mut npz, "test_pos")?,
        test_neg: read_pairs(&mut npz, "test_neg")?,
        train_pos,
    };
    for (k, p) in [
        ("val_pos", &split.val_pos),
        ("val_neg", &split.val_neg),
        ("test_pos", &split.test_pos),
        ("test_neg", &split.test_neg),
    ] {
        if let Some(&(u, v)) = p.iter().find(|&&(u, v)| u >= n || v >= n) {
            bail!("{}: {k} holds pair ({u}, {v}) outside the graph's {n} nodes", spath.display());
        }
    }
    let emb_path = dir.join("embeddings.safetensors");
    let scorer = match (&manifest.config, &manifest.netinfof) {
        (None, None) if manifest.forward.is_some() => {
            let fw = manifest.forward.as_ref().expect("checked");
            let task = LinkTask::new(
                split.clone(),
                &features,
                device,
                strata_graph::FeatureNorm::Auto,
                Kernel::for_graph(&split.train_graph),
            );
            let mut model = ForwardLinkModel::new(fw.trainer, &fw.config, &task.graph, task.input.dim())?;
            model.load(&dir.join("model.safetensors"))?;
            let width = fw.config.layers as i64 * fw.config.hidden;
            let z = if cached && emb_path.exists() {
                let z = strata_nn::checkpoint::load_tensor(&emb_path, "z")?.to(device);
                if z.size() != [n as i64, width] {
                    bail!(
                        "{}: embeddings of shape {:?}, expected [{n}, {width}]; rerun with --recompute",
                        emb_path.display(),
                        z.size()
                    );
                }
                z
            } else {
                model.embed_on(&task.input.to_dense(), &train_val_tensors(&task)?)
            };
            Scorer::Forward { task: Box::new(task), model: Box::new(model), z }
        }
        (Some(cfg), _) => {
            let task = LinkTask::new(
                split.clone(),
                &features,
                device,
                strata_graph::FeatureNorm::Auto,
                Kernel::for_graph(&split.train_graph),
            );
            let mut model = LinkModel::new(cfg, &task.graph, &task.input)?;
            strata_nn::checkpoint::load_checkpoint(model.vs_mut(), &dir.join("model.safetensors"))?;
            let z = if cached && emb_path.exists() {
                let z = strata_nn::checkpoint::load_tensor(&emb_path, "z")?.to(device);
                if z.size() != [n as i64, cfg.out] {
                    bail!(
                        "{}: embeddings of shape {:?}, expected [{n}, {}]; rerun with --recompute",
                        emb_path.display(),
                        z.size(),
                        cfg.out
                    );
                }
                z
            } else {
                tch::no_grad(|| model.embed(&task.input, false))
            };
            Scorer::Gnn { task: Box::new(task), model: Box::new(model), z }
        }
        (None, Some(ni)) => {
            let params = strata_nn::checkpoint::load_tensor(&dir.join("model.safetensors"), "params")?.to(device);
            let plain = strata_nn::checkpoint::load_tensor(&emb_path, "plain")?.to(device);
            let adjusted = strata_nn::checkpoint::load_tensor(&emb_path, "adjusted")?.to(device);
            let width = ni.components as i64 * ni.dim;
            if plain.size() != [n as i64, width]
                || adjusted.size() != plain.size()
                || params.size() != [width + ni.components as i64]
            {
                bail!(
                    "{}: saved NetInfoF tensors do not match the manifest ({} components × {})",
                    dir.display(),
                    ni.components,
                    ni.dim
                );
            }
            Scorer::NetInfoF {
                feats: PairFeatures::from_tensors(plain, adjusted, ni.components, ni.dim),
                act: Act { params, components: ni.components, dim: ni.dim },
            }
        }
        (None, None) => {
            bail!("{}: the manifest has neither a GNN configuration nor a NetInfoF record", mpath.display())
        }
    };
    Ok(Loaded { manifest, split, scorer, graph })
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let l = load_model(&a.model_dir, &a.graph, &a.device, false)?;
    let f = |p: &[(usize, usize)]| l.scorer.score(p).into_iter().map(|x| x as f32).collect::<Vec<_>>();
    let test = LinkMetrics::of(&f(&l.split.test_pos), &f(&l.split.test_neg));
    print!("{}", metrics_table(&[("test", &test)]));
    if let Some(p) = &a.json {
        write_json(
            p,
            &json!({"roc_auc": test.roc_auc, "ap": test.ap, "hits@20": test.hits_20, "hits@50": test.hits_50, "hits@100": test.hits_100, "mrr": test.mrr,
            "test_edges": l.split.test_pos.len(), "model_dir": a.model_dir, "encoder": l.manifest.encoder}),
        )?;
    }
    Ok(())
}

fn predict(a: PredictArgs) -> anyhow::Result<()> {
    let l = load_model(&a.model_dir, &a.graph, &a.device, !a.recompute)?;
    let n = l.graph.num_nodes();
    let t0 = std::time::Instant::now();
    // So the reported latency includes the encoder (loading ran it once already).
    match (a.recompute, &l.scorer) {
        (true, Scorer::Gnn { task, model, .. }) => drop(tch::no_grad(|| model.embed(&task.input, false))),
        (true, Scorer::Forward { task, model, .. }) => {
            drop(model.embed_on(&task.input.to_dense(), &train_val_tensors(task)?))
        }
        _ => {}
    }
    let pairs: Vec<(usize, usize)> = match (a.node, &a.pairs) {
        (Some(u), _) => {
            if u >= n {
                bail!("--node {u}: the graph has {n} nodes (ids 0..{})", n - 1);
            }
            let nb: std::collections::HashSet<i64> = l.graph.neighbors(u).iter().copied().collect();
            (0..n).filter(|&v| v != u && !nb.contains(&(v as i64))).map(|v| (u, v)).collect()
        }
        (None, Some(path)) => {
            let list = strata_graph::formats::read_edge_list(path)?;
            if let Some((i, &(u, v))) = list.edges.iter().enumerate().find(|(_, &(u, v))| u.max(v) as usize >= n) {
                bail!(
                    "{}: pair #{} ({u}, {v}) names node {}, but the graph has {n} nodes",
                    path.display(),
                    i + 1,
                    u.max(v)
                );
            }
            list.edges.iter().map(|&(u, v)| (u as usize, v as usize)).collect()
        }
        (None, None) => bail!("give --node N or --pairs FILE"),
    };
    let mut rows: Vec<(usize, usize, f64)> =
        pairs.iter().zip(l.scorer.score(&pairs)).map(|(&(u, v), s)| (u, v, s)).collect();
    if a.node.is_some() {
        rows.sort_by(|x, y| y.2.total_cmp(&x.2));
        rows.truncate(a.top);
    }
    // Scoring every candidate and ranking them (loading excluded; embedding too unless --recompute).
    let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
    tracing::info!("scored in {latency_ms:.1} ms");
    let prob = |s: f64| 1.0 / (1.0 + (-s).exp());
    let mut t = vec![vec!["rank".to_string(), "src".into(), "dst".into(), "score".into(), "probability".into()]];
    for (i, &(u, v, s)) in rows.iter().enumerate() {
        t.push(vec![(i + 1).to_string(), u.to_string(), v.to_string(), format!("{s:.4}"), format!("{:.4}", prob(s))]);
    }
    print!("{}", table(&t));
    if let Some(p) = &a.json {
        let items: Vec<_> =
            rows.iter().map(|&(u, v, s)| json!({"src": u, "dst": v, "score": s, "probability": prob(s)})).collect();
        write_json(
            p,
            &json!({"node": a.node, "top": a.node.map(|_| a.top), "latency_ms": latency_ms, "encoder": l.manifest.encoder, "predictions": items}),
        )?;
    }
    if let Some(p) = &a.csv {
        let mut text = String::from("src,dst,score,probability\n");
        for &(u, v, s) in &rows {
            text.push_str(&format!("{u},{v},{s},{}\n", prob(s)));
        }
        strata_nn::checkpoint::write_atomic(p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
