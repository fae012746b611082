//! Turning a dataset and a model into a pipeline plan: K chunks from the multilevel
//! partitioner (renumbered to contiguous ranges), and P stages from the min–max split of
//! per-layer FLOP costs.

use crate::plan::{flop_costs, min_max_split};
use crate::stage::{PipeModel, StageSpec};
use strata_graph::{partition, ContiguousOrder, Dataset, Split};

/// User-facing settings of a pipelined run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PipelineConfig {
    pub model: PipeModel,
    pub layers: usize,
    pub hidden: i64,
    pub stages: usize,
    /// Chunks K (0 = 4·P, the paper's setting).
    pub chunks: usize,
    pub epochs: usize,
    pub dropout: f64,
    pub alpha: f64,
    pub theta: f64,
    pub lr: f64,
    pub weight_decay: f64,
    pub weight_decay_conv: f64,
    pub seed: u64,
    /// Trick 1: shuffle the chunk order every epoch.
    pub shuffle: bool,
    /// Trick 2: scale of cross-chunk gradients (1 = off).
    pub grad_scale: f64,
    /// Trick 3: snapshot period of historical embeddings (1 = one-epoch staleness).
    pub refresh: usize,
    /// Exact full-graph inference every this many epochs.
    pub eval_every: usize,
}

impl PipelineConfig {
    /// GCNII defaults (Chen et al. 2020 on Cora) with GNNPipe's three tricks on.
    pub fn gcnii(layers: usize, stages: usize) -> PipelineConfig {
        PipelineConfig {
            model: PipeModel::Gcnii,
            layers,
            hidden: 64,
            stages,
            chunks: 0,
            epochs: 300,
            dropout: 0.6,
            alpha: 0.1,
            theta: 0.5,
            lr: 0.01,
            weight_decay: 5e-4,
            weight_decay_conv: 0.01,
            seed: 0,
            shuffle: true,
            grad_scale: 2.0,
            refresh: 23,
            eval_every: 1,
        }
    }
    pub fn num_chunks(&self) -> usize {
        if self.chunks == 0 { 4 * self.stages } else { self.chunks }
    }
}

/// The renumbered dataset every stage works on, and one spec per stage.
pub struct PipelinePlan {
    pub dataset: Dataset,
    pub specs: Vec<StageSpec>,
    pub offsets: Vec<usize>,
}

pub fn plan(data: &Dataset, split: &Split, cfg: &PipelineConfig) -> PipelinePlan {
    let k = cfg.num_chunks();
    let sym = data.graph.symmetrized();
    let parts = partition(&sym, k, cfg.seed);
    let order = ContiguousOrder::new(&parts, k);
    let mut d = data.clone();
    d.graph = sym;
    d.splits = vec![split.clone()];
    let d = d.permuted(&order.order);
    let split = d.splits[0].clone();
    let nnz_x = match &d.features {
        strata_graph::Features::Sparse(m) => m.nnz(),
        strata_graph::Features::Dense { rows, cols, .. } => rows * cols,
    };
    let costs = flop_costs(d.num_nodes(), d.graph.num_entries() + d.num_nodes(), nnz_x, cfg.hidden as usize, d.num_classes, cfg.layers);
    let ranges = min_max_split(&costs, cfg.stages);
    let specs = ranges
        .iter()
        .enumerate()
        .map(|(s, r)| StageSpec {
            stage: s,
            first: r.start,
            last: r.end,
            classes: d.num_classes as i64,
            features: d.features.dim() as i64,
            chunk_offsets: order.offsets.clone(),
            train: split.train.clone(),
            val: split.val.clone(),
            test: split.test.clone(),
            config: cfg.clone(),
        })
        .collect();
    PipelinePlan { dataset: d, specs, offsets: order.offsets }
}
