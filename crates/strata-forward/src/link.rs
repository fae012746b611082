//! Forward link prediction, §3.4 of the paper (Eq. 9, Alg. 4; reference
//! `forward_learning/linkpred/gnn_forward.py`, models `GNN_FL-CE` and `GNN_FL-FF`).
//!
//! Layer ℓ computes `z_ℓ = ReLU(conv_ℓ(‖z_{ℓ−1}‖₂-normalised rows))` on the training graph and is
//! trained alone on the training edges and as many negatives (drawn once) with, per pair
//! `p = z_u ⊙ z_v`, the mean loss over the positives plus the mean over the negatives (the
//! reference's sum of the two terms):
//! - `sf`: `BCEWithLogits(Σ_d p_d, label)`;
//! - `ff`: `BCEWithLogits(Σ_d p_d² − θ, label)` (the forward-forward goodness).
//!
//! It early-stops on validation ROC-AUC, then is frozen. A pair's score is the mean over layers
//! of `σ(Σ_d p_d)` (sf) or `σ(Σ_d p_d² − θ)` (ff). (The reference also averages in zeros for
//! its normalisation layers, which only halves every score.) Training and validation pass
//! messages over the training edges; test pairs are scored on embeddings whose messages pass
//! over the training and validation edges, as PyG's `RandomLinkSplit` gives the reference.

use crate::config::ForwardConfig;
use crate::layer::{fit_block, Block, Fit};
use serde::Serialize;
use std::path::Path;
use strata_nn::linkpred::pair_tensors;
use strata_nn::memory::MemoryMeter;
use strata_nn::{GraphTensors, LinkMetrics, LinkTask, NnError};
use tch::{Device, Kind, Reduction, Tensor};

/// A forward link-prediction trainer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkTrainer {
    Sf,
    Ff,
}

impl LinkTrainer {
    pub fn name(self) -> &'static str {
        match self {
            LinkTrainer::Sf => "sf",
            LinkTrainer::Ff => "ff",
        }
    }
}

impl std::str::FromStr for LinkTrainer {
    type Err = NnError;
    fn from_str(s: &str) -> Result<LinkTrainer, NnError> {
        match s {
            "sf" => Ok(LinkTrainer::Sf),
            "ff" => Ok(LinkTrainer::Ff),
            _ => Err(NnError::Config(format!("unknown link trainer `{s}`: expected sf or ff"))),
        }
    }
}

/// A stack of forward-trained layers and the score they were trained for.
pub struct ForwardLinkModel {
    pub trainer: LinkTrainer,
    pub theta: f64,
    pub hidden: i64,
    blocks: Vec<Block>,
}

impl ForwardLinkModel {
    pub fn layers(&self) -> usize {
        self.blocks.len()
    }

    /// Fresh layers for `cfg` on `graph` with `fan_in` input features (for loading weights).
    pub fn new(
        trainer: LinkTrainer,
        cfg: &ForwardConfig,
        graph: &GraphTensors,
        fan_in: i64,
    ) -> strata_nn::Result<ForwardLinkModel> {
        let blocks = (0..cfg.layers)
            .map(|l| {
                Block::new(
                    cfg.conv,
                    graph,
                    if l == 0 { fan_in } else { cfg.hidden },
                    cfg.hidden,
                    cfg.lr,
                    cfg.weight_decay,
                    &format!("layer{l}"),
                )
            })
            .collect::<strata_nn::Result<Vec<_>>>()?;
        Ok(ForwardLinkModel { trainer, theta: cfg.theta, hidden: cfg.hidden, blocks })
    }

    /// Every layer's embedding, concatenated: `[n, layers·hidden]`.
    pub fn embed(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let mut h = x.shallow_clone();
            let mut out = Vec::with_capacity(self.blocks.len());
            for b in &self.blocks {
                h = b.forward(&b.prepare(&h));
                out.push(h.shallow_clone());
            }
            Tensor::cat(&out, 1)
        })
    }

    /// [`ForwardLinkModel::embed`] with every layer's messages passing over `graph` instead of
    /// the one the layers were built on (the training + validation edges for test pairs).
    pub fn embed_on(&self, x: &Tensor, graph: &GraphTensors) -> Tensor {
        tch::no_grad(|| {
            let mut h = x.shallow_clone();
            let mut out = Vec::with_capacity(self.blocks.len());
            for b in &self.blocks {
                h = b.conv.on(graph).forward(&b.prepare(&h)).relu();
                out.push(h.shallow_clone());
            }
            Tensor::cat(&out, 1)
        })
    }

    /// Logit of each pair under one layer's embedding `z`.
    fn layer_logit(&self, z: &Tensor, src: &Tensor, dst: &Tensor) -> Tensor {
        let p = z.index_select(0, src) * z.index_select(0, dst);
        match self.trainer {
            LinkTrainer::Sf => p.sum_dim_intlist(1, false, Kind::Float),
            LinkTrainer::Ff => p.square().sum_dim_intlist(1, false, Kind::Float) - self.theta,
        }
    }

    /// Scores in [0, 1] from embeddings made by [`ForwardLinkModel::embed`].
    pub fn score(&self, z: &Tensor, src: &Tensor, dst: &Tensor) -> Tensor {
        let per_layer = z.split(self.hidden, 1);
        per_layer.iter().map(|z| self.layer_logit(z, src, dst).sigmoid()).sum::<Tensor>() / per_layer.len() as f64
    }

    /// All layers' weights in one safetensors file (atomic).
    pub fn save(&self, path: &Path) -> strata_nn::Result<()> {
        let vars: Vec<(String, Tensor)> = self
            .blocks
            .iter()
            .flat_map(|b| b.vs.variables().into_iter())
            .map(|(k, v)| (k, v.to(Device::Cpu)))
            .collect();
        let named: Vec<(&str, &Tensor)> = vars.iter().map(|(k, v)| (k.as_str(), v)).collect();
        strata_nn::checkpoint::save_tensors(path, &named)
    }

    pub fn load(&mut self, path: &Path) -> strata_nn::Result<()> {
        for b in &self.blocks {
            for (name, mut var) in b.vs.variables() {
                let t = strata_nn::checkpoint::load_tensor(path, &name)?;
                if t.size() != var.size() {
                    return Err(NnError::Config(format!(
                        "{}: `{name}` has shape {:?}, the model expects {:?}",
                        path.display(),
                        t.size(),
                        var.size()
                    )));
                }
                tch::no_grad(|| var.copy_(&t));
            }
        }
        Ok(())
    }
}

/// One run's result.
#[derive(Clone, Debug, Serialize)]
pub struct LinkRun {
    pub trainer: LinkTrainer,
    pub val: LinkMetrics,
    pub test: LinkMetrics,
    /// Test ROC-AUC of the score from layers 1..=ℓ, for each ℓ.
    pub per_layer_auc: Vec<f64>,
    pub epochs: Vec<usize>,
    /// Σ over layers of one training step of that layer.
    pub epoch_ms: f64,
    pub train_seconds: f64,
    pub peak_memory_bytes: u64,
    pub memory_method: &'static str,
}

fn scores_vec(t: &Tensor) -> Vec<f32> {
    strata_nn::ops::host_vec::<f32>(t)
}

/// Trains `cfg.layers` forward layers on `task`'s training graph with `seed`.
// Long on purpose: the reference's per-layer link training (Alg. 4) kept whole, so it reads against the paper's algorithm.
pub fn train_links(
    task: &LinkTask,
    trainer: LinkTrainer,
    cfg: &ForwardConfig,
    seed: u64,
) -> strata_nn::Result<(ForwardLinkModel, LinkRun)> {
    cfg.validate()?;
    tch::manual_seed(seed as i64);
    let device = task.graph.device;
    let meter = MemoryMeter::start(device);
    let t0 = std::time::Instant::now();
    let x = task.input.to_dense();
    let mut model = ForwardLinkModel::new(trainer, cfg, &task.graph, x.size()[1])?;
    let s = &task.split;
    let (pos_s, pos_d) = pair_tensors(&s.train_pos, device);
    let (neg_s, neg_d) = task.sample_negatives(s.train_pos.len(), seed ^ 0x5eed);
    let (src, dst) = (Tensor::cat(&[pos_s, neg_s.shallow_clone()], 0), Tensor::cat(&[pos_d, neg_d], 0));
    let labels = Tensor::cat(
        &[
            Tensor::ones([s.train_pos.len() as i64], (Kind::Float, device)),
            Tensor::zeros([neg_s.size()[0]], (Kind::Float, device)),
        ],
        0,
    );
    let pairs = |p: &[(usize, usize)]| pair_tensors(p, device);
    let sets = [(pairs(&s.val_pos), pairs(&s.val_neg)), (pairs(&s.test_pos), pairs(&s.test_neg))];
    // Σ over frozen layers of σ(layer logit), per evaluation set: [val pos, val neg], [test pos, test neg].
    let mut sums: Vec<[Tensor; 2]> = sets
        .iter()
        .map(|(p, n)| [p.0.zeros_like().to_kind(Kind::Float), n.0.zeros_like().to_kind(Kind::Float)])
        .collect();
    let metrics = |sum: &[Tensor; 2], layers: usize| {
        LinkMetrics::of(&scores_vec(&(&sum[0] / layers as f64)), &scores_vec(&(&sum[1] / layers as f64)))
    };
    let train_val = GraphTensors::new(&s.train_val_graph()?, device, task.graph.kernel);
    let mut h_test = x.shallow_clone();
    let mut h = x;
    let (mut per_layer_auc, mut epochs, mut epoch_ms) = (Vec::new(), Vec::new(), 0.0);
    let blocks = std::mem::take(&mut model.blocks);
    for (l, mut block) in blocks.into_iter().enumerate() {
        let input = block.prepare(&h);
        let logit = |z: &Tensor, (a, b): &(Tensor, Tensor)| model.layer_logit(z, a, b);
        let fit: Fit = fit_block(
            &mut block,
            cfg,
            |b| {
                // The reference sums the positive and the negative term (each a mean), which
                // weighs the data twice against the weight decay compared with one mean.
                let per_pair = logit(&b.forward(&input), &(src.shallow_clone(), dst.shallow_clone()))
                    .binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, Reduction::None);
                let (p, n) = (s.train_pos.len() as i64, neg_s.size()[0]);
                per_pair.narrow(0, 0, p).mean(Kind::Float) + per_pair.narrow(0, p, n).mean(Kind::Float)
            },
            |b| {
                let z = b.forward(&input);
                let (p, n) = &sets[0];
                let cur = [&sums[0][0] + logit(&z, p).sigmoid(), &sums[0][1] + logit(&z, n).sigmoid()];
                metrics(&cur, l + 1).roc_auc
            },
        );
        h = tch::no_grad(|| block.forward(&input));
        h_test = tch::no_grad(|| block.conv.on(&train_val).forward(&block.prepare(&h_test)).relu());
        for (i, z) in [&h, &h_test].into_iter().enumerate() {
            let (p, n) = &sets[i];
            sums[i][0] += logit(z, p).sigmoid();
            sums[i][1] += logit(z, n).sigmoid();
        }
        per_layer_auc.push(metrics(&sums[1], l + 1).roc_auc);
        epochs.push(fit.epochs);
        epoch_ms += fit.step_ms();
        model.blocks.push(block);
    }
    let layers = model.blocks.len();
    let run = LinkRun {
        trainer,
        val: metrics(&sums[0], layers),
        test: metrics(&sums[1], layers),
        per_layer_auc,
        epochs,
        epoch_ms,
        train_seconds: t0.elapsed().as_secs_f64(),
        peak_memory_bytes: meter.peak_bytes(),
        memory_method: meter.method(),
    };
    Ok((model, run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_graph::synthetic::{synthetic, Signal, SyntheticSpec};
    use strata_graph::LinkSplit;

    /// On a graph with community structure, both forward link trainers rank held-out edges far
    /// above random pairs, and a saved model scores identically after loading.
    #[test]
    fn forward_link_trainers_learn_and_round_trip() {
        let mut spec = SyntheticSpec::new(Signal::Both, false);
        spec.nodes = 600;
        let d = synthetic(&spec);
        let split = LinkSplit::new(&d.graph, 0.1, 0.2, 0).unwrap();
        let task = LinkTask::new(
            split,
            &d.features,
            Device::Cpu,
            strata_graph::FeatureNorm::Auto,
            strata_nn::Kernel::EdgeList,
        );
        let cfg = ForwardConfig { layers: 2, hidden: 32, epochs: 300, patience: 100, lr: 1e-2, ..Default::default() };
        for trainer in [LinkTrainer::Sf, LinkTrainer::Ff] {
            let (model, run) = train_links(&task, trainer, &cfg, 0).unwrap();
            assert!(run.test.roc_auc > 0.75, "{trainer:?}: {run:?}");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.safetensors");
            model.save(&path).unwrap();
            let mut loaded = ForwardLinkModel::new(trainer, &cfg, &task.graph, task.input.dim()).unwrap();
            loaded.load(&path).unwrap();
            let x = task.input.to_dense();
            let (s, t) = pair_tensors(&task.split.test_pos, Device::Cpu);
            let a = model.score(&model.embed(&x), &s, &t);
            let b = loaded.score(&loaded.embed(&x), &s, &t);
            assert!(a.allclose(&b, 1e-6, 1e-6, false));
        }
    }
}
