//! L-BFGS without line search, step for step PyTorch's `torch.optim.LBFGS` (which NetInfoF_Act
//! uses with lr 0.1, 20 iterations per step, history 100): tch has no L-BFGS. It works on one
//! flat parameter tensor; the closure recomputes the loss and its gradient.

use std::collections::VecDeque;
use tch::{Kind, Tensor};

pub struct Lbfgs {
    pub lr: f64,
    pub max_iter: usize,
    pub history: usize,
    pub tolerance_grad: f64,
    pub tolerance_change: f64,
    dirs: VecDeque<Tensor>,
    steps: VecDeque<Tensor>,
    ro: VecDeque<f64>,
    d: Option<Tensor>,
    t: f64,
    h_diag: f64,
    prev_grad: Option<Tensor>,
    n_iter: usize,
}

impl Lbfgs {
    pub fn new(lr: f64, max_iter: usize, history: usize) -> Lbfgs {
        Lbfgs {
            lr,
            max_iter,
            history,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            dirs: VecDeque::new(),
            steps: VecDeque::new(),
            ro: VecDeque::new(),
            d: None,
            t: lr,
            h_diag: 1.0,
            prev_grad: None,
            n_iter: 0,
        }
    }

    /// One optimizer step (up to `max_iter` inner iterations). `closure(params)` returns the
    /// loss and the flat gradient at `params`. Returns the first loss.
    pub fn step(&mut self, params: &mut Tensor, closure: &mut dyn FnMut(&Tensor) -> (f64, Tensor)) -> f64 {
        let (mut loss, mut g) = closure(params);
        let first = loss;
        let absmax = |t: &Tensor| t.abs().max().double_value(&[]);
        if absmax(&g) <= self.tolerance_grad {
            return first;
        }
        let mut it = 0;
        while it < self.max_iter {
            it += 1;
            self.n_iter += 1;
            let d = if self.n_iter == 1 {
                self.h_diag = 1.0;
                -&g
            } else {
                let y = &g - self.prev_grad.as_ref().expect("previous gradient");
                let s = self.d.as_ref().expect("previous direction") * self.t;
                let ys = (&y * &s).sum(Kind::Double).double_value(&[]);
                if ys > 1e-10 {
                    if self.dirs.len() == self.history {
                        self.dirs.pop_front();
                        self.steps.pop_front();
                        self.ro.pop_front();
                    }
                    self.h_diag = ys / (&y * &y).sum(Kind::Double).double_value(&[]);
                    self.dirs.push_back(y);
                    self.steps.push_back(s);
                    self.ro.push_back(1.0 / ys);
                }
                // Two-loop recursion: q ← H·(−g).
                let k = self.dirs.len();
                let mut al = vec![0.0; k];
                let mut q = -&g;
                for i in (0..k).rev() {
                    al[i] = (&self.steps[i] * &q).sum(Kind::Double).double_value(&[]) * self.ro[i];
                    q -= &self.dirs[i] * al[i];
                }
                let mut r = q * self.h_diag;
                for (i, a) in al.iter().enumerate() {
                    let be = (&self.dirs[i] * &r).sum(Kind::Double).double_value(&[]) * self.ro[i];
                    r += &self.steps[i] * (a - be);
                }
                r
            };
            self.prev_grad = Some(g.copy());
            let prev_loss = loss;
            self.t = if self.n_iter == 1 {
                (1.0f64).min(1.0 / g.abs().sum(Kind::Double).double_value(&[])) * self.lr
            } else {
                self.lr
            };
            let gtd = (&g * &d).sum(Kind::Double).double_value(&[]);
            if gtd > -self.tolerance_change {
                self.d = Some(d);
                break;
            }
            tch::no_grad(|| *params += &d * self.t);
            let small_step = absmax(&d) * self.t <= self.tolerance_change;
            self.d = Some(d);
            if it != self.max_iter {
                (loss, g) = closure(params);
            }
            if it == self.max_iter
                || absmax(&g) <= self.tolerance_grad
                || small_step
                || (loss - prev_loss).abs() < self.tolerance_change
            {
                break;
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn minimises_a_quadratic() {
        // f(x) = ½ xᵀAx − bᵀx with A SPD: minimum at A⁻¹b.
        let a = Tensor::from_slice(&[4.0f64, 1.0, 0.0, 1.0, 3.0, 0.5, 0.0, 0.5, 2.0]).view([3, 3]);
        let b = Tensor::from_slice(&[1.0f64, 2.0, 3.0]);
        let mut x = Tensor::zeros([3], (Kind::Double, Device::Cpu));
        let mut opt = Lbfgs::new(1.0, 20, 10);
        for _ in 0..5 {
            opt.step(&mut x, &mut |x: &Tensor| {
                let ax = a.mv(x);
                let f =
                    0.5 * (x * &ax).sum(Kind::Double).double_value(&[]) - (x * &b).sum(Kind::Double).double_value(&[]);
                (f, ax - &b)
            });
        }
        let exact = Tensor::linalg_solve(&a, &b, true);
        let (xv, ev) = (Vec::<f64>::try_from(&x).unwrap(), Vec::<f64>::try_from(&exact).unwrap());
        assert!(xv.iter().zip(&ev).all(|(a, b)| (a - b).abs() < 1e-4), "{xv:?} vs {ev:?}");
    }
}
