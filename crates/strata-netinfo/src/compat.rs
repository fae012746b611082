//! The compatibility matrix `H` of one embedding (NetInfoF §3.2): how much a node's embedding
//! predicts its neighbours', so that the adjusted similarity `s(u,v) = x_uᵀ·H·x_v` is high for
//! linked pairs even under heterophily.
//!
//! As in the reference: a ridge start `H₀` (α = 1, no intercept) regressing `x_dst` on `x_src`
//! over the directed training edges; its upper triangle minus the smallest entries holding 5 % of
//! the absolute mass; then LSQR (damp 1, atol = btol = 10⁻², at most 2·p iterations) on
//! `‖M·h − y‖² + ‖h − h₀‖²`, where each row of `M` is the symmetric product of a pair
//! (`y` = 1 for edges with both endpoints of degree ≥ 2, at most 200,000; 0 for twice as many
//! uniform pairs). `M` is never formed: `M·h = Σ x_u ⊙ (H·x_v)` and `Mᵀ·r = triu(G + Gᵀ)` with
//! `G = X_uᵀ·diag(r)·X_v`.

use crate::linalg::{lsqr, LsqrInfo, LsqrOptions, VecOp};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use strata_graph::CsrGraph;
use tch::{Kind, Tensor};

/// Pairs for fitting `H`.
pub struct PairSet {
    pub src: Tensor,
    pub dst: Tensor,
    pub y: Tensor,
}

/// Positive training edges (`u < v`, both endpoints of degree ≥ 2, at most `max_pos`) and twice
/// as many uniform random pairs.
pub fn fitting_pairs(g: &CsrGraph, max_pos: usize, seed: u64, device: tch::Device) -> PairSet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let deg = |u: usize| g.neighbors(u).len();
    let mut pos: Vec<(i64, i64)> = (0..g.num_nodes())
        .flat_map(|u| g.neighbors(u).iter().filter(move |&&v| (v as usize) > u).map(move |&v| (u as i64, v)))
        .filter(|&(u, v)| deg(u as usize) >= 2 && deg(v as usize) >= 2)
        .collect();
    if pos.len() > max_pos {
        pos.shuffle(&mut rng);
        pos.truncate(max_pos);
    }
    let n = g.num_nodes();
    let neg: Vec<(i64, i64)> =
        (0..2 * pos.len()).map(|_| (rng.random_range(0..n) as i64, rng.random_range(0..n) as i64)).collect();
    let (src, dst): (Vec<i64>, Vec<i64>) = pos.iter().chain(&neg).copied().unzip();
    let y: Vec<f64> = (0..src.len()).map(|i| if i < pos.len() { 1.0 } else { 0.0 }).collect();
    PairSet {
        src: Tensor::from_slice(&src).to(device),
        dst: Tensor::from_slice(&dst).to(device),
        y: Tensor::from_slice(&y).to(device),
    }
}

/// `M` restricted to the kept upper-triangle entries, acting on flat vectors of them.
struct PairDesign {
    xu: Tensor,
    xv: Tensor,
    /// Flat indices (into d·d) of the kept upper-triangle entries.
    keep: Tensor,
    d: i64,
}

impl PairDesign {
    fn matrix(&self, h: &Tensor) -> Tensor {
        let full = Tensor::zeros([self.d * self.d], (Kind::Double, h.device()))
            .index_put(&[Some(self.keep.shallow_clone())], h, false)
            .view([self.d, self.d]);
        // Symmetric H from its upper triangle (diagonal once).
        &full + full.triu(1).tr()
    }
}

impl VecOp for PairDesign {
    fn len_in(&self) -> i64 {
        self.keep.size()[0]
    }
    fn apply(&self, h: &Tensor) -> Tensor {
        (self.xu.matmul(&self.matrix(h)) * &self.xv).sum_dim_intlist(1, false, Kind::Double)
    }
    fn apply_t(&self, r: &Tensor) -> Tensor {
        let g = (&self.xu * r.unsqueeze(1)).tr().matmul(&self.xv);
        let sym = (&g + g.tr()).triu(1) + g.diag(0).diag_embed(0, -2, -1);
        sym.reshape([-1]).index_select(0, &self.keep)
    }
}

/// A fitted compatibility matrix.
pub struct Compatibility {
    /// Symmetric `[d, d]`.
    pub h: Tensor,
    pub kept: i64,
    pub lsqr: LsqrInfo,
}

/// Fits `H` for embedding `x` (`[n, d]`) on the directed training edges of `g` and `pairs`.
pub fn compatibility(x: &Tensor, g: &CsrGraph, pairs: &PairSet) -> Compatibility {
    let dev = x.device();
    let x = x.to_kind(Kind::Double);
    let d = x.size()[1];
    // Ridge start over every directed edge: W = (XsᵀXs + I)⁻¹ XsᵀXd; sklearn's coef_ is Wᵀ.
    // Without gathering per edge: XsᵀXs = Xᵀ·diag(deg)·X and XsᵀXd = Xᵀ·A·X.
    let (mut r, mut c) = (Vec::new(), Vec::new());
    let mut deg = Vec::with_capacity(g.num_nodes());
    for u in 0..g.num_nodes() {
        deg.push(g.neighbors(u).len() as f64);
        for &v in g.neighbors(u) {
            r.push(u as i64);
            c.push(v);
        }
    }
    let ones = vec![1f32; r.len()];
    let adj = crate::linalg::SparseOp::new(g.num_nodes() as i64, g.num_nodes() as i64, &r, &c, &ones, dev);
    let deg = Tensor::from_slice(&deg).to(dev).unsqueeze(1);
    let gram = x.tr().matmul(&(&x * deg)) + Tensor::eye(d, (Kind::Double, dev));
    let w = Tensor::linalg_solve(&gram, &x.tr().matmul(&adj.mm(&x)), true);
    let h0 = w.tr();
    // Upper triangle (with diagonal) in np.triu_indices order; drop the smallest 5 % of the mass.
    let iu = Tensor::triu_indices(d, d, 0, (Kind::Int64, dev));
    let flat_idx = iu.get(0) * d + iu.get(1);
    let h = h0.reshape([-1]).index_select(0, &flat_idx);
    let abs = h.abs();
    let (sorted, _) = abs.sort(0, false);
    let total = sorted.sum(Kind::Double).double_value(&[]);
    let cum = sorted.cumsum(0, Kind::Double);
    let below = cum.lt(0.05 * total);
    let eps =
        if below.any().int64_value(&[]) != 0 { sorted.masked_select(&below).max().double_value(&[]) } else { 0.0 };
    let keep_mask = abs.ge(eps);
    let keep = flat_idx.masked_select(&keep_mask);
    let h0_kept = h.masked_select(&keep_mask);
    let design = PairDesign { xu: x.index_select(0, &pairs.src), xv: x.index_select(0, &pairs.dst), keep, d };
    // scipy's lsqr(M, y, damp=1, atol=btol=1e-2, x0=h₀): min ‖M(h₀+δ) − y‖² + ‖δ‖², its
    // stopping tests relative to ‖y‖, conlim 1e8, iter_lim 2·p.
    let p = h0_kept.size()[0] as usize;
    let opts = LsqrOptions { damp: 1.0, atol: 1e-2, btol: 1e-2, conlim: 1e8, iter_lim: 2 * p };
    let (h_star, info) = lsqr(&design, &pairs.y, Some(&h0_kept), &opts);
    Compatibility { h: design.matrix(&h_star), kept: p as i64, lsqr: info }
}

/// Adjusted similarities `x_uᵀ·H·x_v` of the pairs (in blocks, to bound memory on large graphs).
pub fn similarity(x: &Tensor, h: &Tensor, src: &Tensor, dst: &Tensor) -> Tensor {
    const BLOCK: i64 = 1 << 18;
    let xh = x.to_kind(Kind::Double).matmul(h).to_kind(Kind::Float);
    let x = x.to_kind(Kind::Float);
    let n = src.size()[0];
    let parts: Vec<Tensor> =
        (0..n)
            .step_by(BLOCK as usize)
            .map(|s| {
                let len = BLOCK.min(n - s);
                (xh.index_select(0, &src.narrow(0, s, len)) * x.index_select(0, &dst.narrow(0, s, len)))
                    .sum_dim_intlist(1, false, Kind::Double)
            })
            .collect();
    if parts.is_empty() {
        Tensor::zeros([0], (Kind::Double, x.device()))
    } else {
        Tensor::cat(&parts, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn adjoint_is_consistent() {
        tch::manual_seed(0);
        let d = 5;
        let design = PairDesign {
            xu: Tensor::randn([7, d], (Kind::Double, Device::Cpu)),
            xv: Tensor::randn([7, d], (Kind::Double, Device::Cpu)),
            keep: Tensor::from_slice(&[0i64, 1, 3, 6, 12, 24]),
            d,
        };
        let h = Tensor::randn([6], (Kind::Double, Device::Cpu));
        let r = Tensor::randn([7], (Kind::Double, Device::Cpu));
        let lhs = (design.apply(&h) * &r).sum(Kind::Double).double_value(&[]);
        let rhs = (&h * design.apply_t(&r)).sum(Kind::Double).double_value(&[]);
        assert!((lhs - rhs).abs() < 1e-10, "{lhs} vs {rhs}");
        // Symmetric H: s(u,v) = s(v,u).
        let hm = design.matrix(&h);
        assert!((&hm - hm.tr()).abs().max().double_value(&[]) < 1e-12);
    }
}
