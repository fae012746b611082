//! The epoch as data: one function turns a worker's place in the run (its [`StageSpec`]), the
//! epoch's chunk order and whether it trains into the list of [`Action`]s that worker performs,
//! in order. The [`interpreter`](crate::interpreter) runs such a list; nothing else decides
//! what happens when.
//!
//! - Pipeline training (backprop): the forward wavefront over the chunks this stage's way
//!   trains, in the epoch's order, then the backward wavefront in reverse order; the weight
//!   gradients summed over the ways (hybrid), one optimizer step, and (hybrid) the boundary rows
//!   every way reads from the others, once per epoch.
//! - Forward-only training (ForwardGNN's SF layers): the same forward wavefront, no backward
//!   half; each stage steps its own layers at the end.
//! - Graph-parallel training (a way holds every layer over its vertices): per layer slot, send
//!   the halo rows others aggregate, receive theirs, compute; backward slot by slot with the
//!   halo gradients going back to the rows' owners.
//! - Exact inference: the whole graph once through the stages (way 0's in hybrid mode), or
//!   per slot with halo rows in graph mode, and the last worker scores it.

use crate::config::{Mode, PipeTrainer, StageSpec};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// What one forward or backward action computes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// One chunk: a contiguous vertex range of the pipeline's graph.
    Chunk(usize),
    /// Every vertex at once (exact inference).
    Whole,
    /// One layer slot over the vertices this graph-parallel way owns.
    Slot(usize),
}

/// Which rows cross between ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Halo {
    /// Graph-parallel forward: a slot's (dropped-out) input rows other ways aggregate.
    Rows,
    /// Graph-parallel backward: the gradients of received halo rows, back to their owners.
    Gradients,
    /// Hybrid (`--hybrid-sync epoch`): a conv slot's historical rows of the vertices other
    /// ways read, once per epoch after the step.
    History,
}

/// One instruction of an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Receive a part's activations from the previous stage.
    RecvActivation(Part),
    /// Compute a part forward (a pipeline stage keeps what its backward needs).
    Forward(Part),
    /// Send the part's activations to the next stage.
    SendActivation(Part),
    /// Receive the gradient of the activations this stage sent for a part.
    RecvGradient(Part),
    /// Back-propagate a part.
    Backward(Part),
    /// Send the gradient of the received activations to the previous stage.
    SendGradient(Part),
    /// Send this slot's rows of the given kind to the ways that read them.
    SendHalo(Halo, usize),
    /// Receive them from the ways this one reads.
    RecvHalo(Halo, usize),
    /// Sum the weight gradients over the ways holding the same layers.
    AllReduce,
    /// One optimizer step (and what follows it: snapshot refresh).
    Step,
    /// Score the last forward's output against the labels.
    Evaluate,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Chunk(c) => write!(f, "{c}"),
            Part::Whole => write!(f, "all"),
            Part::Slot(s) => write!(f, "slot {s}"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::RecvActivation(p) => write!(f, "RecvActivation({p})"),
            Action::Forward(p) => write!(f, "Forward({p})"),
            Action::SendActivation(p) => write!(f, "SendActivation({p})"),
            Action::RecvGradient(p) => write!(f, "RecvGradient({p})"),
            Action::Backward(p) => write!(f, "Backward({p})"),
            Action::SendGradient(p) => write!(f, "SendGradient({p})"),
            Action::SendHalo(h, s) => write!(f, "SendHalo({h:?}, {s})"),
            Action::RecvHalo(h, s) => write!(f, "RecvHalo({h:?}, {s})"),
            Action::AllReduce => write!(f, "AllReduce"),
            Action::Step => write!(f, "Step"),
            Action::Evaluate => write!(f, "Evaluate"),
        }
    }
}

/// A schedule as one line per action (what the tests compare against the hand-written one).
pub fn render(actions: &[Action]) -> String {
    actions.iter().map(|a| a.to_string()).collect::<Vec<_>>().join("\n")
}

/// This epoch's chunk order: a seeded shuffle (trick 1), identical on every stage because it
/// depends only on (seed, epoch); the identity when shuffling is off.
pub fn chunk_order(chunks: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..chunks).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    }
    order
}

/// One epoch's numbers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochReport {
    pub epoch: u64,
    pub loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
    pub test_accuracy: f64,
}

/// The actions of the worker described by `spec` for one epoch: training over the chunks of
/// `order` (a permutation of every chunk; a hybrid stage keeps its way's) or, with `train`
/// false, one exact inference pass.
pub fn build(spec: &StageSpec, order: &[usize], train: bool) -> Vec<Action> {
    let cfg = &spec.config;
    let first = spec.is_first();
    let last = spec.is_last() || (cfg.trainer == PipeTrainer::Sf && spec.stage + 1 == cfg.stages);
    if cfg.mode == Mode::Graph && cfg.trainer == PipeTrainer::Bp {
        return graph(cfg.layers, spec.ways, train);
    }
    if !train {
        // Every way holds the same weights: exact inference runs down way 0's stages only.
        return if spec.way == 0 { inference(first, last) } else { Vec::new() };
    }
    let own = spec.own_chunks();
    let chunks: Vec<usize> = order.iter().copied().filter(|c| own.contains(c)).collect();
    let history: Vec<usize> = if spec.ways > 1 { conv_slots(spec) } else { Vec::new() };
    match cfg.trainer {
        PipeTrainer::Bp => pipeline(first, last, &chunks, spec.ways, &history),
        PipeTrainer::Sf => forward_only(first, last, &chunks, spec.ways),
    }
}

/// The conv slots a pipeline stage holds (slots 1..=L of `first..last`).
fn conv_slots(spec: &StageSpec) -> Vec<usize> {
    (spec.first.max(1)..spec.last.min(spec.config.layers + 1)).collect()
}

/// The forward wavefront: receive (unless first), compute, send (unless last), per chunk.
fn forward_wave(first: bool, last: bool, chunks: &[usize], out: &mut Vec<Action>) {
    for &c in chunks {
        let p = Part::Chunk(c);
        if !first {
            out.push(Action::RecvActivation(p));
        }
        out.push(Action::Forward(p));
        if !last {
            out.push(Action::SendActivation(p));
        }
    }
}

/// A backprop pipeline stage's training epoch.
pub fn pipeline(first: bool, last: bool, chunks: &[usize], ways: usize, history_slots: &[usize]) -> Vec<Action> {
    let mut out = Vec::new();
    forward_wave(first, last, chunks, &mut out);
    for &c in chunks.iter().rev() {
        let p = Part::Chunk(c);
        if !last {
            out.push(Action::RecvGradient(p));
        }
        out.push(Action::Backward(p));
        if !first {
            out.push(Action::SendGradient(p));
        }
    }
    if ways > 1 {
        out.push(Action::AllReduce);
    }
    out.push(Action::Step);
    for &s in history_slots {
        out.push(Action::SendHalo(Halo::History, s));
        out.push(Action::RecvHalo(Halo::History, s));
    }
    out
}

/// A forward-only stage's training epoch: the forward wavefront, each chunk training the
/// stage's layers on its own losses, then one step.
pub fn forward_only(first: bool, last: bool, chunks: &[usize], ways: usize) -> Vec<Action> {
    let mut out = Vec::new();
    forward_wave(first, last, chunks, &mut out);
    if ways > 1 {
        out.push(Action::AllReduce);
    }
    out.push(Action::Step);
    out
}

/// Exact inference through a stage: the whole graph in, the whole graph out (or scored).
pub fn inference(first: bool, last: bool) -> Vec<Action> {
    let mut out = Vec::new();
    if !first {
        out.push(Action::RecvActivation(Part::Whole));
    }
    out.push(Action::Forward(Part::Whole));
    out.push(if last { Action::Evaluate } else { Action::SendActivation(Part::Whole) });
    out
}

/// A graph-parallel way over slots `0..=layers+1` (input projection, `layers` convolutions,
/// classifier): training, or exact inference when `train` is false.
pub fn graph(layers: usize, ways: usize, train: bool) -> Vec<Action> {
    let head = layers + 1;
    let mut out = vec![Action::Forward(Part::Slot(0))];
    for s in 1..=layers {
        out.push(Action::SendHalo(Halo::Rows, s));
        out.push(Action::RecvHalo(Halo::Rows, s));
        out.push(Action::Forward(Part::Slot(s)));
    }
    out.push(Action::Forward(Part::Slot(head)));
    if !train {
        out.push(Action::Evaluate);
        return out;
    }
    out.push(Action::Backward(Part::Slot(head)));
    for s in (1..=layers).rev() {
        out.push(Action::Backward(Part::Slot(s)));
        out.push(Action::SendHalo(Halo::Gradients, s));
        out.push(Action::RecvHalo(Halo::Gradients, s));
    }
    out.push(Action::Backward(Part::Slot(0)));
    if ways > 1 {
        out.push(Action::AllReduce);
    }
    out.push(Action::Step);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> String {
        s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
    }

    /// A 2-stage pipeline over 3 chunks in the order 2, 0, 1: the wavefront written out by hand.
    #[test]
    fn two_stage_three_chunk_training_epoch() {
        let order = [2, 0, 1];
        let stage0 = render(&pipeline(true, false, &order, 1, &[]));
        let stage1 = render(&pipeline(false, true, &order, 1, &[]));
        println!("stage 0:\n{stage0}\n\nstage 1:\n{stage1}");
        assert_eq!(
            stage0,
            lines(
                "Forward(2)  SendActivation(2)
                 Forward(0)  SendActivation(0)
                 Forward(1)  SendActivation(1)
                 RecvGradient(1)  Backward(1)
                 RecvGradient(0)  Backward(0)
                 RecvGradient(2)  Backward(2)
                 Step"
            )
            .replace("  ", "\n")
        );
        assert_eq!(
            stage1,
            lines(
                "RecvActivation(2)  Forward(2)
                 RecvActivation(0)  Forward(0)
                 RecvActivation(1)  Forward(1)
                 Backward(1)  SendGradient(1)
                 Backward(0)  SendGradient(0)
                 Backward(2)  SendGradient(2)
                 Step"
            )
            .replace("  ", "\n")
        );
    }

    /// The forward-only epoch of the same pipeline: the same forward wavefront, no backward half.
    #[test]
    fn forward_only_epoch_is_the_wavefront_without_its_backward_half() {
        let order = [2, 0, 1];
        let stage0 = render(&forward_only(true, false, &order, 1));
        let stage1 = render(&forward_only(false, true, &order, 1));
        println!("stage 0:\n{stage0}\n\nstage 1:\n{stage1}");
        let want0 = "Forward(2)\nSendActivation(2)\nForward(0)\nSendActivation(0)\nForward(1)\nSendActivation(1)\nStep";
        let want1 = "RecvActivation(2)\nForward(2)\nRecvActivation(0)\nForward(0)\nRecvActivation(1)\nForward(1)\nStep";
        assert_eq!(stage0, want0);
        assert_eq!(stage1, want1);
    }

    #[test]
    fn graph_parallel_epoch_exchanges_halos_per_slot() {
        let got = render(&graph(2, 3, true));
        let want = "Forward(slot 0)
            SendHalo(Rows, 1)  RecvHalo(Rows, 1)  Forward(slot 1)
            SendHalo(Rows, 2)  RecvHalo(Rows, 2)  Forward(slot 2)
            Forward(slot 3)  Backward(slot 3)
            Backward(slot 2)  SendHalo(Gradients, 2)  RecvHalo(Gradients, 2)
            Backward(slot 1)  SendHalo(Gradients, 1)  RecvHalo(Gradients, 1)
            Backward(slot 0)  AllReduce  Step";
        assert_eq!(got, lines(want).replace("  ", "\n"));
        assert_eq!(
            render(&graph(1, 1, false)),
            "Forward(slot 0)\nSendHalo(Rows, 1)\nRecvHalo(Rows, 1)\nForward(slot 1)\nForward(slot 2)\nEvaluate"
        );
    }

    #[test]
    fn hybrid_stage_sums_over_ways_then_swaps_history() {
        let got = render(&pipeline(true, true, &[1], 2, &[1, 2]));
        assert_eq!(
            got,
            "Forward(1)\nBackward(1)\nAllReduce\nStep\nSendHalo(History, 1)\nRecvHalo(History, 1)\nSendHalo(History, 2)\nRecvHalo(History, 2)"
        );
        assert_eq!(render(&inference(false, false)), "RecvActivation(all)\nForward(all)\nSendActivation(all)");
    }

    #[test]
    fn chunk_order_is_a_seeded_permutation() {
        let a = chunk_order(16, 3, 7, true);
        assert_eq!(a, chunk_order(16, 3, 7, true));
        assert_ne!(a, chunk_order(16, 3, 8, true));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..16).collect::<Vec<_>>());
        assert_eq!(chunk_order(4, 3, 7, false), vec![0, 1, 2, 3]);
    }
}
