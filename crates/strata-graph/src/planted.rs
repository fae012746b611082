//! Planted-partition graphs of any size: the stochastic block model with equal classes,
//! Gaussian features around a class centre, and a stratified 10/10/80 split. Used to size a
//! cluster before buying it, and by the scaling tests and benches.
//!
//! The generator never holds an edge list: it draws each node's edges twice from the same
//! seed, once to count degrees and once to fill the CSR rows in place, so a graph of N nodes
//! and M undirected edges needs 8·M bytes of indices (u32, both directions) plus the node
//! arrays. [`write_planted_partition`] streams the features row by row into the `.npz`.

use crate::dataset::{Dataset, Features};
use crate::error::{GraphError, Result};
use crate::graph::CsrGraph;
use crate::npz::NpzFileWriter;
use crate::split::Split;
use crate::CsrMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;

/// Settings of [`planted_partition`].
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct PlantedSpec {
    pub nodes: usize,
    pub classes: usize,
    /// Average degree (undirected edges ≈ nodes · degree / 2, less the few duplicates).
    pub degree: f64,
    /// Fraction of edges that join two nodes of the same class.
    pub homophily: f64,
    /// Dense real-valued features: class mean (standard normal, scaled by `signal`) plus
    /// standard normal noise, so rows have sums near zero and of either sign.
    pub features: usize,
    pub signal: f32,
    pub seed: u64,
}

impl Default for PlantedSpec {
    fn default() -> Self {
        PlantedSpec { nodes: 2000, classes: 10, degree: 20.0, homophily: 0.8, features: 128, signal: 0.3, seed: 0 }
    }
}

impl PlantedSpec {
    /// Refuses settings that cannot make a graph, naming the setting.
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(GraphError::invalid("planted partition", what.to_string()));
        if self.nodes < 2 || self.nodes > u32::MAX as usize || self.nodes > crate::limits::MAX_NODES {
            return bad(&format!(
                "--nodes {}: expected 2..={}",
                self.nodes,
                crate::limits::MAX_NODES.min(u32::MAX as usize)
            ));
        }
        if self.classes < 2 || self.classes > self.nodes || self.classes > crate::limits::MAX_CLASSES {
            return bad(&format!(
                "--classes {}: expected 2..={}",
                self.classes,
                self.nodes.min(crate::limits::MAX_CLASSES)
            ));
        }
        if !(self.degree.is_finite() && self.degree > 0.0 && self.degree < self.nodes as f64) {
            return bad(&format!("--degree {}: expected a number in (0, nodes)", self.degree));
        }
        if !(0.0..=1.0).contains(&self.homophily) {
            return bad(&format!("--homophily {}: expected 0..=1", self.homophily));
        }
        if self.features == 0 || self.features > crate::limits::MAX_FEATURE_DIM {
            return bad(&format!("--features {}: expected 1..={}", self.features, crate::limits::MAX_FEATURE_DIM));
        }
        if !self.signal.is_finite() {
            return bad("--signal must be finite");
        }
        // 2·M directed entries must fit the u32 row pointers' i64 successors and the i32 layout.
        if self.nodes as f64 * self.degree >= i64::MAX as f64 / 2.0 {
            return bad("nodes × degree is too large");
        }
        Ok(())
    }

    pub fn name(&self) -> String {
        format!("planted-{}-{}c-h{}", self.nodes, self.classes, self.homophily)
    }

    /// Node `u` is of class `u mod classes`.
    pub fn labels(&self) -> Vec<i64> {
        (0..self.nodes).map(|u| (u % self.classes) as i64).collect()
    }

    /// The stratified 10/10/80 split of the labels.
    pub fn split(&self, labels: &[i64]) -> Split {
        Split::random_stratified(labels, 0.1, 0.1, self.seed)
    }

    /// Calls `emit(u, v)` for every drawn edge (u, v), in the same order every time.
    fn draw_edges(&self, mut emit: impl FnMut(usize, usize)) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let (n, k) = (self.nodes, self.classes);
        let half = self.degree / 2.0;
        let (whole, frac) = (half.floor() as usize, half.fract());
        for u in 0..n {
            let m = whole + usize::from(rng.random_bool(frac));
            for _ in 0..m {
                let c = if rng.random_bool(self.homophily) { u % k } else { (u % k + rng.random_range(1..k)) % k };
                // Members of class c are c, c + k, c + 2k, ...: drawn without a lookup table.
                let v = c + k * rng.random_range(0..(n - c).div_ceil(k));
                if u != v {
                    emit(u, v);
                }
            }
        }
    }

    /// The symmetric adjacency as CSR (row pointers, sorted column ids), duplicates merged.
    pub fn adjacency(&self) -> Result<(Vec<u64>, Vec<u32>)> {
        self.check()?;
        let n = self.nodes;
        let mut indptr = vec![0u64; n + 1];
        self.draw_edges(|u, v| {
            indptr[u + 1] += 1;
            indptr[v + 1] += 1;
        });
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        let mut indices = vec![0u32; indptr[n] as usize];
        let mut fill: Vec<u64> = indptr[..n].to_vec();
        self.draw_edges(|u, v| {
            indices[fill[u] as usize] = v as u32;
            fill[u] += 1;
            indices[fill[v] as usize] = u as u32;
            fill[v] += 1;
        });
        drop(fill);
        // Sort each row, merge duplicates, and compact in place.
        let mut write = 0usize;
        let mut start = 0usize;
        for u in 0..n {
            let end = indptr[u + 1] as usize;
            indices[start..end].sort_unstable();
            let row_start = write;
            for i in start..end {
                if write == row_start || indices[write - 1] != indices[i] {
                    indices[write] = indices[i];
                    write += 1;
                }
            }
            indptr[u] = row_start as u64;
            start = end;
        }
        indptr[n] = write as u64;
        indices.truncate(write);
        indices.shrink_to_fit();
        Ok((indptr, indices))
    }

    /// Features row by row: `row(u, out)` fills `out` (length `features`) for node `u`, in
    /// increasing `u` (the noise stream is sequential).
    fn feature_rows(&self) -> impl FnMut(usize, &mut [f32]) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x9e37_79b9_7f4a_7c15);
        let (f, k, signal) = (self.features, self.classes, self.signal);
        let means: Vec<f32> =
            (0..k * f).map(|_| signal * Distribution::<f32>::sample(&StandardNormal, &mut rng)).collect();
        move |u, out| {
            let centre = &means[(u % k) * f..(u % k + 1) * f];
            for (o, &c) in out.iter_mut().zip(centre) {
                let noise: f32 = StandardNormal.sample(&mut rng);
                *o = c + noise;
            }
        }
    }
}

/// The planted-partition graph in memory (for tests and small experiments).
pub fn planted_partition(spec: &PlantedSpec) -> Result<Dataset> {
    let (indptr, indices) = spec.adjacency()?;
    let n = spec.nodes;
    let adj = CsrMatrix::from_parts(
        "planted partition",
        n,
        n,
        indptr.into_iter().map(|x| x as i64).collect(),
        indices.into_iter().map(i64::from).collect(),
        None,
    )?;
    let graph = CsrGraph::from_adjacency("planted partition", adj)?;
    let f = spec.features;
    let mut row = spec.feature_rows();
    let mut data = vec![0f32; n * f];
    for (u, out) in data.chunks_mut(f).enumerate() {
        row(u, out);
    }
    let labels = spec.labels();
    let split = spec.split(&labels);
    Dataset::new(spec.name(), graph, Features::dense(n, f, data), labels, vec![split])
}

/// What [`write_planted_partition`] wrote.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct PlantedSummary {
    pub nodes: usize,
    pub undirected_edges: u64,
    pub features: usize,
    pub classes: usize,
    /// Fraction of edges joining two nodes of one class, as generated.
    pub edge_homophily: f64,
    pub bytes: u64,
}

/// Writes the planted-partition graph to `path` in the gnn-benchmark layout that
/// `read_graph_npz` reads (adjacency CSR, dense `attr_matrix`, `labels`, `idx_*`), atomically,
/// streaming the features so that they are never all in memory.
pub fn write_planted_partition(spec: &PlantedSpec, path: &Path) -> Result<PlantedSummary> {
    let (indptr, indices) = spec.adjacency()?;
    let n = spec.nodes;
    let nnz = indices.len();
    let k = spec.classes;
    let same: u64 = (0..n)
        .map(|u| {
            indices[indptr[u] as usize..indptr[u + 1] as usize].iter().filter(|&&v| v as usize % k == u % k).count()
                as u64
        })
        .sum();
    let mut w = NpzFileWriter::create(path)?;
    w.array_from("adj_data", "<f4", &[nnz], nnz, |_, out| out.extend_from_slice(&1f32.to_le_bytes()))?;
    // int32 ids as the gnn-benchmark files have them; int64 row pointers once they pass 2^31.
    w.array_from("adj_indices", "<i4", &[nnz], nnz, |i, out| {
        out.extend_from_slice(&(indices[i] as i32).to_le_bytes())
    })?;
    if nnz < i32::MAX as usize {
        w.array_from("adj_indptr", "<i4", &[n + 1], n + 1, |i, out| {
            out.extend_from_slice(&(indptr[i] as i32).to_le_bytes())
        })?;
    } else {
        w.array_from("adj_indptr", "<i8", &[n + 1], n + 1, |i, out| {
            out.extend_from_slice(&(indptr[i] as i64).to_le_bytes())
        })?;
    }
    drop((indptr, indices));
    w.array_from("adj_shape", "<i8", &[2], 2, |_, out| out.extend_from_slice(&(n as i64).to_le_bytes()))?;
    let f = spec.features;
    let mut row = spec.feature_rows();
    let mut buf = vec![0f32; f];
    w.array_from("attr_matrix", "<f4", &[n, f], n, |u, out| {
        row(u, &mut buf);
        out.extend(buf.iter().flat_map(|x| x.to_le_bytes()));
    })?;
    let labels = spec.labels();
    w.array_from("labels", "<i8", &[n], n, |u, out| out.extend_from_slice(&labels[u].to_le_bytes()))?;
    let split = spec.split(&labels);
    for (key, ids) in [("idx_train", &split.train), ("idx_val", &split.val), ("idx_test", &split.test)] {
        w.array_from(key, "<i8", &[ids.len()], ids.len(), |i, out| {
            out.extend_from_slice(&(ids[i] as i64).to_le_bytes())
        })?;
    }
    let bytes = w.finish()?;
    Ok(PlantedSummary {
        nodes: n,
        undirected_edges: nnz as u64 / 2,
        features: f,
        classes: k,
        edge_homophily: if nnz == 0 { 0.0 } else { same as f64 / nnz as f64 },
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_partition_has_its_homophily_and_real_valued_features() {
        let d = planted_partition(&PlantedSpec { nodes: 3000, ..Default::default() }).unwrap();
        let undirected = d.graph.num_undirected_edges();
        assert!((29_000..=30_000).contains(&undirected), "{undirected}");
        let edges = d.graph.edges();
        assert!(edges.iter().all(|&(u, v)| u != v), "no self loops");
        let same = edges.iter().filter(|&&(u, v)| d.labels[u] == d.labels[v]).count() as f64 / edges.len() as f64;
        assert!((same - 0.8).abs() < 0.02, "homophily {same}");
        let Features::Dense { data, .. } = &d.features else { panic!("dense features") };
        assert!(data.iter().any(|&x| x < 0.0), "real-valued, not bag-of-words");
        assert_eq!(d.num_classes, 10);
        assert_eq!(d.splits[0].train.len() + d.splits[0].val.len() + d.splits[0].test.len(), 3000);
    }

    #[test]
    fn the_streamed_file_is_the_in_memory_graph() {
        let spec = PlantedSpec { nodes: 1500, degree: 7.5, features: 6, classes: 3, seed: 4, ..Default::default() };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.npz");
        let s = write_planted_partition(&spec, &path).unwrap();
        let a = planted_partition(&spec).unwrap();
        let b = crate::formats::read_graph_npz(&path).unwrap();
        assert_eq!(a.graph.fingerprint(), b.graph.fingerprint());
        assert_eq!(a.features.to_dense(), b.features.to_dense());
        assert_eq!((a.labels.clone(), a.splits[0].test.clone()), (b.labels, b.splits[0].test.clone()));
        assert_eq!(s.undirected_edges as usize, a.graph.num_undirected_edges());
        assert!(b.graph.is_symmetric());
        assert_eq!(s.bytes, std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn impossible_settings_are_named() {
        for (spec, what) in [
            (PlantedSpec { nodes: 1, ..Default::default() }, "--nodes"),
            (PlantedSpec { classes: 1, ..Default::default() }, "--classes"),
            (PlantedSpec { degree: -1.0, ..Default::default() }, "--degree"),
            (PlantedSpec { homophily: 1.5, ..Default::default() }, "--homophily"),
            (PlantedSpec { features: 0, ..Default::default() }, "--features"),
        ] {
            let e = planted_partition(&spec).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        }
    }
}
