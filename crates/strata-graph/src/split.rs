//! Node splits (public, JSON, random stratified) and link-prediction splits.

use crate::error::{GraphError, Result};
use crate::graph::CsrGraph;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::path::Path;

/// Train / validation / test node ids.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    #[serde(alias = "idx_train")]
    pub train: Vec<usize>,
    #[serde(alias = "idx_val")]
    pub val: Vec<usize>,
    #[serde(alias = "idx_test")]
    pub test: Vec<usize>,
}

impl Split {
    /// Reads `{"idx_train": [...], "idx_val": [...], "idx_test": [...]}` (also accepts
    /// `train`/`val`/`test`). Extra keys are ignored.
    pub fn from_json(path: impl AsRef<Path>) -> Result<Split> {
        let path = path.as_ref();
        let text = crate::files::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|source| GraphError::Json { path: path.into(), source })
    }
    /// Splits from boolean masks.
    pub fn from_masks(train: &[bool], val: &[bool], test: &[bool]) -> Split {
        let ids = |m: &[bool]| m.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i).collect();
        Split { train: ids(train), val: ids(val), test: ids(test) }
    }
    /// Checks ids are in range and the three sets are disjoint.
    pub fn check(&self, context: &str, num_nodes: usize) -> Result<()> {
        let mut seen = vec![0u8; num_nodes];
        for (k, part) in [&self.train, &self.val, &self.test].into_iter().enumerate() {
            for &i in part {
                if i >= num_nodes {
                    return Err(GraphError::NodeOutOfRange {
                        context: format!("{context}: split"),
                        id: i as i64,
                        num_nodes,
                    });
                }
                if seen[i] != 0 {
                    return Err(GraphError::invalid(
                        context,
                        format!("node {i} is in more than one split part (second: {})", ["train", "val", "test"][k]),
                    ));
                }
                seen[i] = 1;
            }
        }
        Ok(())
    }
    pub(crate) fn remapped(&self, new_id_of: &[usize]) -> Split {
        let m = |v: &[usize]| v.iter().map(|&i| new_id_of[i]).collect();
        Split { train: m(&self.train), val: m(&self.val), test: m(&self.test) }
    }
    /// Planetoid-style random split: `per_class` training nodes of each class, then `num_val`
    /// and `num_test` from the rest. Unlabelled nodes (−1) are never chosen.
    pub fn random_per_class(labels: &[i64], per_class: usize, num_val: usize, num_test: usize, seed: u64) -> Split {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let classes = labels.iter().copied().max().map_or(0, |m| m + 1).max(0) as usize;
        let mut train = Vec::new();
        let mut rest = Vec::new();
        for c in 0..classes {
            let mut ids: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c as i64).collect();
            ids.shuffle(&mut rng);
            let k = per_class.min(ids.len());
            train.extend_from_slice(&ids[..k]);
            rest.extend_from_slice(&ids[k..]);
        }
        rest.shuffle(&mut rng);
        let val: Vec<usize> = rest.iter().copied().take(num_val).collect();
        let test: Vec<usize> = rest.iter().copied().skip(num_val).take(num_test).collect();
        train.sort_unstable();
        Split { train, val, test }
    }
    /// Random split stratified by class: within each class, `train_frac` / `val_frac` / rest.
    pub fn random_stratified(labels: &[i64], train_frac: f64, val_frac: f64, seed: u64) -> Split {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let classes = labels.iter().copied().max().map_or(0, |m| m + 1).max(0) as usize;
        let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for c in 0..classes {
            let mut ids: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c as i64).collect();
            ids.shuffle(&mut rng);
            let nt = (ids.len() as f64 * train_frac).round() as usize;
            let nv = (ids.len() as f64 * val_frac).round() as usize;
            train.extend_from_slice(&ids[..nt]);
            val.extend_from_slice(&ids[nt..(nt + nv).min(ids.len())]);
            test.extend_from_slice(&ids[(nt + nv).min(ids.len())..]);
        }
        for v in [&mut train, &mut val, &mut test] {
            v.sort_unstable();
        }
        Split { train, val, test }
    }
}

/// A link-prediction split of an undirected graph. Held-out edges are removed from the
/// message-passing graph; validation and test negatives are sampled once, uniformly among
/// non-edges of the full graph, as many as positives.
#[derive(Clone, Debug)]
pub struct LinkSplit {
    /// Symmetric graph of the training edges only: the graph models may propagate over.
    pub train_graph: CsrGraph,
    pub train_pos: Vec<(usize, usize)>,
    pub val_pos: Vec<(usize, usize)>,
    pub val_neg: Vec<(usize, usize)>,
    pub test_pos: Vec<(usize, usize)>,
    pub test_neg: Vec<(usize, usize)>,
}

impl LinkSplit {
    /// The training edges plus the validation positives, both directions: the graph test-time
    /// messages pass over under PyG's `RandomLinkSplit` semantics (ForwardGNN's protocol).
    pub fn train_val_graph(&self) -> Result<CsrGraph> {
        let mut edges: Vec<(i64, i64)> = (0..self.train_graph.num_nodes())
            .flat_map(|u| self.train_graph.neighbors(u).iter().map(move |&v| (u as i64, v)))
            .collect();
        edges.extend(self.val_pos.iter().flat_map(|&(u, v)| [(u as i64, v as i64), (v as i64, u as i64)]));
        CsrGraph::from_edges("link split: train + val edges", self.train_graph.num_nodes(), &edges, None)
    }

    /// Splits the undirected edges (self loops dropped) of `graph` into fractions
    /// `val_frac` / `test_frac` / rest for training, seeded.
    pub fn new(graph: &CsrGraph, val_frac: f64, test_frac: f64, seed: u64) -> Result<LinkSplit> {
        if !(0.0..1.0).contains(&(val_frac + test_frac)) {
            return Err(GraphError::invalid("link split", "val + test fractions must be in [0, 1)"));
        }
        let g = graph.symmetrized().without_self_loops();
        let n = g.num_nodes();
        let mut edges: Vec<(usize, usize)> = g.edges().into_iter().filter(|&(u, v)| u < v).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        edges.shuffle(&mut rng);
        let nv = (edges.len() as f64 * val_frac).floor() as usize;
        let nt = (edges.len() as f64 * test_frac).floor() as usize;
        let val_pos = edges[..nv].to_vec();
        let test_pos = edges[nv..nv + nt].to_vec();
        let train_pos = edges[nv + nt..].to_vec();
        let possible = n * (n - 1) / 2 - edges.len();
        if nv + nt > possible {
            return Err(GraphError::invalid("link split", "graph too dense to sample enough non-edges"));
        }
        let mut taken: HashSet<(usize, usize)> = HashSet::with_capacity(nv + nt);
        let mut sample = |count: usize, rng: &mut ChaCha8Rng| {
            let mut out = Vec::with_capacity(count);
            while out.len() < count {
                let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
                let (u, v) = (a.min(b), a.max(b));
                if u != v && !g.has_edge(u, v) && taken.insert((u, v)) {
                    out.push((u, v));
                }
            }
            out
        };
        let val_neg = sample(nv, &mut rng);
        let test_neg = sample(nt, &mut rng);
        let both: Vec<(i64, i64)> =
            train_pos.iter().flat_map(|&(u, v)| [(u as i64, v as i64), (v as i64, u as i64)]).collect();
        let train_graph = CsrGraph::from_edges("link split", n, &both, None)?;
        Ok(LinkSplit { train_graph, train_pos, val_pos, val_neg, test_pos, test_neg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_split_is_balanced_and_disjoint() {
        let labels: Vec<i64> = (0..300).map(|i| (i % 3) as i64).collect();
        let s = Split::random_per_class(&labels, 20, 50, 100, 7);
        assert_eq!(s.train.len(), 60);
        for c in 0..3 {
            assert_eq!(s.train.iter().filter(|&&i| labels[i] == c).count(), 20);
        }
        s.check("t", 300).unwrap();
        assert_eq!(s, Split::random_per_class(&labels, 20, 50, 100, 7));
        assert_ne!(s, Split::random_per_class(&labels, 20, 50, 100, 8));
    }

    #[test]
    fn overlapping_split_is_rejected() {
        let s = Split { train: vec![0, 1], val: vec![1], test: vec![] };
        assert!(s.check("t", 3).unwrap_err().to_string().contains("more than one"));
    }

    #[test]
    fn link_split_holds_out_edges() {
        let edges: Vec<(i64, i64)> = (0..50).flat_map(|i| [(i, (i + 1) % 50), (i, (i + 7) % 50)]).collect();
        let g = CsrGraph::from_edges("t", 50, &edges, None).unwrap().symmetrized();
        let s = LinkSplit::new(&g, 0.1, 0.2, 1).unwrap();
        assert_eq!(s.val_pos.len(), 10);
        assert_eq!(s.test_pos.len(), 20);
        assert_eq!(s.test_neg.len(), 20);
        for &(u, v) in s.test_pos.iter().chain(&s.val_pos) {
            assert!(!s.train_graph.has_edge(u, v) && !s.train_graph.has_edge(v, u));
        }
        for &(u, v) in &s.test_neg {
            assert!(!g.has_edge(u, v));
        }
        assert_eq!(s.train_graph.num_undirected_edges(), 70);
        // Test-time message passing: the training edges and the validation positives, both
        // directions, and no test edge.
        let tv = s.train_val_graph().unwrap();
        assert_eq!(tv.num_undirected_edges(), 80);
        assert!(tv.is_symmetric());
        assert!(s.val_pos.iter().all(|&(u, v)| tv.has_edge(u, v) && tv.has_edge(v, u)));
        assert!(s.test_pos.iter().all(|&(u, v)| !tv.has_edge(u, v) && !tv.has_edge(v, u)));
    }
}
