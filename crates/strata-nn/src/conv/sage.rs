use super::linear::{Init, Linear};
use crate::message_passing::{Adjacency, MessagePassing, Norm};
use crate::ops::FastDropout;
use tch::{nn, Tensor};

/// GraphSAGE with mean aggregation, Hamilton et al., "Inductive Representation Learning on
/// Large Graphs" (NeurIPS 2017), in PyG's form:
///
/// `x'_i = W_1 x_i + W_2 · mean_{j ∈ N(i)} x_j`.
///
/// Since the mean is linear, [`SageConv::forward`] applies `W_2` before aggregating when that
/// is cheaper; the [`MessagePassing`] halves aggregate first.
pub struct SageConv {
    pub lin_self: Linear,
    pub lin_neigh: Linear,
}

impl SageConv {
    pub fn new(vs: &nn::Path, fan_in: i64, fan_out: i64) -> SageConv {
        SageConv {
            lin_self: Linear::new(&(vs / "lin_self"), fan_in, fan_out, true, Init::TorchDefault),
            lin_neigh: Linear::new(&(vs / "lin_neigh"), fan_in, fan_out, false, Init::TorchDefault),
        }
    }
    /// The same parameters behind a second handle.
    pub fn share(&self) -> SageConv {
        SageConv { lin_self: self.lin_self.share(), lin_neigh: self.lin_neigh.share() }
    }
    /// `adj` is the mean operator ([`Norm::Mean`]).
    pub fn forward(&self, adj: &Adjacency, x: &Tensor) -> Tensor {
        let (fan_in, fan_out) = (self.lin_neigh.w.size()[0], self.lin_neigh.w.size()[1]);
        if fan_out < fan_in {
            self.lin_self.forward(x) + adj.propagate(&self.lin_neigh.forward(x))
        } else {
            self.update(adj.propagate(x), x, None)
        }
    }
    /// First layer on raw (possibly sparse) input: both transforms are gathers.
    pub fn forward_input(&self, adj: &Adjacency, x: &crate::Input, dropout: f64, train: bool) -> Tensor {
        // One dropout mask for both paths, as in PyG where dropout precedes the layer.
        match x {
            crate::Input::Dense(d) => self.forward(adj, &d.fast_dropout(dropout, train)),
            sparse => {
                let w = Tensor::cat(&[&self.lin_self.w, &self.lin_neigh.w], 1);
                let both = sparse.matmul(&w, dropout, train);
                let parts = both.split(self.lin_self.w.size()[1], 1);
                let own = match &self.lin_self.b {
                    Some(b) => &parts[0] + b,
                    None => parts[0].shallow_clone(),
                };
                own + adj.propagate(&parts[1])
            }
        }
    }
}

impl MessagePassing for SageConv {
    fn norm(&self) -> Norm {
        Norm::Mean
    }
    /// `W_1 x_i + W_2 · agg_i`.
    fn update(&self, agg: Tensor, x: &Tensor, _h0: Option<&Tensor>) -> Tensor {
        self.lin_self.forward(x) + self.lin_neigh.forward(&agg)
    }
}
