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
pub fn svd_lowrank(a: &dyn LinOp, k: i64, niter: usize, oversample: i64, seed: u64, device: Device) -> (Tensor, Tensor) {
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
    /// 1: ‖r‖ small enough, 2: ‖Aᵀr‖ small enough (least-squares solution), 0: iteration limit.
    pub stop: u8,
}

/// Damped LSQR: `argmin_x ‖A·x − b‖² + damp²·‖x‖²`, with scipy's stopping rules (`atol`, `btol`,
/// `iter_lim`). Double precision throughout.
pub fn lsqr(a: &dyn VecOp, b: &Tensor, damp: f64, atol: f64, btol: f64, iter_lim: usize) -> (Tensor, LsqrInfo) {
    let norm = |t: &Tensor| t.norm().double_value(&[]);
    let mut x = Tensor::zeros([a.len_in()], (Kind::Double, b.device()));
    // A copy: `to_kind` of a double tensor shares storage, and `u` is scaled in place.
    let mut u = b.to_kind(Kind::Double).copy();
    let mut beta = norm(&u);
    let bnorm = beta;
    if beta == 0.0 {
        return (x, LsqrInfo { iterations: 0, stop: 1 });
    }
    u /= beta;
    let mut v = a.apply_t(&u);
    let mut alpha = norm(&v);
    if alpha > 0.0 {
        v /= alpha;
    }
    let mut w = v.copy();
    let (mut phibar, mut rhobar) = (beta, alpha);
    let mut anorm = 0.0f64;
    let mut res2 = 0.0f64;
    let mut info = LsqrInfo { iterations: 0, stop: 0 };
    for it in 1..=iter_lim {
        info.iterations = it;
        // Bidiagonalisation.
        u = a.apply(&v) - &u * alpha;
        beta = norm(&u);
        if beta > 0.0 {
            u /= beta;
            anorm = (anorm * anorm + alpha * alpha + beta * beta + damp * damp).sqrt();
            v = a.apply_t(&u) - &v * beta;
            alpha = norm(&v);
            if alpha > 0.0 {
                v /= alpha;
            }
        }
        // Eliminate the damping term.
        let rhobar1 = (rhobar * rhobar + damp * damp).sqrt();
        let cs1 = rhobar / rhobar1;
        let sn1 = damp / rhobar1;
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
        x += &w * (phi / rho);
        w = &v - &w * (theta / rho);
        let xnorm = norm(&x);
        res2 += psi * psi;
        let rnorm = (phibar * phibar + res2).sqrt();
        let arnorm = alpha * tau.abs();
        let test1 = rnorm / bnorm;
        let test2 = if anorm * rnorm > 0.0 { arnorm / (anorm * rnorm) } else { 0.0 };
        let rtol = btol + atol * anorm * xnorm / bnorm;
        if test1 <= rtol {
            info.stop = 1;
            break;
        }
        if test2 <= atol {
            info.stop = 2;
            break;
        }
    }
    (x, info)
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
            let (x, info) = lsqr(&Dense(a.shallow_clone()), &b, damp, 1e-12, 1e-12, 500);
            // Normal equations: (AᵀA + damp²I)x = Aᵀb.
            let lhs = a.tr().matmul(&a) + Tensor::eye(12, (Kind::Double, Device::Cpu)) * (damp * damp);
            let exact = Tensor::linalg_solve(&lhs, &a.tr().mv(&b), true);
            let err = (&x - &exact).norm().double_value(&[]);
            assert!(err < 1e-8, "damp {damp}: error {err}, {info:?}");
        }
    }
}
