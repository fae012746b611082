//! The deep models the distributed modes train, as layer slots shared by pipeline stages and
//! graph partitions: slot 0 = input projection `relu(dropout(X)·W)` (also GCNII's h⁰), slots
//! 1..=L = graph convolutions, slot L+1 = classifier (GNNPipe's model shape).
//!
//! The convolutions are strata-nn's layers ([`strata_nn::conv`]), the same code `strata train`
//! runs: an engine computes the aggregate its own way (chunks over historical embeddings,
//! partitions with halo rows) and calls the layer's [`MessagePassing::update`]. GCN (Kipf &
//! Welling, 2017): `h' = relu(Â·h·W + b)`; GCNII (Chen et al., 2020), eq. 5:
//! `h' = relu(((1−α)·Â·h + α·h⁰)·((1−β_l)·I + β_l·W))`, `β_l = ln(θ/l + 1)`; GraphSAGE
//! (Hamilton et al., 2017), mean aggregator: `h' = relu(W₁·h + W₂·mean_N(h))`.

use crate::config::{PipeModel, PipelineConfig};
use std::ops::Range;
use strata_nn::conv::{GatConv, Gcn2Conv, GcnConv, Init, Linear, SageConv};
use strata_nn::optim::Adam;
use strata_nn::{MessagePassing, Norm};
use tch::{nn, Device, Tensor};

/// One graph-convolution slot: a layer of the library.
pub enum Conv {
    Gcn(GcnConv),
    Gcnii(Gcn2Conv),
    Sage(SageConv),
    /// Graph attention (its aggregation is the attention: see [`crate::chunk_conv`]).
    Gat(GatConv),
}

/// Attention heads of the pipeline's GAT layers: 8 (the paper's) when they divide the width.
pub fn gat_heads(hidden: i64) -> i64 {
    [8, 4, 2].into_iter().find(|h| hidden % h == 0).unwrap_or(1)
}

/// A convolution slot and its index.
pub struct ConvParams {
    pub slot: usize,
    pub conv: Conv,
}

impl ConvParams {
    fn layer(&self) -> &dyn MessagePassing {
        match &self.conv {
            Conv::Gcn(c) => c,
            Conv::Gcnii(c) => c,
            Conv::Sage(c) => c,
            Conv::Gat(_) => unreachable!("attention has no separate update"),
        }
    }
    /// The slot's activation: ELU after attention (as in the GAT paper), ReLU otherwise.
    pub fn activate(&self, out: Tensor) -> Tensor {
        match &self.conv {
            Conv::Gat(_) => out.elu(),
            _ => out.relu(),
        }
    }
    /// `relu(update(agg))` for the slot's rows: `x` their (dropped-out) inputs, `h0a` GCNII's
    /// initial residual scaled, `α·H⁰` (formed once per chunk or forward).
    pub fn update(&self, agg: Tensor, x: &Tensor, h0a: Option<&Tensor>) -> Tensor {
        if let (Conv::Gcnii(_), None) = (&self.conv, h0a) {
            unreachable!("GCNII carries h0");
        }
        self.activate(self.layer().update(agg, x, h0a))
    }
    /// [`ConvParams::update`] without autograd, in place where the layer allows it.
    pub fn update_inference(&self, agg: Tensor, x: &Tensor, h0: Option<&Tensor>) -> Tensor {
        tch::no_grad(|| {
            let mut out = match &self.conv {
                Conv::Gcnii(c) => c.update_inference(agg, h0.expect("GCNII carries h0")),
                Conv::Gcn(c) => c.update_inference(agg),
                Conv::Sage(c) => c.update(agg, x, None),
                Conv::Gat(_) => unreachable!("attention has no separate update"),
            };
            let _ = out.relu_();
            out
        })
    }
}

/// The operator every convolution of `model` aggregates over.
pub fn norm(model: PipeModel) -> Norm {
    match model {
        PipeModel::Gcn | PipeModel::Gcnii => Norm::SymWithSelfLoops,
        PipeModel::Sage => Norm::Mean,
        PipeModel::Gat => Norm::SelfLoops,
    }
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
            let c = match cfg.model {
                PipeModel::Gcn => Conv::Gcn(GcnConv::new(&p, d, d)),
                PipeModel::Gcnii => Conv::Gcnii(Gcn2Conv::new(&p, d, cfg.alpha, cfg.theta, slot)),
                PipeModel::Sage => Conv::Sage(SageConv::new(&p, d, d)),
                PipeModel::Gat => {
                    let heads = gat_heads(d);
                    Conv::Gat(GatConv::new(&p, d, d / heads, heads, true))
                }
            };
            if own {
                layers.convs.push(ConvParams { slot, conv: c });
            }
        }
    }
    layers
}

/// The parameters of `named` (variable names `slotN.…`) whose slot lies in `slots`: one
/// stage's share of a whole model.
pub fn slots_share(named: &[(String, Tensor)], slots: Range<usize>) -> Vec<(String, Tensor)> {
    named
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("slot")
                .and_then(|r| r.split_once('.'))
                .and_then(|(n, _)| n.parse::<usize>().ok())
                .is_some_and(|slot| slots.contains(&slot))
        })
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect()
}

/// Adam with the model's two weight-decay groups.
/// (strata's own Adam, so checkpoints carry its moments and a resumed run continues exactly.)
pub fn optimizer(cfg: &PipelineConfig, vs: &nn::VarStore) -> Adam {
    Adam::new(vs, cfg.lr, &[cfg.weight_decay, cfg.weight_decay_conv])
}

/// `Σ_e w_e · src[col_e]` into `rows` output rows shaped like `like`.
pub fn gather_add(out: Tensor, row: &Tensor, src: &Tensor, col: &Tensor, w: &Tensor) -> Tensor {
    out.index_add(0, row, &(src.index_select(0, col) * w.unsqueeze(-1)))
}
