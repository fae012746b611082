//! The layer library, one file per layer, in the manner of PyG's `nn/conv/`.

mod appnp;
mod dgmlp;
mod gat;
mod gcn;
mod gcnii;
mod gin;
mod linear;
mod sage;
mod sgc;

pub use appnp::Appnp;
pub use dgmlp::dgmlp_features;
pub use gat::GatConv;
pub use gcn::GcnConv;
pub use gcnii::Gcn2Conv;
pub use gin::GinConv;
pub use linear::{Init, Linear};
pub use sage::SageConv;
pub use sgc::sgc_propagate;
