//! `strata linkpred`: train a link predictor on a dataset or an edge list, evaluate it on its
//! held-out edges, and ask it for the missing links around a node.
//!
//! MODEL_DIR holds `model.safetensors` (weights), `split.npz` (the exact train/val/test pairs),
//! `embeddings.safetensors` (the final node embeddings, so `predict` need not run the encoder)
//! and `manifest.json` (configuration, where the graph came from, its fingerprint, metrics);
//! `eval` and `predict` refuse a graph whose fingerprint differs from the one trained on.

use crate::report::{progress, table, write_json};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use strata_graph::npz::{Npz, NpzWriter};
use strata_graph::{CsrGraph, Features, LinkSplit};
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

/// Where the graph comes from: a registered dataset or an edge list (plus optional features).
#[derive(Args, Debug, Clone, Default)]
struct GraphArgs {
    /// A registered dataset (`strata data list`).
    #[arg(long, conflicts_with = "edges")]
    dataset: Option<String>,
    /// An edge list: `src dst` per line (0-based ids; `#` comments; .gz allowed).
    #[arg(long)]
    edges: Option<PathBuf>,
    /// Node features for --edges: .npy (2-D) or text rows (comma/whitespace separated), one
    /// row per node. Without it every node gets a one-hot feature.
    #[arg(long, requires = "edges")]
    features: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TrainLinkArgs {
    #[command(flatten)]
    graph: GraphArgs,
    /// gcn, sage or gat.
    #[arg(long, default_value = "gcn")]
    encoder: String,
    /// dot or hadamard-mlp.
    #[arg(long, default_value = "dot")]
    decoder: String,
    /// Train, validation and test fractions of the undirected edges.
    #[arg(long, default_value = "0.85,0.05,0.10", value_delimiter = ',')]
    split: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
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
    graph: GraphArgs,
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
    graph: GraphArgs,
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
    config: LinkConfig,
    seed: u64,
    split: Vec<f64>,
    graph: GraphRecord,
    feature_dim: usize,
    best_epoch: usize,
    epochs_run: usize,
    val: LinkMetrics,
    test: LinkMetrics,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct GraphRecord {
    dataset: Option<String>,
    edges: Option<PathBuf>,
    features: Option<PathBuf>,
    nodes: usize,
    undirected_edges: usize,
    fingerprint: String,
}

const FORMAT: &str = "strata-linkpred/1";

/// Reads a feature matrix: `.npy` (2-D, numeric) or text rows.
fn read_features(path: &Path) -> anyhow::Result<Features> {
    if path.extension().is_some_and(|e| e == "npy") {
        let bytes = std::fs::read(path).with_context(|| format!("reading features {}", path.display()))?;
        let a = strata_graph::npz::NpyArray::parse(bytes, path, "features")?;
        if a.shape.len() != 2 {
            bail!("{}: features must be a 2-D array (nodes × features), found shape {:?}", path.display(), a.shape);
        }
        let data = a.f32_values().with_context(|| format!("{}: features must be numeric", path.display()))?;
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            bail!("{}: feature {} of row {} is not finite", path.display(), i % a.shape[1], i / a.shape[1]);
        }
        return Ok(Features::dense(a.shape[0], a.shape[1], data));
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading features {}", path.display()))?;
    let (mut data, mut cols) = (Vec::new(), None);
    let mut rows = 0;
    for (no, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let vals: Vec<&str> = t.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).collect();
        match cols {
            None => cols = Some(vals.len()),
            Some(c) if c != vals.len() => bail!("{} line {}: {} values where earlier rows have {c}", path.display(), no + 1, vals.len()),
            _ => {}
        }
        for v in vals {
            let x: f32 = v.parse().ok().filter(|x: &f32| x.is_finite()).with_context(|| format!("{} line {}: `{v}` is not a finite number", path.display(), no + 1))?;
            data.push(x);
        }
        rows += 1;
    }
    let cols = cols.with_context(|| format!("{}: no feature rows", path.display()))?;
    Ok(Features::dense(rows, cols, data))
}

/// Loads the graph and its features; edge lists are normalised (self loops dropped, duplicate
/// and reversed edges merged, both logged) and their ids checked against the feature rows.
fn load_graph(g: &GraphArgs) -> anyhow::Result<(CsrGraph, Features, GraphRecord)> {
    let (graph, features, dataset) = match (&g.dataset, &g.edges) {
        (Some(name), _) => {
            let d = strata_graph::load(name, None)?;
            (d.graph.symmetrized().without_self_loops(), d.features, Some(name.clone()))
        }
        (None, Some(path)) => {
            let list = strata_graph::formats::read_edge_list(path)?;
            if list.edges.is_empty() {
                bail!("{}: no edges", path.display());
            }
            let features = g.features.as_deref().map(read_features).transpose()?;
            let n = match &features {
                Some(f) => {
                    let rows = f.num_nodes();
                    if let Some((i, &(u, v))) = list.edges.iter().enumerate().find(|(_, &(u, v))| u.max(v) as usize >= rows) {
                        bail!(
                            "{}: edge #{} ({u}, {v}) names node {}, but {} has {rows} rows (ids 0..{})",
                            path.display(),
                            i + 1,
                            u.max(v),
                            g.features.as_ref().unwrap().display(),
                            rows - 1
                        );
                    }
                    rows
                }
                None => list.implied_nodes(),
            };
            let loops = list.edges.iter().filter(|(u, v)| u == v).count();
            let mut pairs: Vec<(i64, i64)> = list.edges.iter().filter(|(u, v)| u != v).map(|&(u, v)| (u.min(v), u.max(v))).collect();
            pairs.sort_unstable();
            let before = pairs.len();
            pairs.dedup();
            if loops > 0 {
                tracing::warn!("{}: dropped {loops} self loop(s)", path.display());
            }
            if before > pairs.len() {
                tracing::warn!("{}: merged {} duplicate edge(s) (the graph is undirected: (u, v) and (v, u) are one edge)", path.display(), before - pairs.len());
            }
            let both: Vec<(i64, i64)> = pairs.iter().flat_map(|&(u, v)| [(u, v), (v, u)]).collect();
            let graph = CsrGraph::from_edges(&path.display().to_string(), n, &both, None)?;
            (graph, features.unwrap_or_else(|| Features::identity(n)), None)
        }
        (None, None) => bail!("give the graph with --dataset NAME or --edges FILE"),
    };
    let rec = GraphRecord {
        dataset,
        edges: g.edges.clone(),
        features: g.features.clone(),
        nodes: graph.num_nodes(),
        undirected_edges: graph.num_undirected_edges(),
        fingerprint: graph.fingerprint(),
    };
    Ok((graph, features, rec))
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

fn train(a: TrainLinkArgs) -> anyhow::Result<()> {
    strata_nn::set_threads(a.threads);
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
    if a.split.len() != 3 || a.split.iter().any(|&f| !(0.0..1.0).contains(&f)) || (a.split.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
        bail!("--split {:?}: expected three fractions train,val,test in [0, 1) summing to 1", a.split);
    }
    let (graph, features, rec) = load_graph(&a.graph)?;
    let split = LinkSplit::new(&graph, a.split[1], a.split[2], a.seed)?;
    eprintln!(
        "strata linkpred: {} nodes, {} edges → {} train / {} val / {} test (+ as many negatives) · {} + {:?}",
        rec.nodes,
        rec.undirected_edges,
        split.train_pos.len(),
        split.val_pos.len(),
        split.test_pos.len(),
        cfg.encoder.name(),
        cfg.decoder
    );
    let task = LinkTask::new(split, &features, device, true, Kernel::EdgeList);
    let pb = progress(cfg.epochs as u64, "linkpred");
    let (model, report) = train_link_predictor(&task, &cfg, a.seed, |e| {
        pb.inc(1);
        pb.set_message(format!("loss {:.4} val hits@{} {:.3}", e.loss, cfg.hits_k, e.val_hits));
    })?;
    pb.finish_and_clear();
    // Save: weights, split, manifest (each written atomically; the manifest last).
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    strata_nn::checkpoint::save_checkpoint(model.vs(), &a.out.join("model.safetensors"), &json!({"format": FORMAT}))?;
    let mut w = NpzWriter::new();
    let s = &task.split;
    for (k, p) in [("train_pos", &s.train_pos), ("val_pos", &s.val_pos), ("val_neg", &s.val_neg), ("test_pos", &s.test_pos), ("test_neg", &s.test_neg)] {
        pairs_array(&mut w, k, p);
    }
    strata_nn::checkpoint::write_atomic(&a.out.join("split.npz"), &w.to_bytes())?;
    // Final embeddings, so `predict` answers without running the encoder again.
    let z = tch::no_grad(|| model.embed(&task.input, false)).to(Device::Cpu);
    strata_nn::checkpoint::save_tensors(&a.out.join("embeddings.safetensors"), &[("z", &z)])?;
    let manifest = Manifest {
        format: FORMAT.into(),
        config: cfg.clone(),
        seed: a.seed,
        split: a.split.clone(),
        graph: rec,
        feature_dim: features.dim(),
        best_epoch: report.best_epoch,
        epochs_run: report.epochs_run,
        val: report.val,
        test: report.test,
    };
    strata_nn::checkpoint::write_atomic(&a.out.join("manifest.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    print!("{}", metrics_table(&[("val", &report.val), ("test", &report.test)]));
    eprintln!("best epoch {} of {}; saved to {}", report.best_epoch + 1, report.epochs_run, a.out.display());
    let step_ms: Vec<f64> = report.curve.iter().map(|e| e.step_ms).collect();
    if let Some(p) = &a.json {
        write_json(p, &json!({
            "val": report.val, "test": report.test, "best_epoch": report.best_epoch, "epochs_run": report.epochs_run,
            "epoch_ms_median": strata_nn::metrics::median(&step_ms), "config": cfg, "model_dir": a.out, "curve": report.curve,
        }))?;
    }
    Ok(())
}

fn metrics_table(rows: &[(&str, &LinkMetrics)]) -> String {
    let mut t = vec![["set", "roc_auc", "ap", "hits@20", "hits@50", "hits@100", "mrr"].map(String::from).to_vec()];
    for (name, m) in rows {
        let f = |x: f64| format!("{x:.4}");
        t.push(vec![name.to_string(), f(m.roc_auc), f(m.ap), f(m.hits_20), f(m.hits_50), f(m.hits_100), f(m.mrr)]);
    }
    table(&t)
}

/// A saved model with its split, on the graph it was trained on.
struct Loaded {
    manifest: Manifest,
    task: LinkTask,
    model: LinkModel,
    graph: CsrGraph,
}

fn load_model(dir: &Path, graph_args: &GraphArgs, device: &str) -> anyhow::Result<Loaded> {
    let device = strata_nn::parse_device(device)?;
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).with_context(|| format!("{} is not a linkpred model directory (no readable manifest.json)", dir.display()))?;
    let manifest: Manifest = serde_json::from_str(&text).with_context(|| format!("{}: invalid manifest", mpath.display()))?;
    if manifest.format != FORMAT {
        bail!("{}: format `{}`, expected `{FORMAT}`", mpath.display(), manifest.format);
    }
    // The graph: as given on the command line, else where the manifest says it came from.
    let given = graph_args.dataset.is_some() || graph_args.edges.is_some();
    let args = if given {
        graph_args.clone()
    } else {
        GraphArgs { dataset: manifest.graph.dataset.clone(), edges: manifest.graph.edges.clone(), features: manifest.graph.features.clone() }
    };
    let (graph, features, rec) = load_graph(&args)?;
    if rec.fingerprint != manifest.graph.fingerprint {
        let what = args.dataset.clone().or(args.edges.as_ref().map(|p| p.display().to_string())).unwrap_or_default();
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
    let both: Vec<(i64, i64)> = train_pos.iter().flat_map(|&(u, v)| [(u as i64, v as i64), (v as i64, u as i64)]).collect();
    let split = LinkSplit {
        train_graph: CsrGraph::from_edges(&spath.display().to_string(), n, &both, None)?,
        val_pos: read_pairs(&mut npz, "val_pos")?,
        val_neg: read_pairs(&mut npz, "val_neg")?,
        test_pos: read_pairs(&mut npz, "test_pos")?,
        test_neg: read_pairs(&mut npz, "test_neg")?,
        train_pos,
    };
    for (k, p) in [("val_pos", &split.val_pos), ("val_neg", &split.val_neg), ("test_pos", &split.test_pos), ("test_neg", &split.test_neg)] {
        if let Some(&(u, v)) = p.iter().find(|&&(u, v)| u >= n || v >= n) {
            bail!("{}: {k} holds pair ({u}, {v}) outside the graph's {n} nodes", spath.display());
        }
    }
    let task = LinkTask::new(split, &features, device, true, Kernel::EdgeList);
    let mut model = LinkModel::new(&manifest.config, &task.graph, &task.input)?;
    strata_nn::checkpoint::load_checkpoint(model.vs_mut(), &dir.join("model.safetensors"))?;
    Ok(Loaded { manifest, task, model, graph })
}

fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let l = load_model(&a.model_dir, &a.graph, &a.device)?;
    let test = l.task.evaluate(&l.model, true);
    print!("{}", metrics_table(&[("test", &test)]));
    if let Some(p) = &a.json {
        write_json(p, &json!({"roc_auc": test.roc_auc, "ap": test.ap, "hits@20": test.hits_20, "hits@50": test.hits_50, "hits@100": test.hits_100, "mrr": test.mrr,
            "test_edges": l.task.split.test_pos.len(), "model_dir": a.model_dir, "encoder": l.manifest.config.encoder.name()}))?;
    }
    Ok(())
}

fn predict(a: PredictArgs) -> anyhow::Result<()> {
    let l = load_model(&a.model_dir, &a.graph, &a.device)?;
    let n = l.graph.num_nodes();
    let dev = l.task.graph.device;
    let t0 = std::time::Instant::now();
    let rows: Vec<(usize, usize, f64)> = tch::no_grad(|| -> anyhow::Result<_> {
        let cached = a.model_dir.join("embeddings.safetensors");
        let z = if !a.recompute && cached.exists() {
            let z = strata_nn::checkpoint::load_tensor(&cached, "z")?.to(dev);
            if z.size() != [n as i64, l.manifest.config.out] {
                bail!("{}: embeddings of shape {:?}, expected [{n}, {}]; rerun with --recompute", cached.display(), z.size(), l.manifest.config.out);
            }
            z
        } else {
            l.model.embed(&l.task.input, false)
        };
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
                    bail!("{}: pair #{} ({u}, {v}) names node {}, but the graph has {n} nodes", path.display(), i + 1, u.max(v));
                }
                list.edges.iter().map(|&(u, v)| (u as usize, v as usize)).collect()
            }
            (None, None) => bail!("give --node N or --pairs FILE"),
        };
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let (s, d) = strata_nn::linkpred::pair_tensors(&pairs, dev);
        let scores = Vec::<f64>::try_from(l.model.score(&z, &s, &d, false).to_kind(Kind::Double).to(Device::Cpu))?;
        let mut rows: Vec<(usize, usize, f64)> = pairs.iter().zip(scores).map(|(&(u, v), s)| (u, v, s)).collect();
        if a.node.is_some() {
            rows.sort_by(|x, y| y.2.total_cmp(&x.2));
            rows.truncate(a.top);
        }
        Ok(rows)
    })?;
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
        let items: Vec<_> = rows.iter().map(|&(u, v, s)| json!({"src": u, "dst": v, "score": s, "probability": prob(s)})).collect();
        write_json(p, &json!({"node": a.node, "top": a.node.map(|_| a.top), "latency_ms": latency_ms, "predictions": items}))?;
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
