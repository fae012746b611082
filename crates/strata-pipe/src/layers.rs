//! The deep models the distributed modes train, as layer slots shared by pipeline stages and
//! graph partitions: slot 0 = input projection `relu(dropout(X)·W)` (also GCNII's h⁰), slots
//! 1..=L = graph convolutions, slot L+1 = classifier.
//!
//! GCN (Kipf & Welling, 2017): `h' = relu(Â·h·W + b)`.
//! GCNII (Chen et al., 2020), eq. 5: `h' = relu(((1−α)·Â·h + α·h⁰)·((1−β_l)·I + β_l·W))`,
//! `β_l = ln(θ/l + 1)`.

use crate::config::{PipeModel, PipelineConfig};
use std::ops::Range;
use strata_nn::conv::{Init, Linear};
use strata_nn::optim::Adam;
use tch::{nn, Device, Tensor};

/// Parameters of one graph-convolution slot.
pub struct ConvParams {
    pub slot: usize,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub beta: f64,
}

/// The slots a worker owns.
pub struct Layers {
    pub input: Option<Linear>,
    pub convs: Vec<ConvParams>,
    pub head: Option<Linear>,
}

/// Creates the parameters of the slots in `owned` in `vs` (dense slots in optimizer group 0,
/// convolutions in group 1). Every slot's initial weights are drawn in slot order from
/// `cfg.seed`, owned or not, so a slot's weights do not depend on where a split falls: every
/// pipeline split and every graph partition starts from the same model.
pub fn build(
    cfg: &PipelineConfig,
    features: i64,
    classes: i64,
    owned: Range<usize>,
    vs: &nn::VarStore,
    device: Device,
) -> Layers {
    tch::manual_seed(cfg.seed as i64);
    let root = vs.root();
    let (dense, conv) = (root.set_group(0), root.set_group(1));
    let d = cfg.hidden;
    let mut layers = Layers { input: None, convs: Vec::new(), head: None };
    for slot in 0..cfg.layers + 2 {
        let own = owned.contains(&slot);
        let scratch = nn::VarStore::new(device);
        let is_dense = slot == 0 || slot == cfg.layers + 1;
        let path = if !own {
            scratch.root()
        } else if is_dense {
            dense.clone()
        } else {
            conv.clone()
        };
        let p = path / format!("slot{slot}");
        if slot == 0 {
            let lin = Linear::new(&p, features, d, true, Init::TorchDefault);
            layers.input = own.then_some(lin);
        } else if slot == cfg.layers + 1 {
            let lin = Linear::new(&p, d, classes, true, Init::TorchDefault);
            layers.head = own.then_some(lin);
        } else {
            let a = (6.0 / (2 * d) as f64).sqrt();
            let weight = p.var("weight", &[d, d], nn::Init::Uniform { lo: -a, up: a });
            let bias = (cfg.model == PipeModel::Gcn).then(|| p.var("bias", &[d], nn::Init::Const(0.0)));
            if own {
                layers.convs.push(ConvParams { slot, weight, bias, beta: (cfg.theta / slot as f64 + 1.0).ln() });
            }
        }
    }
    layers
}

/// Adam with the model's two weight-decay groups.
/// (strata's own Adam, so checkpoints carry its moments and a resumed run continues exactly.)
pub fn optimizer(cfg: &PipelineConfig, vs: &nn::VarStore) -> Adam {
    Adam::new(vs, cfg.lr, &[cfg.weight_decay, cfg.weight_decay_conv])
}

/// GCNII's identity mapping `(1 − β_l)·I + β_l·W`, one d × d matrix.
pub fn gcnii_mix(p: &ConvParams) -> Tensor {
    let d = p.weight.size()[0];
    Tensor::eye(d, (p.weight.kind(), p.weight.device())) * (1.0 - p.beta) + &p.weight * p.beta
}

/// One convolution given its aggregated input `agg = Â·dropout(h)` (rows of the caller's vertices).
pub fn conv_update(cfg: &PipelineConfig, p: &ConvParams, agg: Tensor, h0: Option<&Tensor>) -> Tensor {
    match cfg.model {
        PipeModel::Gcnii => {
            let support = agg * (1.0 - cfg.alpha) + h0.expect("GCNII carries h0") * cfg.alpha;
            support.matmul(&gcnii_mix(p)).relu()
        }
        PipeModel::Gcn => (agg.matmul(&p.weight) + p.bias.as_ref().expect("GCN has a bias")).relu(),
    }
}

/// [`conv_update`] without autograd, in place where it can be: exact full-graph inference
/// keeps the aggregate, one output and h⁰ (three N × d tensors), not the six that the
/// out-of-place form holds at once. GCNII's mix is `lerp`, `(1−α)·agg + α·h⁰` up to rounding.
pub fn conv_update_inference(cfg: &PipelineConfig, p: &ConvParams, mut agg: Tensor, h0: Option<&Tensor>) -> Tensor {
    tch::no_grad(|| match cfg.model {
        PipeModel::Gcnii => {
            let _ = agg.lerp_(h0.expect("GCNII carries h0"), cfg.alpha);
            let mut out = agg.matmul(&gcnii_mix(p));
            drop(agg);
            let _ = out.relu_();
            out
        }
        PipeModel::Gcn => {
            let mut out = agg.matmul(&p.weight);
            drop(agg);
            let _ = out.g_add_(p.bias.as_ref().expect("GCN has a bias"));
            let _ = out.relu_();
            out
        }
    })
}

/// `Σ_e w_e · src[col_e]` into `rows` output rows shaped like `like`.
pub fn gather_add(out: Tensor, row: &Tensor, src: &Tensor, col: &Tensor, w: &Tensor) -> Tensor {
    out.index_add(0, row, &(src.index_select(0, col) * w.unsqueeze(-1)))
}
