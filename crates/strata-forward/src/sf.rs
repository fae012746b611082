//! Single-forward (SF) node classification, §3.2 of the paper (reference
//! `forward_learning/nodeclass/gnn_sf.py`).
//!
//! One virtual node per class (features drawn once from N(0, 1)) is linked both ways to every
//! training node of its class; validation and test nodes are never linked. Layer ℓ computes
//! `h_ℓ = ReLU(conv_ℓ(‖h_{ℓ−1}‖₂-normalised rows))` on that augmented graph and is trained alone
//! with `CE(h_ℓ[train]·h_ℓ[VN]ᵀ / τ, y)` (Adam 1e-3, weight decay 5e-4, up to 1000 epochs,
//! validation every 2 epochs, patience 100 validations), then frozen; its output, detached, is the
//! next layer's input. A node's prediction sums the per-layer class distributions
//! `softmax(h_j[node]·h_j[VN]ᵀ / τ)` over the layers trained so far.

use crate::config::ForwardConfig;
use crate::layer::{accuracy, dense_features, fit_block, index_tensor, with_virtual_nodes, Block};
use crate::report::NodeRun;
use strata_graph::{Dataset, Split};
use tch::{Device, Kind, Tensor};

/// The SF graph context shared with the top-down variants: augmented graph, input features
/// (real rows then virtual-node rows), index tensors.
pub(crate) struct SfContext {
    pub graph: strata_nn::GraphTensors,
    pub x: Tensor,
    pub vn: Tensor,
    pub train: Tensor,
    pub val: Tensor,
    pub test: Tensor,
    pub labels: Tensor,
    pub classes: i64,
}

impl SfContext {
    pub fn new(data: &Dataset, split: &Split, device: Device) -> strata_nn::Result<SfContext> {
        let (n, c) = (data.num_nodes(), data.num_classes);
        let graph = with_virtual_nodes(data, split.train.iter().map(|&i| (i, data.labels[i] as usize)), device)?;
        let x = dense_features(data, device);
        let vn_features = Tensor::randn([c as i64, x.size()[1]], (Kind::Float, device));
        Ok(SfContext {
            graph,
            x: Tensor::cat(&[x, vn_features], 0),
            vn: Tensor::arange_start(n as i64, (n + c) as i64, (Kind::Int64, device)),
            train: index_tensor(&split.train, device),
            val: index_tensor(&split.val, device),
            test: index_tensor(&split.test, device),
            labels: Tensor::from_slice(&data.labels).to(device),
            classes: c as i64,
        })
    }
    /// `h[nodes]·h[VN]ᵀ / τ`.
    pub fn logits(&self, h: &Tensor, nodes: &Tensor, temperature: f64) -> Tensor {
        h.index_select(0, nodes).matmul(&h.index_select(0, &self.vn).tr()) / temperature
    }
    pub fn probs(&self, h: &Tensor, nodes: &Tensor, temperature: f64) -> Tensor {
        self.logits(h, nodes, temperature).softmax(-1, Kind::Float)
    }
    pub fn loss(&self, h: &Tensor, temperature: f64) -> Tensor {
        self.logits(h, &self.train, temperature).cross_entropy_for_logits(&self.labels.index_select(0, &self.train))
    }
    /// Accuracy of summed class distributions `p` on `nodes`.
    pub fn accuracy(&self, p: &Tensor, nodes: &Tensor) -> f64 {
        accuracy(&p.argmax(-1, false), &self.labels.index_select(0, nodes))
    }
    pub fn zeros(&self, nodes: &Tensor) -> Tensor {
        Tensor::zeros([nodes.size()[0], self.classes], (Kind::Float, self.x.device()))
    }
}

pub(crate) fn train(data: &Dataset, split: &Split, cfg: &ForwardConfig, device: Device) -> strata_nn::Result<NodeRun> {
    let ctx = SfContext::new(data, split, device)?;
    let tau = cfg.temperature;
    let mut h = ctx.x.shallow_clone();
    // Summed class distributions of the frozen layers, on validation and test nodes.
    let (mut sum_val, mut sum_test) = (ctx.zeros(&ctx.val), ctx.zeros(&ctx.test));
    let mut run = NodeRun::default();
    for layer in 0..cfg.layers {
        let mut block = Block::new(
            cfg.conv,
            &ctx.graph,
            h.size()[1],
            cfg.hidden,
            cfg.lr,
            cfg.weight_decay,
            &format!("layer{layer}"),
        )?;
        let input = block.prepare(&h);
        let fit = fit_block(
            &mut block,
            cfg,
            |b| ctx.loss(&b.forward(&input), tau),
            |b| ctx.accuracy(&(&sum_val + ctx.probs(&b.forward(&input), &ctx.val, tau)), &ctx.val),
        );
        h = tch::no_grad(|| block.forward(&input));
        sum_val += ctx.probs(&h, &ctx.val, tau);
        sum_test += ctx.probs(&h, &ctx.test, tau);
        run.layer_done(fit, ctx.accuracy(&sum_val, &ctx.val), ctx.accuracy(&sum_test, &ctx.test));
    }
    Ok(run)
}
