//! The Pro-GNN clean-graph recipe and its poisoned adjacency matrices.

use crate::csr::CsrMatrix;
use crate::dataset::Dataset;
use crate::error::{GraphError, Result};
use crate::graph::CsrGraph;

/// DeepRobust's `setting='prognn'` preprocessing of a nettack graph: A ← A + Aᵀ, values
/// clipped to 1, keep the largest connected component (nodes in original order), zero the
/// diagonal. Features and labels keep the component's rows (identity features stay the
/// original width, as `eye(n)[lcc]`). Official splits are dropped: they index the full graph.
pub fn prognn_clean(raw: &Dataset) -> Dataset {
    let sym = raw.graph.adjacency().union_max(&raw.graph.adjacency().transpose());
    // A + Aᵀ then clip(1): every stored entry becomes exactly 1.
    let sym = CsrGraph::from_adjacency("prognn", sym.into_binary()).expect("square");
    let lcc = sym.largest_component();
    let mut d = raw.induced(&lcc);
    d.graph = sym.induced_subgraph(&lcc).without_self_loops();
    d
}

/// Number of undirected pairs {u, v}, u ≠ v, present in exactly one of the two graphs
/// (added / removed), as `(added, removed)` going from `clean` to `other`.
pub fn edge_difference(clean: &CsrGraph, other: &CsrGraph) -> Result<(usize, usize)> {
    if clean.num_nodes() != other.num_nodes() {
        return Err(GraphError::invalid(
            "edge difference",
            format!("graphs differ in size: {} vs {} nodes", clean.num_nodes(), other.num_nodes()),
        ));
    }
    let count = |a: &CsrGraph, b: &CsrGraph| {
        (0..a.num_nodes())
            .map(|u| a.neighbors(u).iter().filter(|&&v| (v as usize) > u && !b.has_edge(u, v as usize)).count())
            .sum()
    };
    Ok((count(other, clean), count(clean, other)))
}

/// Replaces the adjacency of a Pro-GNN clean dataset by a poisoned one (symmetric binary,
/// no self loops), checking that it indexes the same nodes.
pub fn with_poisoned_adjacency(clean: &Dataset, adj: CsrMatrix, context: &str) -> Result<Dataset> {
    if adj.rows() != clean.num_nodes() || adj.cols() != clean.num_nodes() {
        return Err(GraphError::invalid(
            context,
            format!(
                "poisoned adjacency is {}x{}, but the clean graph has {} nodes (is it for another dataset?)",
                adj.rows(),
                adj.cols(),
                clean.num_nodes()
            ),
        ));
    }
    let g = CsrGraph::from_adjacency(context, adj.clip(0.0, 1.0).eliminate_zeros().into_binary())?;
    let mut d = clean.clone();
    d.graph = g.symmetrized().without_self_loops();
    Ok(d)
}
