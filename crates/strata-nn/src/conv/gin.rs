use super::linear::{Init, Linear};
use crate::message_passing::{Adjacency, MessagePassing, Norm};
use tch::{nn, Tensor};

/// Graph isomorphism network layer, Xu et al., "How Powerful are Graph Neural Networks?"
/// (ICLR 2019):
///
/// `x'_i = MLP((1 + ε) x_i + Σ_{j ∈ N(i)} x_j)` with a learnable ε (GIN-ε) and a two-layer MLP.
pub struct GinConv {
    eps: Tensor,
    mlp1: Linear,
    mlp2: Linear,
}

impl GinConv {
    pub fn new(vs: &nn::Path, fan_in: i64, hidden: i64, fan_out: i64) -> GinConv {
        GinConv {
            eps: vs.var("eps", &[1], nn::Init::Const(0.0)),
            mlp1: Linear::new(&(vs / "mlp1"), fan_in, hidden, true, Init::TorchDefault),
            mlp2: Linear::new(&(vs / "mlp2"), hidden, fan_out, true, Init::TorchDefault),
        }
    }
    /// `pre` is the input after the MLP's first matrix (`x·W_1`, no bias): the sum
    /// aggregation commutes with it, so raw sparse inputs never need densifying.
    pub fn forward_projected(&self, adj: &Adjacency, pre: &Tensor) -> Tensor {
        let agg: Tensor = pre * (&self.eps + 1.0) + adj.propagate(pre);
        self.mlp_tail(agg)
    }
    /// The MLP after its first matrix: bias, ReLU, second layer.
    fn mlp_tail(&self, h: Tensor) -> Tensor {
        let h = match &self.mlp1.b {
            Some(b) => h + b,
            None => h,
        };
        self.mlp2.forward(&h.relu())
    }
    pub fn forward(&self, adj: &Adjacency, x: &Tensor) -> Tensor {
        self.forward_projected(adj, &x.matmul(&self.mlp1.w))
    }
    pub fn first_weight(&self) -> &Tensor {
        &self.mlp1.w
    }
}

impl MessagePassing for GinConv {
    fn norm(&self) -> Norm {
        Norm::Sum
    }
    /// `MLP((1 + ε)·x + agg)`.
    fn update(&self, agg: Tensor, x: &Tensor, _h0: Option<&Tensor>) -> Tensor {
        self.mlp_tail((x * (&self.eps + 1.0) + agg).matmul(&self.mlp1.w))
    }
}
