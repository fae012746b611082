//! How the interpreter reaches other workers: one trait, two implementations — the network
//! (`worker::net::Net`, gRPC streams between processes) and [`LocalNet`], in-process queues
//! that let every worker of a run execute in one thread (the tests' reference, and a way to
//! run any mode without processes).

use crate::error::PipeError;
use crate::proto::{TensorKind, ValueType};
use crate::wire::Address;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use tch::{Device, Kind, Tensor};

/// What a tensor is, as both ends name it: its kind, the epoch, where in the epoch it belongs
/// (a chunk, a layer slot, a stage) and a name there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    pub kind: TensorKind,
    pub epoch: u64,
    pub address: Address,
    pub name: String,
}

/// Moves tensors between the workers of one run, addressed by rank.
pub trait Transport {
    /// Sends `t` to worker `to`, encoded as `value_type` (16-bit activations are rounded on the
    /// way); returns the payload bytes. Never waits for the receiver.
    fn send(&mut self, to: usize, msg: Message, value_type: ValueType, t: &Tensor) -> Result<u64, PipeError>;
    /// The tensor `from` sent as `msg`, in f32 on this worker's device; `Ok(None)` when it has
    /// not arrived and this transport does not wait (in-process: another worker must run first).
    fn recv(&mut self, from: usize, msg: &Message) -> Result<Option<Tensor>, PipeError>;
    /// Sums `flat` over `group` (the ranks holding the same layers, this one included, in way
    /// order); `Ok(None)` while an in-process peer has not contributed yet (call again with the
    /// same vector). Returns the sum and the payload bytes this worker sent.
    fn all_reduce(&mut self, epoch: u64, group: &[usize], flat: &Tensor) -> Result<Option<(Tensor, u64)>, PipeError>;
    /// Waits until every send of the epoch has been delivered.
    fn flush(&mut self) -> Result<(), PipeError>;
    /// Describes worker `rank` for error messages.
    fn describe(&self, rank: usize) -> String;
}

/// Rounds `t` to the type it travels in and back to f32 (exact for f32).
pub fn as_sent(t: &Tensor, value_type: ValueType) -> Tensor {
    match value_type {
        ValueType::F32 => t.to_kind(Kind::Float),
        ValueType::Bf16 => t.to_kind(Kind::BFloat16).to_kind(Kind::Float),
        ValueType::F16 => t.to_kind(Kind::Half).to_kind(Kind::Float),
    }
}

type Queues = HashMap<(usize, usize, Message), VecDeque<Tensor>>;

/// In-process queues shared by the workers of one run; [`LocalNet::link`] gives each its end.
#[derive(Clone, Default)]
pub struct LocalNet {
    queues: Rc<RefCell<Queues>>,
}

impl LocalNet {
    pub fn new() -> LocalNet {
        LocalNet::default()
    }
    /// Worker `rank`'s end of the queues.
    pub fn link(&self, rank: usize, device: Device) -> LocalLink {
        LocalLink { net: self.clone(), rank, device, reduce_posted: None }
    }
    /// Tensors sent and never received (a finished epoch leaves none).
    pub fn undelivered(&self) -> usize {
        self.queues.borrow().values().map(VecDeque::len).sum()
    }
}

/// One worker's end of a [`LocalNet`].
pub struct LocalLink {
    net: LocalNet,
    rank: usize,
    device: Device,
    /// The epoch whose all-reduce contribution this worker has posted, and its bytes.
    reduce_posted: Option<(u64, u64)>,
}

impl LocalLink {
    fn push(&self, to: usize, msg: Message, t: Tensor) {
        self.net.queues.borrow_mut().entry((self.rank, to, msg)).or_default().push_back(t);
    }
    fn take(&self, from: usize, msg: &Message) -> Option<Tensor> {
        let mut q = self.net.queues.borrow_mut();
        let key = (from, self.rank, msg.clone());
        let t = q.get_mut(&key)?.pop_front();
        if q.get(&key).is_some_and(VecDeque::is_empty) {
            q.remove(&key);
        }
        t
    }
}

impl Transport for LocalLink {
    fn send(&mut self, to: usize, msg: Message, value_type: ValueType, t: &Tensor) -> Result<u64, PipeError> {
        let bytes = t.numel() as u64 * if value_type == ValueType::F32 { 4 } else { 2 };
        // A copy: the sender may write its buffer in place before the receiver reads it.
        self.push(to, msg, tch::no_grad(|| as_sent(t, value_type).detach().copy()));
        Ok(bytes)
    }
    fn recv(&mut self, from: usize, msg: &Message) -> Result<Option<Tensor>, PipeError> {
        Ok(self.take(from, msg).map(|t| t.to_device(self.device)))
    }
    /// Every member sends its vector to every other; each sums all of them in group order, so
    /// every member holds the same sum.
    fn all_reduce(&mut self, epoch: u64, group: &[usize], flat: &Tensor) -> Result<Option<(Tensor, u64)>, PipeError> {
        let msg = |from: usize| Message {
            kind: TensorKind::Weight,
            epoch,
            address: Address::Stage(0),
            name: format!("sum:{from}"),
        };
        if self.reduce_posted.is_none_or(|(e, _)| e != epoch) {
            let mut bytes = 0;
            let me = self.rank;
            for &q in group.iter().filter(|&&q| q != me) {
                bytes += self.send(q, msg(self.rank), ValueType::F32, flat)?;
            }
            self.reduce_posted = Some((epoch, bytes));
        }
        let waiting =
            group.iter().any(|&q| q != self.rank && !self.net.queues.borrow().contains_key(&(q, self.rank, msg(q))));
        if waiting {
            return Ok(None);
        }
        let mut sum = Tensor::zeros_like(flat);
        for &q in group {
            let part = if q == self.rank {
                flat.shallow_clone()
            } else {
                self.take(q, &msg(q)).ok_or_else(|| PipeError::Internal("all-reduce part vanished".into()))?
            };
            sum += part.to_device(flat.device());
        }
        let bytes = self.reduce_posted.take().map_or(0, |(_, b)| b);
        Ok(Some((sum, bytes)))
    }
    fn flush(&mut self) -> Result<(), PipeError> {
        Ok(())
    }
    fn describe(&self, rank: usize) -> String {
        format!("in-process worker {rank}")
    }
}
