//! The gRPC service: checks each request (role, sizes, shapes), streams the graph to disk and
//! tensors into the compute thread's mailbox, and answers health from shared state.

use super::compute::{Cmd, WorkerState};
use super::net::{Received, TensorLimits};
use crate::config::StageSpec;
use crate::proto::worker_server::Worker;
use crate::proto::{
    Ack, CheckpointReply, CheckpointRequest, ConfigPiece, EpochReply, EpochRequest, HealthReply, HealthRequest,
    KeepRequest, OutputsRequest, ParametersRequest, RegisterRequest, RestoreRequest, ShutdownRequest, TensorKind,
    TensorPiece, ValueType,
};
use crate::security::Role;
use crate::wire::{Address, Assembler};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status, Streaming};

pub(crate) struct Svc {
    pub(crate) rank: u32,
    /// TLS on: RPCs are authorised by the caller's certificate role.
    pub(crate) roles: bool,
    pub(crate) max_graph_bytes: u64,
    /// Graph bytes announced by the Configure streams in flight: together at most
    /// `max_graph_bytes`, so concurrent uploads cannot fill the disk one budget at a time.
    pub(crate) uploads: Arc<AtomicU64>,
    pub(crate) limits: Arc<std::sync::RwLock<TensorLimits>>,
    pub(crate) unclaimed: Arc<AtomicU64>,
    pub(crate) state: Arc<std::sync::Mutex<WorkerState>>,
    pub(crate) cmd: mpsc::Sender<Cmd>,
    pub(crate) inbox: mpsc::Sender<Received>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Bumped by every Configure: an epoch still waiting on the network (say, for a peer that
    /// was cut off) gives up, so a launcher recovering from a failure is not kept waiting.
    pub(crate) generation: Arc<AtomicU64>,
    pub(crate) registrations: Option<tokio::sync::mpsc::UnboundedSender<super::Registration>>,
}

impl Svc {
    /// With mutual TLS, refuses a caller whose certificate does not carry `role`.
    fn require<T>(&self, req: &Request<T>, role: Role, what: &str) -> Result<(), Status> {
        if !self.roles {
            return Ok(());
        }
        let found = req.peer_certs().and_then(|certs| certs.first().and_then(|c| Role::of_certificate(c.as_ref())));
        if found == Some(role) {
            return Ok(());
        }
        let who = found
            .map_or("a certificate without a strata role".to_string(), |r| format!("the {r:?} role").to_lowercase());
        Err(Status::permission_denied(format!(
            "{what} is for the {} role; the caller presented {who}",
            format!("{role:?}").to_lowercase()
        )))
    }
}

impl Svc {
    /// The error for a request whose compute-thread reply was dropped by a panic. The thread
    /// records why only after unwinding, so wait (briefly) for that and say it here.
    async fn stage_failed(&self) -> Status {
        for _ in 0..200 {
            if let WorkerState::Failed(why) = &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
                return Status::internal(format!("the stage failed: {why}; reconfigure the worker"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Status::internal("the stage failed while handling this request (Health says why); reconfigure the worker")
    }

    /// The compute thread's answer, or [`Self::stage_failed`] when it panicked instead.
    async fn reply<T>(&self, rx: oneshot::Receiver<T>) -> Result<T, Status> {
        match rx.await {
            Ok(r) => Ok(r),
            Err(_) => Err(self.stage_failed().await),
        }
    }
}

#[tonic::async_trait]
impl Worker for Svc {
    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthReply>, Status> {
        let state = match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            WorkerState::Idle => "idle".to_string(),
            WorkerState::Serving => "serving".to_string(),
            WorkerState::Failed(why) => format!("failed: {why}"),
        };
        Ok(Response::new(HealthReply {
            rank: self.rank,
            state,
            epoch: self.epoch.load(std::sync::atomic::Ordering::Relaxed),
        }))
    }

    async fn configure(&self, req: Request<Streaming<ConfigPiece>>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Launcher, "Configure")?;
        let mut stream = req.into_inner();
        let (mut spec, mut rank, mut peers) = (String::new(), 0, Vec::new());
        // The graph goes to disk as it arrives: a worker never holds the archive and its
        // parsed arrays at once.
        let mut npz = tempfile::NamedTempFile::new()
            .map_err(|e| Status::internal(format!("a temporary file for the graph: {e}")))?;
        let mut received = 0u64;
        let mut announced: Option<u64> = None;
        let mut _upload: Option<Reservation> = None;
        while let Some(c) = stream.message().await? {
            if !c.spec_json.is_empty() {
                if announced.is_some() {
                    return Err(Status::invalid_argument("the stage spec must come in the first piece only"));
                }
                if c.graph_bytes == 0 || c.graph_bytes > self.max_graph_bytes {
                    return Err(Status::resource_exhausted(format!(
                        "the graph announced is {} bytes; this worker accepts 1..={} (strata worker --max-graph-bytes)",
                        c.graph_bytes, self.max_graph_bytes
                    )));
                }
                _upload =
                    Some(Reservation::take(&self.uploads, c.graph_bytes, self.max_graph_bytes).map_err(|held| {
                        Status::resource_exhausted(format!(
                        "other configuration uploads in flight hold {held} of the {} bytes this worker accepts at once \
                         (strata worker --max-graph-bytes)",
                        self.max_graph_bytes
                    ))
                    })?);
                announced = Some(c.graph_bytes);
                spec = c.spec_json;
                rank = c.rank as usize;
                peers = c.peers;
            }
            let Some(total) = announced else {
                return Err(Status::invalid_argument(
                    "the first Configure piece must carry the stage spec and the graph's size",
                ));
            };
            if received + c.npz.len() as u64 > total {
                return Err(Status::invalid_argument(format!("the graph stream exceeds the {total} bytes announced")));
            }
            std::io::Write::write_all(&mut npz, &c.npz)
                .map_err(|e| Status::internal(format!("writing the graph to {}: {e}", npz.path().display())))?;
            received += c.npz.len() as u64;
        }
        if announced != Some(received) {
            return Err(Status::invalid_argument(format!(
                "the graph stream ended after {received} of {} bytes announced",
                announced.unwrap_or(0)
            )));
        }
        if rank >= peers.len() {
            return Err(Status::invalid_argument(format!("rank {rank} is not among the {} peers", peers.len())));
        }
        if let Some(bad) = peers.iter().find(|p| !is_host_port(p)) {
            return Err(Status::invalid_argument(format!("peer address `{bad}` is not host:port")));
        }
        let spec: StageSpec =
            serde_json::from_str(&spec).map_err(|e| Status::invalid_argument(format!("stage spec: {e}")))?;
        let bytes = received;
        self.generation.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Configure { spec: Box::new(spec), npz, rank, peers, reply: tx })
            .map_err(|_| Status::unavailable("compute thread gone"))?;
        self.reply(rx).await?.map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(Ack { bytes_received: bytes }))
    }

    async fn run_epoch(&self, req: Request<EpochRequest>) -> Result<Response<EpochReply>, Status> {
        self.require(&req, Role::Launcher, "RunEpoch")?;
        let req = req.into_inner();
        self.epoch.store(req.epoch, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Epoch { req, reply: tx }).map_err(|_| Status::unavailable("compute thread gone"))?;
        let r = self.reply(rx).await?.map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(r))
    }

    async fn checkpoint(&self, req: Request<CheckpointRequest>) -> Result<Response<CheckpointReply>, Status> {
        self.require(&req, Role::Launcher, "Checkpoint")?;
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Checkpoint { req: req.into_inner(), reply: tx })
            .map_err(|_| Status::unavailable("compute thread gone"))?;
        Ok(Response::new(self.reply(rx).await?.map_err(|e| Status::internal(e.to_string()))?))
    }

    async fn restore(&self, req: Request<RestoreRequest>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Launcher, "Restore")?;
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Restore { req: req.into_inner(), reply: tx })
            .map_err(|_| Status::unavailable("compute thread gone"))?;
        self.reply(rx).await?.map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(Ack { bytes_received: 0 }))
    }

    async fn push_tensor(&self, req: Request<Streaming<TensorPiece>>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Worker, "PushTensor")?;
        let limits = self.limits.read().unwrap_or_else(|e| e.into_inner()).clone();
        if limits.max_tensor == 0 {
            return Err(Status::failed_precondition("this worker is not configured: it accepts no tensors yet"));
        }
        let mut stream = req.into_inner();
        let mut asm = Assembler::new(limits.max_tensor);
        let mut reserved: Option<Reservation> = None;
        while let Some(c) = stream.message().await? {
            if reserved.is_none() {
                // Before anything of the header is quoted in an error: a name or shape of any
                // length would be echoed back whole.
                if c.name.len() > MAX_NAME_BYTES || c.shape.len() > MAX_DIMS {
                    return Err(Status::invalid_argument(format!(
                        "a tensor name of {} bytes or a shape of {} dimensions (at most {MAX_NAME_BYTES} and {MAX_DIMS})",
                        c.name.len(),
                        c.shape.len()
                    )));
                }
                let kind = TensorKind::try_from(c.kind).unwrap_or(TensorKind::Unspecified);
                limits
                    .check(kind, c.address.map(Address::from_proto), &c.shape)
                    .map_err(|e| Status::invalid_argument(format!("tensor `{}`: {e}", c.name)))?;
                if c.total_bytes > limits.max_tensor {
                    return Err(Status::invalid_argument(format!(
                        "tensor `{}`: {} bytes exceeds this worker's limit of {}",
                        c.name, c.total_bytes, limits.max_tensor
                    )));
                }
                // Reserve the announced size against the budget of tensors queued or arriving
                // before receiving it: concurrent streams count together.
                reserved = Some(Reservation::take(&self.unclaimed, c.total_bytes, limits.max_unclaimed).map_err(
                    |queued| {
                        Status::resource_exhausted(format!(
                            "{queued} bytes of tensors are queued or arriving; `{}` ({} bytes) would pass the limit of {}",
                            c.name, c.total_bytes, limits.max_unclaimed
                        ))
                    },
                )?);
            }
            asm.push(c).map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        let (meta, tensor) = asm.finish_tensor().map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key = (meta.kind as i32, meta.epoch, meta.address, meta.name);
        // The queued tensor keeps the reservation; the compute thread releases it when consumed.
        let bytes = reserved.map_or(0, Reservation::hand_over);
        self.inbox.send(Received { key, tensor, bytes }).map_err(|_| {
            self.unclaimed.fetch_sub(bytes, Ordering::SeqCst);
            Status::unavailable("compute thread gone")
        })?;
        Ok(Response::new(Ack { bytes_received: bytes }))
    }

    async fn register(&self, req: Request<RegisterRequest>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Worker, "Register")?;
        let peer = req.remote_addr();
        let r = req.into_inner();
        let Some(tx) = &self.registrations else {
            return Err(Status::failed_precondition(format!(
                "worker {} does not coordinate: register with rank 0",
                self.rank
            )));
        };
        let (reply, answer) = oneshot::channel();
        let gone = || Status::unavailable("coordinator is not waiting for registrations");
        tx.send(super::Registration { rank: r.rank, addr: r.addr.clone(), peer, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(Status::invalid_argument)?;
        tracing::info!("worker {} registered at {}", r.rank, r.addr);
        Ok(Response::new(Ack { bytes_received: 0 }))
    }

    async fn keep(&self, req: Request<KeepRequest>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Launcher, "Keep")?;
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Keep { epoch: req.into_inner().epoch, reply: tx })
            .map_err(|_| Status::unavailable("compute thread gone"))?;
        self.reply(rx).await?.map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(Ack { bytes_received: 0 }))
    }

    type ParametersStream = NamedStream;

    async fn parameters(&self, req: Request<ParametersRequest>) -> Result<Response<Self::ParametersStream>, Status> {
        self.require(&req, Role::Launcher, "Parameters")?;
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Parameters { reply: tx }).map_err(|_| Status::unavailable("compute thread gone"))?;
        let named = self.reply(rx).await?.map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(stream_named(named, TensorKind::Parameter, self.rank)))
    }

    async fn load_parameters(&self, req: Request<Streaming<TensorPiece>>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Launcher, "LoadParameters")?;
        let limit = self.limits.read().unwrap_or_else(|e| e.into_inner()).max_tensor;
        if limit == 0 {
            return Err(Status::failed_precondition("this worker is not configured: it has no parameters to set"));
        }
        let mut stream = req.into_inner();
        let (mut named, mut bytes) = (Vec::new(), 0u64);
        let mut asm: Option<(String, Assembler)> = None;
        let finish = |asm: Option<(String, Assembler)>, named: &mut Vec<(String, tch::Tensor)>| -> Result<(), Status> {
            let Some((_, a)) = asm else { return Ok(()) };
            let (meta, t) = a.finish_tensor().map_err(|e| Status::invalid_argument(e.to_string()))?;
            if meta.kind != TensorKind::Parameter || meta.value_type != ValueType::F32 {
                return Err(Status::invalid_argument(format!("`{}` is not an f32 parameter", meta.name)));
            }
            named.push((meta.name, t));
            Ok(())
        };
        while let Some(piece) = stream.message().await? {
            // The stage's parameters all together are no larger than its largest tensor limit.
            bytes += piece.data.len() as u64;
            if bytes > limit {
                return Err(Status::invalid_argument(format!("more parameter bytes than this stage holds ({limit})")));
            }
            if asm.as_ref().is_none_or(|(name, _)| *name != piece.name) {
                finish(asm.take(), &mut named)?;
                asm = Some((piece.name.clone(), Assembler::new(limit)));
            }
            let (_, a) = asm.as_mut().expect("started above");
            a.push(piece).map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        finish(asm.take(), &mut named)?;
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::LoadParameters { named, reply: tx })
            .map_err(|_| Status::unavailable("compute thread gone"))?;
        self.reply(rx).await?.map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(Ack { bytes_received: bytes }))
    }

    type OutputsStream = NamedStream;

    async fn outputs(&self, req: Request<OutputsRequest>) -> Result<Response<Self::OutputsStream>, Status> {
        self.require(&req, Role::Launcher, "Outputs")?;
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Outputs { reply: tx }).map_err(|_| Status::unavailable("compute thread gone"))?;
        let named = self.reply(rx).await?.map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(stream_named(named, TensorKind::Output, self.rank)))
    }

    async fn shutdown(&self, req: Request<ShutdownRequest>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Launcher, "Shutdown")?;
        tracing::info!("shutdown requested: {}", req.into_inner().reason);
        let _ = self.shutdown.send(true);
        Ok(Response::new(Ack { bytes_received: 0 }))
    }
}

/// A stream of named tensors in pieces.
type NamedStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<TensorPiece, Status>> + Send>>;

/// `named` (f32) as a stream of [`TensorPiece`]s of `kind`, addressed by this worker's stage.
fn stream_named(named: Vec<(String, tch::Tensor)>, kind: TensorKind, rank: u32) -> NamedStream {
    Box::pin(futures::stream::iter(crate::wire::named_pieces(named, kind, rank).map(Ok)))
}

/// `host:port` with a numeric port (peer addresses arrive from the network).
fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && host.len() < 256 && port.parse::<u16>().is_ok() && !host.contains(['/', '@', ' '])
    })
}

/// The longest tensor name and the most dimensions a pushed tensor may have (strata's own are a
/// few bytes and two dimensions).
const MAX_NAME_BYTES: usize = 128;
const MAX_DIMS: usize = 8;

/// Bytes of an arriving stream reserved against a budget shared by every stream (queued
/// tensors, configuration uploads): given back when dropped (the stream ended, failed, was
/// refused or its client went away) unless handed over to the queued tensor.
struct Reservation<'a> {
    budget: &'a AtomicU64,
    bytes: u64,
}

impl<'a> Reservation<'a> {
    /// Reserves `bytes` unless that would take the total past `limit`; Err: the bytes queued.
    fn take(budget: &'a AtomicU64, bytes: u64, limit: u64) -> Result<Reservation<'a>, u64> {
        budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
            (q.saturating_add(bytes) <= limit).then(|| q + bytes)
        })?;
        Ok(Reservation { budget, bytes })
    }
    /// The bytes, now owned by whoever queues the tensor.
    fn hand_over(self) -> u64 {
        let bytes = self.bytes;
        std::mem::forget(self);
        bytes
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Streams in flight count against the budget together, from their first piece: a
    /// reservation refused past the limit, given back when its stream fails, kept by the queued
    /// tensor once handed over.
    #[test]
    fn reservations_bound_streams_in_flight_together() {
        let budget = AtomicU64::new(0);
        let a = Reservation::take(&budget, 60, 100).unwrap();
        let b = Reservation::take(&budget, 40, 100).unwrap();
        assert_eq!(Reservation::take(&budget, 1, 100).err(), Some(100));
        drop(b);
        assert_eq!(budget.load(Ordering::SeqCst), 60);
        assert_eq!(a.hand_over(), 60);
        assert_eq!(budget.load(Ordering::SeqCst), 60, "a queued tensor keeps its bytes reserved");
        assert!(Reservation::take(&budget, 41, 100).is_err());
    }
}
