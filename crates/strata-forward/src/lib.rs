//! # strata-forward
//!
//! ForwardGNN (Park et al., "Forward Learning of Graph Neural Networks", ICLR 2024): every layer
//! is trained on its own, with its own optimiser and a local loss; no gradient crosses layers,
//! so training memory does not grow with depth.
//!
//! Implemented so far: the single-forward trainer for node classification ([`train_sf`], §3.2,
//! Alg. 2) with GCN, SAGE (mean) and GAT (4 heads) layers. Still to come (see the ForwardGNN
//! issue): FF with label appending or virtual nodes, the two top-down SF variants, the link
//! prediction trainers and memory accounting.

mod sf;

pub use sf::{train_sf, SfConfig, SfReport};
