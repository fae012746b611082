//! # strata-stable
//!
//! STABLE (Li et al., "Reliable Representations Make A Stronger Defender: Unsupervised Structure
//! Refinement for Robust GNN", KDD 2022): repair a possibly poisoned graph before training.
//!
//! 1. Jaccard pre-pruning: drop edges whose endpoints' binary features overlap less than `jt`.
//! 2. Two augmented views, each adding back a random 20 % of the pruned edges (drawn once).
//! 3. A contrastive encoder (a DGI variant): one GCN layer to 512 dims with PReLU on the pruned
//!    graph (self-loop weight β), row-shuffled features as negatives, the sigmoid of each view's
//!    mean embedding as summaries, a bilinear discriminator, BCE on the sum of both views' logits;
//!    Adam at 1e-3, early stopping on the training loss (patience 20).
//! 4. Remove edges of the *original* graph whose embedding cosine is ≤ `cos`.
//! 5. Give every node its `k` most similar nodes (among nodes of degree > 1) as extra, directed
//!    neighbours — computed in row blocks, never as a dense N×N matrix.
//! 6. Train the "advanced GCN" on the embeddings: weights `d_i^α (A+I)_ij d_j^α`, row-normalised
//!    unless α = −0.5; two layers, hidden 16, dropout 0.5, Adam 0.01, weight decay 5e-4, 200 epochs.
//!
//! Everything is sparse (edge lists and gather/scatter); memory grows with the edges, not N².

mod classifier;
mod encoder;
mod refine;

pub use classifier::{advanced_gcn_runs, AdvancedGcnReport};
pub use encoder::{train_encoder, EncoderReport};
pub use refine::{add_reliable_neighbours, augmented_views, cosine_prune, edge_cosines, is_featureless, jaccard_prune};

use serde::Serialize;
use std::time::Instant;
use strata_graph::{CsrGraph, Dataset, Split};
use tch::Device;

/// STABLE's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct StableConfig {
    /// Degree exponent of the advanced GCN.
    pub alpha: f64,
    /// Self-loop weight of the encoder's anchor graph.
    pub beta: f64,
    /// Reliable neighbours added per node.
    pub k: usize,
    /// Jaccard threshold of the pre-pruning (0 = off).
    pub jt: f64,
    /// Cosine threshold of the pruning.
    pub cos: f64,
    /// Fraction of pruned edges each augmented view adds back.
    pub recover: f64,
    pub hidden_dim: i64,
    pub max_encoder_epochs: usize,
    pub patience: usize,
}

impl StableConfig {
    /// The reference README's tuned values for Metattack on Cora, Citeseer and PolBlogs
    /// (`rate` = perturbation rate, rounded to the nearest tabulated 0/5/10/15/20 %); `None` for
    /// other datasets.
    pub fn preset(dataset: &str, rate: f64) -> Option<StableConfig> {
        let table: &[(f64, f64, f64, usize, f64, f64)] = match dataset {
            "cora" | "cora-lcc" => &[
                (0.0, -0.5, 2.0, 1, 0.0, 0.1),
                (0.05, -0.3, 2.0, 5, 0.03, 0.1),
                (0.10, 0.3, 2.0, 7, 0.03, 0.1),
                (0.15, 0.6, 2.0, 7, 0.03, 0.2),
                (0.20, 0.6, 2.0, 7, 0.03, 0.25),
            ],
            "citeseer" | "citeseer-lcc" => &[
                (0.0, -0.5, 2.0, 3, 0.0, 0.1),
                (0.05, -0.3, 2.0, 3, 0.02, 0.1),
                (0.10, -0.1, 2.0, 5, 0.02, 0.1),
                (0.15, -0.1, 2.0, 5, 0.04, 0.1),
                (0.20, 0.1, 2.0, 5, 0.03, 0.1),
            ],
            // PolBlogs has no features: the Jaccard step is off.
            "polblogs" | "polblogs-lcc" => &[
                (0.0, -0.5, 2.0, 0, 0.0, 0.1),
                (0.05, 0.3, 1.0, 3, 0.0, 0.1),
                (0.10, 0.5, 1.0, 3, 0.0, 0.1),
                (0.15, 2.0, 2.0, 3, 0.0, 0.1),
                (0.20, 2.0, 2.0, 3, 0.0, 0.1),
            ],
            _ => return None,
        };
        let row = table.iter().min_by(|a, b| (a.0 - rate).abs().total_cmp(&(b.0 - rate).abs()))?;
        Some(StableConfig { alpha: row.1, beta: row.2, k: row.3, jt: row.4, cos: row.5, ..StableConfig::default() })
    }
}

impl Default for StableConfig {
    /// The reference's argparse defaults (commit e153d58).
    fn default() -> Self {
        StableConfig {
            alpha: 0.3,
            beta: 2.0,
            k: 3,
            jt: 0.03,
            cos: 0.1,
            recover: 0.2,
            hidden_dim: 512,
            max_encoder_epochs: 10_000,
            patience: 20,
        }
    }
}

/// What refinement did.
#[derive(Clone, Debug, Serialize)]
pub struct Refinement {
    /// Undirected edges the Jaccard step removed (used for the augmented views only).
    pub jaccard_pruned: usize,
    /// The features are the identity or constant, so the Jaccard step was skipped.
    pub jaccard_skipped_featureless: bool,
    /// Undirected edges of the input graph removed by the cosine step.
    pub edges_removed: usize,
    /// Directed edges added by the reliable-neighbour step.
    pub edges_added: usize,
    pub encoder: EncoderReport,
    pub seconds: f64,
    /// The removed edges, `(u, v)` with `u < v`, and their embedding cosines.
    #[serde(skip)]
    pub removed: Vec<(usize, usize, f32)>,
    /// Cosines of the kept input edges.
    #[serde(skip)]
    pub kept_cosines: Vec<(usize, usize, f32)>,
}

/// The refined graph (directed: the added neighbours go one way), the node embeddings and what
/// changed.
pub struct Refined {
    pub graph: CsrGraph,
    pub embeddings: tch::Tensor,
    pub report: Refinement,
}

/// Runs STABLE's refinement (steps 1–5) on `data.graph`.
pub fn refine(data: &Dataset, cfg: &StableConfig, seed: u64, device: Device) -> Refined {
    let t0 = Instant::now();
    let graph = data.graph.symmetrized().without_self_loops();
    // Jaccard similarity of featureless nodes (identity or constant features) says nothing.
    let featureless = cfg.jt > 0.0 && refine::is_featureless(&data.features);
    if featureless {
        tracing::info!("{}: featureless (identity or constant features): Jaccard pre-pruning skipped", data.name);
    }
    let (pre, pruned) = jaccard_prune(&graph, &data.features, if featureless { 0.0 } else { cfg.jt });
    let views = augmented_views(&pre, &pruned, cfg.recover, seed);
    let (z, encoder) = train_encoder(&pre, &views, &data.features, cfg, seed, device);
    let cosines = edge_cosines(&graph, &z);
    let (kept, removed) = cosine_prune(&graph, &cosines, cfg.cos);
    let (refined, added) = add_reliable_neighbours(&kept, &z, cfg.k);
    let kept_cosines = cosines.iter().copied().filter(|&(_, _, c)| c as f64 > cfg.cos).collect();
    let report = Refinement {
        jaccard_pruned: pruned.len(),
        jaccard_skipped_featureless: featureless,
        edges_removed: removed.len(),
        edges_added: added,
        encoder,
        seconds: t0.elapsed().as_secs_f64(),
        removed,
        kept_cosines,
    };
    Refined { graph: refined, embeddings: z, report }
}

/// Refinement and the advanced GCN, `runs` times with fresh initialisations: test accuracies.
pub fn stable_accuracy(
    data: &Dataset,
    split: &Split,
    cfg: &StableConfig,
    runs: usize,
    seed: u64,
    device: Device,
) -> (Refined, AdvancedGcnReport) {
    let r = refine(data, cfg, seed, device);
    let acc = advanced_gcn_runs(&r.graph, &r.embeddings, &data.labels, split, cfg.alpha, runs, seed, device);
    (r, acc)
}
