//! Turning a dataset and a model into a plan for one of three modes:
//! - pipeline: K chunks from the multilevel partitioner (renumbered to contiguous ranges) and
//!   S stages from the min–max split of per-layer FLOP costs;
//! - graph: W partitions, each owning every layer (the graph-parallel baseline);
//! - hybrid: W ways × S stages — the vertices cut into W ways, each way cut into K/W chunks and
//!   pipelined over S stages, weights all-reduced across the ways.

use crate::plan::{flop_costs, memory_costs, min_max_split_with_entry};
use crate::stage::{PipeModel, StageSpec};
use strata_graph::{partition, ContiguousOrder, Dataset, Split};

/// How the work is split across workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Pipeline,
    Graph,
    Hybrid,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pipeline => "pipeline",
            Mode::Graph => "graph",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// User-facing settings of a distributed run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PipelineConfig {
    #[serde(default)]
    pub mode: Mode,
    /// Graph-parallel ways W (1 in a pure pipeline).
    #[serde(default = "one")]
    pub ways: usize,
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
    /// GNNPipe with trick 2 off (`DISABLE_TRICK_2`): gradients that reach stale historical
    /// rows are kept rather than dropped — their chunk's backward has already run this epoch,
    /// so they are injected when it runs next epoch — because the reference then also skips
    /// `clear_historical_grad()`. Off: such gradients are dropped (trick 2's clearing).
    #[serde(default)]
    pub carry_stale_grads: bool,
    /// Trick 3: snapshot period of historical embeddings (1 = one-epoch staleness).
    pub refresh: usize,
    /// Exact full-graph inference every this many epochs.
    pub eval_every: usize,
    /// Backprop through the pipeline, or forward-only single-forward layers (each trained by
    /// its own loss; see [`crate::forward_stage`]).
    #[serde(default)]
    pub trainer: PipeTrainer,
    /// Element type of the historical embeddings (live rows and snapshot); their gradient
    /// accumulators and everything that crosses the network stay f32.
    #[serde(default)]
    pub history_dtype: HistoryDtype,
    /// What the stage split balances: compute (GNNPipe's FLOP costs) or memory.
    #[serde(default)]
    pub balance: Balance,
    /// Return freed heap pages to the system (`malloc_trim`) after every chunk's backward on a
    /// pipeline stage and after every layer on a graph-parallel way. glibc otherwise keeps the
    /// holes that a layer's transients leave between the tensors saved for the backward pass,
    /// so resident memory runs above what is live; trimming costs page faults when the pages
    /// are used again. Measured here: pipeline P = 4 at 300k nodes, largest worker 2,013 →
    /// 1,779 MiB, epoch 47.4 → 58.4 s; graph-parallel P = 4 at 100k, 1,573 → 1,079 MiB,
    /// 10.7 → 10.9 s (2 epochs, one run each).
    #[serde(default)]
    pub trim_heap: bool,
}

/// What the min–max stage split equalises across the pipeline's workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Per-slot FLOPs (GNNPipe): the slowest stage as fast as possible.
    #[default]
    Compute,
    /// Per-slot resident bytes ([`crate::plan::memory_costs`]): the largest worker as small as
    /// possible, for graphs whose workers are memory-bound.
    Memory,
}

impl std::str::FromStr for Balance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "compute" => Ok(Balance::Compute),
            "memory" => Ok(Balance::Memory),
            o => Err(format!("`{o}`: expected compute or memory")),
        }
    }
}

/// Storage type of the historical embeddings: bf16/f16 halve the N × d buffers each conv
/// slot keeps, at the cost of rounding the stale neighbour rows a chunk reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryDtype {
    #[default]
    F32,
    Bf16,
    F16,
}

impl HistoryDtype {
    /// How activations crossing stages travel: in the same type.
    pub fn value_type(self) -> crate::proto::ValueType {
        match self {
            HistoryDtype::F32 => crate::proto::ValueType::F32,
            HistoryDtype::Bf16 => crate::proto::ValueType::Bf16,
            HistoryDtype::F16 => crate::proto::ValueType::F16,
        }
    }
    pub fn kind(self) -> tch::Kind {
        match self {
            HistoryDtype::F32 => tch::Kind::Float,
            HistoryDtype::Bf16 => tch::Kind::BFloat16,
            HistoryDtype::F16 => tch::Kind::Half,
        }
    }
    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            HistoryDtype::F32 => 4,
            HistoryDtype::Bf16 | HistoryDtype::F16 => 2,
        }
    }
}

impl std::str::FromStr for HistoryDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(HistoryDtype::F32),
            "bf16" => Ok(HistoryDtype::Bf16),
            "f16" => Ok(HistoryDtype::F16),
            o => Err(format!("`{o}`: expected f32, bf16 or f16")),
        }
    }
}

/// How the pipeline's layers learn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PipeTrainer {
    #[default]
    Bp,
    Sf,
}

fn one() -> usize {
    1
}

impl PipelineConfig {
    /// GCNII defaults (Chen et al. 2020 on Cora) with GNNPipe's three tricks on.
    pub fn gcnii(layers: usize, stages: usize) -> PipelineConfig {
        PipelineConfig {
            mode: Mode::Pipeline,
            ways: 1,
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
            carry_stale_grads: false,
            refresh: 23,
            eval_every: 1,
            trainer: PipeTrainer::Bp,
            history_dtype: HistoryDtype::F32,
            balance: Balance::Compute,
            trim_heap: false,
        }
    }
    /// Chunks K: 4 per worker by default (the paper's setting); graph mode has one per way.
    pub fn num_chunks(&self) -> usize {
        match self.mode {
            Mode::Graph => self.ways,
            _ if self.chunks == 0 => 4 * self.stages * self.ways.max(1),
            _ => self.chunks,
        }
    }
    /// Workers the run needs: W·S.
    pub fn workers(&self) -> usize {
        self.ways.max(1) * self.stages.max(1)
    }
    /// Checks the mode against ways, stages and chunks.
    pub fn validate(&self) -> Result<(), String> {
        let (w, s) = (self.ways, self.stages);
        match self.mode {
            Mode::Pipeline if w != 1 => return Err(format!("pipeline mode has one way, not {w} (use --mode hybrid)")),
            Mode::Graph if s != 1 => {
                return Err(format!("graph mode has one stage per worker, not {s} (use --mode hybrid)"))
            }
            Mode::Graph | Mode::Hybrid if w < 2 => {
                return Err(format!("{} mode needs at least 2 ways, got {w}", self.mode.name()))
            }
            Mode::Hybrid if s < 2 => return Err(format!("hybrid mode needs at least 2 stages, got {s}")),
            _ => {}
        }
        if s < 1 || s > self.layers + 2 {
            return Err(format!("stages must be between 1 and layers + 2 = {}, got {s}", self.layers + 2));
        }
        if self.trainer == PipeTrainer::Sf && (self.mode != Mode::Pipeline || self.model != PipeModel::Gcn) {
            return Err("forward-only (sf) training runs in pipeline mode with gcn layers".into());
        }
        if self.trainer == PipeTrainer::Sf && s > self.layers + 1 {
            return Err(format!(
                "a forward-only pipeline has layers + 1 = {} slots (no classifier): at most that many stages, got {s}",
                self.layers + 1
            ));
        }
        if self.mode == Mode::Hybrid && !self.num_chunks().is_multiple_of(w) {
            return Err(format!(
                "hybrid mode splits the {} chunks evenly over {w} ways: choose a multiple of {w}",
                self.num_chunks()
            ));
        }
        for (name, v) in [
            ("learning rate", self.lr),
            ("weight decay", self.weight_decay),
            ("conv weight decay", self.weight_decay_conv),
            ("dropout", self.dropout),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} must be a finite non-negative number, got {v}"));
            }
        }
        if self.dropout >= 1.0 || self.hidden < 1 {
            return Err(format!(
                "dropout must be below 1 and hidden at least 1, got {} and {}",
                self.dropout, self.hidden
            ));
        }
        Ok(())
    }
}

/// The renumbered dataset every stage works on, and one spec per stage.
pub struct PipelinePlan {
    pub dataset: Dataset,
    pub specs: Vec<StageSpec>,
    pub offsets: Vec<usize>,
    /// Vertex range of each way.
    pub way_offsets: Vec<usize>,
    /// Each stage's share as written by [`PipelinePlan::stage_to_disk`] (rank order), kept in
    /// a directory removed with the plan.
    pub staged: Option<(tempfile::TempDir, Vec<std::path::PathBuf>)>,
}

impl PipelinePlan {
    /// Writes every stage's share ([`crate::StageData::write_stage_npz`]) into a temporary
    /// directory under `dir` (the system's when `None`) and then drops the feature matrix and
    /// labels from memory: the launcher streams the files to the workers (again after a restart)
    /// and keeps only the structure, which the volume model reads.
    pub fn stage_to_disk(&mut self, dir: Option<&std::path::Path>) -> Result<(), strata_graph::GraphError> {
        let tmp = match dir {
            Some(d) => {
                tempfile::tempdir_in(d).map_err(|e| strata_graph::GraphError::Io { path: d.into(), source: e })?
            }
            None => tempfile::tempdir()
                .map_err(|e| strata_graph::GraphError::Io { path: std::env::temp_dir(), source: e })?,
        };
        let mut paths = Vec::with_capacity(self.specs.len());
        for (rank, spec) in self.specs.iter().enumerate() {
            let path = tmp.path().join(format!("stage-{rank}.npz"));
            crate::StageData::write_stage_npz(&self.dataset, spec, &path)?;
            paths.push(path);
        }
        // The width stays known (the volume model counts parameters from it).
        let cols = self.dataset.features.dim();
        self.dataset.features = strata_graph::Features::Dense { rows: 0, cols, data: Vec::new() };
        self.dataset.labels = Vec::new();
        self.staged = Some((tmp, paths));
        Ok(())
    }
}

/// Plans a run: renumbers the vertices so chunks (and ways) are contiguous id ranges and writes
/// one spec per worker, in rank order (rank = way·S + stage).
pub fn plan(data: &Dataset, split: &Split, cfg: &PipelineConfig) -> PipelinePlan {
    plan_owned(data.clone(), split, cfg)
}

/// [`plan`], consuming `data` so that its renumbered copy is the only other one made (a
/// launcher drops the graph as read anyway).
pub fn plan_owned(data: Dataset, split: &Split, cfg: &PipelineConfig) -> PipelinePlan {
    let k = cfg.num_chunks();
    let ways = cfg.ways.max(1);
    let sym = data.graph.symmetrized();
    // Chunk ids grouped by way: way w owns chunks w·K/W .. (w+1)·K/W.
    let parts = if ways == 1 || cfg.mode == Mode::Graph {
        partition(&sym, k, cfg.seed)
    } else {
        let way = partition(&sym, ways, cfg.seed);
        let per = k / ways;
        let mut chunk = vec![0; sym.num_nodes()];
        for w in 0..ways {
            let nodes: Vec<usize> = (0..sym.num_nodes()).filter(|&u| way[u] == w).collect();
            let sub = partition(&sym.induced_subgraph(&nodes), per, cfg.seed);
            nodes.iter().zip(sub).for_each(|(&u, c)| chunk[u] = w * per + c);
        }
        chunk
    };
    let order = ContiguousOrder::new(&parts, k);
    let mut d = data;
    d.graph = sym;
    d.splits = vec![split.clone()];
    // The graph as given is freed here, not at the end of the function.
    let d = { d }.permuted(&order.order);
    let split = d.splits[0].clone();
    let nnz_x = match &d.features {
        strata_graph::Features::Sparse(m) => m.nnz(),
        strata_graph::Features::Dense { rows, cols, .. } => rows * cols,
    };
    let ranges = if cfg.mode == Mode::Graph {
        std::iter::once(0..cfg.layers + 2).collect()
    } else {
        let (costs, entry) = match cfg.balance {
            Balance::Compute => (
                flop_costs(
                    d.num_nodes(),
                    d.graph.num_entries() + d.num_nodes(),
                    nnz_x,
                    cfg.hidden as usize,
                    d.num_classes,
                    cfg.layers,
                ),
                0.0,
            ),
            Balance::Memory => {
                let boundary = if cfg.model == PipeModel::Gcnii { 2 } else { 1 };
                memory_costs(d.num_nodes(), nnz_x, cfg.hidden as usize, cfg.layers, cfg.history_dtype.bytes(), boundary)
            }
        };
        if cfg.trainer == PipeTrainer::Sf {
            // No classifier slot: split the layers, and let the last stage hold the unused slot.
            let mut r = min_max_split_with_entry(&costs[..cfg.layers + 1], cfg.stages, entry);
            if let Some(last) = r.last_mut() {
                last.end = cfg.layers + 2;
            }
            r
        } else {
            min_max_split_with_entry(&costs, cfg.stages, entry)
        }
    };
    let way_offsets: Vec<usize> = (0..=ways).map(|w| order.offsets[w * k / ways]).collect();
    let mut specs = Vec::new();
    for way in 0..ways {
        for (s, r) in ranges.iter().enumerate() {
            specs.push(StageSpec {
                stage: s,
                way,
                ways,
                way_offsets: way_offsets.clone(),
                first: r.start,
                last: r.end,
                classes: d.num_classes as i64,
                features: d.features.dim() as i64,
                chunk_offsets: order.offsets.clone(),
                train: split.train.clone(),
                val: split.val.clone(),
                test: split.test.clone(),
                config: cfg.clone(),
                checkpoint_root: None,
            });
        }
    }
    PipelinePlan { dataset: d, specs, offsets: order.offsets, way_offsets, staged: None }
}
