use crate::input::Input;
use tch::{nn, Tensor};

/// Weight initialisation schemes.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    /// Glorot/Xavier uniform (PyG's GCN/GAT weights).
    Glorot,
    /// PyTorch's `nn.Linear` default (Kaiming uniform with a = √5, i.e. U(±1/√fan_in)).
    TorchDefault,
}

/// `y = x·W + b` with `W` stored as `[in, out]`, so sparse inputs can gather its rows.
pub struct Linear {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

impl Linear {
    pub fn new(vs: &nn::Path, fan_in: i64, fan_out: i64, bias: bool, init: Init) -> Linear {
        let bound = match init {
            Init::Glorot => (6.0 / (fan_in + fan_out) as f64).sqrt(),
            Init::TorchDefault => 1.0 / (fan_in as f64).sqrt(),
        };
        let w = vs.var("weight", &[fan_in, fan_out], nn::Init::Uniform { lo: -bound, up: bound });
        let b = bias.then(|| match init {
            Init::Glorot => vs.var("bias", &[fan_out], nn::Init::Const(0.0)),
            Init::TorchDefault => vs.var("bias", &[fan_out], nn::Init::Uniform { lo: -bound, up: bound }),
        });
        Linear { w, b }
    }
    /// The same parameters behind a second handle (gradients reach the same variables).
    pub fn share(&self) -> Linear {
        Linear { w: self.w.shallow_clone(), b: self.b.as_ref().map(Tensor::shallow_clone) }
    }
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match &self.b {
            Some(b) => x.matmul(&self.w) + b,
            None => x.matmul(&self.w),
        }
    }
    /// `dropout(X)·W + b` on the model input (dense or sparse).
    pub fn forward_input(&self, x: &Input, dropout: f64, train: bool) -> Tensor {
        let y = x.matmul(&self.w, dropout, train);
        match &self.b {
            Some(b) => y + b,
            None => y,
        }
    }
}
