//! The one interpreter: runs a worker's [`schedule`](crate::schedule) for an epoch over an
//! [`Engine`] and a [`Transport`], and measures where the time goes ([`Breakdown`]).
//!
//! Each action is executed by a few lines that move tensors between the engine and the
//! transport through four registers (the input received, the output computed, the gradient
//! received, the gradient computed). Receiving is resumable: over a transport that does not
//! wait ([`LocalNet`](crate::transport::LocalNet)) a receive whose tensor has not arrived
//! returns [`Progress::Blocked`] and the same action continues on the next [`Interpreter::run`],
//! so an in-process driver can run every worker in one thread, in turn.

use crate::boundary::Boundary;
use crate::error::PipeError;
use crate::proto::{TensorKind, ValueType};
use crate::schedule::{Action, Halo, Part};
use crate::stage_core::{Breakdown, Engine};
use crate::transport::{Message, Transport};
use crate::wire::{Address, WHOLE_GRAPH};
use std::time::Instant;
use tch::Tensor;

/// Payload bytes a worker sent in an epoch, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    pub activation: u64,
    pub gradient: u64,
    pub halo: u64,
    pub weight: u64,
}

/// What one worker's epoch produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// This worker's share of the mean training loss.
    pub loss: f64,
    /// Correct predictions among train / val / test vertices (the scoring worker only).
    pub correct: [u64; 3],
    pub bytes: Bytes,
    pub phases: Breakdown,
}

/// Whether [`Interpreter::run`] finished the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Done,
    /// Waiting for a tensor another in-process worker has not sent yet.
    Blocked,
}

/// One worker's epoch in progress.
pub struct Interpreter {
    actions: Vec<Action>,
    pc: usize,
    epoch: u64,
    input: Option<Boundary>,
    output: Option<Boundary>,
    grad_in: Option<Boundary>,
    grad_out: Option<Boundary>,
    /// Tensors of the receive in progress (a boundary's rows and side tensor, or one per halo
    /// source).
    partial: Vec<Tensor>,
    /// Whether [`Engine::before_step`] ran this epoch.
    prepared: bool,
    outcome: Outcome,
}

fn rank(e: &dyn Engine, way: usize, stage: usize) -> usize {
    e.core().spec.rank_of(way, stage)
}

fn address(p: Part) -> Address {
    match p {
        Part::Chunk(c) => Address::Chunk(c as u32),
        Part::Whole => Address::Chunk(WHOLE_GRAPH),
        Part::Slot(s) => Address::Slot(s as u32),
    }
}

/// Whether every value of `t` is finite: one reduction (a NaN or ±inf makes the sum one), and
/// value by value only when the sum is not finite (a sum of large finite values can overflow).
fn finite(t: &Tensor) -> bool {
    t.numel() == 0
        || tch::no_grad(|| {
            t.sum(tch::Kind::Float).double_value(&[]).is_finite() || t.isfinite().all().int64_value(&[]) != 0
        })
}

/// Refuses a received tensor with NaN or ±inf in it, unless the run allows them.
fn check_finite(e: &dyn Engine, t: &Tensor, what: impl FnOnce() -> String) -> Result<(), PipeError> {
    if e.core().spec.config.allow_nonfinite || finite(t) {
        return Ok(());
    }
    Err(PipeError::Peer(format!(
        "{} holds NaN or infinite values (a diverged or corrupt sender; `launch --allow-nonfinite-loss` lets a run go on)",
        what()
    )))
}

fn halo_tag(h: Halo, train: bool) -> &'static str {
    match (h, train) {
        (Halo::Rows, true) => "fwd",
        (Halo::Rows, false) => "eval",
        (Halo::Gradients, _) => "bwd",
        (Halo::History, _) => "history",
    }
}

impl Interpreter {
    /// Starts `engine`'s epoch: `order` is the epoch's chunk order (all chunks of the run).
    pub fn new(engine: &mut dyn Engine, epoch: u64, order: &[usize], train: bool) -> Result<Interpreter, PipeError> {
        let actions = crate::schedule::build(&engine.core().spec, order, train);
        engine.core_mut().begin(epoch, train);
        engine.begin_epoch(epoch, order, train)?;
        Ok(Interpreter {
            actions,
            pc: 0,
            epoch,
            input: None,
            output: None,
            grad_in: None,
            grad_out: None,
            partial: Vec::new(),
            prepared: false,
            outcome: Outcome::default(),
        })
    }

    /// The schedule being run.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }
    /// How far the schedule has got: the action, and tensors of a receive in progress.
    pub fn mark(&self) -> (usize, usize) {
        (self.pc, self.partial.len())
    }
    /// The action to run next, for messages.
    pub fn current(&self) -> String {
        self.actions.get(self.pc).map_or_else(|| "the end".into(), |a| a.to_string())
    }

    /// Runs actions until the schedule ends or a receive must wait.
    pub fn run(&mut self, e: &mut dyn Engine, net: &mut dyn Transport) -> Result<Progress, PipeError> {
        while let Some(&action) = self.actions.get(self.pc) {
            if self.execute(action, e, net)? == Progress::Blocked {
                return Ok(Progress::Blocked);
            }
            self.pc += 1;
        }
        let t = Instant::now();
        net.flush()?;
        self.outcome.phases.send += t.elapsed().as_secs_f64();
        if self.input.is_some() || self.output.is_some() || self.grad_in.is_some() || self.grad_out.is_some() {
            return Err(PipeError::Internal(format!(
                "{}'s schedule left a tensor unused: {}",
                e.role(),
                crate::schedule::render(&self.actions)
            )));
        }
        Ok(Progress::Done)
    }

    /// The finished epoch's numbers.
    pub fn finish(mut self, e: &dyn Engine) -> Outcome {
        self.outcome.loss = e.core().last_loss;
        self.outcome
    }

    fn execute(&mut self, action: Action, e: &mut dyn Engine, net: &mut dyn Transport) -> Result<Progress, PipeError> {
        let t = Instant::now();
        let spec = &e.core().spec;
        let (way, stage, ways) = (spec.way, spec.stage, spec.ways);
        let activation_type = spec.config.history_dtype.value_type();
        let missing = |what: &str| PipeError::Internal(format!("{action} without {what}"));
        match action {
            Action::RecvActivation(p) | Action::RecvGradient(p) => {
                let (kind, from) = match action {
                    Action::RecvActivation(_) => (TensorKind::Activation, rank(e, way, stage.wrapping_sub(1))),
                    _ => (TensorKind::Gradient, rank(e, way, stage + 1)),
                };
                let shape = e.boundary_shape(p);
                let side = shape.side.as_ref().map(|s| s.0);
                let (names, shapes): (Vec<&str>, Vec<&Vec<i64>>) =
                    std::iter::once(("x", &shape.x)).chain(shape.side.as_ref().map(|(k, s)| (k.name(), s))).unzip();
                while self.partial.len() < shapes.len() {
                    let i = self.partial.len();
                    let msg = Message { kind, epoch: self.epoch, address: address(p), name: names[i].into() };
                    let Some(t) = net.recv(from, &msg)? else {
                        self.outcome.phases.recv_wait += t.elapsed().as_secs_f64();
                        return Ok(Progress::Blocked);
                    };
                    if t.size() != *shapes[i] {
                        return Err(PipeError::Peer(format!(
                            "{kind:?} `{}` of {} from {}: expected shape {:?}, got {:?}",
                            names[i],
                            address(p),
                            net.describe(from),
                            shapes[i],
                            t.size()
                        )));
                    }
                    check_finite(e, &t, || {
                        format!("{kind:?} `{}` of {} from {}", names[i], address(p), net.describe(from))
                    })?;
                    self.partial.push(t);
                }
                let mut got = std::mem::take(&mut self.partial).into_iter();
                let x = got.next().ok_or_else(|| missing("a boundary shape"))?;
                let b = Boundary { x, side: side.zip(got.next()).map(|(k, t)| k.wrap(t)) };
                match action {
                    Action::RecvActivation(_) => self.input = Some(b),
                    _ => self.grad_in = Some(b),
                }
                self.outcome.phases.recv_wait += t.elapsed().as_secs_f64();
            }
            Action::Forward(p) => {
                let out = e.forward(p, self.input.take())?;
                // Kept only for an action that consumes it (the last stage's training logits
                // are not: its backward computes the loss).
                let consumed =
                    matches!(self.actions.get(self.pc + 1), Some(Action::SendActivation(_) | Action::Evaluate));
                self.output = out.filter(|_| consumed);
                self.outcome.phases.forward += t.elapsed().as_secs_f64();
            }
            Action::Backward(p) => {
                let mut inner = Breakdown::default();
                self.grad_out = e.backward(p, self.grad_in.take(), &mut inner)?;
                self.outcome.phases.recompute += inner.recompute;
                self.outcome.phases.backward += (t.elapsed().as_secs_f64() - inner.recompute).max(0.0);
            }
            Action::SendActivation(p) | Action::SendGradient(p) => {
                let (kind, to, value_type, b) = match action {
                    Action::SendActivation(_) => (
                        TensorKind::Activation,
                        rank(e, way, stage + 1),
                        activation_type,
                        self.output.take().ok_or_else(|| missing("an output"))?,
                    ),
                    _ => (
                        TensorKind::Gradient,
                        rank(e, way, stage.wrapping_sub(1)),
                        ValueType::F32,
                        self.grad_out.take().ok_or_else(|| missing("an input gradient"))?,
                    ),
                };
                let mut bytes = 0;
                let side = b.side.as_ref().map(|s| (s.kind().name(), s.tensor()));
                for (name, t) in std::iter::once(("x", &b.x)).chain(side) {
                    let msg = Message { kind, epoch: self.epoch, address: address(p), name: name.into() };
                    bytes += net.send(to, msg, value_type, t)?;
                }
                match kind {
                    TensorKind::Activation => self.outcome.bytes.activation += bytes,
                    _ => self.outcome.bytes.gradient += bytes,
                }
                self.outcome.phases.send += t.elapsed().as_secs_f64();
            }
            Action::SendHalo(h, slot) => {
                let train = e.core().train;
                let out = e.halo_out(h, slot)?;
                let t_send = Instant::now();
                let computed = t_send.duration_since(t).as_secs_f64();
                match h {
                    Halo::Gradients => self.outcome.phases.backward += computed,
                    _ => self.outcome.phases.forward += computed,
                }
                for (q, rows) in out {
                    let to = rank(e, q, stage);
                    let msg = Message {
                        kind: TensorKind::Halo,
                        epoch: self.epoch,
                        address: Address::Slot(slot as u32),
                        name: format!("{}:{way}", halo_tag(h, train)),
                    };
                    self.outcome.bytes.halo += net.send(to, msg, ValueType::F32, &rows)?;
                }
                self.outcome.phases.send += t_send.elapsed().as_secs_f64();
            }
            Action::RecvHalo(h, slot) => {
                let train = e.core().train;
                let sources = e.halo_sources(h);
                while self.partial.len() < sources.len() {
                    let (q, shape) = &sources[self.partial.len()];
                    let from = rank(e, *q, stage);
                    let msg = Message {
                        kind: TensorKind::Halo,
                        epoch: self.epoch,
                        address: Address::Slot(slot as u32),
                        name: format!("{}:{q}", halo_tag(h, train)),
                    };
                    let Some(t) = net.recv(from, &msg)? else {
                        self.outcome.phases.recv_wait += t.elapsed().as_secs_f64();
                        return Ok(Progress::Blocked);
                    };
                    if t.size() != *shape {
                        return Err(PipeError::Peer(format!(
                            "{h:?} rows of slot {slot} from {}: expected shape {shape:?}, got {:?}",
                            net.describe(from),
                            t.size()
                        )));
                    }
                    check_finite(e, &t, || format!("{h:?} rows of slot {slot} from {}", net.describe(from)))?;
                    self.partial.push(t);
                }
                self.outcome.phases.recv_wait += t.elapsed().as_secs_f64();
                let t_in = Instant::now();
                e.halo_in(h, slot, std::mem::take(&mut self.partial))?;
                self.outcome.phases.forward += t_in.elapsed().as_secs_f64();
            }
            Action::AllReduce => {
                if !self.prepared {
                    e.before_step();
                    self.prepared = true;
                }
                let group: Vec<usize> = (0..ways).map(|q| rank(e, q, stage)).collect();
                let flat = e.core().flat_grads();
                let Some((sum, bytes)) = net.all_reduce(self.epoch, &group, &flat)? else {
                    self.outcome.phases.all_reduce += t.elapsed().as_secs_f64();
                    return Ok(Progress::Blocked);
                };
                // Non-finite gradients of its own are this worker's divergence, not a peer's fault.
                if finite(&flat) {
                    check_finite(e, &sum, || format!("the all-reduced gradients of stage {stage} (ways {group:?})"))?;
                }
                e.core().set_flat_grads(&sum);
                self.outcome.bytes.weight += bytes;
                self.outcome.phases.all_reduce += t.elapsed().as_secs_f64();
            }
            Action::Step => {
                if !self.prepared {
                    e.before_step();
                    self.prepared = true;
                }
                e.core_mut().step();
                e.after_step();
                self.outcome.phases.step += t.elapsed().as_secs_f64();
            }
            Action::Evaluate => {
                let out = self.output.take().ok_or_else(|| missing("an output"))?;
                self.outcome.correct = e.evaluate(&out)?;
                self.outcome.phases.evaluate += t.elapsed().as_secs_f64();
            }
        }
        Ok(Progress::Done)
    }
}
