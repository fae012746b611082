//! The five closed-form node embeddings of NetInfoF (Lee et al., ICLR 2024, §3.1), each of
//! width `d = min(F, 128)`, computed from the training graph only:
//! - **U**: low-rank SVD of the adjacency, `U_d·√S_d`;
//! - **R**: low-rank SVD of random-walk co-visit counts (T non-backtracking walks of 3 nodes from
//!   every node, pairs seen more than once), `U_d·√S_d`;
//! - **F**: PCA of the features;
//! - **P**: PCA of `(D⁻¹A)²X` (two hops, no self loops);
//! - **S**: PCA of `(D̃⁻¹(A+I))²X` (two hops with self loops).
//!
//! Each is divided column-wise by its standard deviation (no centring) and L2-normalised per row.

use crate::linalg::{pca, svd_lowrank, SparseOp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use strata_graph::{CsrGraph, Features};
use tch::{Device, Kind, Tensor};

/// The five components, in the paper's order.
pub const COMPONENTS: [&str; 5] = ["U", "R", "F", "P", "S"];

/// Settings of the embeddings (reference defaults).
#[derive(Clone, Debug)]
pub struct EmbedConfig {
    pub max_dim: i64,
    /// Walks per node for R.
    pub walks: usize,
    pub seed: u64,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig { max_dim: 128, walks: 200, seed: 0 }
    }
}

/// Co-visit counts of `walks` non-backtracking walks of up to 3 nodes (2 steps) from every node:
/// `(s, v)` counted once per walk step that reaches `v`; pairs seen more than once are kept.
pub fn covisit_counts(g: &CsrGraph, walks: usize, seed: u64) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut row, mut col, mut val) = (Vec::new(), Vec::new(), Vec::new());
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for s in 0..g.num_nodes() {
        let nb = g.neighbors(s);
        if nb.is_empty() {
            continue;
        }
        counts.clear();
        for _ in 0..walks {
            let a = nb[rng.random_range(0..nb.len())] as usize;
            *counts.entry(a as u32).or_default() += 1;
            // Non-backtracking second step: any neighbour of `a` but `s` (if there is one).
            let na = g.neighbors(a);
            let options = na.len() - usize::from(na.contains(&(s as i64)));
            if options == 0 {
                continue;
            }
            let mut pick = rng.random_range(0..options);
            for &b in na {
                if b as usize == s {
                    continue;
                }
                if pick == 0 {
                    *counts.entry(b as u32).or_default() += 1;
                    break;
                }
                pick -= 1;
            }
        }
        let mut kept: Vec<(u32, u32)> = counts.iter().filter(|(_, &c)| c > 1).map(|(&v, &c)| (v, c)).collect();
        kept.sort_unstable();
        for (v, c) in kept {
            row.push(s as i64);
            col.push(v as i64);
            val.push(c as f32);
        }
    }
    (row, col, val)
}

/// Column-wise division by the standard deviation (ddof 0; constant columns left alone), then
/// row-wise L2 normalisation: sklearn's `StandardScaler(with_mean=False)` + `normalize`.
pub fn scale_rows(x: &Tensor) -> Tensor {
    let std = x.std_dim(0, false, true);
    let std = std.where_self(&std.gt(1e-12), &std.ones_like());
    let y = x / std;
    let n = y.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12);
    y / n
}

fn adjacency(g: &CsrGraph, device: Device, self_loops: bool, row_normalise: bool) -> SparseOp {
    let n = g.num_nodes();
    let (mut r, mut c, mut w) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..n {
        let nb = g.neighbors(u);
        let deg = nb.len() as f32 + if self_loops { 1.0 } else { 0.0 };
        let wt = if row_normalise && deg > 0.0 { 1.0 / deg } else { 1.0 };
        for &v in nb {
            r.push(u as i64);
            c.push(v);
            w.push(wt);
        }
        if self_loops {
            r.push(u as i64);
            c.push(u as i64);
            w.push(wt);
        }
    }
    SparseOp::new(n as i64, n as i64, &r, &c, &w, device)
}

/// The five embeddings (scaled and normalised), `[n, d]` each, keyed by component name.
pub struct Embeddings {
    pub dim: i64,
    pub parts: Vec<(&'static str, Tensor)>,
    /// Seconds spent on each component.
    pub seconds: Vec<(&'static str, f64)>,
}

impl Embeddings {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.parts.iter().find(|(k, _)| *k == name).map(|(_, t)| t)
    }
}

/// Computes U, R, F, P, S from the (training) graph `g` — symmetric, binary, no self loops —
/// and the features, with sklearn's row normaliser `(x − min)/Σ` applied to the features first.
pub fn embeddings(g: &CsrGraph, features: &Features, cfg: &EmbedConfig, device: Device) -> Embeddings {
    let n = g.num_nodes() as i64;
    let f = features.dim() as i64;
    let d = cfg.max_dim.min(f).min(n - 1).max(1);
    let timed = |name: &'static str, seconds: &mut Vec<(&'static str, f64)>, run: &mut dyn FnMut() -> Tensor| {
        let t0 = std::time::Instant::now();
        let x = scale_rows(&run()).to_kind(Kind::Float);
        seconds.push((name, t0.elapsed().as_secs_f64()));
        (name, x)
    };
    let mut seconds = Vec::new();
    let mut parts = Vec::new();
    let adj = adjacency(g, device, false, false);
    parts.push(timed("U", &mut seconds, &mut || {
        let (u, s) = svd_lowrank(&adj, d, 4, 10, cfg.seed, device);
        u * s.sqrt().unsqueeze(0)
    }));
    parts.push(timed("R", &mut seconds, &mut || {
        let (r, c, w) = covisit_counts(g, cfg.walks, cfg.seed);
        if r.is_empty() {
            return Tensor::zeros([n, d], (Kind::Double, device));
        }
        let op = SparseOp::new(n, n, &r, &c, &w, device);
        let (u, s) = svd_lowrank(&op, d, 4, 10, cfg.seed + 1, device);
        u * s.sqrt().unsqueeze(0)
    }));
    let x = feature_matrix(features, device);
    parts.push(timed("F", &mut seconds, &mut || pca(&x, d, cfg.seed)));
    let mean = adjacency(g, device, false, true);
    parts.push(timed("P", &mut seconds, &mut || pca(&mean.mm(&mean.mm(&x)), d, cfg.seed)));
    let with_loops = adjacency(g, device, true, true);
    parts.push(timed("S", &mut seconds, &mut || pca(&with_loops.mm(&with_loops.mm(&x)), d, cfg.seed)));
    Embeddings { dim: d, parts, seconds }
}

/// Dense features in double precision, each row shifted by its minimum and divided by its sum
/// (the reference's `RowFeatNormalizer(subtract_min=True)`).
fn feature_matrix(features: &Features, device: Device) -> Tensor {
    let (rows, cols) = (features.num_nodes() as i64, features.dim() as i64);
    let dense = match features {
        Features::Dense { data, .. } => Tensor::from_slice(data).view([rows, cols]),
        Features::Sparse(m) => {
            let mut data = vec![0f32; (rows * cols) as usize];
            for (r, c, v) in m.iter() {
                data[r * cols as usize + c] = v;
            }
            Tensor::from_slice(&data).view([rows, cols])
        }
    }
    .to(device)
    .to_kind(Kind::Double);
    let shifted = &dense - dense.amin([1], true);
    let sum = shifted.sum_dim_intlist(1, true, Kind::Double);
    shifted / sum.where_self(&sum.gt(0.0), &sum.ones_like())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_are_non_backtracking_and_thresholded() {
        // A path 0-1-2: from 0, every walk is 0→1→2, so (0,1) and (0,2) are seen T times each.
        let g = CsrGraph::from_edges("t", 3, &[(0, 1), (1, 2)], None).unwrap().symmetrized();
        let (r, c, w) = covisit_counts(&g, 10, 0);
        let from0: Vec<(i64, f32)> =
            r.iter().zip(&c).zip(&w).filter(|((&r, _), _)| r == 0).map(|((_, &c), &w)| (c, w)).collect();
        assert_eq!(from0, vec![(1, 10.0), (2, 10.0)]);
        // Never back to the start in the second step.
        assert!(r.iter().zip(&c).all(|(a, b)| a != b));
    }

    #[test]
    fn embeddings_are_unit_rows() {
        let edges: Vec<(i64, i64)> = (0..30).flat_map(|i| [(i, (i + 1) % 30), (i, (i + 5) % 30)]).collect();
        let g = CsrGraph::from_edges("t", 30, &edges, None).unwrap().symmetrized();
        let e = embeddings(&g, &Features::identity(30), &EmbedConfig { max_dim: 8, walks: 20, seed: 0 }, Device::Cpu);
        assert_eq!(e.dim, 8);
        for (name, x) in &e.parts {
            assert_eq!(x.size(), [30, 8], "{name}");
            let norms = x.norm_scalaropt_dim(2.0, [1], false);
            assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-4, "{name}");
        }
    }
}
