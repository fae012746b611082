//! Node-classification model directories (`strata train --out DIR`, format `strata-node/1`)
//! and `strata predict DIR`: the predicted class and every class's probability for each node,
//! the node embeddings, and the accuracy where the graph has labels, by exact full-graph
//! inference on the graph the model was trained on or on another with the same feature width.

use crate::model_dir::{self, GraphRecord};
use crate::source::GraphSource;
use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use strata_graph::{Dataset, FeatureNorm};
use strata_nn::{Kernel, Model, ModelConfig, NodeTask};
use strata_pipe::{PipeError, PipelineConfig};
use tch::{Kind, Tensor};

/// The format tag of a node-classification model directory.
pub const FORMAT: &str = "strata-node/1";
/// The files of a model directory besides the manifest.
const MODEL_FILES: [&str; 1] = ["model.safetensors"];
const RETRAIN: &str = "Retrain with `strata train --out DIR`.";

/// `manifest.json` of a node-classification model.
#[derive(Serialize, Deserialize, Debug)]
pub struct Manifest {
    pub format: String,
    /// Always `node-classification`.
    pub task: String,
    /// The architecture's name and its full configuration: `config` for a model `strata train`
    /// trained (`ModelKind`'s layers), `pipeline` for one `strata launch` trained (the
    /// distributed modes' layer slots, `slotN.…`), with the plan it ran.
    pub model: String,
    #[serde(default)]
    pub config: Option<ModelConfig>,
    #[serde(default)]
    pub pipeline: Option<PipelineConfig>,
    #[serde(default)]
    pub plan: Option<serde_json::Value>,
    /// `bp` (backprop).
    pub trainer: String,
    /// `single-process` (`strata train`), or the distributed mode (`pipeline`, `graph`,
    /// `hybrid`).
    pub mode: String,
    pub graph: GraphRecord,
    /// The Pro-GNN attack whose poisoned adjacency was trained on, if any.
    pub attack: Option<String>,
    pub feature_dim: usize,
    pub classes: usize,
    /// The feature normalisation applied (resolved: never `auto`); `predict` applies the same.
    pub feature_normalization: FeatureNorm,
    /// How the split was drawn (`public`, `random`, or `default`: `strata launch`'s) and the
    /// seed (also the weights' seed).
    pub split: String,
    pub seed: u64,
    /// The epoch whose weights were kept (best validation), of `epochs_run`, as the trainer
    /// counts them (`train` from 1, `launch` from 0).
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub val_accuracy: f64,
    pub test_accuracy: f64,
    /// SHA-256 of every other file; `predict` refuses a mismatch.
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    /// The manifest of a model `strata train` trained (`files` filled in by [`save`]).
    // Long on purpose: one field per line of what a single-process model records.
    #[allow(clippy::too_many_arguments)]
    pub fn single_process(
        model: &Model,
        graph: GraphRecord,
        attack: Option<String>,
        feature_dim: usize,
        classes: usize,
        feature_normalization: FeatureNorm,
        split: String,
        run: &strata_nn::RunReport,
    ) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            task: "node-classification".into(),
            model: model.config.model.name().into(),
            config: Some(model.config.clone()),
            pipeline: None,
            plan: None,
            trainer: "bp".into(),
            mode: "single-process".into(),
            graph,
            attack,
            feature_dim,
            classes,
            feature_normalization,
            split,
            seed: run.seed,
            best_epoch: run.best_epoch,
            epochs_run: run.epochs_run,
            val_accuracy: run.val_accuracy,
            test_accuracy: run.test_accuracy,
            files: BTreeMap::new(),
        }
    }

    /// Layers of the model, for the log.
    fn layers(&self) -> usize {
        self.config.as_ref().map(|c| c.layers).or(self.pipeline.as_ref().map(|p| p.layers)).unwrap_or(0)
    }
}

/// Writes a model directory at `out`: `weights` (by variable name) as model.safetensors, then
/// the manifest with their checksum, atomically (a staging directory renamed into place; an
/// `out` that holds anything but a node model directory is refused, before any training, by
/// [`check_out`]).
pub fn save(out: &Path, mut manifest: Manifest, weights: &[(String, Tensor)]) -> anyhow::Result<()> {
    let staging = model_dir::staging_for(out, FORMAT, "node-classification")?;
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let result = (|| {
        let named: Vec<(&str, &Tensor)> = weights.iter().map(|(k, v)| (k.as_str(), v)).collect();
        strata_nn::checkpoint::save_tensors(&staging.join("model.safetensors"), &named)?;
        manifest.files = model_dir::checksums(&staging, &MODEL_FILES)?;
        model_dir::write_manifest(&staging, &manifest)?;
        model_dir::replace_dir(&staging, out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Refuses, before any work, a predictions path `flag` gives whose format is not known.
pub fn check_predictions_path(flag: &str, path: &Path) -> anyhow::Result<()> {
    if !matches!(path.extension().and_then(|e| e.to_str()), Some("csv" | "npy")) {
        bail!("{flag} {}: predictions are written as .csv or .npy", path.display());
    }
    Ok(())
}

/// Refuses, before any training, an `--out` that exists and is not a node model directory.
pub fn check_out(out: &Path) -> anyhow::Result<()> {
    model_dir::staging_for(out, FORMAT, "node-classification").map(|_| ())
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A model directory written by `strata train --out`.
    pub model: PathBuf,
    /// The graph to predict on (default: the one the model was trained on). Another graph (an
    /// updated one: new nodes or edges) must have the model's feature width.
    #[command(flatten)]
    pub graph: GraphSource,
    /// Write each node's id, predicted class and every class's probability: CSV (`.csv`, a
    /// header `node,class,p0,p1,…`) or NumPy (`.npy`, float64 `[nodes, 2 + classes]`, the same
    /// columns).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the node embeddings (what the model's last layer reads), float32 `[nodes, width]`
    /// `.npy`, rows in the order of --nodes.
    #[arg(long)]
    pub embeddings: Option<PathBuf>,
    /// Only these nodes, e.g. `0,5,10-19` (default: every node).
    #[arg(long)]
    pub nodes: Option<String>,
    /// Write a JSON report here (accuracy where the graph has labels).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run the inference over this many pipeline stages, each a worker process started here
    /// (for a graph that does not fit one process); 0: in this process. Models of `strata
    /// launch`, and GCNII models of `strata train` (the same layers).
    #[arg(long, default_value_t = 0)]
    pub stages: usize,
    #[command(flatten)]
    pub compute: crate::source::ComputeArgs,
}

/// `--nodes`: comma-separated ids and inclusive ranges `a-b`, each below `n`.
fn parse_nodes(spec: &str, n: usize) -> anyhow::Result<Vec<i64>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let id = |s: &str| -> anyhow::Result<usize> {
            let v: usize = s
                .trim()
                .parse()
                .with_context(|| format!("--nodes: `{s}` is not a node id (expected e.g. 0,5,10-19)"))?;
            if v >= n {
                bail!("--nodes: node {v} does not exist (the graph has {n} nodes: 0..{})", n - 1);
            }
            Ok(v)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (id(a)?, id(b)?);
                if a > b {
                    bail!("--nodes: range {part} is empty");
                }
                out.extend((a..=b).map(|v| v as i64));
            }
            None => out.push(id(part)? as i64),
        }
    }
    if out.is_empty() {
        bail!("--nodes: no node given");
    }
    Ok(out)
}

/// Reads and verifies a node model directory.
pub fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let m: Manifest = model_dir::read_manifest(dir, FORMAT, &MODEL_FILES, |m: &Manifest| &m.files, RETRAIN)?;
    if m.task != "node-classification" {
        bail!("{}: task `{}`, `strata predict` answers node-classification models", dir.display(), m.task);
    }
    Ok(m)
}

/// The model's graph, or the one given: features of the model's width; whether it is the
/// graph trained on (same fingerprint).
fn graph_for(m: &Manifest, given: &GraphSource) -> anyhow::Result<(Dataset, bool, String)> {
    let (source, attack) =
        if given.is_given() { (given.clone(), None) } else { (m.graph.source.clone(), m.attack.as_deref()) };
    let what = source.describe("cora");
    let d = source.load("cora", attack)?;
    if d.features.dim() != m.feature_dim {
        bail!(
            "{what}: its features have {} columns, the model was trained on {}; refusing to predict",
            d.features.dim(),
            m.feature_dim
        );
    }
    let fingerprint = d.graph.fingerprint();
    let same = fingerprint == m.graph.fingerprint;
    if !same {
        eprintln!(
            "strata predict: {what} differs from the graph the model was trained on ({} nodes, {} edges, fingerprint {} now; {} nodes, {} edges, fingerprint {} then): predicting on it as given",
            d.num_nodes(),
            d.graph.num_undirected_edges(),
            &fingerprint[..12],
            m.graph.nodes,
            m.graph.undirected_edges,
            &m.graph.fingerprint[..12]
        );
    }
    Ok((d, same, fingerprint))
}

/// What one inference pass over a graph gives.
pub struct Prediction {
    /// `[n, classes]` probabilities (softmax of the logits), float32.
    pub probabilities: Tensor,
    pub embeddings: Option<Tensor>,
}

/// Exact full-graph inference of `model` (eval mode, no autograd).
pub fn infer(model: &Model, task: &NodeTask) -> Prediction {
    tch::no_grad(|| {
        let (hidden, logits) = model.forward_with_hidden(&task.input, false);
        let logits = logits.to_kind(Kind::Float).to_device(tch::Device::Cpu);
        Prediction {
            probabilities: logits.softmax(-1, Kind::Float),
            embeddings: hidden.map(|h| h.to_kind(Kind::Float).to_device(tch::Device::Cpu)),
        }
    })
}

/// Exact inference of a model `strata launch` trained, in this process: the distributed
/// modes' own exact inference path (strata-pipe's pipeline stage, `Part::Whole`) on one stage
/// holding every slot, one chunk; rows back in the graph's own order.
fn infer_pipeline(
    dir: &Path,
    m: &Manifest,
    trained: &PipelineConfig,
    dataset: &Dataset,
    device: tch::Device,
) -> anyhow::Result<Prediction> {
    let cfg = PipelineConfig {
        mode: strata_pipe::Mode::Pipeline,
        ways: 1,
        stages: 1,
        chunks: 1,
        warm_start: false,
        ..trained.clone()
    };
    if cfg.trainer != strata_pipe::PipeTrainer::Bp {
        bail!(
            "{}: a model trained with --trainer {} has no classifier to predict with",
            dir.display(),
            cfg.trainer.name()
        );
    }
    let split = crate::source::default_split(dataset, m.seed);
    let plan = strata_pipe::PipelinePlan::new(dataset, &split, &cfg);
    let mut run = strata_pipe::InProcess::new(&plan, device)?;
    let path = dir.join("model.safetensors");
    {
        let core = run.engines_mut()[0].core_mut();
        core.vs.load(&path).with_context(|| {
            format!("{}: does not hold a {} model of this configuration ({RETRAIN})", path.display(), m.model)
        })?;
        core.capture = true;
    }
    run.evaluate(0)?;
    let (hidden, logits) = run.engines_mut()[0]
        .core_mut()
        .outputs
        .take()
        .context("the pipeline's inference pass kept no output (an internal error)")?;
    Ok(back_in_order(&plan.order, hidden, logits))
}

/// The distributed modes' configuration of the model, and its weights under their names
/// (`slotN.…`): a launched model's as saved; a GCNII of `strata train` renamed (`lin_in` →
/// slot 0, `conv{l}` → slot l + 1, `lin_out` → slot L + 1: the same layers).
fn as_pipeline(dir: &Path, m: &Manifest) -> anyhow::Result<(PipelineConfig, Vec<(String, Tensor)>)> {
    let path = dir.join("model.safetensors");
    let weights = Tensor::read_safetensors(&path).with_context(|| format!("reading {}", path.display()))?;
    match (&m.pipeline, &m.config) {
        (Some(p), _) => Ok((p.clone(), weights)),
        (None, Some(c)) if c.model == strata_nn::ModelKind::Gcnii => {
            let mut p = PipelineConfig::gcnii(c.layers, 1);
            p.hidden = c.hidden;
            p.alpha = c.alpha;
            p.theta = c.theta;
            p.seed = m.seed;
            let rename = |k: &str| -> anyhow::Result<String> {
                let (head, rest) = k.split_once('.').with_context(|| format!("{}: unexpected name `{k}`", path.display()))?;
                let slot = match head {
                    "lin_in" => 0,
                    "lin_out" => c.layers + 1,
                    conv => {
                        conv.strip_prefix("conv").and_then(|l| l.parse::<usize>().ok()).map(|l| l + 1).with_context(
                            || format!("{}: `{k}` is not a GCNII parameter", path.display()),
                        )?
                    }
                };
                Ok(format!("slot{slot}.{rest}"))
            };
            let renamed = weights.into_iter().map(|(k, t)| Ok((rename(&k)?, t))).collect::<anyhow::Result<_>>()?;
            Ok((p, renamed))
        }
        _ => bail!(
            "--stages: a {} model of `strata train` has other layers than the distributed modes' (GCNII has the same): predict it in one process",
            m.model
        ),
    }
}

/// `--stages P`: the inference over P local worker processes (pipeline stages), the launcher
/// here: each stage gets its share of the graph and its slots' weights, runs the exact
/// inference pass, and the last stage's output comes back; rows back in the graph's order.
fn infer_over_workers(a: &PredictArgs, m: &Manifest, dataset: &Dataset) -> anyhow::Result<Prediction> {
    let (trained, weights) = as_pipeline(&a.model, m)?;
    if trained.trainer != strata_pipe::PipeTrainer::Bp {
        bail!(
            "{}: a model trained with --trainer {} has no classifier to predict with",
            a.model.display(),
            trained.trainer.name()
        );
    }
    let used = FeatureNorm::Auto.resolve(&dataset.features);
    if used != m.feature_normalization {
        bail!(
            "--stages: the workers normalise features as `{used}` on this graph, the model was trained on `{}`: predict it in one process",
            m.feature_normalization
        );
    }
    let cfg = PipelineConfig {
        mode: strata_pipe::Mode::Pipeline,
        ways: 1,
        stages: a.stages,
        chunks: a.stages,
        warm_start: false,
        ..trained
    };
    cfg.validate()?;
    let split = crate::source::default_split(dataset, m.seed);
    let mut plan = strata_pipe::PipelinePlan::new(dataset, &split, &cfg);
    plan.stage_to_disk(None).context("writing the stage data")?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (hidden, logits) = rt.block_on(async {
        let token = crate::launch::fresh_token();
        let (_children, addrs) = crate::launch::spawn_local(a.stages, &a.compute.device, Some(&token), None).await?;
        let creds = crate::launch::credentials(Some(token), None, "launcher")?;
        let launcher =
            strata_pipe::launcher::Launcher::connect(&addrs, &creds, std::time::Duration::from_secs(15)).await?;
        let result = async {
            let mut launcher = launcher;
            launcher.configure(&plan, None).await?;
            for (rank, spec) in plan.specs.iter().enumerate() {
                launcher
                    .load_parameters(rank, strata_pipe::layers::slots_share(&weights, spec.first..spec.last))
                    .await?;
            }
            let req = strata_pipe::proto::EpochRequest { capture: true, ..Default::default() };
            launcher.epoch(req).await?;
            let last = plan.specs.len() - 1;
            let out = launcher.outputs(last, plan.specs[last].classes).await?;
            launcher.shutdown("inference finished").await;
            Ok::<_, PipeError>(out)
        }
        .await?;
        if result.1.size()[0] != plan.order.len() as i64 {
            bail!("the last stage sent {} rows of output, the graph has {}", result.1.size()[0], plan.order.len());
        }
        Ok::<_, anyhow::Error>(result)
    })?;
    Ok(back_in_order(&plan.order, hidden, logits))
}

/// Rows of the plan's order (row i is vertex `order[i]`) back in the graph's own order, as
/// probabilities and embeddings on the CPU.
pub fn back_in_order(order: &[usize], hidden: Tensor, logits: Tensor) -> Prediction {
    let mut inverse = vec![0i64; order.len()];
    order.iter().enumerate().for_each(|(new, &old)| inverse[old] = new as i64);
    let back = |t: Tensor| {
        let idx = Tensor::from_slice(&inverse).to_device(t.device());
        t.index_select(0, &idx).to_kind(Kind::Float).to_device(tch::Device::Cpu)
    };
    let logits = back(logits);
    Prediction { probabilities: logits.softmax(-1, Kind::Float), embeddings: Some(back(hidden)) }
}

/// Writes rows `rows` of `p` to `path` (`.csv` or `.npy`), atomically, each under the node id
/// `ids[i]` (the same as `rows` unless the graph was renumbered).
pub fn write_predictions(path: &Path, p: &Prediction, rows: &[i64], ids: &[i64]) -> anyhow::Result<()> {
    let nodes = ids;
    let idx = Tensor::from_slice(rows);
    let probs = p.probabilities.index_select(0, &idx).contiguous();
    let classes = probs.size()[1] as usize;
    let flat = Vec::<f32>::try_from(probs.view(-1))?;
    let argmax = Vec::<i64>::try_from(probs.argmax(1, false))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let bytes = match ext {
        "csv" => {
            let mut s = String::from("node,class");
            (0..classes).for_each(|c| s.push_str(&format!(",p{c}")));
            s.push('\n');
            for (r, &node) in nodes.iter().enumerate() {
                s.push_str(&format!("{node},{}", argmax[r]));
                flat[r * classes..(r + 1) * classes].iter().for_each(|v| s.push_str(&format!(",{v:.6}")));
                s.push('\n');
            }
            s.into_bytes()
        }
        "npy" => {
            let mut v = Vec::with_capacity(nodes.len() * (classes + 2) * 8);
            for (r, &node) in nodes.iter().enumerate() {
                v.extend((node as f64).to_le_bytes());
                v.extend((argmax[r] as f64).to_le_bytes());
                flat[r * classes..(r + 1) * classes].iter().for_each(|&x| v.extend((x as f64).to_le_bytes()));
            }
            strata_graph::npz::npy_bytes("<f8", &[nodes.len(), classes + 2], &v)
        }
        _ => bail!("{}: predictions are written as .csv or .npy", path.display()),
    };
    strata_nn::checkpoint::write_atomic(path, &bytes)?;
    Ok(())
}

/// Writes the rows `nodes` of `embeddings` as a float32 `.npy`, atomically.
fn write_embeddings(path: &Path, embeddings: &Tensor, nodes: &[i64]) -> anyhow::Result<()> {
    let e = embeddings.index_select(0, &Tensor::from_slice(nodes)).contiguous();
    let width = e.size()[1] as usize;
    let v = Vec::<f32>::try_from(e.view(-1))?;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    strata_nn::checkpoint::write_atomic(path, &strata_graph::npz::npy_bytes("<f4", &[nodes.len(), width], &bytes))?;
    Ok(())
}

/// Loads the weights of a verified model directory into a model built on `task`'s graph.
pub fn load_model(dir: &Path, m: &Manifest, config: &ModelConfig, task: &NodeTask) -> anyhow::Result<Model> {
    let mut model = Model::new(config, &task.graph, &task.input, m.classes as i64)?;
    let path = dir.join("model.safetensors");
    model.vs.load(&path).with_context(|| {
        format!("{}: does not hold a {} model of this configuration ({RETRAIN})", path.display(), m.model)
    })?;
    Ok(model)
}

// Long on purpose: the subcommand in the order the user sees it (model, graph, inference, outputs, report).
pub fn run(a: PredictArgs) -> anyhow::Result<()> {
    let outputs: Vec<(&str, &Path)> = [("--out", &a.out), ("--embeddings", &a.embeddings), ("--json", &a.json)]
        .into_iter()
        .filter_map(|(f, p)| Some((f, p.as_deref()?)))
        .collect();
    if outputs.is_empty() {
        bail!("say what to write: --out PREDICTIONS.csv|.npy, --embeddings EMBEDDINGS.npy or --json REPORT.json");
    }
    if let Some(p) = &a.out {
        check_predictions_path("--out", p)?;
    }
    let model_files = [
        ("the model's manifest", a.model.join("manifest.json")),
        ("the model's weights", a.model.join("model.safetensors")),
    ];
    let mut inputs: Vec<(&str, &Path)> = model_files.iter().map(|(f, p)| (*f, p.as_path())).collect();
    inputs.push(("the model directory", a.model.as_path()));
    inputs.extend(a.graph.inputs());
    crate::report::distinct_paths(&outputs, &inputs)?;
    let device = a.compute.start()?;
    let m = read_manifest(&a.model)?;
    let (dataset, same_graph, fingerprint) = graph_for(&m, &a.graph)?;
    let n = dataset.num_nodes();
    let nodes: Vec<i64> = match &a.nodes {
        Some(spec) => parse_nodes(spec, n)?,
        None => (0..n as i64).collect(),
    };
    eprintln!(
        "strata predict: {} ({} layers, {} classes) on {} ({n} nodes) · {}",
        m.model,
        m.layers(),
        m.classes,
        dataset.name,
        strata_nn::device_name(device)
    );
    let spinner = crate::report::spinner("inference");
    let t = std::time::Instant::now();
    let p = match (&m.config, &m.pipeline) {
        _ if a.stages > 0 => infer_over_workers(&a, &m, &dataset)?,
        (Some(config), _) => {
            let task = NodeTask::new(&dataset, device, m.feature_normalization, Kernel::for_graph(&dataset.graph));
            let model = load_model(&a.model, &m, config, &task)?;
            infer(&model, &task)
        }
        (None, Some(pipeline)) => infer_pipeline(&a.model, &m, pipeline, &dataset, device)?,
        (None, None) => bail!("{}: the manifest holds no model configuration ({RETRAIN})", a.model.display()),
    };
    let infer_ms = t.elapsed().as_secs_f64() * 1e3;
    spinner.finish_and_clear();
    if a.embeddings.is_some() && p.embeddings.is_none() {
        bail!("--embeddings: a {}-layer {} has no hidden layer to write", m.layers(), m.model);
    }
    if let Some(path) = &a.out {
        write_predictions(path, &p, &nodes, &nodes)?;
        eprintln!("wrote {} ({} nodes)", path.display(), nodes.len());
    }
    if let (Some(path), Some(e)) = (&a.embeddings, &p.embeddings) {
        write_embeddings(path, e, &nodes)?;
        eprintln!("wrote {} ({} × {})", path.display(), nodes.len(), e.size()[1]);
    }
    // Accuracy over the selected nodes that have a label the model knows.
    let predicted = Vec::<i64>::try_from(p.probabilities.argmax(1, false))?;
    let labelled: Vec<usize> = nodes
        .iter()
        .map(|&v| v as usize)
        .filter(|&v| dataset.labels[v] >= 0 && (dataset.labels[v] as usize) < m.classes)
        .collect();
    let accuracy = |set: &[usize]| {
        (!set.is_empty())
            .then(|| set.iter().filter(|&&v| predicted[v] == dataset.labels[v]).count() as f64 / set.len() as f64)
    };
    let labelled_accuracy = accuracy(&labelled);
    // The test split of the training run, drawn again the same way: only on the same graph.
    let test_accuracy = if same_graph && a.nodes.is_none() {
        let split = match m.split.as_str() {
            "default" => crate::source::default_split(&dataset, m.seed),
            how => crate::train::split_for(&dataset, how, m.seed)?,
        };
        accuracy(&split.test)
    } else {
        None
    };
    match (test_accuracy, labelled_accuracy) {
        (Some(t), _) => println!(
            "test accuracy {:.2} % (the training run reported {:.2} %) · {} nodes in {infer_ms:.0} ms",
            t * 100.0,
            m.test_accuracy * 100.0,
            nodes.len()
        ),
        (None, Some(l)) => {
            println!(
                "accuracy on {} labelled nodes {:.2} % · {} nodes in {infer_ms:.0} ms",
                labelled.len(),
                l * 100.0,
                nodes.len()
            )
        }
        (None, None) => println!("{} nodes in {infer_ms:.0} ms (no labels to score)", nodes.len()),
    }
    if let Some(path) = &a.json {
        let report = crate::reports::PredictReport {
            about: crate::reports::About::of("predict"),
            model_dir: a.model.clone(),
            model: m.model.clone(),
            graph: dataset.name.clone(),
            nodes: n,
            predicted_nodes: nodes.len(),
            fingerprint,
            same_graph_as_training: same_graph,
            test_accuracy,
            trained_test_accuracy: m.test_accuracy,
            labelled_nodes: labelled.len(),
            labelled_accuracy,
            inference_ms: infer_ms,
            peak_rss_bytes: strata_nn::memory::peak_rss_bytes(),
            predictions: a.out.clone(),
            embeddings: a.embeddings.clone(),
        };
        crate::reports::write(path, &report)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_are_parsed_and_checked() {
        assert_eq!(parse_nodes("0, 5,10-12", 20).unwrap(), vec![0, 5, 10, 11, 12]);
        for (bad, why) in [("20", "does not exist"), ("x", "not a node id"), ("5-3", "empty"), ("", "no node")] {
            let e = format!("{:#}", parse_nodes(bad, 20).unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
