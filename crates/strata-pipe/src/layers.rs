//! The deep models the distributed modes train, as layer slots shared by pipeline stages and
//! graph partitions: slot 0 = input projection `relu(dropout(X)·W)` (also GCNII's h⁰), slots
//! 1..=L = graph convolutions, slot L+1 = classifier.
//!
//! GCN (Kipf & Welling, 2017): `h' = relu(Â·h·W + b)`.
//! GCNII (Chen et al., 2020), eq. 5: `h' = relu(((1−α)·Â·h + α·h⁰)·((1−β_l)·I + β_l·W))`,
//! `β_l = ln(θ/l + 1)`.

use crate::pipeline::PipelineConfig;
use crate::stage::PipeModel;
use std::ops::Range;
use strata_nn::conv::{Init, Linear};
use strata_nn::optim::Adam;
use tch::{nn, Device, Kind, Tensor};

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

/// A worker's checkpointable state: its parameters (`param.<name>`), the optimizer's moments,
/// and `extra` (historical buffers).
pub fn state(vs: &nn::VarStore, opt: &Adam, extra: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(k, v)| (format!("param.{k}"), v.to(Device::Cpu).copy())).collect();
    out.extend(opt.state());
    out.extend(extra);
    out
}

/// Restores [`state`] into `vs` and `opt`; a missing or misshapen tensor is named.
pub fn load_state(
    vs: &nn::VarStore,
    opt: &mut Adam,
    named: &std::collections::HashMap<String, Tensor>,
) -> Result<(), String> {
    for (k, mut v) in vs.variables() {
        let key = format!("param.{k}");
        let t = named.get(&key).ok_or_else(|| format!("checkpoint lacks `{key}`"))?;
        if t.size() != v.size() {
            return Err(format!(
                "checkpoint `{key}` has shape {:?}, this stage's parameter {:?}: a different model or split",
                t.size(),
                v.size()
            ));
        }
        tch::no_grad(|| v.copy_(t));
    }
    opt.load_state(named).map_err(|e| e.to_string())
}

/// Copies `named[key]` into `dst`, checking the shape.
pub fn load_buffer(named: &std::collections::HashMap<String, Tensor>, key: &str, dst: &Tensor) -> Result<(), String> {
    let t = named.get(key).ok_or_else(|| format!("checkpoint lacks `{key}`"))?;
    if t.size() != dst.size() {
        return Err(format!("checkpoint `{key}` has shape {:?}, expected {:?}", t.size(), dst.size()));
    }
    tch::no_grad(|| dst.shallow_clone().copy_(t));
    Ok(())
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

/// All trainable gradients as one flat vector (zeros for unused parameters), in creation order.
pub fn flat_grads(vs: &nn::VarStore) -> Tensor {
    let parts: Vec<Tensor> = vs
        .trainable_variables()
        .iter()
        .map(|v| {
            let g = v.grad();
            if g.defined() {
                g.reshape([-1])
            } else {
                Tensor::zeros([v.numel() as i64], (Kind::Float, v.device()))
            }
        })
        .collect();
    if parts.is_empty() {
        Tensor::zeros([0], (Kind::Float, Device::Cpu))
    } else {
        Tensor::cat(&parts, 0)
    }
}

/// Gives every trainable parameter a defined (zero) gradient, so [`flat_grads`] and
/// [`set_flat_grads`] see the same layout on every worker even where a parameter got no
/// gradient this epoch (e.g. a partition without training nodes).
pub fn define_grads(vs: &nn::VarStore) {
    let vars = vs.trainable_variables();
    if let Some(first) = vars.first() {
        let zero =
            vars.iter().fold(Tensor::zeros([], (Kind::Float, first.device())), |acc, v| acc + v.sum(Kind::Float) * 0.0);
        zero.backward();
    }
}

/// Writes a flat vector from [`flat_grads`] back into the gradients (defined by [`define_grads`]).
pub fn set_flat_grads(vs: &nn::VarStore, flat: &Tensor) {
    let mut off = 0;
    tch::no_grad(|| {
        for v in vs.trainable_variables() {
            let n = v.numel() as i64;
            let mut g = v.grad();
            g.copy_(&flat.narrow(0, off, n).view_as(&v).to_device(v.device()));
            off += n;
        }
    });
}

/// The collective operations a worker offers a stage (no-ops in a single process).
pub trait Exchange {
    /// Sends `outgoing[i].1` to way `outgoing[i].0` and returns the tensor each way in
    /// `incoming` sent, in that order; `tag` and `slot` keep concurrent exchanges apart.
    fn halo(
        &mut self,
        tag: &str,
        slot: usize,
        outgoing: &[(usize, Tensor)],
        incoming: &[usize],
    ) -> Result<Vec<Tensor>, String>;
    /// Sums `flat` over the ways holding the same layers (a ring all-reduce).
    fn all_reduce(&mut self, flat: Tensor) -> Result<Tensor, String>;
}

/// The single-process exchange: nothing to send, nobody to sum with.
pub struct Alone;

impl Exchange for Alone {
    fn halo(&mut self, _: &str, _: usize, _: &[(usize, Tensor)], incoming: &[usize]) -> Result<Vec<Tensor>, String> {
        if incoming.is_empty() {
            Ok(Vec::new())
        } else {
            Err("a single process has no other ways to receive halo rows from".into())
        }
    }
    fn all_reduce(&mut self, flat: Tensor) -> Result<Tensor, String> {
        Ok(flat)
    }
}
