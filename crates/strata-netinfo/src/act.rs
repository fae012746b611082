//! NetInfoF_Act for link prediction (§3.4, eq. 9): a linear model over the five components'
//! adjusted pair features, `logit(u,v) = Σ_c w_c·(x̂_c[u] ⊙ x_c[v]) + b_c` with `x̂_c = x_c·H_c`,
//! trained with binary cross-entropy plus `λ₁·Σ‖w_c‖₁ + λ₂·Σ‖w_c‖₂` (a group lasso that can
//! switch whole components off). Negatives are fresh uniform pairs at every evaluation of the
//! loss. Full-batch L-BFGS (lr 0.1, 20 iterations per step) for graphs up to `minibatch_above`
//! training edges, mini-batch Adam (lr 0.01, 65,536 positives per batch) beyond; early stopping
//! on validation Hits@K (patience 5 steps, 100 with Adam). The reference's penalty grid
//! λ₁ ∈ {1e-4, 1e-5} × λ₂ ∈ {1e-3, 1e-4, 1e-5, 1e-6} is walked with warm starts (each point
//! from the previous point's best weights), a point stops early when the validation loss
//! diverges (non-finite or above 1000), and the grid point with the best validation Hits@K is
//! kept.

use crate::lbfgs::Lbfgs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use strata_nn::metrics::hits_at_k;
use tch::{Device, Kind, Tensor};

/// Settings of NetInfoF_Act (reference defaults).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ActConfig {
    pub hits_k: usize,
    pub max_epochs: usize,
    pub patience: usize,
    pub lr: f64,
    pub lambda1: Vec<f64>,
    pub lambda2: Vec<f64>,
    pub minibatch_above: usize,
    pub seed: u64,
}

impl Default for ActConfig {
    fn default() -> Self {
        ActConfig {
            hits_k: 100,
            max_epochs: 100,
            patience: 5,
            lr: 0.1,
            lambda1: vec![1e-4, 1e-5],
            lambda2: vec![1e-3, 1e-4, 1e-5, 1e-6],
            minibatch_above: 1_000_000,
            seed: 0,
        }
    }
}

/// The pair features of NetInfoF_Act for every component, concatenated.
pub struct PairFeatures {
    /// `[x̂_1 | … | x̂_C]` and `[x_1 | … | x_C]`, each `[n, C·d]`.
    adjusted: Tensor,
    plain: Tensor,
    pub components: usize,
    pub dim: i64,
}

impl PairFeatures {
    /// `parts[c] = (x_c, x̂_c)`.
    pub fn new(parts: &[(Tensor, Tensor)]) -> PairFeatures {
        let dim = parts[0].0.size()[1];
        let plain = Tensor::cat(&parts.iter().map(|p| p.0.to_kind(Kind::Float)).collect::<Vec<_>>(), 1);
        let adjusted = Tensor::cat(&parts.iter().map(|p| p.1.to_kind(Kind::Float)).collect::<Vec<_>>(), 1);
        PairFeatures { adjusted, plain, components: parts.len(), dim }
    }
    /// Rebuilds saved features (see [`PairFeatures::tensors`]).
    pub fn from_tensors(plain: Tensor, adjusted: Tensor, components: usize, dim: i64) -> PairFeatures {
        PairFeatures { adjusted, plain, components, dim }
    }
    /// `(plain, adjusted)`, for saving.
    pub fn tensors(&self) -> (&Tensor, &Tensor) {
        (&self.plain, &self.adjusted)
    }
    pub fn of(&self, src: &Tensor, dst: &Tensor) -> Tensor {
        self.adjusted.index_select(0, src) * self.plain.index_select(0, dst)
    }
}

/// A trained NetInfoF_Act model.
pub struct Act {
    /// `[C·d]` weights then `[C]` biases.
    pub params: Tensor,
    pub components: usize,
    pub dim: i64,
}

impl Act {
    pub fn logits(&self, z: &Tensor) -> Tensor {
        let n = self.components as i64 * self.dim;
        z.matmul(&self.params.narrow(0, 0, n)) + self.params.narrow(0, n, self.components as i64).sum(Kind::Float)
    }
    /// L2 norm of each component's weights (0 = switched off by the group lasso).
    pub fn component_norms(&self) -> Vec<f64> {
        (0..self.components)
            .map(|c| self.params.narrow(0, c as i64 * self.dim, self.dim).norm().double_value(&[]))
            .collect()
    }
}

/// What training found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ActReport {
    pub val_hits: f64,
    pub lambda1: f64,
    pub lambda2: f64,
    pub steps: usize,
}

fn penalised_loss(params: &Tensor, zpos: &Tensor, zneg: &Tensor, comps: usize, dim: i64, l1: f64, l2: f64) -> Tensor {
    let n = comps as i64 * dim;
    let (w, b) = (params.narrow(0, 0, n), params.narrow(0, n, comps as i64).sum(Kind::Float));
    let (lp, ln) = (zpos.matmul(&w) + &b, zneg.matmul(&w) + &b);
    let bce = Tensor::cat(&[&lp, &ln], 0).binary_cross_entropy_with_logits::<Tensor>(
        &Tensor::cat(&[lp.ones_like(), ln.zeros_like()], 0),
        None,
        None,
        tch::Reduction::Mean,
    );
    bce + w.abs().sum(Kind::Float) * l1
        + w.view([comps as i64, dim]).norm_scalaropt_dim(2.0, [1], false).sum(Kind::Float) * l2
}

/// Node pairs `(u, v)`.
pub type Pairs<'a> = &'a [(usize, usize)];

/// Trains on `train` positive pairs (`u < v`), selecting by validation Hits@K on
/// `val = (positives, negatives)`.
// Long on purpose: NetInfoF_Act's grid over the regularisation and its inner optimisation, kept as the reference's one loop nest so the two read side by side.
pub fn train_act(
    feats: &PairFeatures,
    nodes: usize,
    train: Pairs,
    val: (Pairs, Pairs),
    cfg: &ActConfig,
    device: Device,
) -> (Act, ActReport) {
    let idx = |pairs: &[(usize, usize)]| {
        let (s, d): (Vec<i64>, Vec<i64>) = pairs.iter().map(|&(u, v)| (u as i64, v as i64)).unzip();
        (Tensor::from_slice(&s).to(device), Tensor::from_slice(&d).to(device))
    };
    let (ts, td) = idx(train);
    let zpos = feats.of(&ts, &td);
    let (vp, vn) = (idx(val.0), idx(val.1));
    let (zvp, zvn) = (feats.of(&vp.0, &vp.1), feats.of(&vn.0, &vn.1));
    let (c, d) = (feats.components, feats.dim);
    tch::manual_seed(cfg.seed as i64);
    let bound = 1.0 / (d as f64).sqrt();
    let mut params = Tensor::empty([c as i64 * d + c as i64], (Kind::Float, device)).uniform_(-bound, bound);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xac7);
    let mut negatives = |count: usize| {
        let (s, t): (Vec<i64>, Vec<i64>) =
            (0..count).map(|_| (rng.random_range(0..nodes) as i64, rng.random_range(0..nodes) as i64)).unzip();
        feats.of(&Tensor::from_slice(&s).to(device), &Tensor::from_slice(&t).to(device))
    };
    let val_hits = |p: &Tensor| {
        tch::no_grad(|| {
            let act = Act { params: p.shallow_clone(), components: c, dim: d };
            let pos = strata_nn::ops::host_vec::<f32>(&act.logits(&zvp));
            let neg = strata_nn::ops::host_vec::<f32>(&act.logits(&zvn));
            hits_at_k(&pos, &neg, cfg.hits_k)
        })
    };
    let minibatch = train.len() > cfg.minibatch_above;
    let mut best =
        (f64::NEG_INFINITY, params.copy(), ActReport { val_hits: 0.0, lambda1: 0.0, lambda2: 0.0, steps: 0 });
    let mut steps = 0;
    // Validation loss (BCE of the validation positives and negatives), the divergence guard.
    let val_loss = |p: &Tensor| {
        tch::no_grad(|| {
            let act = Act { params: p.shallow_clone(), components: c, dim: d };
            let (lp, ln) = (act.logits(&zvp), act.logits(&zvn));
            let logits = Tensor::cat(&[&lp, &ln], 0);
            let y = Tensor::cat(&[lp.ones_like(), ln.zeros_like()], 0);
            logits.binary_cross_entropy_with_logits::<Tensor>(&y, None, None, tch::Reduction::Mean).double_value(&[])
        })
    };
    for &l1 in &cfg.lambda1 {
        for &l2 in &cfg.lambda2 {
            // Each grid point starts from the best weights of the one before (the reference
            // reloads them when a point ends), not from where that point stopped.
            let mut point_best = (f64::NEG_INFINITY, params.copy());
            let mut since = 0;
            let mut lbfgs = Lbfgs::new(cfg.lr, 20, 100);
            let mut adam = AdamState::new(&params);
            let (epochs, patience) =
                if minibatch { (cfg.max_epochs * 10, cfg.patience * 20) } else { (cfg.max_epochs, cfg.patience) };
            for _ in 0..epochs {
                steps += 1;
                let loss = if minibatch {
                    let mut last = 0.0;
                    let batch = 65_536i64;
                    let perm = Tensor::randperm(zpos.size()[0], (Kind::Int64, device));
                    for start in (0..zpos.size()[0]).step_by(batch as usize) {
                        let len = batch.min(zpos.size()[0] - start);
                        let zb = zpos.index_select(0, &perm.narrow(0, start, len));
                        let p = params.detach().set_requires_grad(true);
                        let loss = penalised_loss(&p, &zb, &negatives(len as usize), c, d, l1, l2);
                        loss.backward();
                        last = loss.double_value(&[]);
                        adam.step(&mut params, &p.grad(), 0.01);
                    }
                    last
                } else {
                    lbfgs.step(&mut params, &mut |p: &Tensor| {
                        let p = p.detach().set_requires_grad(true);
                        let loss = penalised_loss(&p, &zpos, &negatives(train.len()), c, d, l1, l2);
                        loss.backward();
                        (loss.double_value(&[]), p.grad().detach())
                    })
                };
                // The reference's guard is on the validation loss (a diverged step also makes
                // the training loss non-finite).
                let vl = val_loss(&params);
                if !loss.is_finite() || !vl.is_finite() || vl > 1000.0 {
                    break;
                }
                let h = val_hits(&params);
                if h > point_best.0 {
                    point_best = (h, params.copy());
                }
                if h > best.0 {
                    best = (h, params.copy(), ActReport { val_hits: h, lambda1: l1, lambda2: l2, steps });
                    since = 0;
                } else {
                    since += 1;
                    if since >= patience {
                        break;
                    }
                }
            }
            params = point_best.1;
        }
    }
    let mut report = best.2;
    report.steps = steps;
    (Act { params: best.1, components: c, dim: d }, report)
}

/// Adam on a flat tensor (the mini-batch variant for large graphs).
struct AdamState {
    m: Tensor,
    v: Tensor,
    t: i32,
}

impl AdamState {
    fn new(p: &Tensor) -> AdamState {
        AdamState { m: p.zeros_like(), v: p.zeros_like(), t: 0 }
    }
    fn step(&mut self, p: &mut Tensor, g: &Tensor, lr: f64) {
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        self.t += 1;
        self.m = &self.m * b1 + g * (1.0 - b1);
        self.v = &self.v * b2 + g * g * (1.0 - b2);
        let mh = &self.m / (1.0 - b1.powi(self.t));
        let vh = &self.v / (1.0 - b2.powi(self.t));
        tch::no_grad(|| *p -= mh / (vh.sqrt() + eps) * lr);
    }
}
