//! `strata launch`'s flags.

use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// The graph (default: the registered `cora`).
    #[command(flatten)]
    pub graph: crate::source::GraphSource,
    /// gcnii, gcn, sage (GraphSAGE, mean aggregator) or gat.
    #[arg(long, default_value = "gcnii")]
    pub model: String,
    /// Graph-convolution layers (between the input projection and the classifier).
    #[arg(long, default_value_t = 32)]
    pub layers: usize,
    /// Hidden width (default 64; 100 under `--preset gnnpipe`).
    #[arg(long)]
    pub hidden: Option<i64>,
    /// gnnpipe: the GNNPipe paper's settings (hidden 100, dropout 0.5, lr 1e-3, no weight
    /// decay); flags given explicitly override it.
    #[arg(long, value_parser = ["gnnpipe"])]
    pub preset: Option<String>,
    /// L2 penalty on the input and output linear maps (default 5e-4).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// L2 penalty on the convolution weights (default: GCNII 0.01, GCN 5e-4).
    #[arg(long)]
    pub weight_decay_conv: Option<f64>,
    /// pipeline (layers split over stages), graph (the graph-parallel baseline: vertices split
    /// over ways, every worker holds every layer) or hybrid (ways × stages).
    #[arg(long, default_value = "pipeline")]
    pub mode: String,
    /// Pipeline stages S (default 4 in pipeline mode, 1 in graph mode).
    #[arg(long)]
    pub stages: Option<usize>,
    /// Graph-parallel ways W (default 1 in pipeline mode, 4 in graph mode, 2 in hybrid mode).
    #[arg(long)]
    pub ways: Option<usize>,
    /// Vertex chunks K (0 = 4·P).
    #[arg(long, default_value_t = 0)]
    pub chunks: usize,
    /// Training epochs.
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    /// Adam learning rate (default 0.01; 1e-3 under `--preset gnnpipe`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Dropout on every slot's input (default: GCNII 0.6, others 0.5; 0.5 under `--preset
    /// gnnpipe`).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Seed of the weights, the split, the partition and the chunk order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Turn off trick 1 (per-epoch chunk shuffling).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Trick 2: scale of cross-chunk gradients (1 = no scaling; gradients reaching stale rows
    /// are still dropped).
    #[arg(long, default_value_t = 2.0)]
    pub grad_scale: f64,
    /// Trick 2 off as GNNPipe's ablation ran it: no ×2 scaling, and gradients that reach stale
    /// historical rows are kept and injected when their chunk's backward runs next epoch.
    #[arg(long, conflicts_with = "grad_scale")]
    pub no_trick2: bool,
    /// Trick 3: refresh the historical snapshot every R epochs, so a stale row is at most R
    /// epochs old. Default 1; `--preset gnnpipe` uses the paper's 23 (its runs are 5,000 epochs
    /// long; over tens of epochs older rows cost epochs to accuracy — README, trick 3).
    #[arg(long)]
    pub refresh: Option<usize>,
    /// bp (backprop through the pipeline) or sf (forward-only: ForwardGNN single-forward layers,
    /// each trained by its own loss, so no gradient crosses a stage; needs --model gcn).
    #[arg(long, default_value = "bp")]
    pub trainer: String,
    /// Storage of the historical embeddings: f32, bf16 or f16 (half the memory of each conv
    /// slot's live and snapshot rows); the activations that cross stages travel in the same
    /// type, gradients stay f32.
    #[arg(long, default_value = "f32")]
    pub history_dtype: strata_pipe::HistoryDtype,
    /// What the stage split equalises: time (per-layer FLOPs plus memory traffic at 10 FLOPs a
    /// byte), compute (per-layer FLOPs only, GNNPipe's planner) or memory (per-layer resident
    /// bytes: the largest worker as small as possible).
    #[arg(long, default_value = "time")]
    pub balance: strata_pipe::Balance,
    /// Return freed heap pages to the system after every chunk (pipeline) or layer
    /// (graph-parallel): a smaller resident peak, usually for slower epochs (measured once each:
    /// pipeline P = 4 at 300k −12 % peak, +23 % epoch time; graph-parallel P = 4 at 100k −31 %, +2 %).
    #[arg(long)]
    pub trim_heap: bool,
    /// Whether a pipeline stage recomputes each chunk's forward in its backward: auto (keep
    /// the activations when the stage's estimate fits --memory-budget), always (the least
    /// memory, the forward runs twice) or never. The launch table says what each stage chose.
    #[arg(long, default_value = "auto")]
    pub recompute: strata_pipe::Recompute,
    /// What a stage's kept activations may take under --recompute auto, e.g. `6GiB` or `512MB`.
    /// Default: half of the memory available on the host, divided by the workers a local launch
    /// starts there (a listed worker takes half of what its own host has available); the host's
    /// memory cgroup limit counts, and a stage never takes more than half of what its own process
    /// limits (`ulimit -d`, `ulimit -v`) leave.
    #[arg(long)]
    pub memory_budget: Option<bytesize::ByteSize>,
    /// Fill the historical embeddings by one exact inference pass before the first epoch
    /// (pipeline and hybrid modes), instead of starting them at zero as GNNPipe does.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub warm_start: bool,
    /// Exact full-graph evaluation every N epochs.
    #[arg(long, default_value_t = 1)]
    pub eval_every: usize,
    /// Worker addresses in rank order, rank = way·S + stage (host:port,...). Default: start W·S
    /// local workers, or, under torchrun/Slurm (WORLD_SIZE or SLURM_NTASKS set), rendezvous at
    /// MASTER_ADDR:MASTER_PORT with the other ranks.
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<String>,
    /// A cluster file (see cluster/local.toml) listing the workers.
    #[arg(long, conflicts_with = "workers")]
    pub cluster: Option<PathBuf>,
    /// Shared cluster token the workers require on every call (at least 16 characters; from
    /// the environment rather than the command line, which other local users can read). Workers
    /// this launch starts itself get a fresh random one when none is given.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Mutual TLS with the workers: a directory from `strata cluster certs`. Local workers and
    /// torchrun/Slurm ranks use its worker-RANK certificates.
    #[arg(long, env = "STRATA_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// The launcher's certificate name in --tls-dir.
    #[arg(long, default_value = "launcher")]
    pub tls_name: String,
    /// Device for locally started workers.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Write the run's report as JSON here: configuration, per-epoch curve (loss, accuracies as
    /// fractions, bytes, phases per worker, memory), medians, the best epoch (0-based).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Gather the trained model (the best validation epoch's weights, from every stage or way)
    /// into a model directory for `strata predict`: manifest.json and model.safetensors,
    /// replaced atomically.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Write the predictions of that epoch's weights for every node (.csv or .npy, as `strata
    /// predict --out` writes them), computed by the workers.
    #[arg(long, value_name = "PATH")]
    pub predictions: Option<PathBuf>,
    /// Draw validation accuracy against epoch and against seconds of training (.svg or .png), this run
    /// and every --plot-with report overlaid.
    #[arg(long, value_parser = crate::plot::plot_path)]
    pub plot: Option<PathBuf>,
    /// Another run's `--json` report to overlay on --plot (repeatable), e.g. the other modes.
    #[arg(long, requires = "plot")]
    pub plot_with: Vec<PathBuf>,
    /// Write checkpoints (every worker's parameters, optimizer moments and historical
    /// embeddings; the launcher's manifest last) under this directory. It must be reachable at
    /// the same path from every worker (a shared volume on a cluster).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Epochs between checkpoints (a checkpoint is also written at the end and on SIGTERM).
    #[arg(long, default_value_t = 10)]
    pub checkpoint_every: usize,
    /// Continue from the newest complete checkpoint under DIR (torn ones are skipped) and keep
    /// checkpointing there.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// When a worker dies: restart it (local workers) or wait for it to come back (listed
    /// workers), reload the last checkpoint on every stage and continue. Needs checkpoints.
    #[arg(long)]
    pub restart_failed: bool,
    /// Go on training when an epoch's loss is NaN or infinite (by default the run stops with an
    /// error and exit code 1, before checkpointing the broken weights).
    #[arg(long)]
    pub allow_nonfinite_loss: bool,
    /// Serve Prometheus metrics of the run at http://ADDR/metrics while it trains: epochs, loss,
    /// validation and test accuracy, epoch and evaluation seconds, each worker's phases in
    /// seconds (as the workers report them, labelled by rank), bytes sent, workers' peak
    /// memory. A bare port binds loopback (127.0.0.1:PORT); name an address to expose it.
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics_endpoint::parse_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Restarts allowed with --restart-failed.
    #[arg(long, default_value_t = 3)]
    pub max_restarts: usize,
}
