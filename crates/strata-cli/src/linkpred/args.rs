//! The flags of `strata linkpred train`, `eval` and `predict`.

use crate::source::GraphSource;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct TrainLinkArgs {
    #[command(flatten)]
    pub(crate) graph: GraphSource,
    /// gcn, sage, gat, or netinfof (NetInfoF_Act: closed-form embeddings and a linear model
    /// trained by L-BFGS; the GNN options do not apply).
    #[arg(long, default_value = "gcn")]
    pub(crate) encoder: String,
    /// dot or hadamard-mlp.
    #[arg(long, default_value = "dot")]
    pub(crate) decoder: String,
    /// bp (backprop through encoder and decoder), or a ForwardGNN trainer: sf (per-layer
    /// dot-product BCE) or ff (per-layer forward-forward goodness); the decoder is then the
    /// trainer's own.
    #[arg(long, default_value = "bp")]
    pub(crate) trainer: String,
    /// Train, validation and test fractions of the undirected edges (default 0.85,0.05,0.10,
    /// the GAE protocol; 0.64,0.16,0.20 with a ForwardGNN trainer, as its paper ran them).
    #[arg(long, value_delimiter = ',')]
    pub(crate) split: Vec<f64>,
    /// Seed of the edge split and the weights.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// The model directory. Written as a new directory beside it and renamed into place once
    /// complete, so an existing model there is replaced whole or not at all.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Where this run writes before the rename (set by `train`).
    #[arg(skip)]
    pub(crate) staging: PathBuf,
    /// Most training epochs (default 500 with backprop, 1000 per layer with sf/ff).
    #[arg(long)]
    pub(crate) epochs: Option<usize>,
    /// Encoder layers (default 2 with backprop, 4 with sf/ff).
    #[arg(long)]
    pub(crate) layers: Option<usize>,
    /// Hidden width (default 128).
    #[arg(long)]
    pub(crate) hidden: Option<i64>,
    /// Embedding width (default 64; backprop only).
    #[arg(long)]
    pub(crate) out_dim: Option<i64>,
    /// Adam learning rate (default 0.01 with backprop, 0.001 with sf/ff).
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Dropout on every layer's input (default 0.5; backprop only).
    #[arg(long)]
    pub(crate) dropout: Option<f64>,
    /// Stop after this many epochs without a better validation Hits@K (default 100).
    #[arg(long)]
    pub(crate) patience: Option<usize>,
    /// K of the validation Hits@K that selects the epoch.
    #[arg(long)]
    pub(crate) hits_k: Option<usize>,
    #[command(flatten)]
    pub(crate) compute: crate::source::ComputeArgs,
    /// Also write the training report as JSON here (test metrics, best epoch, curve).
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct EvalArgs {
    /// A model directory written by `strata linkpred train --out`.
    pub(crate) model_dir: PathBuf,
    #[command(flatten)]
    pub(crate) graph: GraphSource,
    #[command(flatten)]
    pub(crate) compute: crate::source::ComputeArgs,
    /// Also write the metrics as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct PredictArgs {
    /// A model directory written by `strata linkpred train --out`.
    pub(crate) model_dir: PathBuf,
    /// List the best candidates for this node.
    #[arg(long, required_unless_present = "pairs")]
    pub(crate) node: Option<usize>,
    /// How many candidates --node lists, best first.
    #[arg(long, default_value_t = 10)]
    pub(crate) top: usize,
    /// Score the pairs in this file (`src dst` per line) instead.
    #[arg(long, conflicts_with = "node")]
    pub(crate) pairs: Option<PathBuf>,
    /// Run the encoder again instead of using the embeddings saved at training time.
    #[arg(long)]
    pub(crate) recompute: bool,
    #[command(flatten)]
    pub(crate) graph: GraphSource,
    #[command(flatten)]
    pub(crate) compute: crate::source::ComputeArgs,
    /// Also write the scored pairs as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Also write the scored pairs as CSV (src,dst,score) here.
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
}
