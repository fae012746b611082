//! # strata-forward
//!
//! ForwardGNN (Park et al., "Forward Learning of Graph Neural Networks", ICLR 2024; reference
//! code facebookresearch/forwardgnn): every layer is trained with its own optimiser and a local
//! loss; no gradient crosses layers, so training memory does not grow with depth.
//!
//! Node classification ([`train_node`], one [`Trainer`] per variant of the paper):
//! - `ff-la`: forward-forward with label appending (§3.1, Eq. 4, Alg. 1), module `ff`;
//! - `ff-vn`: forward-forward with virtual class nodes (§3.1, Eq. 5), module `ff`;
//! - `sf`: single forward (§3.2, Eq. 6, Alg. 2), module `sf`;
//! - `sf-topdown-loss` / `sf-topdown-input`: SF with a top-down signal into the loss (Eq. 8,
//!   Alg. 3) or into the input (Eq. 7), module `topdown`;
//! - `bp`: ordinary backprop through the same convolutions (the paper's baseline settings).
//!
//! Link prediction ([`train_links`]): `sf` (dot-product BCE per layer) and `ff` (goodness of
//! the Hadamard product), §3.4, Eq. 9, Alg. 4.
//!
//! Every run reports its peak tensor memory ([`strata_nn::memory`]) so depth can be compared
//! with backprop.

mod config;
mod ff;
mod layer;
mod link;
mod node;
mod report;
mod sf;
mod topdown;

pub use config::{ForwardConfig, Trainer};
pub use link::{train_links, ForwardLinkModel, LinkRun, LinkTrainer};
pub use node::{bp_config, train_node};
pub use report::NodeReport;
