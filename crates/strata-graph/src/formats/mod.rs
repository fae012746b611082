//! File-format readers. Each returns a clear [`GraphError`](crate::GraphError) naming the file
//! and what was wrong, never panics on bad input.

mod edgelist;
mod geomgcn;
mod npz_graph;
mod ogb;
mod text;

pub use edgelist::{read_edge_list, EdgeList};
pub use geomgcn::read_geom_gcn;
pub use npz_graph::{graph_npz, read_csr, read_graph_npz, read_scipy_sparse};
pub use ogb::read_ogb_raw;
