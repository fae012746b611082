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
    /// Whether no value is negative (stored values, for sparse features).
    pub fn all_non_negative(&self) -> bool {
        match self {
            Features::Dense { data, .. } => data.iter().all(|&v| v >= 0.0),
            Features::Sparse(m) => m.values().is_none_or(|v| v.iter().all(|&x| x >= 0.0)),
        }
    }
    /// The features under `norm` (resolved against these features first), and what was applied.
    pub fn normalized(&self, norm: FeatureNorm) -> (Features, FeatureNorm) {
        let applied = norm.resolve(self);
        let out = match applied {
            FeatureNorm::RowSum => self.row_normalized(),
            FeatureNorm::Standardize => self.standardized(),
            FeatureNorm::None | FeatureNorm::Auto => self.clone(),
        };
        (out, applied)
    }
    /// Column-wise zero mean and unit variance (population statistics, accumulated in f64).
    pub fn standardized(&self) -> Features {
        let (rows, cols) = (self.num_nodes(), self.dim());
        let mut data = self.to_dense();
        let n = rows.max(1) as f64;
        let mut mean = vec![0f64; cols];
        for row in data.chunks(cols.max(1)) {
            mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; cols];
        for row in data.chunks(cols.max(1)) {
            var.iter_mut().zip(row.iter().zip(&mean)).for_each(|(v, (&x, m))| *v += (x as f64 - m) * (x as f64 - m));
        }
        let scale: Vec<f64> = var.iter().map(|v| if *v > 0.0 { (n / v).sqrt() } else { 1.0 }).collect();
        for row in data.chunks_mut(cols.max(1)) {
            for (c, x) in row.iter_mut().enumerate() {
                *x = ((*x as f64 - mean[c]) * scale[c]) as f32;
            }
        }
        Features::Dense { rows, cols, data }
    }
    /// Divides each row by its sum (rows summing to 0 stay 0), as PyG's `NormalizeFeatures`.
    pub fn row_normalized(&self) -> Features {
        match self {
            Features::Dense { rows, cols, data } => {
                let mut out = data.clone();
                out.chunks_mut(*cols).for_each(row_sum_normalize);
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
                    CsrMatrix::from_parts(
                        "normalize",
                        m.rows(),
                        m.cols(),
                        m.indptr().to_vec(),
                        m.indices().to_vec(),
                        Some(vals),
                    )
                    .unwrap(),
                )
            }
        }
    }
}

/// Divides `row` by its sum; a row summing to 0 stays as it is.
pub fn row_sum_normalize(row: &mut [f32]) {
    let s: f32 = row.iter().sum();
    if s != 0.0 {
        row.iter_mut().for_each(|v| *v /= s);
    }
}

/// How input features are normalised before training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FeatureNorm {
    /// Row-sum where every value is non-negative (bag-of-words, counts, indicators: what PyG's
    /// `NormalizeFeatures` is for), none otherwise: dividing a real-valued row by a sum near
    /// zero, or negative, destroys it.
    #[default]
    Auto,
    None,
    /// Each row divided by its sum (rows summing to 0 stay as they are).
    RowSum,
    /// Each column shifted to mean 0 and scaled to variance 1 (constant columns: mean 0). Sparse
    /// features become dense.
    Standardize,
}

impl FeatureNorm {
    pub fn name(self) -> &'static str {
        match self {
            FeatureNorm::Auto => "auto",
            FeatureNorm::None => "none",
            FeatureNorm::RowSum => "row-sum",
            FeatureNorm::Standardize => "standardize",
        }
    }
    /// What `self` means for `f`: `Auto` becomes `RowSum` or `None`; the others stay.
    pub fn resolve(self, f: &Features) -> FeatureNorm {
        match self {
            FeatureNorm::Auto if f.all_non_negative() => FeatureNorm::RowSum,
            FeatureNorm::Auto => FeatureNorm::None,
            other => other,
        }
    }
}

impl std::fmt::Display for FeatureNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FeatureNorm {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(FeatureNorm::Auto),
            "none" => Ok(FeatureNorm::None),
            "row-sum" => Ok(FeatureNorm::RowSum),
            "standardize" => Ok(FeatureNorm::Standardize),
            _ => Err(format!("feature normalisation `{s}`: expected auto, none, row-sum or standardize")),
        }
    }
}

impl serde::Serialize for FeatureNorm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Written as its name; configuration files may still give a boolean (see `Deserialize`).
impl schemars::JsonSchema for FeatureNorm {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FeatureNorm".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "How input features are normalised: auto (row-sum where no value is negative, none otherwise), none, row-sum or standardize.",
            "type": "string",
            "enum": ["auto", "none", "row-sum", "standardize"]
        })
    }
}

/// Accepts the names, and the booleans of older configuration files (`true` = row-sum).
impl<'de> serde::Deserialize<'de> for FeatureNorm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bool(bool),
            Name(String),
        }
        match Repr::deserialize(d)? {
            Repr::Bool(true) => Ok(FeatureNorm::RowSum),
            Repr::Bool(false) => Ok(FeatureNorm::None),
            Repr::Name(s) => s.parse().map_err(serde::de::Error::custom),
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
        if features.dim() == 0 && n > 0 {
            return Err(GraphError::invalid(
                &name,
                "the feature matrix has 0 columns: every model reads at least one (leave the features out for one-hot ones)",
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_normalisation_is_row_sum_only_for_non_negative_features() {
        let counts = Features::dense(2, 3, vec![1.0, 0.0, 3.0, 0.0, 2.0, 2.0]);
        assert_eq!(FeatureNorm::Auto.resolve(&counts), FeatureNorm::RowSum);
        let (f, applied) = counts.normalized(FeatureNorm::Auto);
        assert_eq!((f.to_dense(), applied), (vec![0.25, 0.0, 0.75, 0.0, 0.5, 0.5], FeatureNorm::RowSum));
        let real = Features::dense(2, 2, vec![0.3, -0.29, -1.0, 2.0]);
        let (f, applied) = real.normalized(FeatureNorm::Auto);
        assert_eq!((f.to_dense(), applied), (real.to_dense(), FeatureNorm::None));
        assert_eq!(FeatureNorm::Auto.resolve(&Features::identity(3)), FeatureNorm::RowSum);
        let (z, _) = real.normalized(FeatureNorm::Standardize);
        assert_eq!(z.to_dense(), vec![1.0, -1.0, -1.0, 1.0]);
        let json: FeatureNorm = serde_json::from_str("false").unwrap();
        assert_eq!(json, FeatureNorm::None);
        assert_eq!(serde_json::from_str::<FeatureNorm>("\"standardize\"").unwrap(), FeatureNorm::Standardize);
        assert!("sum".parse::<FeatureNorm>().unwrap_err().contains("row-sum"));
    }
}
