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

mod args;
mod model_dir;
mod scorer;
mod train;

use args::{EvalArgs, PredictArgs, TrainLinkArgs};
use scorer::{eval, predict};
use train::train;

use clap::{Args, Subcommand};

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

pub fn run(a: LinkpredArgs) -> anyhow::Result<()> {
    match a.command {
        LinkCommand::Train(t) => train(*t),
        LinkCommand::Eval(e) => eval(e),
        LinkCommand::Predict(p) => predict(p),
    }
}
