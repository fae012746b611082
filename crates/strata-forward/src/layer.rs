//! What every ForwardGNN trainer shares: the building block `ReLU(conv(x))` with its own
//! optimiser, the row L2 normalisation between blocks, the virtual-node graph augmenter, and
//! greedy per-layer training with early stopping.

use std::rc::Rc;
use strata_graph::Dataset;
use strata_nn::conv::{GatConv, GcnConv, SageConv};
use strata_nn::{Adjacency, GraphTensors, Input, Kernel, MessagePassing, ModelKind, NnError, Norm, Patience, Progress};
use tch::nn::OptimizerConfig;
use tch::{nn, Device, Kind, Tensor};

/// One of the layer library's convolutions.
pub(crate) enum Layer {
    Gcn(GcnConv),
    Sage(SageConv),
    Gat(GatConv),
}

/// A layer with the operator of the graph it runs on; [`Conv::on`] gives the same weights on
/// another graph (the library's layers take their operator per call).
pub(crate) struct Conv {
    layer: Rc<Layer>,
    adj: Rc<Adjacency>,
}

impl Conv {
    /// GCN, SAGE (mean) or GAT (4 concatenated heads of `out/4`), as the reference's `GNNConv`.
    pub fn new(kind: ModelKind, p: &nn::Path, graph: &GraphTensors, fan_in: i64, out: i64) -> strata_nn::Result<Conv> {
        let layer = match kind {
            ModelKind::Gcn => Layer::Gcn(GcnConv::new(p, fan_in, out)),
            ModelKind::Sage => Layer::Sage(SageConv::new(p, fan_in, out)),
            ModelKind::Gat if out % 4 == 0 => Layer::Gat(GatConv::new(p, fan_in, out / 4, 4, true)),
            ModelKind::Gat => {
                return Err(NnError::Config(format!("GAT layers use 4 heads: the width {out} must be a multiple of 4")))
            }
            other => {
                return Err(NnError::Config(format!("ForwardGNN layers are gcn, sage or gat, not {}", other.name())))
            }
        };
        let adj = graph.adjacency(Self::norm_of(&layer));
        Ok(Conv { layer: Rc::new(layer), adj })
    }

    fn norm_of(layer: &Layer) -> Norm {
        match layer {
            Layer::Gcn(c) => c.norm(),
            Layer::Sage(c) => c.norm(),
            Layer::Gat(_) => Norm::SelfLoops,
        }
    }

    /// The same parameters applied on `graph`.
    pub fn on(&self, graph: &GraphTensors) -> Conv {
        Conv { layer: self.layer.clone(), adj: graph.adjacency(Self::norm_of(&self.layer)) }
    }

    /// `conv(x)`. `x` may be a sparse COO matrix for GCN and GAT (raw bag-of-words input): the
    /// product `x·W` is then a sparse one, two orders of magnitude fewer operations.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let adj = &self.adj;
        match &*self.layer {
            Layer::Gcn(c) if x.is_sparse() => c.propagate(adj, &x.mm(&c.lin.w)),
            Layer::Gcn(c) => c.forward(adj, x),
            Layer::Sage(c) => c.forward(adj, &x.to_dense(None, false)),
            Layer::Gat(c) if x.is_sparse() => c.attend(adj, &x.mm(&c.lin.w), 0.0, false),
            Layer::Gat(c) => c.forward(adj, x, 0.0, false),
        }
    }

    /// `conv([p₀ ‖ p₁ ‖ …])` without building the concatenation: the transform is linear, so
    /// `[p₀ ‖ p₁]·W = p₀·W₀ + p₁·W₁` (each part may be sparse).
    pub fn forward_parts(&self, parts: &[&Tensor]) -> Tensor {
        let project = |w: &Tensor| {
            let mut offset = 0;
            let mut sum: Option<Tensor> = None;
            for p in parts {
                let width = p.size()[1];
                let y = p.mm(&w.narrow(0, offset, width));
                offset += width;
                sum = Some(match sum {
                    Some(s) => s + y,
                    None => y,
                });
            }
            sum.expect("at least one part")
        };
        let adj = &self.adj;
        match &*self.layer {
            Layer::Gcn(c) => c.propagate(adj, &project(&c.lin.w)),
            Layer::Gat(c) => c.attend(adj, &project(&c.lin.w), 0.0, false),
            Layer::Sage(c) => {
                c.forward(adj, &Tensor::cat(&parts.iter().map(|p| p.to_dense(None, false)).collect::<Vec<_>>(), 1))
            }
        }
    }

    fn takes_sparse(&self) -> bool {
        !matches!(&*self.layer, Layer::Sage(_))
    }
}

pub(crate) use strata_nn::ops::l2_rows;

/// One block `ReLU(conv(·))` with its own Adam (coupled L2, as `torch.optim.Adam`).
pub(crate) struct Block {
    pub vs: nn::VarStore,
    pub conv: Conv,
    opt: nn::Optimizer,
}

impl Block {
    pub fn new(
        kind: ModelKind,
        graph: &GraphTensors,
        fan_in: i64,
        out: i64,
        lr: f64,
        weight_decay: f64,
        name: &str,
    ) -> strata_nn::Result<Block> {
        let vs = nn::VarStore::new(graph.device);
        let conv = Conv::new(kind, &(vs.root() / name), graph, fan_in, out)?;
        let mut opt = nn::Adam::default().build(&vs, lr)?;
        opt.set_weight_decay(weight_decay);
        Ok(Block { vs, conv, opt })
    }

    /// `ReLU(conv(x))`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.conv.forward(x).relu()
    }

    /// `ReLU(conv([p₀ ‖ p₁ ‖ …]))`.
    pub fn forward_parts(&self, parts: &[&Tensor]) -> Tensor {
        self.conv.forward_parts(parts).relu()
    }

    /// Input as this block consumes it: row-normalised, detached, and sparse when that pays.
    pub fn prepare(&self, x: &Tensor) -> Tensor {
        let x = l2_rows(&x.to_dense(None, false)).detach();
        sparse_if_worth(x, self.conv.takes_sparse())
    }

    pub fn step(&mut self, loss: &Tensor, clip_norm: Option<f64>) {
        strata_nn::memory::sample();
        match clip_norm {
            Some(max) => self.opt.backward_step_clip_norm(loss, max),
            None => self.opt.backward_step(loss),
        }
    }
}

/// Raw bag-of-words rows are >90 % zeros, hidden states are not.
pub(crate) fn sparse_if_worth(x: Tensor, allowed: bool) -> Tensor {
    if allowed && !x.is_sparse() && x.ne(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]) < 0.1 {
        x.to_sparse_sparse_dim(2).coalesce()
    } else {
        x
    }
}

/// Epochs a block (or a jointly trained stack) ran, and the time its training steps took.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fit {
    pub epochs: usize,
    pub step_seconds: f64,
}

impl Fit {
    pub fn step_ms(&self) -> f64 {
        if self.epochs == 0 {
            0.0
        } else {
            self.step_seconds * 1e3 / self.epochs as f64
        }
    }
}

/// Trains one block greedily: `loss` is the training step's loss, `validate` the validation
/// score (higher is better) every `val_every` epochs; stops after `patience` validations without
/// improvement and restores the best weights.
pub(crate) fn fit_block(
    block: &mut Block,
    cfg: &crate::config::ForwardConfig,
    mut loss: impl FnMut(&Block) -> Tensor,
    mut validate: impl FnMut(&Block) -> f64,
) -> Fit {
    let mut stopper = Patience::maximising(cfg.patience);
    let mut saved = strata_nn::checkpoint::snapshot(&block.vs);
    let mut fit = Fit::default();
    for epoch in 1..=cfg.epochs {
        fit.epochs = epoch;
        let t0 = std::time::Instant::now();
        let l = loss(block);
        block.step(&l, None);
        fit.step_seconds += t0.elapsed().as_secs_f64();
        if epoch % cfg.val_every == 0 {
            let score = tch::no_grad(|| validate(block));
            tracing::debug!(epoch, loss = l.double_value(&[]), validation = score, "forward layer");
            match stopper.record(score) {
                Progress::Improved => saved = strata_nn::checkpoint::snapshot(&block.vs),
                Progress::Stop => break,
                Progress::Waiting => {}
            }
        }
    }
    strata_nn::checkpoint::restore(&block.vs, &saved);
    fit
}

/// The real graph (symmetrised) plus `C` virtual class nodes (ids `n..n+C`), each `(node, class)`
/// in `links` joined both ways to its class's virtual node ([`CsrGraph::with_virtual_nodes`]).
pub(crate) fn with_virtual_nodes(
    data: &Dataset,
    links: impl IntoIterator<Item = (usize, usize)>,
    device: Device,
) -> strata_nn::Result<GraphTensors> {
    let g = data.graph.with_virtual_nodes(data.num_classes, links)?;
    Ok(GraphTensors::new(&g, device, Kernel::EdgeList))
}

/// Row-normalised (PyG `NormalizeFeatures`) features, dense, on `device`.
pub(crate) fn dense_features(data: &Dataset, device: Device) -> Tensor {
    match Input::from_features(&data.features, device, strata_graph::FeatureNorm::Auto) {
        Input::Dense(t) => t,
        sparse => sparse.to_dense(),
    }
}

pub(crate) fn index_tensor(v: &[usize], device: Device) -> Tensor {
    Tensor::from_slice(&v.iter().map(|&i| i as i64).collect::<Vec<_>>()).to(device)
}

/// Fraction of `pred` equal to `labels`.
pub(crate) fn accuracy(pred: &Tensor, labels: &Tensor) -> f64 {
    pred.eq_tensor(labels).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

/// For every training node, the C−1 wrong classes in a random order (drawn once, as the
/// reference's negatives): `[n_train, C−1]`.
pub(crate) fn wrong_class_permutations(y_train: &Tensor, classes: i64) -> Tensor {
    let n = y_train.size()[0];
    let device = y_train.device();
    // Uniform keys with the true class pushed last, then argsort.
    let keys = Tensor::rand([n, classes], (Kind::Float, device));
    let keys = keys.scatter_value(1, &y_train.unsqueeze(1), 2.0);
    keys.argsort(1, false).narrow(1, 0, classes - 1)
}
