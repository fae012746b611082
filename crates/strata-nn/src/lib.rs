//! # strata-nn
//!
//! The GNN layer library and full-batch trainer of strata, on libtorch (`tch`).
//!
//! - [`message_passing`]: the shared core — gather / scatter (sum, mean, max), edge softmax and
//!   normalised CSR operators cached per graph ([`GraphTensors`]).
//! - [`conv`]: one file per layer (GCN, GraphSAGE, GAT, GIN, APPNP, SGC, GCNII, DGMLP-style hop
//!   attention), each citing its paper and equation.
//! - [`Model`] / [`ModelConfig`]: architectures with their papers' default hyper-parameters.
//! - [`train_node_classifier`]: Adam + weight decay, dropout, early stopping, seeds.
//! - [`metrics`]: accuracy, ROC-AUC, AP, Hits@K, MRR; [`checkpoint`]: atomic safetensors.

pub mod checkpoint;
mod config;
pub mod conv;
mod device;
mod error;
pub mod export;
mod input;
pub mod linkpred;
pub mod memory;
pub mod message_passing;
pub mod metrics;
mod model;
pub mod ops;
pub mod optim;
mod trainer;

pub use config::{ModelConfig, ModelKind, ModelOverrides, StopOn, MAX_EPOCHS, MAX_LR};
pub use device::{device_name, parse_device, set_threads};
pub use error::{NnError, Result};
pub use input::Input;
pub use linkpred::{train_link_predictor, Decoder, LinkConfig, LinkMetrics, LinkModel, LinkReport, LinkTask};
pub use message_passing::{gcn_norm, Adjacency, GraphTensors, Kernel, MessagePassing, Norm};
pub use model::Model;
pub use trainer::{train_node_classifier, EpochStats, NodeTask, Patience, Progress, RunReport};
