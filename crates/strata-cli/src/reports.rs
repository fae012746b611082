//! The `--json` reports, one typed struct per report, and their JSON Schemas (`make docs` writes
//! them to `docs/schemas/`; a test fails when a file there differs from the types).
//!
//! One convention for every report ([`docs/reports.md`](../../../docs/reports.md)):
//! - the first keys are `report` (which command wrote it) and `version` (of its schema);
//! - accuracies, ROC-AUC, AP, Hits@K and MRR are fractions in [0, 1] (the printed tables show
//!   percent);
//! - epochs are 0-based indices (`best_epoch`, `curve[].epoch`), `epochs_run` a count;
//! - times say their unit in the key (`_ms`, `_seconds`), memory and volumes are bytes;
//! - a value that was not measured is `null` (an epoch without validation has no accuracy).

use schemars::JsonSchema;
use serde::Serialize;
use std::path::PathBuf;
use strata_nn::linkpred::LinkEpoch;
use strata_nn::metrics::{mean_std, median};
use strata_nn::{LinkMetrics, ModelConfig, ModelKind, NodeTask};

/// The version of every schema below; it changes when a key's meaning does.
pub const VERSION: u32 = 1;

/// Which command wrote a report and the version of its schema.
#[derive(Serialize, JsonSchema)]
pub struct About {
    /// The command: `train`, `launch`, `predict`, `linkpred-train`, `linkpred-eval`,
    /// `linkpred-predict`, `probe`, `refine` or `data-synth`.
    pub report: &'static str,
    pub version: u32,
    /// The strata release that wrote it.
    pub strata: &'static str,
}

impl About {
    pub fn of(report: &'static str) -> About {
        About { report, version: VERSION, strata: env!("CARGO_PKG_VERSION") }
    }
}

/// Mean, standard deviation (population) and the values over seeds, fractions.
#[derive(Serialize, JsonSchema)]
pub struct OverSeeds {
    #[schemars(range(min = 0.0, max = 1.0))]
    pub mean: f64,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub std: f64,
    #[schemars(inner(range(min = 0.0, max = 1.0)))]
    pub values: Vec<f64>,
}

impl OverSeeds {
    pub fn of(values: Vec<f64>) -> OverSeeds {
        let (mean, std) = mean_std(&values);
        OverSeeds { mean, std, values }
    }
    /// `mean ± std` in percent, as the tables print it.
    pub fn percent(&self) -> String {
        format!("{:.2} ± {:.2}", self.mean * 100.0, self.std * 100.0)
    }
    /// Over `values` when every one was measured (finite), else `None`.
    pub fn measured(values: Vec<f64>) -> Option<OverSeeds> {
        values.iter().all(|v| v.is_finite()).then(|| OverSeeds::of(values))
    }
}

/// A finite number, or `null` (not measured that epoch).
fn measured(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// One training epoch of node classification.
#[derive(Serialize, JsonSchema)]
pub struct EpochPoint {
    /// 0-based.
    pub epoch: usize,
    pub train_loss: f64,
    /// Validation loss and accuracies: `null` on epochs without validation (`val_every`).
    pub val_loss: Option<f64>,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub train_accuracy: Option<f64>,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub val_accuracy: Option<f64>,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub test_accuracy: Option<f64>,
    /// Wall time of the training step (forward, backward, optimizer).
    pub step_ms: f64,
}

impl From<&strata_nn::EpochStats> for EpochPoint {
    fn from(e: &strata_nn::EpochStats) -> EpochPoint {
        EpochPoint {
            epoch: e.epoch,
            train_loss: e.train_loss,
            val_loss: measured(e.val_loss),
            train_accuracy: measured(e.train_accuracy),
            val_accuracy: measured(e.val_accuracy),
            test_accuracy: measured(e.test_accuracy),
            step_ms: e.step_ms,
        }
    }
}

/// One seed's run of `strata train`.
#[derive(Serialize, JsonSchema)]
pub struct SeedRun {
    pub seed: u64,
    /// Epochs trained (for the layer-by-layer trainers: summed over layers).
    pub epochs_run: usize,
    /// The epoch whose weights were kept (best validation accuracy), 0-based; `null` for the
    /// layer-by-layer trainers, whose layers each keep their own (`layer_epochs`).
    pub best_epoch: Option<usize>,
    /// `null` without validation nodes.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub val_accuracy: Option<f64>,
    /// Test accuracy of the kept weights.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub test_accuracy: f64,
    /// Test accuracy of the prediction from layers 1..=ℓ for each ℓ (one entry, the last
    /// layer's, for backprop).
    #[schemars(inner(range(min = 0.0, max = 1.0)))]
    pub per_layer_accuracy: Vec<f64>,
    /// Epochs each layer trained (layer-by-layer trainers); `null` for backprop.
    pub layer_epochs: Option<Vec<usize>>,
    /// One training step of the whole model: the median over epochs (backprop), or the sum of
    /// each layer's mean step (layer-by-layer trainers).
    pub epoch_ms: f64,
    /// Every epoch (backprop; empty for the layer-by-layer trainers).
    pub curve: Vec<EpochPoint>,
}

/// The settings a `strata train` run used: a backprop model's or a ForwardGNN trainer's.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TrainConfig {
    Backprop(ModelConfig),
    Forward(strata_forward::ForwardConfig),
}

/// `strata train --json`, for every trainer.
#[derive(Serialize, JsonSchema)]
pub struct TrainReport {
    #[serde(flatten)]
    pub about: About,
    pub dataset: String,
    pub model: String,
    /// `bp` (backprop) or a ForwardGNN trainer (`ff`, `ff-vn`, `sf`, …).
    pub trainer: String,
    pub device: String,
    pub seeds: usize,
    /// Over seeds, of the kept weights (validation: `null` without validation nodes).
    pub test_accuracy: OverSeeds,
    pub val_accuracy: Option<OverSeeds>,
    /// Mean over seeds of each `runs[].per_layer_accuracy` entry.
    #[schemars(inner(range(min = 0.0, max = 1.0)))]
    pub per_layer_accuracy: Vec<f64>,
    /// Median over seeds of `runs[].epoch_ms` (backprop: after three warm-up epochs).
    pub epoch_ms_median: f64,
    /// Peak tensor memory above what was live at the start, and how it was measured.
    pub peak_memory_bytes: u64,
    pub memory_method: Option<String>,
    pub peak_rss_bytes: Option<u64>,
    /// The aggregation kernel (`csr`, `edge-list`; backprop only).
    pub kernel: Option<String>,
    /// The node order used (backprop only).
    pub reorder: Option<serde_json::Value>,
    /// The feature normalisation applied (after `auto` was resolved; backprop only).
    pub feature_normalization: Option<String>,
    pub config: TrainConfig,
    pub runs: Vec<SeedRun>,
}

impl TrainReport {
    /// The report of backprop runs.
    #[allow(clippy::too_many_arguments)]
    pub fn backprop(
        dataset: &str,
        kind: ModelKind,
        cfg: &ModelConfig,
        runs: &[strata_nn::RunReport],
        task: &NodeTask,
        reorder: serde_json::Value,
        peak_memory_bytes: u64,
        device: tch::Device,
    ) -> TrainReport {
        // The first epochs warm up allocators and caches: the medians leave them out.
        let step_ms = |r: &strata_nn::RunReport| -> Vec<f64> {
            r.curve.iter().skip(3.min(r.curve.len().saturating_sub(1))).map(|e| e.step_ms).collect()
        };
        let seed_runs: Vec<SeedRun> = runs
            .iter()
            .map(|r| SeedRun {
                seed: r.seed,
                epochs_run: r.epochs_run,
                best_epoch: Some(r.best_epoch),
                val_accuracy: measured(r.val_accuracy),
                test_accuracy: r.test_accuracy,
                per_layer_accuracy: vec![r.test_accuracy],
                layer_epochs: None,
                epoch_ms: median(&step_ms(r)),
                curve: r.curve.iter().map(EpochPoint::from).collect(),
            })
            .collect();
        let all_steps: Vec<f64> = runs.iter().flat_map(step_ms).collect();
        TrainReport {
            about: About::of("train"),
            dataset: dataset.to_string(),
            model: kind.name().into(),
            trainer: "bp".into(),
            device: strata_nn::device_name(device),
            seeds: runs.len(),
            test_accuracy: OverSeeds::of(runs.iter().map(|r| r.test_accuracy).collect()),
            val_accuracy: OverSeeds::measured(runs.iter().map(|r| r.val_accuracy).collect()),
            per_layer_accuracy: vec![mean_std(&runs.iter().map(|r| r.test_accuracy).collect::<Vec<_>>()).0],
            epoch_ms_median: median(&all_steps),
            peak_memory_bytes,
            memory_method: None,
            peak_rss_bytes: strata_nn::memory::peak_rss_bytes(),
            kernel: Some(task.graph.kernel.name().into()),
            reorder: Some(reorder),
            feature_normalization: Some(task.feature_norm.name().into()),
            config: TrainConfig::Backprop(cfg.clone()),
            runs: seed_runs,
        }
    }

    /// The report of ForwardGNN runs.
    pub fn forward(
        dataset: &str,
        cfg: &strata_forward::ForwardConfig,
        trainer: strata_forward::Trainer,
        runs: &[strata_forward::NodeReport],
        device: tch::Device,
    ) -> TrainReport {
        let layers = runs.first().map_or(0, |r| r.per_layer_accuracy.len());
        let per_layer = (0..layers)
            .map(|l| runs.iter().map(|r| r.per_layer_accuracy[l]).sum::<f64>() / runs.len() as f64)
            .collect();
        TrainReport {
            about: About::of("train"),
            dataset: dataset.to_string(),
            model: cfg.conv.name().into(),
            trainer: trainer.name().into(),
            device: strata_nn::device_name(device),
            seeds: runs.len(),
            test_accuracy: OverSeeds::of(runs.iter().map(|r| r.test_accuracy).collect()),
            val_accuracy: OverSeeds::measured(runs.iter().map(|r| r.val_accuracy).collect()),
            per_layer_accuracy: per_layer,
            epoch_ms_median: median(&runs.iter().map(|r| r.epoch_ms).collect::<Vec<_>>()),
            peak_memory_bytes: runs.iter().map(|r| r.peak_memory_bytes).max().unwrap_or(0),
            memory_method: runs.first().map(|r| r.memory_method.to_string()),
            peak_rss_bytes: strata_nn::memory::peak_rss_bytes(),
            kernel: None,
            reorder: None,
            feature_normalization: None,
            config: TrainConfig::Forward(cfg.clone()),
            runs: runs
                .iter()
                .map(|r| SeedRun {
                    seed: r.seed,
                    epochs_run: r.epochs.iter().sum(),
                    best_epoch: None,
                    val_accuracy: measured(r.val_accuracy),
                    test_accuracy: r.test_accuracy,
                    per_layer_accuracy: r.per_layer_accuracy.clone(),
                    layer_epochs: Some(r.epochs.clone()),
                    epoch_ms: r.epoch_ms,
                    curve: Vec::new(),
                })
                .collect(),
        }
    }
}

/// Bytes of one epoch by what they carried: activations and gradients across stages
/// (`layer`), halo rows between ways, weight all-reduce segments.
#[derive(Serialize, JsonSchema)]
pub struct ByKind {
    pub layer: f64,
    pub halo: f64,
    pub weight: f64,
}

/// Bytes per training epoch (median over epochs): measured, as the volume model predicts, and
/// what the sends put on the wire.
#[derive(Serialize, JsonSchema)]
pub struct BytesPerEpoch {
    pub measured: f64,
    pub predicted: f64,
    pub measured_by_kind: ByKind,
    pub predicted_by_kind: ByKind,
    /// Vertices with a neighbour in another way (0 in a pure pipeline).
    pub boundary_vertices: usize,
    pub parameters: usize,
    pub wire: f64,
    pub wire_overhead_ratio: f64,
}

/// `strata launch --json`: the run's shape, its accuracy (test at the best validation epoch),
/// the median epoch time after two warm-up epochs, the bytes, each worker's peak resident (and
/// CUDA) memory, each worker's median per-phase breakdown of a training epoch (seconds, the
/// same epochs as the median time), the settings and every epoch (each with every worker's
/// breakdown: `phases_per_worker`, `eval_phases_per_worker`).
#[derive(Serialize, JsonSchema)]
pub struct LaunchReport<'a> {
    #[serde(flatten)]
    pub about: About,
    pub mode: &'static str,
    pub dataset: &'a str,
    pub model: &'a str,
    pub layers: usize,
    pub stages: usize,
    pub ways: usize,
    pub workers: usize,
    /// Each stage's layer slots, `first..last`.
    pub stage_slots: Vec<String>,
    pub chunks: usize,
    pub epochs: usize,
    /// 0-based; the epoch whose validation accuracy was best.
    pub best_epoch: u64,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub test_accuracy: f64,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub best_val_accuracy: f64,
    pub epoch_ms_median: f64,
    /// The warm start's inference pass before the first epoch; null when none ran.
    pub warm_start_ms: Option<f64>,
    pub bytes_per_epoch: BytesPerEpoch,
    pub memory_bytes_per_worker: Vec<u64>,
    pub cuda_peak_bytes_per_worker: Vec<u64>,
    pub phases_median_per_worker: Vec<strata_pipe::Breakdown>,
    /// Each pipeline stage's choice of keeping or recomputing activations (null for workers
    /// that are not pipeline stages).
    pub activations_per_worker: Vec<Option<strata_pipe::Activations>>,
    pub config: &'a strata_pipe::PipelineConfig,
    pub curve: &'a [strata_pipe::launcher::LaunchEpoch],
}

/// `strata predict --json`; accuracies `null` where nothing could be scored.
#[derive(Serialize, JsonSchema)]
pub struct PredictReport {
    #[serde(flatten)]
    pub about: About,
    pub model_dir: PathBuf,
    pub model: String,
    pub graph: String,
    /// Nodes of the graph, and how many were predicted (`--nodes`).
    pub nodes: usize,
    pub predicted_nodes: usize,
    /// The graph's fingerprint, and whether it is the one the model was trained on.
    pub fingerprint: String,
    pub same_graph_as_training: bool,
    /// On the training run's test split (same graph, every node predicted), and what the
    /// training run reported for it.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub test_accuracy: Option<f64>,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub trained_test_accuracy: f64,
    /// Over the predicted nodes that carry a label the model knows.
    pub labelled_nodes: usize,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub labelled_accuracy: Option<f64>,
    /// The inference pass alone, and the process's peak resident memory.
    pub inference_ms: f64,
    pub peak_rss_bytes: Option<u64>,
    pub predictions: Option<PathBuf>,
    pub embeddings: Option<PathBuf>,
}

/// The settings of a link-prediction training: a GNN encoder's or a ForwardGNN trainer's
/// (NetInfoF_Act's are under `netinfof`).
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
pub enum LinkTrainConfig {
    Gnn(strata_nn::LinkConfig),
    Forward(strata_forward::ForwardConfig),
}

/// What NetInfoF_Act fitted.
#[derive(Serialize, JsonSchema)]
pub struct NetinfofFit {
    pub components: usize,
    pub dim: i64,
    pub lambda1: f64,
    pub lambda2: f64,
    /// Validation NetInfoF score of each component, by name.
    pub scores: std::collections::BTreeMap<String, f64>,
    /// The norm of each component's block of the fitted weights.
    pub component_norms: Vec<f64>,
}

/// `strata linkpred train --json`.
#[derive(Serialize, JsonSchema)]
pub struct LinkTrainReport {
    #[serde(flatten)]
    pub about: About,
    pub model_dir: PathBuf,
    /// gcn, sage, gat or netinfof.
    pub encoder: String,
    /// `bp`, a ForwardGNN link trainer (`sf`, `ff`) or `netinfof`.
    pub trainer: String,
    /// Metrics of the kept model on the validation and test pairs.
    pub val: LinkMetrics,
    pub test: LinkMetrics,
    /// 0-based epoch of the kept weights (`null` for the layer-by-layer trainers and
    /// NetInfoF_Act, which keep no single epoch).
    pub best_epoch: Option<usize>,
    /// Epochs trained (summed over layers for ForwardGNN; L-BFGS steps for NetInfoF_Act).
    pub epochs_run: usize,
    /// Median training step (backprop), or one step of every layer (ForwardGNN).
    pub epoch_ms_median: Option<f64>,
    pub train_seconds: f64,
    /// Every epoch (backprop; empty otherwise).
    pub curve: Vec<LinkEpoch>,
    /// Test ROC-AUC of the embedding of layers 1..=ℓ (ForwardGNN).
    #[schemars(inner(range(min = 0.0, max = 1.0)))]
    pub per_layer_auc: Option<Vec<f64>>,
    pub peak_memory_bytes: Option<u64>,
    pub config: Option<LinkTrainConfig>,
    pub netinfof: Option<NetinfofFit>,
}

/// `strata linkpred eval --json`.
#[derive(Serialize, JsonSchema)]
pub struct LinkEvalReport {
    #[serde(flatten)]
    pub about: About,
    pub model_dir: PathBuf,
    pub encoder: String,
    /// Positive test pairs (as many negatives).
    pub test_edges: usize,
    pub test: LinkMetrics,
}

/// One scored pair.
#[derive(Serialize, JsonSchema)]
pub struct ScoredPair {
    pub src: usize,
    pub dst: usize,
    /// The decoder's logit, and its sigmoid.
    pub score: f64,
    pub probability: f64,
}

/// `strata linkpred predict --json`.
#[derive(Serialize, JsonSchema)]
pub struct LinkPredictReport {
    #[serde(flatten)]
    pub about: About,
    pub model_dir: PathBuf,
    pub encoder: String,
    /// `--node` and `--top` (null when `--pairs` was scored).
    pub node: Option<usize>,
    pub top: Option<usize>,
    /// Scoring and ranking every candidate (loading excluded).
    pub latency_ms: f64,
    /// Best first for `--node`; in the file's order for `--pairs`.
    pub predictions: Vec<ScoredPair>,
}

/// `strata probe --json`.
#[derive(Serialize, JsonSchema)]
pub struct ProbeReport {
    #[serde(flatten)]
    pub about: About,
    pub dataset: String,
    /// `link` or `node`.
    pub task: String,
    pub nodes: usize,
    pub edges: usize,
    /// Each component's NetInfoF score by name (U, R, F, P, S).
    #[schemars(inner(range(min = 0.0, max = 1.0)))]
    pub scores: std::collections::BTreeMap<String, f64>,
    /// The score a predictor without information reaches (0.5 for links, 1/classes for nodes).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub chance: f64,
    pub verdict: String,
    pub components: Vec<strata_netinfo::ComponentScore>,
    /// NetInfoF_Act's test Hits@K with every component (`--act`), and K.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub act_test_hits: Option<f64>,
    pub hits_k: usize,
    pub seconds: f64,
}

/// The plain baselines on the unrefined graph, over the same runs.
#[derive(Serialize, JsonSchema)]
pub struct RefineBaselines {
    pub gcn: OverSeeds,
    /// `null` where it does not apply (one-hot features make every Jaccard similarity 0).
    pub jaccard_gcn: Option<OverSeeds>,
}

/// `strata refine --json`.
#[derive(Serialize, JsonSchema)]
pub struct RefineReport {
    #[serde(flatten)]
    pub about: About,
    pub dataset: String,
    pub attack: Option<String>,
    pub nodes: usize,
    pub config: strata_stable::StableConfig,
    pub edges_removed: usize,
    pub edges_added: usize,
    /// Of the removed edges, those not in the clean graph (known for a Pro-GNN attack).
    pub adversarial_removed: Option<usize>,
    pub jaccard_pruned: usize,
    /// The advanced GCN on the refined graph, over `--runs` (null with `--runs 0`).
    pub test_accuracy: Option<OverSeeds>,
    pub baselines: Option<RefineBaselines>,
    pub encoder: strata_stable::EncoderReport,
    pub refine_seconds: f64,
    pub peak_rss_bytes: Option<u64>,
}

/// `strata data synth --json`.
#[derive(Serialize, JsonSchema)]
pub struct DataSynthReport {
    #[serde(flatten)]
    pub about: About,
    pub out: PathBuf,
    pub spec: strata_graph::planted::PlantedSpec,
    pub summary: strata_graph::planted::PlantedSummary,
    pub seconds: f64,
}

/// Every report's schema, by the name of its file under `docs/schemas/` (`NAME.schema.json`).
pub fn schemas() -> Vec<(&'static str, schemars::Schema)> {
    use schemars::schema_for;
    vec![
        ("train", schema_for!(TrainReport)),
        ("launch", schema_for!(LaunchReport<'static>)),
        ("predict", schema_for!(PredictReport)),
        ("linkpred-train", schema_for!(LinkTrainReport)),
        ("linkpred-eval", schema_for!(LinkEvalReport)),
        ("linkpred-predict", schema_for!(LinkPredictReport)),
        ("probe", schema_for!(ProbeReport)),
        ("refine", schema_for!(RefineReport)),
        ("data-synth", schema_for!(DataSynthReport)),
    ]
}

/// `strata schema`.
#[derive(clap::Args)]
pub struct SchemaArgs {
    /// The report: train, launch, predict, linkpred-train, linkpred-eval, linkpred-predict,
    /// probe, refine or data-synth.
    pub report: String,
}

/// Prints the schema of `a.report` to stdout.
pub fn print_schema(a: SchemaArgs) -> anyhow::Result<()> {
    let all = schemas();
    let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    let Some((_, schema)) = all.into_iter().find(|(n, _)| *n == a.report) else {
        anyhow::bail!("no report named `{}`: expected one of {}", a.report, names.join(", "));
    };
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}

/// Writes `report` as JSON to `path`, atomically.
pub fn write<T: Serialize>(path: &std::path::Path, report: &T) -> anyhow::Result<()> {
    crate::report::write_json(path, &serde_json::to_value(report)?)
}

#[cfg(test)]
mod tests {
    /// `docs/schemas/` holds what the types say; `make docs` (STRATA_UPDATE_DOCS=1) rewrites it.
    #[test]
    fn the_report_schemas_are_up_to_date() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas");
        let update = std::env::var("STRATA_UPDATE_DOCS").is_ok_and(|v| v == "1");
        let mut stale = Vec::new();
        for (name, schema) in super::schemas() {
            let path = dir.join(format!("{name}.schema.json"));
            let want = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &want).unwrap();
            }
            if std::fs::read_to_string(&path).unwrap_or_default() != want {
                stale.push(path.display().to_string());
            }
        }
        assert!(stale.is_empty(), "out of date with the report types (run `make docs`): {stale:?}");
    }

    /// Every numeric key of a report holds a number: `NaN` would be written as `null`, which
    /// the schema refuses for a measured value.
    #[test]
    fn an_unmeasured_epoch_value_is_null_not_nan() {
        let e = strata_nn::EpochStats {
            epoch: 0,
            train_loss: 1.0,
            val_loss: f64::NAN,
            train_accuracy: f64::NAN,
            val_accuracy: f64::NAN,
            test_accuracy: f64::NAN,
            step_ms: 2.0,
        };
        let v = serde_json::to_value(super::EpochPoint::from(&e)).unwrap();
        assert!(v["val_accuracy"].is_null() && v["train_loss"] == 1.0, "{v}");
    }
}
