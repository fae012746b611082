use super::linear::{Init, Linear};
use crate::message_passing::Adjacency;
use std::rc::Rc;
use tch::{nn, Tensor};

/// Graph convolution of Kipf & Welling, "Semi-Supervised Classification with Graph
/// Convolutional Networks" (ICLR 2017):
///
/// `X' = D̃^{-1/2} Ã D̃^{-1/2} X Θ + b`, with `Ã = A + I` and `D̃` its degree matrix.
///
/// The transform is applied before propagation (cheaper when `out < in`); the normalised
/// operator is computed once per graph (see [`crate::GraphTensors`]).
pub struct GcnConv {
    pub lin: Linear,
    adj: Rc<Adjacency>,
}

impl GcnConv {
    pub fn new(vs: &nn::Path, adj: Rc<Adjacency>, fan_in: i64, fan_out: i64) -> GcnConv {
        GcnConv { lin: Linear::new(vs, fan_in, fan_out, false, Init::Glorot), adj }.with_bias(vs, fan_out)
    }
    fn with_bias(mut self, vs: &nn::Path, fan_out: i64) -> Self {
        self.lin.b = Some(vs.var("bias", &[fan_out], nn::Init::Const(0.0)));
        self
    }
    /// The same layer (shared parameters) on another graph's operator.
    pub fn on(&self, adj: Rc<Adjacency>) -> GcnConv {
        GcnConv { lin: self.lin.share(), adj }
    }
    /// Propagates already-transformed features `XΘ` and adds the bias.
    pub fn propagate(&self, xw: &Tensor) -> Tensor {
        let out = self.adj.propagate(xw);
        match &self.lin.b {
            Some(b) => out + b,
            None => out,
        }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.propagate(&x.matmul(&self.lin.w))
    }
}
