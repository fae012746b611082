//! Node features, labels and a graph bundled into a dataset.

use crate::csr::CsrMatrix;
use crate::error::{GraphError, Result};
use crate::graph::CsrGraph;
use crate::split::Split;

/// Node features: dense row-major, or sparse CSR (bag-of-words graphs are >98 % zeros).
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    Dense { rows: usize, cols: usize, data: Vec<f32> },
    Sparse(CsrMatrix),
}

impl Features {
    pub fn dense(rows: usize, cols: usize, data: Vec<f32>) -> Features {
        assert_eq!(rows * cols, data.len(), "dense feature shape");
        Features::Dense { rows, cols, data }
    }
    /// The identity matrix, for graphs without features (PolBlogs, karate).
    pub fn identity(n: usize) -> Features {
        let indptr = (0..=n as i64).collect();
        let indices = (0..n as i64).collect();
        Features::Sparse(CsrMatrix::from_parts("identity", n, n, indptr, indices, None).unwrap())
    }
    pub fn num_nodes(&self) -> usize {
        match self {
            Features::Dense { rows, .. } => *rows,
            Features::Sparse(m) => m.rows(),
        }
    }
    pub fn dim(&self) -> usize {
        match self {
            Features::Dense { cols, .. } => *cols,
            Features::Sparse(m) => m.cols(),
        }
    }
    pub fn to_dense(&self) -> Vec<f32> {
        match self {
            Features::Dense { data, .. } => data.clone(),
            Features::Sparse(m) => m.to_dense(),
        }
    }
    /// Errors on the first NaN or infinity, naming its position.
    pub fn check_finite(&self, context: &str) -> Result<()> {
        let bad = match self {
            Features::Dense { cols, data, .. } => {
                data.iter().position(|v| !v.is_finite()).map(|k| (k / cols, k % cols, data[k]))
            }
            Features::Sparse(m) => m.iter().find(|(_, _, v)| !v.is_finite()),
        };
        match bad {
            Some((row, col, value)) => Err(GraphError::NonFinite { context: context.into(), row, col, value }),
            None => Ok(()),
        }
    }
    /// Rows `ids`, in that order.
    pub fn select_rows(&self, ids: &[usize]) -> Features {
        match self {
            Features::Dense { cols, data, .. } => {
                let mut out = Vec::with_capacity(ids.len() * cols);
                for &r in ids {
                    out.extend_from_slice(&data[r * cols..(r + 1) * cols]);
                }
                Features::Dense { rows: ids.len(), cols: *cols, data: out }
            }
            Features::Sparse(m) => Features::Sparse(m.select_rows(ids)),
        }
    }
    /// Divides each row by its sum (rows summing to 0 stay 0), as PyG's `NormalizeFeatures`.
    pub fn row_normalized(&self) -> Features {
        match self {
            Features::Dense { rows, cols, data } => {
                let mut out = data.clone();
                for r in out.chunks_mut(*cols) {
                    let s: f32 = r.iter().sum();
                    if s != 0.0 {
                        r.iter_mut().for_each(|v| *v /= s);
                    }
                }
                Features::Dense { rows: *rows, cols: *cols, data: out }
            }
            Features::Sparse(m) => {
                let mut vals = m.values_or_ones();
                for r in 0..m.rows() {
                    let (a, b) = (m.indptr()[r] as usize, m.indptr()[r + 1] as usize);
                    let s: f32 = vals[a..b].iter().sum();
                    if s != 0.0 {
                        vals[a..b].iter_mut().for_each(|v| *v /= s);
                    }
                }
                Features::Sparse(
                    CsrMatrix::from_parts("normalize", m.rows(), m.cols(), m.indptr().to_vec(), m.indices().to_vec(), Some(vals))
                        .unwrap(),
                )
            }
        }
    }
}

/// A node-level dataset: graph, features, labels (−1 = unlabelled) and any official splits.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub graph: CsrGraph,
    pub features: Features,
    pub labels: Vec<i64>,
    pub num_classes: usize,
    /// Official splits shipped with the data (Planetoid: one public split; Geom-GCN: ten).
    pub splits: Vec<Split>,
}

impl Dataset {
    /// Checks that all parts agree in size and labels are in range.
    pub fn new(
        name: impl Into<String>,
        graph: CsrGraph,
        features: Features,
        labels: Vec<i64>,
        splits: Vec<Split>,
    ) -> Result<Dataset> {
        let name = name.into();
        let n = graph.num_nodes();
        if features.num_nodes() != n {
            return Err(GraphError::invalid(
                &name,
                format!("features have {} rows but the graph has {n} nodes", features.num_nodes()),
            ));
        }
        if labels.len() != n {
            return Err(GraphError::invalid(&name, format!("{} labels for {n} nodes", labels.len())));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l < -1 || l >= crate::limits::MAX_CLASSES as i64) {
            return Err(GraphError::invalid(&name, crate::limits::label(bad).unwrap_err()));
        }
        features.check_finite(&name)?;
        for s in &splits {
            s.check(&name, n)?;
        }
        let num_classes = labels.iter().copied().max().map_or(0, |m| (m + 1).max(0) as usize);
        Ok(Dataset { name, graph, features, labels, num_classes, splits })
    }
    pub fn num_nodes(&self) -> usize {
        self.graph.num_nodes()
    }
    /// Restricts to `nodes` (renumbered in that order); splits are dropped (their ids no longer apply).
    pub fn induced(&self, nodes: &[usize]) -> Dataset {
        Dataset {
            name: self.name.clone(),
            graph: self.graph.induced_subgraph(nodes),
            features: self.features.select_rows(nodes),
            labels: nodes.iter().map(|&u| self.labels[u]).collect(),
            num_classes: self.num_classes,
            splits: Vec::new(),
        }
    }
    /// Renumbers nodes (new `i` = old `order[i]`), remapping the splits as well.
    pub fn permuted(&self, order: &[usize]) -> Dataset {
        let mut inverse = vec![0usize; order.len()];
        for (new, &old) in order.iter().enumerate() {
            inverse[old] = new;
        }
        let mut d = self.induced(order);
        d.splits = self.splits.iter().map(|s| s.remapped(&inverse)).collect();
        d
    }
}
