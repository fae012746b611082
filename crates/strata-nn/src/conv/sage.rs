use super::linear::{Init, Linear};
use crate::message_passing::Adjacency;
use crate::ops::FastDropout;
use std::rc::Rc;
use tch::{nn, Tensor};

/// GraphSAGE with mean aggregation, Hamilton et al., "Inductive Representation Learning on
/// Large Graphs" (NeurIPS 2017), in PyG's form:
///
/// `x'_i = W_1 x_i + W_2 · mean_{j ∈ N(i)} x_j`.
///
/// Since the mean is linear, `W_2` is applied before aggregating when that is cheaper.
pub struct SageConv {
    lin_self: Linear,
    lin_neigh: Linear,
    adj: Rc<Adjacency>,
}

impl SageConv {
    pub fn new(vs: &nn::Path, adj: Rc<Adjacency>, fan_in: i64, fan_out: i64) -> SageConv {
        SageConv {
            lin_self: Linear::new(&(vs / "lin_self"), fan_in, fan_out, true, Init::TorchDefault),
            lin_neigh: Linear::new(&(vs / "lin_neigh"), fan_in, fan_out, false, Init::TorchDefault),
            adj,
        }
    }
    /// The same layer (shared parameters) on another graph's mean operator.
    pub fn on(&self, adj: Rc<Adjacency>) -> SageConv {
        SageConv { lin_self: self.lin_self.share(), lin_neigh: self.lin_neigh.share(), adj }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (fan_in, fan_out) = (self.lin_neigh.w.size()[0], self.lin_neigh.w.size()[1]);
        let neigh = if fan_out < fan_in {
            self.adj.propagate(&self.lin_neigh.forward(x))
        } else {
            self.lin_neigh.forward(&self.adj.propagate(x))
        };
        self.lin_self.forward(x) + neigh
    }
    /// First layer on raw (possibly sparse) input: both transforms are gathers.
    pub fn forward_input(&self, x: &crate::Input, dropout: f64, train: bool) -> Tensor {
        // One dropout mask for both paths, as in PyG where dropout precedes the layer.
        match x {
            crate::Input::Dense(d) => self.forward(&d.fast_dropout(dropout, train)),
            sparse => {
                let w = Tensor::cat(&[&self.lin_self.w, &self.lin_neigh.w], 1);
                let both = sparse.matmul(&w, dropout, train);
                let parts = both.split(self.lin_self.w.size()[1], 1);
                let own = match &self.lin_self.b {
                    Some(b) => &parts[0] + b,
                    None => parts[0].shallow_clone(),
                };
                own + self.adj.propagate(&parts[1])
            }
        }
    }
}
