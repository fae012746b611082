//! The worker's engines behind one trait, and how each drives an epoch over the network:
//! a pipeline stage (chunks up and gradients down the stages), a forward-only stage (chunks up
//! only) and a graph partition (halo exchange per layer).

use super::net::{Net, FULL_GRAPH};
use crate::error::PipeError;
use crate::forward_stage::ForwardStage;
use crate::partition_stage::PartitionStage;
use crate::proto::{EpochReply, EpochRequest, TensorKind};
use crate::stage::Stage;
use std::collections::HashMap;
use tch::Tensor;

/// What a worker computes, behind one interface: a pipeline stage (pipeline and hybrid modes),
/// a graph partition owning every layer (graph mode), or a forward-only stage of
/// single-forward layers (`--trainer sf`). Each runs its epochs over the network its own way.
pub(crate) trait Engine: Send {
    /// One training epoch or (`req.train` false) one exact evaluation.
    fn run_epoch(&mut self, net: &mut Net, req: &EpochRequest) -> Result<EpochReply, PipeError>;
    /// Parameters, optimizer moments and buffers, for a checkpoint.
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores [`Engine::state`].
    fn load_state(&mut self, named: &HashMap<String, Tensor>) -> Result<(), PipeError>;
    fn parameters(&self) -> usize;
}

impl Engine for Stage {
    fn run_epoch(&mut self, net: &mut Net, req: &EpochRequest) -> Result<EpochReply, PipeError> {
        run_stage(net, self, req)
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        Stage::state(self)
    }
    fn load_state(&mut self, named: &HashMap<String, Tensor>) -> Result<(), PipeError> {
        Stage::load_state(self, named)
    }
    fn parameters(&self) -> usize {
        Stage::parameters(self)
    }
}

impl Engine for ForwardStage {
    fn run_epoch(&mut self, net: &mut Net, req: &EpochRequest) -> Result<EpochReply, PipeError> {
        run_forward(net, self, req)
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        ForwardStage::state(self)
    }
    fn load_state(&mut self, named: &HashMap<String, Tensor>) -> Result<(), PipeError> {
        ForwardStage::load_state(self, named)
    }
    fn parameters(&self) -> usize {
        ForwardStage::parameters(self)
    }
}

impl Engine for PartitionStage {
    fn run_epoch(&mut self, net: &mut Net, req: &EpochRequest) -> Result<EpochReply, PipeError> {
        let mut reply = EpochReply::default();
        if req.train {
            reply.loss = self.train_epoch(req.epoch, net)?;
        } else {
            [reply.train_correct, reply.val_correct, reply.test_correct] = self.evaluate(net)?;
        }
        Ok(reply)
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        PartitionStage::state(self)
    }
    fn load_state(&mut self, named: &HashMap<String, Tensor>) -> Result<(), PipeError> {
        PartitionStage::load_state(self, named)
    }
    fn parameters(&self) -> usize {
        PartitionStage::parameters(self)
    }
}

/// Forward-only: chunks flow up the stages and nothing comes back; each stage steps its own
/// layers at the end of the epoch.
fn run_forward(net: &mut Net, stage: &mut ForwardStage, req: &EpochRequest) -> Result<EpochReply, PipeError> {
    let ctx = net.ctx;
    let (first, last) = (ctx.spec.is_first(), ctx.spec.stage + 1 == ctx.stages());
    let (prev, next) = (ctx.rank.wrapping_sub(1), ctx.rank + 1);
    let mut reply = EpochReply::default();
    let epoch = req.epoch;
    if req.train {
        check_permutation(&req.order, stage.num_chunks())?;
        stage.begin_epoch();
        for &c in &req.order {
            let expect = stage.boundary_shapes(Some(c as usize));
            let input = if first {
                None
            } else {
                Some(net.mail.recv_boundary(TensorKind::Activation, epoch, c, &expect, &ctx.describe(prev))?)
            };
            let out = stage.train_chunk(c as usize, input);
            if !last {
                reply.activation_bytes += net.send_boundary(next, TensorKind::Activation, c, &out);
            }
        }
        stage.end_epoch();
        reply.loss = stage.last_loss;
    } else {
        let expect = stage.boundary_shapes(None);
        let input = if first {
            None
        } else {
            Some(net.mail.recv_boundary(TensorKind::Activation, epoch, FULL_GRAPH, &expect, &ctx.describe(prev))?)
        };
        let out = stage.infer(input);
        if last {
            [reply.train_correct, reply.val_correct, reply.test_correct] =
                stage.evaluate(out.h0.as_ref().expect("class distributions"));
        } else {
            reply.activation_bytes += net.send_boundary(next, TensorKind::Activation, FULL_GRAPH, &out);
        }
    }
    Ok(reply)
}

fn run_stage(net: &mut Net, stage: &mut Stage, req: &EpochRequest) -> Result<EpochReply, PipeError> {
    let ctx = net.ctx;
    let spec = &ctx.spec;
    let (first, last) = (spec.is_first(), spec.is_last());
    let (prev, next) = (ctx.rank.wrapping_sub(1), ctx.rank + 1);
    let mut reply = EpochReply::default();
    let epoch = req.epoch;
    if req.train {
        check_permutation(&req.order, stage.num_chunks())?;
        let own = spec.own_chunks();
        let order: Vec<usize> = req.order.iter().map(|&c| c as usize).filter(|c| own.contains(c)).collect();
        stage.begin_epoch(epoch, &order);
        for &c in &order {
            let input = if first {
                None
            } else {
                Some(net.mail.recv_boundary(
                    TensorKind::Activation,
                    epoch,
                    c as u32,
                    &spec.boundary_shapes(Some(c)),
                    &ctx.describe(prev),
                )?)
            };
            let out = stage.forward(Some(c), input);
            if !last {
                reply.activation_bytes += net.send_boundary(next, TensorKind::Activation, c as u32, &out);
            }
        }
        for &c in order.iter().rev() {
            let grad = if last {
                None
            } else {
                Some(net.mail.recv_boundary(
                    TensorKind::Gradient,
                    epoch,
                    c as u32,
                    &spec.boundary_shapes(Some(c)),
                    &ctx.describe(next),
                )?)
            };
            let back = stage.backward(c, grad);
            if let (false, Some(g)) = (first, back) {
                reply.gradient_bytes += net.send_boundary(prev, TensorKind::Gradient, c as u32, &g);
            }
        }
        stage.end_epoch(net)?;
        reply.loss = stage.last_loss;
    } else if spec.way == 0 {
        // Exact inference runs down way 0's stages only: every way holds the same weights.
        let input = if first {
            None
        } else {
            Some(net.mail.recv_boundary(
                TensorKind::Activation,
                epoch,
                FULL_GRAPH,
                &spec.boundary_shapes(None),
                &ctx.describe(prev),
            )?)
        };
        let out = stage.forward(None, input);
        if last {
            [reply.train_correct, reply.val_correct, reply.test_correct] = stage.evaluate(&out.x);
        } else {
            reply.activation_bytes += net.send_boundary(next, TensorKind::Activation, FULL_GRAPH, &out);
        }
    }
    Ok(reply)
}

/// A chunk order from the network must be a permutation of `0..k`.
fn check_permutation(order: &[u32], k: usize) -> Result<(), PipeError> {
    let mut seen = vec![false; k];
    if order.len() != k || order.iter().any(|&c| (c as usize) >= k || std::mem::replace(&mut seen[c as usize], true)) {
        return Err(PipeError::Peer(format!("chunk order {order:?} is not a permutation of 0..{k}")));
    }
    Ok(())
}
