//! The linear algebra NetInfoF needs, on libtorch ops: sparse operators given as edge lists,
//! randomised low-rank SVD (Halko, Martinsson & Tropp, 2011 — what `torch.svd_lowrank` does),
//! PCA on top of it, and a damped LSQR (Paige & Saunders, 1982) on matrix-free operators.

use tch::{Device, Kind, Tensor};

/// A sparse `rows × cols` matrix as COO triplets; products by index gather/scatter.
pub struct SparseOp {
    pub rows: i64,
    pub cols: i64,
    row: Tensor,
    col: Tensor,
    val: Tensor,
}

impl SparseOp {
    pub fn new(rows: i64, cols: i64, row: &[i64], col: &[i64], val: &[f32], device: Device) -> SparseOp {
        let t = |v: &[i64]| Tensor::from_slice(v).to(device);
        SparseOp { rows, cols, row: t(row), col: t(col), val: Tensor::from_slice(val).to(device).to_kind(Kind::Double) }
    }
    /// `A·x` for `x` of shape `[cols, k]`.
    pub fn mm(&self, x: &Tensor) -> Tensor {
        self.gather_scatter(x, &self.row, &self.col, self.rows)
    }
    /// `Aᵀ·x` for `x` of shape `[rows, k]`.
    pub fn mm_t(&self, x: &Tensor) -> Tensor {
        self.gather_scatter(x, &self.col, &self.row, self.cols)
    }
    /// `out[to[e]] += val[e]·x[from[e]]`, in slices of at most `EDGE_BLOCK` entries so the
    /// gathered rows never need more than a few hundred MiB, however many entries there are.
    fn gather_scatter(&self, x: &Tensor, to: &Tensor, from: &Tensor, rows: i64) -> Tensor {
        const EDGE_BLOCK: i64 = 1 << 20;
        let mut out = Tensor::zeros([rows, x.size()[1]], (x.kind(), x.device()));
        let val = self.val.to_kind(x.kind());
        let nnz = to.size()[0];
        for start in (0..nnz).step_by(EDGE_BLOCK as usize) {
            let len = EDGE_BLOCK.min(nnz - start);
            let w = val.narrow(0, start, len).unsqueeze(-1);
            let _ = out.index_add_(0, &to.narrow(0, start, len), &(x.index_select(0, &from.narrow(0, start, len)) * w));
        }
        out
    }
}

/// Something that multiplies: `A·X` and `Aᵀ·X`.
pub trait LinOp {
    fn shape(&self) -> (i64, i64);
    fn mm(&self, x: &Tensor) -> Tensor;
    fn mm_t(&self, x: &Tensor) -> Tensor;
}

impl LinOp for SparseOp {
    fn shape(&self) -> (i64, i64) {
        (self.rows, self.cols)
    }
    fn mm(&self, x: &Tensor) -> Tensor {
        SparseOp::mm(self, x)
    }
    fn mm_t(&self, x: &Tensor) -> Tensor {
        SparseOp::mm_t(self, x)
    }
}

impl LinOp for Tensor {
    fn shape(&self) -> (i64, i64) {
        let s = self.size();
        (s[0], s[1])
    }
    fn mm(&self, x: &Tensor) -> Tensor {
        self.matmul(x)
    }
    fn mm_t(&self, x: &Tensor) -> Tensor {
        self.tr().matmul(x)
    }
}

/// Rank-`k` randomised SVD `A ≈ U·diag(S)·Vᵀ` with `oversample` extra columns and `niter`
/// power iterations (re-orthonormalised each time). Returns `(U [m,k], S [k])`.
pub fn svd_lowrank(
    a: &dyn LinOp,
    k: i64,
    niter: usize,
    oversample: i64,
    seed: u64,
    device: Device,
) -> (Tensor, Tensor) {
    let (m, n) = a.shape();
    let q = (k + oversample).min(m.min(n)).max(1);
    tch::manual_seed(seed as i64);
    let omega = Tensor::randn([n, q], (Kind::Double, device));
    let orth = |y: Tensor| Tensor::linalg_qr(&y, "reduced").0;
    let mut basis = orth(a.mm(&omega));
    for _ in 0..niter {
        let z = orth(a.mm_t(&basis));
        basis = orth(a.mm(&z));
    }
    // B = Qᵀ·A, small: [q, n].
    let b = a.mm_t(&basis).tr();
    let (ub, s, _) = b.svd(true, true);
    let k = k.min(s.size()[0]);
    (basis.matmul(&ub).narrow(1, 0, k), s.narrow(0, 0, k))
}

/// PCA to `k` components: the centred data's scores `U·S` (sklearn's `fit_transform`).
pub fn pca(x: &Tensor, k: i64, seed: u64) -> Tensor {
    let centred = x.to_kind(Kind::Double) - x.to_kind(Kind::Double).mean_dim(0, true, Kind::Double);
    let (u, s) = svd_lowrank(&centred, k, 4, 10, seed, x.device());
    u * s.unsqueeze(0)
}

/// A matrix-free operator for LSQR on flat vectors.
pub trait VecOp {
    fn len_in(&self) -> i64;
    fn apply(&self, x: &Tensor) -> Tensor;
    fn apply_t(&self, y: &Tensor) -> Tensor;
}

/// Outcome of [`lsqr`].
#[derive(Clone, Copy, Debug)]
pub struct LsqrInfo {
    pub iterations: usize,
    /// scipy's `istop`: 1 ‖r‖ small enough, 2 ‖Aᵀr‖ small enough (least-squares solution),
    /// 3 the condition estimate passed `conlim`, 4–6 the same tests at machine precision,
    /// 7 the iteration limit.
    pub stop: u8,
}

/// Settings of [`lsqr`], scipy's names and meanings.
#[derive(Clone, Copy, Debug)]
pub struct LsqrOptions {
    pub damp: f64,
    pub atol: f64,
    pub btol: f64,
    /// Stop when the estimated condition number of `A` exceeds this (scipy: 1e8).
    pub conlim: f64,
    pub iter_lim: usize,
}

/// Damped LSQR as `scipy.sparse.linalg.lsqr`: from `x0` (zeros when `None`) it minimises
/// `‖A·(x0 + δ) − b‖² + damp²·‖δ‖²` over the correction `δ` and returns `x0 + δ`. The stopping
/// tests are scipy's: relative to `‖b‖` (not to the initial residual), with `conlim`, and the
/// machine-precision variants. Double precision throughout.
// Long on purpose: LSQR's recurrence (Paige & Saunders, 1982, as scipy's `lsqr`) kept as one loop, so it can be read against the published algorithm line by line.
pub fn lsqr(a: &dyn VecOp, b: &Tensor, x0: Option<&Tensor>, o: &LsqrOptions) -> (Tensor, LsqrInfo) {
    let norm = |t: &Tensor| t.norm().double_value(&[]);
    let b = b.to_kind(Kind::Double);
    let bnorm = norm(&b);
    let mut x = Tensor::zeros([a.len_in()], (Kind::Double, b.device()));
    // A copy: `to_kind` of a double tensor shares storage, and `u` is scaled in place.
    let mut u = match x0 {
        Some(x0) => &b - a.apply(&x0.to_kind(Kind::Double)),
        None => b.copy(),
    };
    let finish = |dx: Tensor| match x0 {
        Some(x0) => x0.to_kind(Kind::Double) + dx,
        None => dx,
    };
    let mut beta = norm(&u);
    if beta == 0.0 || bnorm == 0.0 {
        return (finish(x), LsqrInfo { iterations: 0, stop: 1 });
    }
    u /= beta;
    let mut v = a.apply_t(&u);
    let mut alpha = norm(&v);
    if alpha > 0.0 {
        v /= alpha;
    }
    let mut w = v.copy();
    let (mut phibar, mut rhobar) = (beta, alpha);
    let (mut anorm, mut ddnorm, mut res2) = (0.0f64, 0.0f64, 0.0f64);
    let ctol = if o.conlim > 0.0 { 1.0 / o.conlim } else { 0.0 };
    let eps = f64::EPSILON;
    let mut info = LsqrInfo { iterations: 0, stop: 0 };
    for it in 1..=o.iter_lim {
        info.iterations = it;
        // Bidiagonalisation.
        u = a.apply(&v) - &u * alpha;
        beta = norm(&u);
        if beta > 0.0 {
            u /= beta;
            anorm = (anorm * anorm + alpha * alpha + beta * beta + o.damp * o.damp).sqrt();
            v = a.apply_t(&u) - &v * beta;
            alpha = norm(&v);
            if alpha > 0.0 {
                v /= alpha;
            }
        }
        // Eliminate the damping term.
        let rhobar1 = (rhobar * rhobar + o.damp * o.damp).sqrt();
        let cs1 = rhobar / rhobar1;
        let sn1 = o.damp / rhobar1;
        let psi = sn1 * phibar;
        phibar *= cs1;
        // Plane rotation.
        let rho = (rhobar1 * rhobar1 + beta * beta).sqrt();
        let cs = rhobar1 / rho;
        let sn = beta / rho;
        let theta = sn * alpha;
        rhobar = -cs * alpha;
        let phi = cs * phibar;
        phibar *= sn;
        let tau = sn * phi;
        ddnorm += (norm(&w) / rho).powi(2);
        x += &w * (phi / rho);
        w = &v - &w * (theta / rho);
        let xnorm = norm(&x);
        res2 += psi * psi;
        let rnorm = (phibar * phibar + res2).sqrt();
        let arnorm = alpha * tau.abs();
        let acond = anorm * ddnorm.sqrt();
        let test1 = rnorm / bnorm;
        let test2 = arnorm / (anorm * rnorm + eps);
        let test3 = 1.0 / (acond + eps);
        let t1 = test1 / (1.0 + anorm * xnorm / bnorm);
        let rtol = o.btol + o.atol * anorm * xnorm / bnorm;
        // scipy's order: a later test overrides an earlier one.
        let mut stop = if it >= o.iter_lim { 7 } else { 0 };
        for (hit, code) in [
            (1.0 + test3 <= 1.0, 6),
            (1.0 + test2 <= 1.0, 5),
            (1.0 + t1 <= 1.0, 4),
            (test3 <= ctol, 3),
            (test2 <= o.atol, 2),
            (test1 <= rtol, 1),
        ] {
            if hit {
                stop = code;
            }
        }
        if stop != 0 {
            info.stop = stop;
            break;
        }
    }
    (finish(x), info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowrank_svd_recovers_singular_values() {
        tch::manual_seed(0);
        let u = Tensor::linalg_qr(&Tensor::randn([200, 5], (Kind::Double, Device::Cpu)), "reduced").0;
        let v = Tensor::linalg_qr(&Tensor::randn([80, 5], (Kind::Double, Device::Cpu)), "reduced").0;
        let s = Tensor::from_slice(&[10.0f64, 7.0, 5.0, 2.0, 1.0]);
        let a = (&u * s.unsqueeze(0)).matmul(&v.tr());
        let (_, got) = svd_lowrank(&a, 3, 2, 5, 1, Device::Cpu);
        let got = Vec::<f64>::try_from(got).unwrap();
        for (g, e) in got.iter().zip([10.0, 7.0, 5.0]) {
            assert!((g - e).abs() < 1e-8, "{got:?}");
        }
        // The same through a sparse operator.
        let dense = Vec::<f64>::try_from(a.reshape([-1])).unwrap();
        let (mut r, mut c, mut w) = (vec![], vec![], vec![]);
        for i in 0..200 {
            for j in 0..80 {
                r.push(i);
                c.push(j);
                w.push(dense[(i * 80 + j) as usize] as f32);
            }
        }
        let sp = SparseOp::new(200, 80, &r, &c, &w, Device::Cpu);
        let (_, got) = svd_lowrank(&sp, 2, 2, 5, 1, Device::Cpu);
        assert!((got.double_value(&[0]) - 10.0).abs() < 1e-4);
    }

    struct Dense(Tensor);
    impl VecOp for Dense {
        fn len_in(&self) -> i64 {
            self.0.size()[1]
        }
        fn apply(&self, x: &Tensor) -> Tensor {
            self.0.mv(x)
        }
        fn apply_t(&self, y: &Tensor) -> Tensor {
            self.0.tr().mv(y)
        }
    }

    #[test]
    fn lsqr_solves_damped_least_squares() {
        tch::manual_seed(3);
        let a = Tensor::randn([60, 12], (Kind::Double, Device::Cpu));
        let b = Tensor::randn([60], (Kind::Double, Device::Cpu));
        for damp in [0.0, 1.0] {
            let o = LsqrOptions { damp, atol: 1e-12, btol: 1e-12, conlim: 1e8, iter_lim: 500 };
            let (x, info) = lsqr(&Dense(a.shallow_clone()), &b, None, &o);
            // Normal equations: (AᵀA + damp²I)x = Aᵀb.
            let lhs = a.tr().matmul(&a) + Tensor::eye(12, (Kind::Double, Device::Cpu)) * (damp * damp);
            let exact = Tensor::linalg_solve(&lhs, &a.tr().mv(&b), true);
            let err = (&x - &exact).norm().double_value(&[]);
            assert!(err < 1e-8, "damp {damp}: error {err}, {info:?}");
        }
    }

    /// From `x0`, scipy's LSQR damps the correction: `(AᵀA + damp²I)δ = Aᵀ(b − A·x0)`.
    #[test]
    fn lsqr_from_x0_damps_the_correction() {
        tch::manual_seed(4);
        let a = Tensor::randn([50, 8], (Kind::Double, Device::Cpu));
        let b = Tensor::randn([50], (Kind::Double, Device::Cpu));
        let x0 = Tensor::randn([8], (Kind::Double, Device::Cpu));
        let o = LsqrOptions { damp: 1.0, atol: 1e-12, btol: 1e-12, conlim: 1e8, iter_lim: 500 };
        let (x, info) = lsqr(&Dense(a.shallow_clone()), &b, Some(&x0), &o);
        let lhs = a.tr().matmul(&a) + Tensor::eye(8, (Kind::Double, Device::Cpu));
        let delta = Tensor::linalg_solve(&lhs, &a.tr().mv(&(&b - a.mv(&x0))), true);
        let err = (&x - (&x0 + delta)).norm().double_value(&[]);
        assert!(err < 1e-8, "error {err}, {info:?}");
        // A tight condition limit stops early with istop 3.
        let (_, info) = lsqr(&Dense(a.shallow_clone()), &b, Some(&x0), &LsqrOptions { conlim: 1.5, ..o });
        assert_eq!(info.stop, 3, "{info:?}");
    }
}
