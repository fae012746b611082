use super::linear::{Init, Linear};
use crate::message_passing::Adjacency;
use std::rc::Rc;
use tch::{nn, Tensor};

/// Graph isomorphism network layer, Xu et al., "How Powerful are Graph Neural Networks?"
/// (ICLR 2019):
///
/// `x'_i = MLP((1 + ε) x_i + Σ_{j ∈ N(i)} x_j)` with a learnable ε (GIN-ε) and a two-layer MLP.
pub struct GinConv {
    eps: Tensor,
    mlp1: Linear,
    mlp2: Linear,
    adj: Rc<Adjacency>,
}

impl GinConv {
    pub fn new(vs: &nn::Path, adj: Rc<Adjacency>, fan_in: i64, hidden: i64, fan_out: i64) -> GinConv {
        GinConv {
            eps: vs.var("eps", &[1], nn::Init::Const(0.0)),
            mlp1: Linear::new(&(vs / "mlp1"), fan_in, hidden, true, Init::TorchDefault),
            mlp2: Linear::new(&(vs / "mlp2"), hidden, fan_out, true, Init::TorchDefault),
            adj,
        }
    }
    /// `pre` is the input after the MLP's first matrix (`x·W_1`, no bias): the sum
    /// aggregation commutes with it, so raw sparse inputs never need densifying.
    pub fn forward_projected(&self, pre: &Tensor) -> Tensor {
        let agg: Tensor = pre * (&self.eps + 1.0) + self.adj.propagate(pre);
        let h = match &self.mlp1.b {
            Some(b) => agg + b,
            None => agg,
        };
        self.mlp2.forward(&h.relu())
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_projected(&x.matmul(&self.mlp1.w))
    }
    pub fn first_weight(&self) -> &Tensor {
        &self.mlp1.w
    }
}
