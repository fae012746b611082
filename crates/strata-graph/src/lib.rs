//! # strata-graph
//!
//! The graph store of strata, with no libtorch dependency: a CSR graph type, node features and
//! labels, readers for the formats public GNN datasets ship in (gnn-benchmark npz,
//! `scipy.sparse.save_npz`, edge lists, Geom-GCN text, OGB raw directories), node and link
//! splits, the Pro-GNN clean-graph recipe, a multilevel partitioner, and a registry of named
//! datasets that can locate, load and download them.
//!
//! ```no_run
//! let cora = strata_graph::load("cora", None)?;
//! assert_eq!(cora.num_nodes(), 2708);
//! let parts = strata_graph::partition(&cora.graph, 8, 0);
//! # Ok::<(), strata_graph::GraphError>(())
//! ```

mod csr;
mod dataset;
mod error;
pub mod files;
pub mod formats;
mod graph;
pub mod limits;
pub mod npz;
mod partition;
pub mod planted;
mod prognn;
pub mod registry;
mod split;
pub mod synthetic;

pub use csr::CsrMatrix;
pub use dataset::{row_sum_normalize, Dataset, FeatureNorm, Features};
pub use error::{GraphError, Result};
pub use graph::CsrGraph;
pub use partition::{
    edge_cut, locality_order, partition, random_partition, ContiguousOrder, Reorder, LOCALITY_PART_NODES,
};
pub use prognn::{edge_difference, prognn_clean, with_poisoned_adjacency};
pub use registry::{load, write_atomic, write_atomic_private, write_atomic_with, Attack};
pub use split::{LinkSplit, Split};
