//! One worker's side of the network during an epoch: the mailbox of tensors received from
//! peers, the background sends, and [`Net`], the interpreter's transport between processes.

use super::auth::Client;
use crate::config::StageSpec;
use crate::error::PipeError;
use crate::proto::{TensorKind, ValueType};
use crate::transport::{Message, Transport};
use crate::wire::{Address, Pieces, TensorBytes, TensorMeta, DEFAULT_PIECE_BYTES};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use tonic::Status;

/// Chunk id used for exact full-graph inference passes.
pub const FULL_GRAPH: u32 = crate::wire::WHOLE_GRAPH;

/// A received tensor's key: kind, epoch, address, name.
pub(crate) type MailKey = (i32, u64, Address, String);
/// How often a waiting compute thread checks whether its epoch was abandoned.
pub(crate) const POLL: Duration = Duration::from_millis(200);
/// How long a stage waits for a neighbour's tensor before giving up on it.
const RECV_TIMEOUT: Duration = Duration::from_secs(120);

/// A tensor a peer pushed, waiting for the compute thread.
pub(crate) struct Received {
    pub(crate) key: MailKey,
    pub(crate) tensor: Tensor,
    pub(crate) bytes: u64,
}

/// What tensors this worker accepts from its peers, published by the compute thread when it is
/// configured: nothing before, and afterwards nothing larger than a full-graph activation of
/// the widest layer, with a bounded total waiting unclaimed.
#[derive(Clone, Debug, Default)]
pub(crate) struct TensorLimits {
    /// Largest single tensor (bytes); 0 = not configured, refuse every tensor.
    pub(crate) max_tensor: u64,
    /// Largest total of received tensors not yet consumed by the compute thread.
    pub(crate) max_unclaimed: u64,
    /// Vertices of the graph and rows of each chunk (activations and gradients of a chunk
    /// must have exactly those rows; full-graph ones N, or N + classes in forward-only runs).
    nodes: i64,
    chunk_rows: Vec<i64>,
    classes: i64,
}

impl TensorLimits {
    pub(crate) fn new(spec: &StageSpec, nodes: usize, parameters: usize) -> TensorLimits {
        let n = nodes as i64;
        let width = spec.config.hidden.max(spec.classes).max(1);
        // A full-graph activation (plus the virtual nodes of forward-only runs) or, for the
        // all-reduce, every parameter of the stage.
        let activation = ((n + spec.classes) * width * 4) as u64;
        let max_tensor = activation.max(parameters as u64 * 4).max(4);
        let chunk_rows = spec.chunk_offsets.windows(2).map(|w| (w[1] - w[0]) as i64).collect();
        // Neighbours run ahead by at most an epoch's chunks each way (activations from below,
        // gradients from above, a side tensor beside x), plus one full-graph pass and halo traffic.
        TensorLimits { max_tensor, max_unclaimed: 6 * max_tensor, nodes: n, chunk_rows, classes: spec.classes }
    }
    /// Checks a received tensor's kind and shape before it is queued.
    /// Checks a received tensor's kind, address and shape before it is queued.
    pub(crate) fn check(&self, kind: TensorKind, address: Option<Address>, shape: &[i64]) -> Result<(), PipeError> {
        let rows_ok = |r: i64| match address {
            Some(Address::Chunk(FULL_GRAPH)) => r == self.nodes || r == self.nodes + self.classes,
            Some(Address::Chunk(c)) => {
                self.chunk_rows.get(c as usize).is_some_and(|&rows| r == rows || r == self.classes)
            }
            _ => r <= self.nodes + self.classes,
        };
        let at = address.map_or_else(|| "no address".to_string(), |a| a.to_string());
        match (kind, address, shape) {
            (TensorKind::Weight, Some(Address::Stage(_)), [_]) => Ok(()),
            (TensorKind::Activation | TensorKind::Gradient, Some(Address::Chunk(_)), [r, _]) if rows_ok(*r) => Ok(()),
            (TensorKind::Halo, Some(Address::Slot(_)), [r, _]) if rows_ok(*r) => Ok(()),
            (TensorKind::Unspecified, ..) => Err(PipeError::Peer("tensor kind unspecified".into())),
            _ => Err(PipeError::Peer(format!("{kind:?} tensor of shape {shape:?} at {at} does not fit this stage"))),
        }
    }
}

/// Who this worker is and whom it talks to.
pub(crate) struct Ctx {
    pub(crate) spec: StageSpec,
    pub(crate) rank: usize,
    /// Every worker by rank.
    pub(crate) peers: Vec<Client>,
    pub(crate) peer_addrs: Vec<String>,
}

impl Ctx {
    pub(crate) fn describe(&self, rank: usize) -> String {
        format!("worker {rank} ({})", self.peer_addrs[rank])
    }
}

/// Tensors received and not yet consumed, and the sends in flight, owned by the compute thread.
pub(crate) struct Mailbox {
    pub(crate) rt: tokio::runtime::Handle,
    /// Bumped by every Configure (shared with the RPC side).
    pub(crate) generation: Arc<AtomicU64>,
    /// The generation the running epoch started in.
    pub(crate) epoch_generation: u64,
    pub(crate) inbox: mpsc::Receiver<Received>,
    pub(crate) pending: HashMap<MailKey, (Tensor, u64)>,
    /// Bytes received and not yet consumed (shared with the RPC side, which enforces the cap).
    pub(crate) unclaimed: Arc<AtomicU64>,
    /// Encoded bytes of this epoch's tensor sends (protobuf + gRPC length prefix).
    pub(crate) wire_bytes: AtomicU64,
    /// Where received tensors are moved for compute.
    pub(crate) device: Device,
}

pub(crate) type SendTask = tokio::task::JoinHandle<Result<(), (String, Status)>>;

impl Mailbox {
    pub(crate) fn recv(
        &mut self,
        kind: TensorKind,
        epoch: u64,
        address: Address,
        name: &str,
        from: &str,
    ) -> Result<Tensor, PipeError> {
        let key = (kind as i32, epoch, address, name.to_string());
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            if let Some((t, bytes)) = self.pending.remove(&key) {
                self.unclaimed.fetch_sub(bytes, Ordering::SeqCst);
                // 16-bit activations are computed with in f32 (the values are exact in both).
                return Ok(t.to(self.device).to_kind(Kind::Float));
            }
            self.check_abandoned()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PipeError::Peer(format!("timed out after {RECV_TIMEOUT:?} waiting for {kind:?} `{name}` of {address}, epoch {epoch} from {from}")));
            }
            if let Ok(r) = self.inbox.recv_timeout(left.min(POLL)) {
                if let Some((_, stale)) = self.pending.insert(r.key, (r.tensor, r.bytes)) {
                    self.unclaimed.fetch_sub(stale, Ordering::SeqCst);
                }
            }
        }
    }

    /// Err when a Configure arrived since this epoch began.
    pub(crate) fn check_abandoned(&self) -> Result<(), PipeError> {
        if self.generation.load(Ordering::SeqCst) != self.epoch_generation {
            return Err(PipeError::Peer("epoch abandoned: the launcher reconfigured this worker".into()));
        }
        Ok(())
    }

    /// Drops every tensor waiting unclaimed (a new run, or a failed one).
    pub(crate) fn clear_pending(&mut self) {
        while let Ok(r) = self.inbox.try_recv() {
            self.unclaimed.fetch_sub(r.bytes, Ordering::SeqCst);
        }
        for (_, (_, bytes)) in self.pending.drain() {
            self.unclaimed.fetch_sub(bytes, Ordering::SeqCst);
        }
    }

    /// Streams one tensor to a peer in the background, its messages cut from the tensor's own
    /// memory as the stream is polled; returns the payload bytes. The tensor must not be
    /// written in place until the epoch's sends are flushed (callers that reuse a buffer send
    /// a copy).
    pub(crate) fn send_tensor(
        &self,
        to: &Client,
        to_addr: &str,
        meta: TensorMeta,
        t: &Tensor,
        tasks: &mut Vec<SendTask>,
    ) -> u64 {
        let kind = meta.kind;
        let data = TensorBytes::new(t, meta.value_type);
        let msgs = Pieces::new(meta, data, DEFAULT_PIECE_BYTES);
        let bytes = msgs.payload_bytes();
        let wire = msgs.wire_bytes();
        self.wire_bytes.fetch_add(wire, Ordering::Relaxed);
        metrics::counter!("strata_wire_bytes_sent_total").increment(wire);
        let label = match kind {
            TensorKind::Gradient => "gradient",
            TensorKind::Halo => "halo",
            TensorKind::Weight => "weight",
            _ => "activation",
        };
        metrics::counter!("strata_bytes_sent_total", "kind" => label).increment(bytes);
        let mut c = to.clone();
        let addr = to_addr.to_string();
        tasks
            .push(self.rt.spawn(async move {
                c.push_tensor(tokio_stream::iter(msgs)).await.map(|_| ()).map_err(|s| (addr, s))
            }));
        bytes
    }
}

/// One epoch's view of the network, the interpreter's [`Transport`] between processes: sends
/// in the background, receives from the mailbox, and the ring all-reduce.
pub(crate) struct Net<'a> {
    pub(crate) mail: &'a mut Mailbox,
    pub(crate) ctx: &'a Ctx,
    pub(crate) tasks: Vec<SendTask>,
}

impl Net<'_> {
    /// Waits for every send of the epoch; a failed one names the peer it was for.
    pub(crate) fn flush(&mut self) -> Result<(), PipeError> {
        let tasks: Vec<SendTask> = self.tasks.drain(..).collect();
        for mut t in tasks {
            loop {
                if let Err(e) = self.mail.check_abandoned() {
                    t.abort();
                    return Err(e);
                }
                match self.mail.rt.block_on(async { tokio::time::timeout(POLL, &mut t).await }) {
                    Ok(done) => {
                        done.map_err(|e| PipeError::Peer(e.to_string()))?.map_err(|(addr, s)| {
                            PipeError::Peer(format!("sending to {addr} failed: {}", s.message()))
                        })?;
                        break;
                    }
                    Err(_) => continue,
                }
            }
        }
        Ok(())
    }
}

impl Transport for Net<'_> {
    fn send(&mut self, to: usize, msg: Message, value_type: ValueType, t: &Tensor) -> Result<u64, PipeError> {
        let ctx = self.ctx;
        let peer = ctx.peers.get(to).ok_or_else(|| PipeError::Internal(format!("no worker of rank {to}")))?;
        let meta = TensorMeta {
            name: msg.name,
            kind: msg.kind,
            epoch: msg.epoch,
            address: msg.address,
            shape: t.size(),
            value_type,
        };
        // Fail point for the tests: a sender whose activations are not numbers.
        if meta.kind == TensorKind::Activation && std::env::var("STRATA_FAILPOINT").is_ok_and(|f| f == "send-nan") {
            let poisoned = tch::no_grad(|| t * f64::NAN);
            return Ok(self.mail.send_tensor(peer, &ctx.peer_addrs[to], meta, &poisoned, &mut self.tasks));
        }
        Ok(self.mail.send_tensor(peer, &ctx.peer_addrs[to], meta, t, &mut self.tasks))
    }
    fn recv(&mut self, from: usize, msg: &Message) -> Result<Option<Tensor>, PipeError> {
        let from = self.describe(from);
        self.mail.recv(msg.kind, msg.epoch, msg.address, &msg.name, &from).map(Some)
    }
    fn flush(&mut self) -> Result<(), PipeError> {
        Net::flush(self)
    }
    fn describe(&self, rank: usize) -> String {
        match self.ctx.peer_addrs.get(rank) {
            Some(_) => self.ctx.describe(rank),
            None => format!("worker {rank} (not in this run)"),
        }
    }

    /// Ring all-reduce over the ways of this stage: W−1 reduce-scatter steps, then W−1
    /// all-gather steps, each sending one of W segments to the next way — 2·(W−1)/W of the
    /// vector per worker, 2·(W−1)·|flat| values in all.
    fn all_reduce(&mut self, epoch: u64, group: &[usize], flat: &Tensor) -> Result<Option<(Tensor, u64)>, PipeError> {
        let ctx = self.ctx;
        let w = group.len();
        if w <= 1 {
            return Ok(Some((flat.shallow_clone(), 0)));
        }
        let me = group.iter().position(|&r| r == ctx.rank).ok_or_else(|| {
            PipeError::Internal(format!("rank {} is not in its all-reduce group {group:?}", ctx.rank))
        })?;
        let (to, from) = (group[(me + 1) % w], group[(me + w - 1) % w]);
        let mut bytes = 0;
        let n = flat.size()[0];
        let bounds: Vec<i64> = (0..=w as i64).map(|i| i * n / w as i64).collect();
        let seg = |i: usize| (bounds[i], bounds[i + 1] - bounds[i]);
        let flat = flat.to(Device::Cpu).contiguous();
        for (phase, steps) in [("reduce", 0..w - 1), ("gather", 0..w - 1)] {
            for step in steps {
                // Reduce-scatter sends segment me−step; all-gather sends me+1−step (the reduced one).
                let shift = if phase == "reduce" { 0 } else { 1 };
                let send_seg = (me + w * 2 + shift - step) % w;
                let recv_seg = (me + w * 2 + shift - step - 1) % w;
                let (off, len) = seg(send_seg);
                let meta = TensorMeta {
                    name: format!("{phase}:{step}"),
                    kind: TensorKind::Weight,
                    epoch,
                    address: Address::Stage(ctx.spec.stage as u32),
                    shape: vec![len],
                    value_type: ValueType::F32,
                };
                // A copy: `flat` is summed into in place while the segment may still be in flight.
                bytes += self.mail.send_tensor(
                    &ctx.peers[to],
                    &ctx.peer_addrs[to],
                    meta,
                    &flat.narrow(0, off, len).copy(),
                    &mut self.tasks,
                );
                let got = self
                    .mail
                    .recv(
                        TensorKind::Weight,
                        epoch,
                        Address::Stage(ctx.spec.stage as u32),
                        &format!("{phase}:{step}"),
                        &ctx.describe(from),
                    )?
                    .to(Device::Cpu);
                let (off, len) = seg(recv_seg);
                if got.size() != [len] {
                    return Err(PipeError::Peer(format!(
                        "all-reduce segment from {}: expected {len} values, got {:?}",
                        ctx.describe(from),
                        got.size()
                    )));
                }
                let mut dst = flat.narrow(0, off, len);
                if phase == "reduce" {
                    let _ = dst.g_add_(&got);
                } else {
                    dst.copy_(&got);
                }
            }
        }
        Ok(Some((flat, bytes)))
    }
}
