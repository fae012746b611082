//! The graph type: a square CSR adjacency with graph operations on top.

use crate::csr::CsrMatrix;
use crate::error::{GraphError, Result};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::EdgeType;

/// A graph stored as CSR adjacency: row `u` lists the out-neighbours of `u`. For message passing
/// the convention is that node `u` aggregates from the nodes in row `u`, which for a symmetric
/// (undirected) graph is the same as in-neighbours.
#[derive(Clone, Debug, PartialEq)]
pub struct CsrGraph {
    adj: CsrMatrix,
}

impl CsrGraph {
    /// Wraps a square adjacency matrix.
    pub fn from_adjacency(context: &str, adj: CsrMatrix) -> Result<Self> {
        if adj.rows() != adj.cols() {
            return Err(GraphError::invalid(
                context,
                format!("adjacency must be square, got {}x{}", adj.rows(), adj.cols()),
            ));
        }
        Ok(CsrGraph { adj })
    }

    /// Builds a graph from directed edges `(src, dst)`; duplicates collapse (weights add up).
    pub fn from_edges(context: &str, num_nodes: usize, edges: &[(i64, i64)], weights: Option<&[f32]>) -> Result<Self> {
        let src: Vec<i64> = edges.iter().map(|e| e.0).collect();
        let dst: Vec<i64> = edges.iter().map(|e| e.1).collect();
        let adj = CsrMatrix::from_coo(context, num_nodes, num_nodes, &src, &dst, weights)?;
        Ok(CsrGraph { adj })
    }

    pub fn adjacency(&self) -> &CsrMatrix {
        &self.adj
    }
    pub fn into_adjacency(self) -> CsrMatrix {
        self.adj
    }
    pub fn num_nodes(&self) -> usize {
        self.adj.rows()
    }
    /// Stored (directed) entries, self loops included.
    pub fn num_entries(&self) -> usize {
        self.adj.nnz()
    }
    pub fn neighbors(&self, u: usize) -> &[i64] {
        self.adj.row(u)
    }
    pub fn weights(&self) -> Option<&[f32]> {
        self.adj.values()
    }
    pub fn has_edge(&self, u: usize, v: usize) -> bool {
        self.adj.row(u).binary_search(&(v as i64)).is_ok()
    }
    pub fn is_symmetric(&self) -> bool {
        (0..self.num_nodes()).all(|u| self.neighbors(u).iter().all(|&v| self.has_edge(v as usize, u)))
    }
    pub fn num_self_loops(&self) -> usize {
        (0..self.num_nodes()).filter(|&u| self.has_edge(u, u)).count()
    }
    /// Undirected edges without self loops: each pair {u, v} with an entry in either direction
    /// counts once.
    pub fn num_undirected_edges(&self) -> usize {
        let mut count = 0;
        for u in 0..self.num_nodes() {
            for &v in self.neighbors(u) {
                let v = v as usize;
                if u < v || (u > v && !self.has_edge(v, u)) {
                    count += 1;
                }
            }
        }
        count
    }
    /// Row degrees (number of stored entries per row, self loops included).
    pub fn degrees(&self) -> Vec<usize> {
        (0..self.num_nodes()).map(|u| self.adj.row_nnz(u)).collect()
    }
    /// Row sums of the edge weights (equal to `degrees` for unweighted graphs).
    pub fn weighted_degrees(&self) -> Vec<f32> {
        (0..self.num_nodes())
            .map(|u| self.adj.row_values(u).map_or(self.adj.row_nnz(u) as f32, |v| v.iter().sum()))
            .collect()
    }
    /// A ∪ Aᵀ (max of the two weights where both exist).
    pub fn symmetrized(&self) -> CsrGraph {
        CsrGraph { adj: self.adj.union_max(&self.adj.transpose()) }
    }
    pub fn without_self_loops(&self) -> CsrGraph {
        CsrGraph { adj: self.adj.filter(|r, c, _| r != c) }
    }
    /// Adds a self loop of weight `fill` to every node that has none (PyG's `add_remaining_self_loops`).
    pub fn with_self_loops(&self, fill: f32) -> CsrGraph {
        let n = self.num_nodes();
        let mut rows = self.adj.row_ids();
        let mut cols = self.adj.indices().to_vec();
        let mut vals = self.adj.values_or_ones();
        for u in 0..n {
            if !self.has_edge(u, u) {
                rows.push(u as i64);
                cols.push(u as i64);
                vals.push(fill);
            }
        }
        let weighted = self.adj.values().is_some() || fill != 1.0;
        let adj = CsrMatrix::from_coo("self loops", n, n, &rows, &cols, weighted.then_some(&vals[..])).unwrap();
        CsrGraph { adj }
    }
    /// ForwardGNN's augmented graph: this graph symmetrised plus `classes` virtual class nodes
    /// (ids `n..n+classes`), each `(node, class)` of `links` joined both ways to its class's
    /// virtual node.
    pub fn with_virtual_nodes(
        &self,
        classes: usize,
        links: impl IntoIterator<Item = (usize, usize)>,
    ) -> Result<CsrGraph> {
        let n = self.num_nodes();
        let mut edges: Vec<(i64, i64)> =
            self.symmetrized().edges().into_iter().map(|(u, v)| (u as i64, v as i64)).collect();
        for (i, c) in links {
            let vn = (n + c) as i64;
            edges.push((i as i64, vn));
            edges.push((vn, i as i64));
        }
        CsrGraph::from_edges("graph with virtual class nodes", n + classes, &edges, None)
    }
    /// Directed edge list `(src, dst)` in storage order.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        self.adj.iter().map(|(r, c, _)| (r, c)).collect()
    }
    /// SHA-256 (hex) of the node count and the sorted undirected edge set (self loops and
    /// weights ignored): equal for the same graph however its edges were listed.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut pairs: Vec<(usize, usize)> =
            self.adj.iter().filter(|&(r, c, _)| r != c).map(|(r, c, _)| (r.min(c), r.max(c))).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut h = Sha256::new();
        h.update((self.num_nodes() as u64).to_le_bytes());
        for (u, v) in pairs {
            h.update((u as u64).to_le_bytes());
            h.update((v as u64).to_le_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
    /// Connected components of the undirected view: a component id per node, numbered in order
    /// of their smallest node.
    pub fn connected_components(&self) -> Vec<usize> {
        // petgraph's union-find over the entries (direction ignored), then ids numbered in order
        // of each component's smallest node.
        let n = self.num_nodes();
        let mut sets = petgraph::unionfind::UnionFind::<usize>::new(n);
        for (u, v, _) in self.adj.iter() {
            sets.union(u, v);
        }
        let mut id = vec![usize::MAX; n];
        let mut next = 0;
        (0..n)
            .map(|u| {
                let root = sets.find(u);
                if id[root] == usize::MAX {
                    id[root] = next;
                    next += 1;
                }
                id[root]
            })
            .collect()
    }
    /// Nodes of the largest connected component, in their original order.
    pub fn largest_component(&self) -> Vec<usize> {
        let comp = self.connected_components();
        let k = comp.iter().copied().max().map_or(0, |m| m + 1);
        let mut sizes = vec![0usize; k];
        comp.iter().for_each(|&c| sizes[c] += 1);
        // Ties go to the component containing the smallest node, as scipy's labelling does.
        let best = (0..k).max_by_key(|&c| (sizes[c], std::cmp::Reverse(c))).unwrap_or(0);
        (0..self.num_nodes()).filter(|&u| comp[u] == best).collect()
    }
    /// The subgraph induced by `nodes`; node `nodes[i]` becomes node `i`.
    pub fn induced_subgraph(&self, nodes: &[usize]) -> CsrGraph {
        let mut map = vec![-1i64; self.num_nodes()];
        for (i, &u) in nodes.iter().enumerate() {
            map[u] = i as i64;
        }
        let rows = self.adj.select_rows(nodes);
        let kept = rows.filter(|_, c, _| map[c] >= 0);
        let indices: Vec<i64> = kept.indices().iter().map(|&c| map[c as usize]).collect();
        let adj = CsrMatrix::from_parts(
            "subgraph",
            nodes.len(),
            nodes.len(),
            kept.indptr().to_vec(),
            indices,
            kept.values().map(|v| v.to_vec()),
        )
        .expect("renumbered subgraph is valid");
        CsrGraph { adj }
    }
    /// Renumbers nodes: new node `i` is old node `order[i]` (`order` must be a permutation).
    pub fn permuted(&self, order: &[usize]) -> CsrGraph {
        assert_eq!(order.len(), self.num_nodes(), "permutation length");
        self.induced_subgraph(order)
    }

    /// Converts to a petgraph directed graph (edge weight = stored value).
    pub fn to_petgraph(&self) -> DiGraph<(), f32> {
        let mut g = DiGraph::with_capacity(self.num_nodes(), self.num_entries());
        for _ in 0..self.num_nodes() {
            g.add_node(());
        }
        for (u, v, w) in self.adj.iter() {
            g.add_edge(NodeIndex::new(u), NodeIndex::new(v), w);
        }
        g
    }
    /// Builds from any petgraph graph; undirected petgraph edges become both directions.
    pub fn from_petgraph<N, E, Ty: EdgeType>(
        g: &petgraph::Graph<N, E, Ty>,
        mut weight: impl FnMut(&E) -> f32,
    ) -> CsrGraph {
        let n = g.node_count();
        let (mut src, mut dst, mut w) = (Vec::new(), Vec::new(), Vec::new());
        for e in g.edge_indices() {
            let (a, b) = g.edge_endpoints(e).unwrap();
            let x = weight(&g[e]);
            src.push(a.index() as i64);
            dst.push(b.index() as i64);
            w.push(x);
            if !g.is_directed() && a != b {
                src.push(b.index() as i64);
                dst.push(a.index() as i64);
                w.push(x);
            }
        }
        let weighted = w.iter().any(|&x| x != 1.0);
        let adj = CsrMatrix::from_coo("petgraph", n, n, &src, &dst, weighted.then_some(&w[..])).unwrap();
        CsrGraph { adj }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path4() -> CsrGraph {
        CsrGraph::from_edges("t", 5, &[(0, 1), (1, 2), (2, 3)], None).unwrap()
    }

    #[test]
    fn symmetrize_loops_and_counts() {
        let g = path4().symmetrized();
        assert!(g.is_symmetric());
        assert_eq!(g.num_entries(), 6);
        assert_eq!(g.num_undirected_edges(), 3);
        let l = g.with_self_loops(1.0);
        assert_eq!(l.num_self_loops(), 5);
        assert_eq!(l.without_self_loops(), g);
        assert_eq!(g.degrees(), vec![1, 2, 2, 1, 0]);
    }

    #[test]
    fn components_and_subgraph() {
        let g = path4().symmetrized();
        assert_eq!(g.largest_component(), vec![0, 1, 2, 3]);
        let s = g.induced_subgraph(&[2, 1, 3]);
        assert_eq!(s.num_nodes(), 3);
        assert!(s.has_edge(0, 1) && s.has_edge(0, 2) && !s.has_edge(1, 2));
    }

    #[test]
    fn petgraph_roundtrip() {
        let g = path4();
        let p = g.to_petgraph();
        assert_eq!(p.edge_count(), 3);
        assert_eq!(CsrGraph::from_petgraph(&p, |w| *w), g);
        let mut u = petgraph::graph::UnGraph::<(), ()>::new_undirected();
        let a = u.add_node(());
        let b = u.add_node(());
        u.add_edge(a, b, ());
        assert_eq!(CsrGraph::from_petgraph(&u, |_| 1.0).num_entries(), 2);
    }
}
