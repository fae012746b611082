//! What every engine shares: its spec, parameters and optimizer, the labels and the split, the
//! loss, scoring, seeding, checkpointable state and the step after the all-reduce. The
//! [`Engine`] trait is what differs between a pipeline stage, a forward-only stage and a
//! graph-parallel way; the [`interpreter`](crate::interpreter) drives both.

use crate::boundary::{Boundary, BoundaryShape};
use crate::config::StageSpec;
use crate::error::PipeError;
use crate::schedule::{Halo, Part};
use strata_nn::optim::Adam;
use tch::{nn, Device, Kind, Tensor};

/// The state and operations every engine has.
pub struct StageCore {
    pub spec: StageSpec,
    pub vs: nn::VarStore,
    pub opt: Adam,
    /// Labels of every vertex (global ids).
    labels: Vec<i64>,
    /// The epoch being run, and whether it trains.
    pub epoch: u64,
    pub train: bool,
    /// This worker's share of the epoch's mean training loss.
    pub last_loss: f64,
    /// The inference pass being run fills the historical embeddings (the warm start).
    pub warm: bool,
    /// Inference passes keep the last stage's output in [`StageCore::outputs`] (`strata
    /// predict`).
    pub capture: bool,
    /// The last inference pass's node embeddings (what the classifier reads) and logits, on
    /// the last stage of a run with [`StageCore::capture`] set.
    pub outputs: Option<(Tensor, Tensor)>,
}

impl StageCore {
    /// `all_reduced`: the weight gradients are summed over ways, so every parameter gets a
    /// defined (zero) gradient up front and the flat layout is the same on every way.
    pub fn new(spec: StageSpec, vs: nn::VarStore, opt: Adam, labels: Vec<i64>, all_reduced: bool) -> StageCore {
        if all_reduced {
            crate::collective::define_grads(&vs);
        }
        StageCore {
            spec,
            vs,
            opt,
            labels,
            epoch: 0,
            train: false,
            last_loss: 0.0,
            warm: false,
            capture: false,
            outputs: None,
        }
    }
    pub fn parameters(&self) -> usize {
        self.vs.trainable_variables().iter().map(|t| t.numel()).sum()
    }
    pub fn device(&self) -> Device {
        self.vs.device()
    }
    /// The global label of vertex `v`.
    pub fn label(&self, v: usize) -> i64 {
        self.labels[v]
    }

    /// A seed for libtorch's generator from the run's seed, a stream (e.g. epoch and chunk)
    /// and a layer slot: the same draw wherever the same computation runs.
    pub fn seed(&self, stream: u64, slot: usize) -> i64 {
        (self.spec.config.seed.wrapping_mul(1_000_003) ^ (stream.wrapping_mul(1024) + slot as u64)) as i64
    }

    /// Starts an epoch: clears the gradients and the loss.
    pub fn begin(&mut self, epoch: u64, train: bool) {
        self.epoch = epoch;
        self.train = train;
        self.last_loss = 0.0;
        if train {
            self.opt.zero_grad();
        }
    }

    /// `Σ CE(logits[rows], y[rows]) / |train|` for the training vertices among `first..first +
    /// logits.rows` (global ids): this worker's share of the mean loss; `None` when it has none.
    pub fn loss_share(&self, logits: &Tensor, first: usize) -> Option<Tensor> {
        let n = logits.size()[0] as usize;
        let mut local: Vec<i64> =
            self.spec.train.iter().filter(|&&v| v >= first && v < first + n).map(|&v| (v - first) as i64).collect();
        local.sort_unstable();
        if local.is_empty() {
            return None;
        }
        let y: Vec<i64> = local.iter().map(|&i| self.labels[first + i as usize]).collect();
        let idx = Tensor::from_slice(&local).to(logits.device());
        let y = Tensor::from_slice(&y).to(logits.device());
        let sum = logits.index_select(0, &idx).cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Sum, -100, 0.0);
        Some(sum / self.spec.train.len().max(1) as f64)
    }

    /// Correct predictions (`argmax` of `scores`, whose rows are vertices `first..`) among the
    /// train, val and test vertices it covers.
    pub fn correct(&self, scores: &Tensor, first: usize) -> Result<[u64; 3], PipeError> {
        let pred = strata_nn::ops::host_vec::<i64>(&scores.argmax(-1, false));
        let n = pred.len();
        let correct = |ids: &[usize]| {
            ids.iter().filter(|&&v| v >= first && v < first + n && pred[v - first] == self.labels[v]).count() as u64
        };
        Ok([correct(&self.spec.train), correct(&self.spec.val), correct(&self.spec.test)])
    }

    /// Every parameter by its variable name (`slotN.…`, the same on every split of the model),
    /// copied to host memory in f32, sorted by name.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(k, t)| (k, tch::no_grad(|| t.to_device(Device::Cpu).to_kind(Kind::Float).copy())))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every trainable gradient as one vector (the all-reduce's operand).
    pub fn flat_grads(&self) -> Tensor {
        crate::collective::flat_grads(&self.vs)
    }
    pub fn set_flat_grads(&self, flat: &Tensor) {
        crate::collective::set_flat_grads(&self.vs, flat)
    }
    /// One optimizer step on the (summed) gradients, then clears them.
    pub fn step(&mut self) {
        self.opt.step();
        self.opt.zero_grad();
    }

    /// Parameters, optimizer moments and `buffers` (copied to host memory in f32).
    pub fn state(&self, buffers: Vec<(String, &Tensor)>) -> Vec<(String, Tensor)> {
        let extra =
            buffers.into_iter().map(|(k, t)| (k, t.to_device(Device::Cpu).to_kind(Kind::Float).copy())).collect();
        crate::state::state(&self.vs, &self.opt, extra)
    }
}

/// The gradient of a leaf after backward, or zeros where nothing reached it.
pub fn grad_or_zeros(t: &Tensor) -> Tensor {
    let g = t.grad();
    if g.defined() {
        g
    } else {
        t.zeros_like()
    }
}

/// A pipeline stage's choice between keeping each chunk's activations and recomputing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Activations {
    pub kept: bool,
    /// Estimated bytes the kept graphs of every chunk hold at once (the end of the forward
    /// wavefront), and the budget they were held against.
    pub estimate_bytes: u64,
    pub budget_bytes: u64,
}

impl From<&Activations> for crate::proto::Activations {
    fn from(a: &Activations) -> Self {
        crate::proto::Activations { kept: a.kept, estimate_bytes: a.estimate_bytes, budget_bytes: a.budget_bytes }
    }
}

impl From<&crate::proto::Activations> for Activations {
    fn from(a: &crate::proto::Activations) -> Self {
        Activations { kept: a.kept, estimate_bytes: a.estimate_bytes, budget_bytes: a.budget_bytes }
    }
}

/// Seconds an epoch spent in each kind of action, on one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Breakdown {
    /// Forward computation (a pipeline stage's forward without autograd).
    pub forward: f64,
    /// A pipeline stage's backward recomputing its chunk's forward with autograd.
    pub recompute: f64,
    /// Back-propagation proper (and, on the last stage, the loss).
    pub backward: f64,
    /// Waiting for tensors from other workers.
    pub recv_wait: f64,
    /// Encoding and handing tensors to the transport, and waiting for the epoch's sends.
    pub send: f64,
    /// Summing the weight gradients over the ways.
    pub all_reduce: f64,
    /// The optimizer step (and the snapshot refresh after it).
    pub step: f64,
    /// Scoring predictions.
    pub evaluate: f64,
}

impl Breakdown {
    /// The phases by name, in a fixed order (the report's and the metrics' labels).
    pub fn phases(&self) -> [(&'static str, f64); 8] {
        [
            ("forward", self.forward),
            ("recompute", self.recompute),
            ("backward", self.backward),
            ("recv_wait", self.recv_wait),
            ("send", self.send),
            ("all_reduce", self.all_reduce),
            ("step", self.step),
            ("evaluate", self.evaluate),
        ]
    }
    pub fn total(&self) -> f64 {
        self.phases().iter().map(|p| p.1).sum()
    }
}

impl From<&crate::proto::PhaseSeconds> for Breakdown {
    fn from(p: &crate::proto::PhaseSeconds) -> Breakdown {
        Breakdown {
            forward: p.forward,
            recompute: p.recompute,
            backward: p.backward,
            recv_wait: p.recv_wait,
            send: p.send,
            all_reduce: p.all_reduce,
            step: p.step,
            evaluate: p.evaluate,
        }
    }
}

impl From<&Breakdown> for crate::proto::PhaseSeconds {
    fn from(b: &Breakdown) -> crate::proto::PhaseSeconds {
        crate::proto::PhaseSeconds {
            forward: b.forward,
            recompute: b.recompute,
            backward: b.backward,
            recv_wait: b.recv_wait,
            send: b.send,
            all_reduce: b.all_reduce,
            step: b.step,
            evaluate: b.evaluate,
        }
    }
}

/// What differs between the engines: how a part is computed forward and backward, which rows
/// cross to other ways, and what happens around the step. The core does the rest.
pub trait Engine: Send {
    fn core(&self) -> &StageCore;
    fn core_mut(&mut self) -> &mut StageCore;
    /// Starts an epoch of the given chunk order (every chunk of the run).
    fn begin_epoch(&mut self, epoch: u64, order: &[usize], train: bool) -> Result<(), PipeError>;
    /// Computes `part` forward on `input` (from the previous stage; `None` on the first).
    /// Returns what goes to the next stage, or what [`Engine::evaluate`] scores on the last.
    fn forward(&mut self, part: Part, input: Option<Boundary>) -> Result<Option<Boundary>, PipeError>;
    /// Back-propagates `part` given the gradient of its output (`None` on the last stage);
    /// returns the gradient of its input for the previous stage (`None` on the first). Time
    /// spent recomputing the forward is added to `phases.recompute`.
    fn backward(
        &mut self,
        part: Part,
        grad: Option<Boundary>,
        phases: &mut Breakdown,
    ) -> Result<Option<Boundary>, PipeError>;
    /// The shapes of the tensors received for `part` (activations and gradients alike).
    fn boundary_shape(&self, part: Part) -> BoundaryShape;
    /// This slot's rows of kind `halo` for each way that reads them: `(way, rows)`.
    fn halo_out(&mut self, _halo: Halo, slot: usize) -> Result<Vec<(usize, Tensor)>, PipeError> {
        Err(PipeError::Internal(format!("{} sends no halo rows (slot {slot})", self.role())))
    }
    /// The ways whose rows of kind `halo` this worker receives, and the shape of each.
    fn halo_sources(&self, _halo: Halo) -> Vec<(usize, Vec<i64>)> {
        Vec::new()
    }
    /// Takes the rows received from [`Engine::halo_sources`], in that order.
    fn halo_in(&mut self, _halo: Halo, slot: usize, _got: Vec<Tensor>) -> Result<(), PipeError> {
        Err(PipeError::Internal(format!("{} receives no halo rows (slot {slot})", self.role())))
    }
    /// Before the all-reduce: gradients that are still pending (forward-only slot 0).
    fn before_step(&mut self) {}
    /// After the optimizer step (the historical snapshot's refresh).
    fn after_step(&mut self) {}
    /// Correct predictions among the train / val / test vertices this worker scores.
    fn evaluate(&self, out: &Boundary) -> Result<[u64; 3], PipeError>;
    /// Buffers besides parameters and optimizer moments that a checkpoint carries.
    fn buffers(&self) -> Vec<(String, &Tensor)> {
        Vec::new()
    }
    /// What this engine is, for messages ("pipeline stage 2", "graph-parallel way 1").
    fn role(&self) -> String;
    /// A pipeline stage's choice of keeping or recomputing activations.
    fn activations(&self) -> Option<Activations> {
        None
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.core().state(self.buffers())
    }
    fn load_state(&mut self, named: &std::collections::HashMap<String, Tensor>) -> Result<(), PipeError> {
        let core = self.core_mut();
        crate::state::load_state(&core.vs, &mut core.opt, named)?;
        for (key, t) in self.buffers() {
            crate::state::load_buffer(named, &key, t)?;
        }
        Ok(())
    }
    fn parameters(&self) -> usize {
        self.core().parameters()
    }
}
