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

mod model_dir;
mod scorer;
mod train;

use scorer::{eval, predict};
use train::train;

use crate::source::GraphSource;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct LinkpredArgs {
    #[command(subcommand)]
    pub(super) command: LinkCommand,
}

#[derive(Subcommand, Debug)]
pub(super) enum LinkCommand {
    /// Split the edges, train, keep the best validation Hits@K, save to --out.
    Train(Box<TrainLinkArgs>),
    /// Test-set ROC-AUC, AP, Hits@20/50/100 and MRR of a saved model.
    Eval(EvalArgs),
    /// The highest-scoring non-neighbours of a node, or the scores of given pairs.
    Predict(PredictArgs),
}

#[derive(Args, Debug)]
pub(super) struct TrainLinkArgs {
    #[command(flatten)]
    pub(super) graph: GraphSource,
    /// gcn, sage, gat, or netinfof (NetInfoF_Act: closed-form embeddings and a linear model
    /// trained by L-BFGS; the GNN options do not apply).
    #[arg(long, default_value = "gcn")]
    pub(super) encoder: String,
    /// dot or hadamard-mlp.
    #[arg(long, default_value = "dot")]
    pub(super) decoder: String,
    /// bp (backprop through encoder and decoder), or a ForwardGNN trainer: sf (per-layer
    /// dot-product BCE) or ff (per-layer forward-forward goodness); the decoder is then the
    /// trainer's own.
    #[arg(long, default_value = "bp")]
    pub(super) trainer: String,
    /// Train, validation and test fractions of the undirected edges (default 0.85,0.05,0.10,
    /// the GAE protocol; 0.64,0.16,0.20 with a ForwardGNN trainer, as its paper ran them).
    #[arg(long, value_delimiter = ',')]
    pub(super) split: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// The model directory. Written as a new directory beside it and renamed into place once
    /// complete, so an existing model there is replaced whole or not at all.
    #[arg(long)]
    pub(super) out: PathBuf,
    /// Where this run writes before the rename (set by `train`).
    #[arg(skip)]
    pub(super) staging: PathBuf,
    #[arg(long)]
    pub(super) epochs: Option<usize>,
    #[arg(long)]
    pub(super) layers: Option<usize>,
    #[arg(long)]
    pub(super) hidden: Option<i64>,
    /// Embedding width.
    #[arg(long)]
    pub(super) out_dim: Option<i64>,
    #[arg(long)]
    pub(super) lr: Option<f64>,
    #[arg(long)]
    pub(super) dropout: Option<f64>,
    #[arg(long)]
    pub(super) patience: Option<usize>,
    /// K of the validation Hits@K that selects the epoch.
    #[arg(long)]
    pub(super) hits_k: Option<usize>,
    #[command(flatten)]
    pub(super) compute: crate::source::ComputeArgs,
    #[arg(long)]
    pub(super) json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(super) struct EvalArgs {
    pub(super) model_dir: PathBuf,
    #[command(flatten)]
    pub(super) graph: GraphSource,
    #[command(flatten)]
    pub(super) compute: crate::source::ComputeArgs,
    #[arg(long)]
    pub(super) json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(super) struct PredictArgs {
    pub(super) model_dir: PathBuf,
    /// List the best candidates for this node.
    #[arg(long, required_unless_present = "pairs")]
    pub(super) node: Option<usize>,
    #[arg(long, default_value_t = 10)]
    pub(super) top: usize,
    /// Score the pairs in this file (`src dst` per line) instead.
    #[arg(long, conflicts_with = "node")]
    pub(super) pairs: Option<PathBuf>,
    /// Run the encoder again instead of using the embeddings saved at training time.
    #[arg(long)]
    pub(super) recompute: bool,
    #[command(flatten)]
    pub(super) graph: GraphSource,
    #[command(flatten)]
    pub(super) compute: crate::source::ComputeArgs,
    #[arg(long)]
    pub(super) json: Option<PathBuf>,
    #[arg(long)]
    pub(super) csv: Option<PathBuf>,
}

pub fn run(a: LinkpredArgs) -> anyhow::Result<()> {
    match a.command {
        LinkCommand::Train(t) => train(*t),
        LinkCommand::Eval(e) => eval(e),
        LinkCommand::Predict(p) => predict(p),
    }
}
