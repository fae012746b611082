use crate::message_passing::Adjacency;
use std::rc::Rc;
use tch::{nn, Kind, Tensor};

/// GCNII layer, Chen et al., "Simple and Deep Graph Convolutional Networks" (ICML 2020):
///
/// `H⁽ˡ⁺¹⁾ = σ( ((1 − α) Â H⁽ˡ⁾ + α H⁽⁰⁾) ((1 − β_l) I + β_l W⁽ˡ⁾) )`, `β_l = ln(λ / l + 1)`,
///
/// with initial residual `α` and identity mapping `β_l`. The second factor is formed as a
/// `d×d` matrix first, so each layer costs one `n×d×d` product instead of two.
pub struct Gcn2Conv {
    pub weight: Tensor,
    adj: Rc<Adjacency>,
    alpha: f64,
    beta: f64,
}

impl Gcn2Conv {
    /// `layer` is 1-based, as in the paper.
    pub fn new(vs: &nn::Path, adj: Rc<Adjacency>, channels: i64, alpha: f64, theta: f64, layer: usize) -> Gcn2Conv {
        let a = (6.0 / (2 * channels) as f64).sqrt();
        Gcn2Conv {
            weight: vs.var("weight", &[channels, channels], nn::Init::Uniform { lo: -a, up: a }),
            adj,
            alpha,
            beta: (theta / layer as f64 + 1.0).ln(),
        }
    }
    /// `α·H⁽⁰⁾`, formed once per forward and shared by every layer's [`Gcn2Conv::forward`].
    pub fn scaled_initial(&self, h0: &Tensor) -> Tensor {
        h0 * self.alpha
    }
    /// Pre-activation output on `dropout(h, p)` (the caller applies σ); `h0_scaled` is
    /// [`Gcn2Conv::scaled_initial`]. On the CSR kernel the layer is one fused autograd node
    /// ([`crate::ops::f_gcn2_layer`]: the dropout scale and 1 − α ride on the sparse product, the
    /// residual is its accumulator); `recompute` (`--checkpoint-activations`) keeps only `h` for
    /// the backward pass and rebuilds the support there. The edge-list kernel (small graphs)
    /// composes the same sum from libtorch operators and keeps its intermediates.
    pub fn forward(&self, h: &Tensor, h0_scaled: &Tensor, p: f64, train: bool, recompute: bool) -> Tensor {
        let keep = (train && p > 0.0).then(|| crate::ops::dropout_mask(h, p));
        let c = (1.0 - self.alpha) / if keep.is_some() { 1.0 - p } else { 1.0 };
        let m = self.mixing();
        match self.adj.csr_pair() {
            Some((a, a_t)) if h.kind() == Kind::Float => {
                crate::ops::f_gcn2_layer(h, h0_scaled, &m, keep.as_ref(), a, a_t, c, recompute)
                    .unwrap_or_else(|e| panic!("{e}"))
            }
            _ => {
                let x = match &keep {
                    Some(k) => h * k,
                    None => h.shallow_clone(),
                };
                (self.adj.propagate(&x) * c + h0_scaled).matmul(&m)
            }
        }
    }
    /// `(1 − β) I + β W`.
    fn mixing(&self) -> Tensor {
        let d = self.weight.size()[0];
        Tensor::eye(d, (self.weight.kind(), self.weight.device())) * (1.0 - self.beta) + &self.weight * self.beta
    }
}
