//! The `--json` reports' schemas, one typed `Serialize` struct per report: what a script
//! reading them can rely on is documented here, field by field.

use serde::Serialize;
use strata_nn::metrics::{mean_std, median};
use strata_nn::{ModelConfig, ModelKind, NodeTask};

/// Mean, standard deviation and the values (percent) over seeds.
#[derive(Serialize)]
pub struct OverSeeds {
    pub mean: f64,
    pub std: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
}

impl OverSeeds {
    pub fn of(values: Vec<f64>) -> OverSeeds {
        let (mean, std) = mean_std(&values);
        OverSeeds { mean, std, values }
    }
}

/// One seed's result in the `--json` report.
#[derive(Serialize)]
pub struct SeedResult {
    pub seed: u64,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub val_accuracy: f64,
    pub test_accuracy: f64,
}

/// `strata train --json` (backprop trainer). Accuracies are percentages; `per_layer_accuracy`
/// holds the mean test accuracy (one readout: the last layer's).
#[derive(Serialize)]
pub struct TrainReport {
    pub dataset: String,
    pub model: &'static str,
    pub trainer: &'static str,
    pub per_layer_accuracy: [f64; 1],
    pub peak_memory_bytes: u64,
    pub peak_rss_bytes: Option<u64>,
    pub kernel: &'static str,
    pub reorder: serde_json::Value,
    pub feature_normalization: &'static str,
    pub seeds: usize,
    pub device: String,
    pub test_accuracy: OverSeeds,
    pub val_accuracy: OverSeeds,
    pub epoch_ms_median: f64,
    pub config: ModelConfig,
    pub runs: Vec<SeedResult>,
}

impl TrainReport {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dataset: &str,
        kind: ModelKind,
        cfg: &ModelConfig,
        runs: &[strata_nn::RunReport],
        task: &NodeTask,
        reorder: serde_json::Value,
        peak_memory_bytes: u64,
        device: tch::Device,
    ) -> TrainReport {
        let test = OverSeeds::of(runs.iter().map(|r| r.test_accuracy * 100.0).collect());
        let val = OverSeeds::of(runs.iter().map(|r| r.val_accuracy * 100.0).collect());
        // The first epochs warm up allocators and caches: the median leaves them out.
        let step_ms: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.curve.iter().skip(3.min(r.curve.len().saturating_sub(1))).map(|e| e.step_ms))
            .collect();
        TrainReport {
            dataset: dataset.to_string(),
            model: kind.name(),
            trainer: "bp",
            per_layer_accuracy: [test.mean],
            peak_memory_bytes,
            peak_rss_bytes: strata_nn::memory::peak_rss_bytes(),
            kernel: task.graph.kernel.name(),
            reorder,
            feature_normalization: task.feature_norm.name(),
            seeds: runs.len(),
            device: strata_nn::device_name(device),
            test_accuracy: test,
            val_accuracy: OverSeeds { values: Vec::new(), ..val },
            epoch_ms_median: median(&step_ms),
            config: cfg.clone(),
            runs: runs
                .iter()
                .map(|r| SeedResult {
                    seed: r.seed,
                    epochs_run: r.epochs_run,
                    best_epoch: r.best_epoch,
                    val_accuracy: r.val_accuracy,
                    test_accuracy: r.test_accuracy,
                })
                .collect(),
        }
    }
}

/// Bytes of one epoch by what they carried: activations and gradients across stages
/// (`layer`), halo rows between ways, weight all-reduce segments.
#[derive(Serialize)]
pub struct ByKind {
    pub layer: f64,
    pub halo: f64,
    pub weight: f64,
}

/// Bytes per training epoch (median over epochs): measured, as the volume model predicts, and
/// what the sends put on the wire.
#[derive(Serialize)]
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

/// `strata launch --json`: the run's shape, its accuracy (test at the best validation epoch,
/// fractions), the median epoch time after two warm-up epochs, the bytes, each worker's peak
/// resident (and CUDA) memory, each worker's median per-phase breakdown of a training epoch
/// (seconds, the same epochs as the median time), the settings and every epoch (each with
/// every worker's breakdown: `phases_per_worker`, `eval_phases_per_worker`).
#[derive(Serialize)]
pub struct LaunchJson<'a> {
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
    pub test_accuracy: f64,
    pub best_val_accuracy: f64,
    pub epoch_ms_median: f64,
    /// The warm start's inference pass before the first epoch (ms); null when none ran.
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

/// `strata predict --json`. Accuracies are percentages, `null` where nothing could be scored.
#[derive(Serialize)]
pub struct PredictReport {
    pub model_dir: std::path::PathBuf,
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
    pub test_accuracy: Option<f64>,
    pub trained_test_accuracy: f64,
    /// Over the predicted nodes that carry a label the model knows.
    pub labelled_nodes: usize,
    pub labelled_accuracy: Option<f64>,
    /// The inference pass alone, and the process's peak resident memory.
    pub inference_ms: f64,
    pub peak_rss_bytes: Option<u64>,
    pub predictions: Option<std::path::PathBuf>,
    pub embeddings: Option<std::path::PathBuf>,
}
