//! # strata-forward
//!
//! ForwardGNN (Park et al., "Forward Learning of Graph Neural Networks", ICLR 2024): every layer
//! is trained on its own, with its own optimiser and a local loss; no gradient crosses layers,
//! so training memory does not grow with depth.
//!
//! Implemented so far: the single-forward trainer for node classification ([`train_sf`], §3.2,
//! Alg. 2) with GCN, SAGE (mean) and GAT (4 heads) layers, and the paper's backprop baseline
//! configuration ([`bp_config`]). Still to come (see the ForwardGNN issue): FF with label
//! appending or virtual nodes, the two top-down SF variants, the link prediction trainers,
//! memory accounting and the CLI.

mod sf;

pub use sf::{train_sf, SfConfig, SfReport};

/// The backprop baseline of the paper (`train_backprop.py`): the same convolutions end to end,
/// hidden 128, no dropout, Adam 1e-3 with weight decay 5e-4 on every layer, up to 1000 epochs,
/// early stopping after 100 validations (200 epochs) without improvement.
pub fn bp_config(conv: strata_nn::ModelKind, layers: usize) -> strata_nn::ModelConfig {
    let mut c = strata_nn::ModelConfig::defaults(conv);
    c.layers = layers;
    c.hidden = 128;
    c.heads = if conv == strata_nn::ModelKind::Gat { 4 } else { 1 };
    c.dropout = 0.0;
    c.att_dropout = 0.0;
    c.lr = 1e-3;
    c.weight_decay = 5e-4;
    c.weight_decay_secondary = 5e-4;
    c.epochs = 1000;
    c.patience = 200;
    c.normalize_features = true;
    c
}
