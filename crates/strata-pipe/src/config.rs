//! Settings of a distributed run: the mode, the model, the trainer and every knob of GNNPipe
//! (`PipelineConfig`), and what one worker is told about its share (`StageSpec`). Each
//! enumeration parses from the name the command line uses (`FromStr`).

use crate::error::PipeError;

/// The deepest model and the widest layer a pipeline worker builds.
pub const MAX_LAYERS: usize = 4096;
pub const MAX_HIDDEN: i64 = 1 << 16;

/// `name()` and `FromStr` from one table of (variant, command-line name).
macro_rules! names {
    ($ty:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            /// The name the command line and the reports use.
            pub fn name(self) -> &'static str {
                match self { $($ty::$v => $s),+ }
            }
        }
        impl std::str::FromStr for $ty {
            type Err = PipeError;
            fn from_str(s: &str) -> Result<Self, PipeError> {
                match s {
                    $($s => Ok($ty::$v),)+
                    o => Err(PipeError::Config(format!("`{o}`: expected one of {}", [$($s),+].join(", ")))),
                }
            }
        }
    };
}

names!(Mode { Pipeline => "pipeline", Graph => "graph", Hybrid => "hybrid" });
names!(PipeModel { Gcn => "gcn", Gcnii => "gcnii", Sage => "sage", Gat => "gat" });
names!(PipeTrainer { Bp => "bp", Sf => "sf" });
names!(Balance { Time => "time", Compute => "compute", Memory => "memory" });
names!(HistoryDtype { F32 => "f32", Bf16 => "bf16", F16 => "f16" });
names!(Recompute { Auto => "auto", Always => "always", Never => "never" });

/// How the work is split across workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Pipeline,
    Graph,
    Hybrid,
}

/// User-facing settings of a distributed run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
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
    /// Whether a pipeline stage keeps each chunk's autograd graph from its forward to its
    /// backward or recomputes the forward there (see [`crate::stage`]).
    #[serde(default)]
    pub recompute: Recompute,
    /// Bytes a stage's kept activations may take under [`Recompute::Auto`]; `None`: half of the
    /// memory available on the worker's host when the stage is built (a local launch divides
    /// it by the number of workers it starts).
    #[serde(default)]
    pub memory_budget: Option<u64>,
    /// Before the first epoch, fill the historical embeddings by one exact inference pass, so
    /// the first epochs read the initial weights' rows rather than zeros (modes with historical
    /// embeddings: pipeline, hybrid; graph-parallel ways keep none). GNNPipe starts from zeros.
    #[serde(default)]
    pub warm_start: bool,
    /// Received activations, gradients, halo rows and all-reduced gradients may hold NaN or
    /// ±inf: a run asked to go on past a diverged loss (`launch --allow-nonfinite-loss`). Off,
    /// such a tensor is refused as its sender's fault, naming it.
    #[serde(default)]
    pub allow_nonfinite: bool,
}

/// Whether a pipeline stage recomputes each chunk's forward in its backward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Recompute {
    /// Keep the activations when their estimated bytes fit the memory budget.
    #[default]
    Auto,
    /// Always recompute: a stage holds one chunk's activations at a time (the least memory;
    /// the forward runs twice).
    Always,
    /// Never recompute: every chunk's activations are kept until its backward.
    Never,
}

/// What the min–max stage split equalises across the pipeline's workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Per-slot time estimated from FLOPs and memory traffic ([`crate::costs::time_costs`]):
    /// the slowest stage as fast as possible.
    #[default]
    Time,
    /// Per-slot FLOPs (GNNPipe's planner, [`crate::costs::flop_costs`]).
    Compute,
    /// Per-slot resident bytes ([`crate::costs::memory_costs`]): the largest worker as small as
    /// possible, for graphs whose workers are memory-bound.
    Memory,
}

/// Storage type of the historical embeddings: bf16/f16 halve the N × d buffers each conv
/// slot keeps, at the cost of rounding the stale neighbour rows a chunk reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
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

/// How the pipeline's layers learn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
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
            refresh: 1,
            eval_every: 1,
            trainer: PipeTrainer::Bp,
            history_dtype: HistoryDtype::F32,
            balance: Balance::Time,
            trim_heap: false,
            recompute: Recompute::Auto,
            memory_budget: None,
            warm_start: false,
            allow_nonfinite: false,
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
    /// Checks the chunk count against the graph's `nodes`: every chunk needs a vertex (and a
    /// chunk count far above that would size per-chunk tables before any error).
    pub fn validate_for(&self, nodes: usize) -> Result<(), PipeError> {
        let k = self.num_chunks();
        if k > nodes.max(1) {
            return Err(PipeError::Config(format!(
                "{k} chunks for a graph of {nodes} nodes: every chunk needs at least one node (lower --chunks{})",
                if self.mode == Mode::Graph { " or --ways" } else { "" }
            )));
        }
        Ok(())
    }
    /// Workers the run needs: W·S.
    pub fn workers(&self) -> usize {
        self.ways.max(1) * self.stages.max(1)
    }
    /// Checks the mode against ways, stages and chunks.
    pub fn validate(&self) -> Result<(), PipeError> {
        let (w, s) = (self.ways, self.stages);
        match self.mode {
            Mode::Pipeline if w != 1 => {
                return Err(PipeError::Config(format!("pipeline mode has one way, not {w} (use --mode hybrid)")))
            }
            Mode::Graph if s != 1 => {
                return Err(PipeError::Config(format!(
                    "graph mode has one stage per worker, not {s} (use --mode hybrid)"
                )))
            }
            Mode::Graph | Mode::Hybrid if w < 2 => {
                return Err(PipeError::Config(format!("{} mode needs at least 2 ways, got {w}", self.mode.name())))
            }
            Mode::Hybrid if s < 2 => {
                return Err(PipeError::Config(format!("hybrid mode needs at least 2 stages, got {s}")))
            }
            _ => {}
        }
        if s < 1 || s > self.layers + 2 {
            return Err(PipeError::Config(format!(
                "stages must be between 1 and layers + 2 = {}, got {s}",
                self.layers + 2
            )));
        }
        if self.model == PipeModel::Gat && self.mode == Mode::Graph {
            return Err(PipeError::Config(
                "graph-parallel ways run gcn, gcnii or sage; gat runs in pipeline and hybrid modes".into(),
            ));
        }
        if self.trainer == PipeTrainer::Sf && (self.mode != Mode::Pipeline || self.model != PipeModel::Gcn) {
            return Err(PipeError::Config("forward-only (sf) training runs in pipeline mode with gcn layers".into()));
        }
        if self.trainer == PipeTrainer::Sf && s > self.layers + 1 {
            return Err(PipeError::Config(format!(
                "a forward-only pipeline has layers + 1 = {} slots (no classifier): at most that many stages, got {s}",
                self.layers + 1
            )));
        }
        if self.warm_start && (self.mode == Mode::Graph || self.trainer == PipeTrainer::Sf) {
            return Err(PipeError::Config(
                "--warm-start fills the historical embeddings of backprop pipeline and hybrid stages; graph-parallel ways keep none and forward-only stages fill their own".into(),
            ));
        }
        if self.mode == Mode::Hybrid && !self.num_chunks().is_multiple_of(w) {
            return Err(PipeError::Config(format!(
                "hybrid mode splits the {} chunks evenly over {w} ways: choose a multiple of {w}",
                self.num_chunks()
            )));
        }
        for (name, v) in [
            ("learning rate", self.lr),
            ("weight decay", self.weight_decay),
            ("conv weight decay", self.weight_decay_conv),
            ("dropout", self.dropout),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(PipeError::Config(format!("{name} must be a finite non-negative number, got {v}")));
            }
        }
        use strata_nn::{MAX_EPOCHS, MAX_LR};
        if !(1..=MAX_LAYERS).contains(&self.layers) || !(1..=MAX_HIDDEN).contains(&self.hidden) {
            return Err(PipeError::Config(format!(
                "--layers {} and --hidden {} must be in 1..={MAX_LAYERS} and 1..={MAX_HIDDEN}",
                self.layers, self.hidden
            )));
        }
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return Err(PipeError::Config(format!("--epochs {} must be in 1..={MAX_EPOCHS}", self.epochs)));
        }
        if self.lr > MAX_LR {
            return Err(PipeError::Config(format!("--lr {} must be at most {MAX_LR}", self.lr)));
        }
        if !self.grad_scale.is_finite() || self.grad_scale <= 0.0 {
            return Err(PipeError::Config(format!(
                "--grad-scale must be a finite positive number, got {}",
                self.grad_scale
            )));
        }
        if self.refresh < 1 {
            return Err(PipeError::Config("--refresh must be at least 1 (epochs between snapshots)".into()));
        }
        if self.dropout >= 1.0 {
            return Err(PipeError::Config(format!("dropout must be below 1, got {}", self.dropout)));
        }
        Ok(())
    }
}

/// Which deep model the pipeline trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PipeModel {
    Gcn,
    Gcnii,
    Sage,
    Gat,
}

/// Everything a stage needs to know, shipped by the launcher as JSON.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StageSpec {
    pub stage: usize,
    /// Graph-parallel way (0 in a pure pipeline) and the number of ways.
    #[serde(default)]
    pub way: usize,
    #[serde(default = "one")]
    pub ways: usize,
    /// Vertex range of each way (`[0, N]` in a pure pipeline); chunk boundaries fall on them.
    #[serde(default)]
    pub way_offsets: Vec<usize>,
    /// Layer slots owned: `first..last` within `0..layers+2`.
    pub first: usize,
    pub last: usize,
    pub classes: i64,
    pub features: i64,
    pub chunk_offsets: Vec<usize>,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    /// The run's model and training settings (the same on every stage).
    pub config: PipelineConfig,
    /// The only directory Checkpoint and Restore may touch (the launcher's checkpoint root);
    /// `None`: this run writes no checkpoints and restores none.
    #[serde(default)]
    pub checkpoint_root: Option<String>,
}

impl StageSpec {
    /// The chunks this stage's way trains (all of them in a pure pipeline).
    pub fn own_chunks(&self) -> std::ops::Range<usize> {
        let k = self.chunk_offsets.len() - 1;
        if self.ways <= 1 || self.way_offsets.len() != self.ways + 1 {
            return 0..k;
        }
        let (lo, hi) = (self.way_offsets[self.way], self.way_offsets[self.way + 1]);
        let first = self.chunk_offsets.partition_point(|&o| o < lo);
        let end = self.chunk_offsets.partition_point(|&o| o < hi);
        first..end
    }
    /// The rank of the worker holding `stage` of `way` (ranks go way by way; a graph-parallel
    /// way is one stage).
    pub fn rank_of(&self, way: usize, stage: usize) -> usize {
        let stages = if self.config.mode == Mode::Graph { 1 } else { self.config.stages };
        way * stages + stage
    }
    pub fn is_first(&self) -> bool {
        self.first == 0
    }
    pub fn is_last(&self) -> bool {
        self.last == self.config.layers + 2
    }
    /// Tensors crossing each stage boundary: GCNII also ships its initial residual h⁰.
    pub fn tensors_per_boundary(&self) -> usize {
        if self.config.model == PipeModel::Gcnii {
            2
        } else {
            1
        }
    }
}

impl std::str::FromStr for PipelineConfig {
    type Err = PipeError;
    /// A configuration as JSON (what the launcher ships and `--json` reports carry).
    fn from_str(s: &str) -> Result<Self, PipeError> {
        serde_json::from_str(s).map_err(|e| PipeError::Config(format!("pipeline configuration: {e}")))
    }
}

impl std::str::FromStr for StageSpec {
    type Err = PipeError;
    /// A stage spec as JSON, as the launcher ships it to a worker.
    fn from_str(s: &str) -> Result<Self, PipeError> {
        serde_json::from_str(s).map_err(|e| PipeError::Config(format!("stage spec: {e}")))
    }
}
