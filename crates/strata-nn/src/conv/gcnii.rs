use crate::message_passing::Adjacency;
use std::rc::Rc;
use tch::{nn, Tensor};

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
    /// Pre-activation output; the caller applies σ.
    pub fn forward(&self, h: &Tensor, h0: &Tensor) -> Tensor {
        let support = self.adj.propagate(h) * (1.0 - self.alpha) + h0 * self.alpha;
        support.matmul(&self.mixing())
    }
    /// `(1 − β) I + β W`.
    fn mixing(&self) -> Tensor {
        let d = self.weight.size()[0];
        Tensor::eye(d, (self.weight.kind(), self.weight.device())) * (1.0 - self.beta) + &self.weight * self.beta
    }
}
