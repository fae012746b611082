use crate::message_passing::{Adjacency, MessagePassing, Norm};
use tch::{nn, Kind, Tensor};

/// GCNII layer, Chen et al., "Simple and Deep Graph Convolutional Networks" (ICML 2020):
///
/// `H⁽ˡ⁺¹⁾ = σ( ((1 − α) Â H⁽ˡ⁾ + α H⁽⁰⁾) ((1 − β_l) I + β_l W⁽ˡ⁾) )`, `β_l = ln(λ / l + 1)`,
///
/// with initial residual `α` and identity mapping `β_l`. The second factor is formed as a
/// `d×d` matrix first, so each layer costs one `n×d×d` product instead of two.
pub struct Gcn2Conv {
    pub weight: Tensor,
    pub alpha: f64,
    pub beta: f64,
}

impl Gcn2Conv {
    /// `layer` is 1-based, as in the paper.
    pub fn new(vs: &nn::Path, channels: i64, alpha: f64, theta: f64, layer: usize) -> Gcn2Conv {
        let a = (6.0 / (2 * channels) as f64).sqrt();
        Gcn2Conv {
            weight: vs.var("weight", &[channels, channels], nn::Init::Uniform { lo: -a, up: a }),
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
    /// ([`Gcn2Conv::forward_csr`]); `recompute` (`--checkpoint-activations`) keeps only `h`
    /// for the backward pass and rebuilds the support there. The edge-list kernel (small
    /// graphs) is [`MessagePassing::update`] of the aggregate and keeps its intermediates.
    pub fn forward(
        &self,
        adj: &Adjacency,
        h: &Tensor,
        h0_scaled: &Tensor,
        p: f64,
        train: bool,
        recompute: bool,
    ) -> Tensor {
        let keep = (train && p > 0.0).then(|| crate::ops::dropout_mask(h, p));
        let scale = if keep.is_some() { 1.0 / (1.0 - p) } else { 1.0 };
        match adj.csr_pair() {
            Some(pair) if h.kind() == Kind::Float => {
                self.forward_csr(h, h0_scaled, keep.as_ref(), scale, pair, recompute)
            }
            _ => {
                let x = match &keep {
                    Some(k) => crate::ops::masked_scale(h, k, 1.0),
                    None => h.shallow_clone(),
                };
                self.update_scaled(adj.propagate(&x), h0_scaled, (1.0 - self.alpha) * scale)
            }
        }
    }
    /// `update ∘ aggregate` as one autograd node on a CSR operator `a` with cached transpose
    /// `a_t` ([`crate::ops::f_gcn2_layer`]): the dropout `scale` and 1 − α ride on the sparse
    /// product and the residual is its accumulator. `keep` is the dropout mask of `h`. Graph
    /// partitions call it with their own operators.
    pub fn forward_csr(
        &self,
        h: &Tensor,
        h0_scaled: &Tensor,
        keep: Option<&Tensor>,
        scale: f64,
        (a, a_t): (&Tensor, &Tensor),
        recompute: bool,
    ) -> Tensor {
        self.forward_csr_mixing(&self.mixing(), h, h0_scaled, keep, scale, (a, a_t), recompute)
    }
    /// [`Gcn2Conv::forward_csr`] with the mixing matrix `(1 − β) I + β W` given: a caller that
    /// runs the layer on many row blocks between two steps forms it once ([`Gcn2Conv::mixing`])
    /// and hands its gradient to `W` once.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_csr_mixing(
        &self,
        mixing: &Tensor,
        h: &Tensor,
        h0_scaled: &Tensor,
        keep: Option<&Tensor>,
        scale: f64,
        (a, a_t): (&Tensor, &Tensor),
        recompute: bool,
    ) -> Tensor {
        let c = (1.0 - self.alpha) * scale;
        crate::ops::f_gcn2_layer(h, h0_scaled, mixing, keep, a, a_t, c, recompute).unwrap_or_else(|e| panic!("{e}"))
    }
    /// `(c·agg + α·H⁰)·((1 − β) I + β W)`.
    fn update_scaled(&self, agg: Tensor, h0_scaled: &Tensor, c: f64) -> Tensor {
        (agg * c + h0_scaled).matmul(&self.mixing())
    }
    /// [`MessagePassing::update`] without autograd and in place where it can be: exact
    /// full-graph inference keeps the aggregate, one output and h⁰ (three N × d tensors), not
    /// the six that the out-of-place form holds at once. `h0` is unscaled here: the mix is
    /// `lerp`, `(1−α)·agg + α·h⁰` up to rounding.
    pub fn update_inference(&self, mut agg: Tensor, h0: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let _ = agg.lerp_(h0, self.alpha);
            let out = agg.matmul(&self.mixing());
            drop(agg);
            out
        })
    }
    /// `(1 − β) I + β W`.
    pub fn mixing(&self) -> Tensor {
        let d = self.weight.size()[0];
        Tensor::eye(d, (self.weight.kind(), self.weight.device())) * (1.0 - self.beta) + &self.weight * self.beta
    }
}

impl MessagePassing for Gcn2Conv {
    fn norm(&self) -> Norm {
        Norm::SymWithSelfLoops
    }
    /// `((1 − α)·agg + α·H⁰)·((1 − β) I + β W)`; `h0` is `α·H⁰` ([`Gcn2Conv::scaled_initial`]).
    fn update(&self, agg: Tensor, _x: &Tensor, h0: Option<&Tensor>) -> Tensor {
        self.update_scaled(agg, h0.expect("GCNII's update needs its initial residual"), 1.0 - self.alpha)
    }
}
