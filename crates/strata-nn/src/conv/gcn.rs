use super::linear::{Init, Linear};
use crate::message_passing::{Adjacency, MessagePassing, Norm};
use tch::{nn, Tensor};

/// Graph convolution of Kipf & Welling, "Semi-Supervised Classification with Graph
/// Convolutional Networks" (ICLR 2017):
///
/// `X' = D̃^{-1/2} Ã D̃^{-1/2} X Θ + b`, with `Ã = A + I` and `D̃` its degree matrix
/// ([`crate::message_passing::gcn_norm`], computed once per graph).
///
/// [`GcnConv::forward`] transforms before propagating (cheaper when `out < in`); the
/// [`MessagePassing`] halves aggregate first, as engines that aggregate stored layer inputs
/// need (`Â·(XΘ) = (Â·X)·Θ`).
pub struct GcnConv {
    pub lin: Linear,
}

impl GcnConv {
    pub fn new(vs: &nn::Path, fan_in: i64, fan_out: i64) -> GcnConv {
        let mut lin = Linear::new(vs, fan_in, fan_out, false, Init::Glorot);
        lin.b = Some(vs.var("bias", &[fan_out], nn::Init::Const(0.0)));
        GcnConv { lin }
    }
    /// Propagates already-transformed features `XΘ` over `adj` and adds the bias.
    pub fn propagate(&self, adj: &Adjacency, xw: &Tensor) -> Tensor {
        self.add_bias(adj.propagate(xw))
    }
    /// `out + b`: the end of the layer for callers that propagated `XΘ` their own way.
    pub fn add_bias(&self, out: Tensor) -> Tensor {
        match &self.lin.b {
            Some(b) => out + b,
            None => out,
        }
    }
    pub fn forward(&self, adj: &Adjacency, x: &Tensor) -> Tensor {
        self.propagate(adj, &x.matmul(&self.lin.w))
    }
    /// [`MessagePassing::update`] without autograd, the bias added in place: exact full-graph
    /// inference holds one N × d output instead of two.
    pub fn update_inference(&self, agg: Tensor) -> Tensor {
        tch::no_grad(|| {
            let mut out = agg.matmul(&self.lin.w);
            drop(agg);
            if let Some(b) = &self.lin.b {
                let _ = out.g_add_(b);
            }
            out
        })
    }
}

impl MessagePassing for GcnConv {
    fn norm(&self) -> Norm {
        Norm::SymWithSelfLoops
    }
    /// `(Â·X)·Θ + b`.
    fn update(&self, agg: Tensor, _x: &Tensor, _h0: Option<&Tensor>) -> Tensor {
        self.add_bias(agg.matmul(&self.lin.w))
    }
}
