//! The worker process: a tonic server in front of one compute thread that owns the stage's
//! tensors (`tch::Tensor` is not `Sync`, so model state never crosses threads; RPC handlers
//! talk to it through channels). Binds loopback by default, refuses to listen beyond it without
//! credentials, and with them refuses every RPC that lacks the token or a certificate of the
//! cluster's CA (see [`crate::security`]).

use crate::forward_stage::ForwardStage;
use crate::layers::Exchange;
use crate::partition_stage::PartitionStage;
use crate::pipeline::Mode;
use crate::pipeline::PipeTrainer;
use crate::proto::worker_client::WorkerClient;
use crate::proto::worker_server::{Worker, WorkerServer};
use crate::proto::{
    Ack, CheckpointReply, CheckpointRequest, ConfigChunk, EpochReply, EpochRequest, HealthReply, HealthRequest,
    RegisterRequest, RestoreRequest, ShutdownRequest, TensorChunk, TensorKind, ValueType,
};
use crate::security::{bearer_matches, Credentials, Role};
use crate::stage::{Boundary, Stage, StageSpec};
use crate::wire::{Assembler, Pieces, TensorBytes, TensorMeta, DEFAULT_CHUNK_BYTES};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use tokio::sync::{oneshot, watch};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

/// Chunk id used for exact full-graph inference passes.
pub const FULL_GRAPH: u32 = u32::MAX;
/// Largest single gRPC message a worker decodes.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Default cap on the graph a Configure stream may carry (`strata worker --max-graph-bytes`).
pub const DEFAULT_MAX_GRAPH_BYTES: u64 = 32 << 30;
/// How often a waiting compute thread checks whether its epoch was abandoned.
const POLL: Duration = Duration::from_millis(200);
/// How long a stage waits for a neighbour's tensor before giving up on it.
const RECV_TIMEOUT: Duration = Duration::from_secs(120);

/// Adds (client side) or checks (server side) `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct Auth(pub Option<String>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().map_err(|_| Status::internal("bad token"))?);
        }
        Ok(req)
    }
}

#[derive(Clone)]
struct CheckAuth(Option<String>);

impl tonic::service::Interceptor for CheckAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match &self.0 {
            None => Ok(req),
            Some(t) => {
                if bearer_matches(req.metadata().get("authorization").map(|v| v.as_bytes()), t) {
                    Ok(req)
                } else {
                    Err(Status::unauthenticated("missing or wrong cluster token"))
                }
            }
        }
    }
}

pub type Client = WorkerClient<InterceptedService<Channel, Auth>>;

/// A lazily connecting client to `addr` (`host:port`), presenting `creds` (TLS when given).
pub fn client(addr: &str, creds: &Credentials) -> Result<Client, tonic::transport::Error> {
    let scheme = if creds.tls.is_some() { "https" } else { "http" };
    // Keep-alives notice a peer whose link is gone (TCP alone would retransmit for minutes).
    let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if let Some(tls) = &creds.tls {
        ep = ep.tls_config(tls.client_config())?;
    }
    Ok(WorkerClient::with_interceptor(ep.connect_lazy(), Auth(creds.token.clone())))
}

struct Received {
    key: (i32, u64, u32, String),
    tensor: Tensor,
    bytes: u64,
}

/// What tensors this worker accepts from its peers, published by the compute thread when it is
/// configured: nothing before, and afterwards nothing larger than a full-graph activation of
/// the widest layer, with a bounded total waiting unclaimed.
#[derive(Clone, Debug, Default)]
struct TensorLimits {
    /// Largest single tensor (bytes); 0 = not configured, refuse every tensor.
    max_tensor: u64,
    /// Largest total of received tensors not yet consumed by the compute thread.
    max_unclaimed: u64,
    /// Vertices of the graph and rows of each chunk (activations and gradients of a chunk
    /// must have exactly those rows; full-graph ones N, or N + classes in forward-only runs).
    nodes: i64,
    chunk_rows: Vec<i64>,
    classes: i64,
}

impl TensorLimits {
    fn new(spec: &StageSpec, nodes: usize, parameters: usize) -> TensorLimits {
        let n = nodes as i64;
        let width = spec.config.hidden.max(spec.classes).max(1);
        // A full-graph activation (plus the virtual nodes of forward-only runs) or, for the
        // all-reduce, every parameter of the stage.
        let activation = ((n + spec.classes) * width * 4) as u64;
        let max_tensor = activation.max(parameters as u64 * 4).max(4);
        let chunk_rows = spec.chunk_offsets.windows(2).map(|w| (w[1] - w[0]) as i64).collect();
        // Neighbours run ahead by at most an epoch's chunks each way (activations from below,
        // gradients from above, h0 beside x), plus one full-graph pass and halo traffic.
        TensorLimits { max_tensor, max_unclaimed: 6 * max_tensor, nodes: n, chunk_rows, classes: spec.classes }
    }
    /// Checks a received tensor's kind and shape before it is queued.
    fn check(&self, kind: TensorKind, chunk: u32, shape: &[i64]) -> Result<(), String> {
        let rows_ok = |r: i64| match kind {
            TensorKind::Activation | TensorKind::Gradient if chunk == FULL_GRAPH => {
                r == self.nodes || r == self.nodes + self.classes
            }
            TensorKind::Activation | TensorKind::Gradient => {
                self.chunk_rows.get(chunk as usize).is_some_and(|&rows| r == rows || r == self.classes)
            }
            _ => r <= self.nodes + self.classes,
        };
        match (kind, shape) {
            (TensorKind::Weight, [_]) => Ok(()),
            (TensorKind::Activation | TensorKind::Gradient | TensorKind::Halo, [r, _]) if rows_ok(*r) => Ok(()),
            (TensorKind::Unspecified, _) => Err("tensor kind unspecified".into()),
            _ => Err(format!("{kind:?} tensor of shape {shape:?} does not fit chunk {chunk} of this stage")),
        }
    }
}

/// The worker's health as reported to anyone who asks.
#[derive(Clone, Debug)]
enum WorkerState {
    /// Up, waiting for Configure.
    Idle,
    Serving,
    /// The compute thread panicked: the stage's state is gone until the next Configure.
    Failed(String),
}

enum Cmd {
    Configure {
        spec: Box<StageSpec>,
        npz: tempfile::NamedTempFile,
        rank: usize,
        peers: Vec<String>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Epoch {
        req: EpochRequest,
        reply: oneshot::Sender<Result<EpochReply, String>>,
    },
    Checkpoint {
        req: CheckpointRequest,
        reply: oneshot::Sender<Result<CheckpointReply, String>>,
    },
    Restore {
        req: RestoreRequest,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

struct Svc {
    rank: u32,
    /// TLS on: RPCs are authorised by the caller's certificate role.
    roles: bool,
    max_graph_bytes: u64,
    limits: Arc<std::sync::RwLock<TensorLimits>>,
    unclaimed: Arc<AtomicU64>,
    state: Arc<std::sync::Mutex<WorkerState>>,
    cmd: mpsc::Sender<Cmd>,
    inbox: mpsc::Sender<Received>,
    shutdown: watch::Sender<bool>,
    epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Bumped by every Configure: an epoch still waiting on the network (say, for a peer that
    /// was cut off) gives up, so a launcher recovering from a failure is not kept waiting.
    generation: Arc<AtomicU64>,
    registrations: Option<tokio::sync::mpsc::UnboundedSender<(u32, String)>>,
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

    async fn configure(&self, req: Request<Streaming<ConfigChunk>>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Launcher, "Configure")?;
        let mut stream = req.into_inner();
        let (mut spec, mut rank, mut peers) = (String::new(), 0, Vec::new());
        // The graph goes to disk as it arrives: a worker never holds the archive and its
        // parsed arrays at once.
        let mut npz = tempfile::NamedTempFile::new()
            .map_err(|e| Status::internal(format!("a temporary file for the graph: {e}")))?;
        let mut received = 0u64;
        let mut announced: Option<u64> = None;
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
        self.reply(rx).await?.map_err(Status::invalid_argument)?;
        Ok(Response::new(Ack { bytes_received: bytes }))
    }

    async fn run_epoch(&self, req: Request<EpochRequest>) -> Result<Response<EpochReply>, Status> {
        self.require(&req, Role::Launcher, "RunEpoch")?;
        let req = req.into_inner();
        self.epoch.store(req.epoch, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Epoch { req, reply: tx }).map_err(|_| Status::unavailable("compute thread gone"))?;
        let r = self.reply(rx).await?.map_err(Status::internal)?;
        Ok(Response::new(r))
    }

    async fn checkpoint(&self, req: Request<CheckpointRequest>) -> Result<Response<CheckpointReply>, Status> {
        self.require(&req, Role::Launcher, "Checkpoint")?;
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Checkpoint { req: req.into_inner(), reply: tx })
            .map_err(|_| Status::unavailable("compute thread gone"))?;
        Ok(Response::new(self.reply(rx).await?.map_err(Status::internal)?))
    }

    async fn restore(&self, req: Request<RestoreRequest>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Launcher, "Restore")?;
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Restore { req: req.into_inner(), reply: tx })
            .map_err(|_| Status::unavailable("compute thread gone"))?;
        self.reply(rx).await?.map_err(Status::failed_precondition)?;
        Ok(Response::new(Ack { bytes_received: 0 }))
    }

    async fn push_tensor(&self, req: Request<Streaming<TensorChunk>>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Worker, "PushTensor")?;
        let limits = self.limits.read().unwrap_or_else(|e| e.into_inner()).clone();
        if limits.max_tensor == 0 {
            return Err(Status::failed_precondition("this worker is not configured: it accepts no tensors yet"));
        }
        let mut stream = req.into_inner();
        let mut asm = Assembler::new(limits.max_tensor);
        let mut bytes = 0u64;
        while let Some(c) = stream.message().await? {
            if bytes == 0 {
                let kind = TensorKind::try_from(c.kind).unwrap_or(TensorKind::Unspecified);
                limits
                    .check(kind, c.chunk, &c.shape)
                    .map_err(|e| Status::invalid_argument(format!("tensor `{}`: {e}", c.name)))?;
                if c.total_bytes > limits.max_tensor {
                    return Err(Status::invalid_argument(format!(
                        "tensor `{}`: {} bytes exceeds this worker's limit of {}",
                        c.name, c.total_bytes, limits.max_tensor
                    )));
                }
                // Reserve the announced size against the unclaimed budget before receiving it.
                let queued = self.unclaimed.load(Ordering::SeqCst);
                if queued.saturating_add(c.total_bytes) > limits.max_unclaimed {
                    return Err(Status::resource_exhausted(format!(
                        "{queued} bytes of tensors are waiting unclaimed; `{}` ({} bytes) would pass the limit of {}",
                        c.name, c.total_bytes, limits.max_unclaimed
                    )));
                }
            }
            bytes += c.data.len() as u64;
            asm.push(c).map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        let (meta, tensor) = asm.finish_tensor().map_err(|e| Status::invalid_argument(e.to_string()))?;
        let key = (meta.kind as i32, meta.epoch, meta.chunk, meta.name);
        self.unclaimed.fetch_add(bytes, Ordering::SeqCst);
        self.inbox.send(Received { key, tensor, bytes }).map_err(|_| Status::unavailable("compute thread gone"))?;
        Ok(Response::new(Ack { bytes_received: bytes }))
    }

    async fn register(&self, req: Request<RegisterRequest>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Worker, "Register")?;
        let r = req.into_inner();
        let Some(tx) = &self.registrations else {
            return Err(Status::failed_precondition(format!(
                "worker {} does not coordinate: register with rank 0",
                self.rank
            )));
        };
        tracing::info!("worker {} registered at {}", r.rank, r.addr);
        tx.send((r.rank, r.addr)).map_err(|_| Status::unavailable("coordinator is not waiting for registrations"))?;
        Ok(Response::new(Ack { bytes_received: 0 }))
    }

    async fn shutdown(&self, req: Request<ShutdownRequest>) -> Result<Response<Ack>, Status> {
        self.require(&req, Role::Launcher, "Shutdown")?;
        tracing::info!("shutdown requested: {}", req.into_inner().reason);
        let _ = self.shutdown.send(true);
        Ok(Response::new(Ack { bytes_received: 0 }))
    }
}

enum Engine {
    /// A pipeline stage (pipeline and hybrid modes).
    Pipe(Box<Stage>),
    /// A graph partition owning every layer (graph mode).
    Graph(Box<PartitionStage>),
    /// A forward-only stage of single-forward layers (`--trainer sf`).
    Forward(Box<ForwardStage>),
}

/// Who this worker is and whom it talks to.
struct Ctx {
    spec: StageSpec,
    rank: usize,
    /// Every worker by rank.
    peers: Vec<Client>,
    peer_addrs: Vec<String>,
}

impl Ctx {
    fn stages(&self) -> usize {
        if self.spec.config.mode == Mode::Graph {
            1
        } else {
            self.spec.config.stages
        }
    }
    /// Rank of the worker holding `stage` of `way`.
    fn rank_of(&self, way: usize, stage: usize) -> usize {
        way * self.stages() + stage
    }
    fn describe(&self, rank: usize) -> String {
        format!("worker {rank} ({})", self.peer_addrs[rank])
    }
}

struct Runtime {
    engine: Engine,
    ctx: Ctx,
}

struct Compute {
    rt: tokio::runtime::Handle,
    creds: Credentials,
    device: Device,
    generation: Arc<AtomicU64>,
    /// The generation the running epoch started in.
    epoch_generation: u64,
    inbox: mpsc::Receiver<Received>,
    pending: HashMap<(i32, u64, u32, String), (Tensor, u64)>,
    /// Bytes received and not yet consumed (shared with the RPC side, which enforces the cap).
    unclaimed: Arc<AtomicU64>,
    limits: Arc<std::sync::RwLock<TensorLimits>>,
    state: Option<Runtime>,
    /// Encoded bytes of this epoch's tensor sends (protobuf + gRPC length prefix).
    wire_bytes: AtomicU64,
}

type SendTask = tokio::task::JoinHandle<Result<(), (String, Status)>>;

impl Compute {
    fn recv(&mut self, kind: TensorKind, epoch: u64, chunk: u32, name: &str, from: &str) -> Result<Tensor, String> {
        let key = (kind as i32, epoch, chunk, name.to_string());
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
                return Err(format!("timed out after {RECV_TIMEOUT:?} waiting for {kind:?} `{name}` of chunk {chunk}, epoch {epoch} from {from}"));
            }
            if let Ok(r) = self.inbox.recv_timeout(left.min(POLL)) {
                if let Some((_, stale)) = self.pending.insert(r.key, (r.tensor, r.bytes)) {
                    self.unclaimed.fetch_sub(stale, Ordering::SeqCst);
                }
            }
        }
    }

    /// Err when a Configure arrived since this epoch began.
    fn check_abandoned(&self) -> Result<(), String> {
        if self.generation.load(Ordering::SeqCst) != self.epoch_generation {
            return Err("epoch abandoned: the launcher reconfigured this worker".into());
        }
        Ok(())
    }

    /// Receives a chunk's boundary tensors (`x`, then `h0` when `expect` has two shapes) and
    /// refuses any whose shape is not the one expected.
    fn recv_boundary(
        &mut self,
        kind: TensorKind,
        epoch: u64,
        chunk: u32,
        expect: &[Vec<i64>],
        from: &str,
    ) -> Result<Boundary, String> {
        let mut got = Vec::new();
        for (name, shape) in ["x", "h0"].into_iter().zip(expect) {
            let t = self.recv(kind, epoch, chunk, name, from)?;
            if t.size() != *shape {
                return Err(format!(
                    "{kind:?} `{name}` of chunk {chunk} from {from}: expected shape {shape:?}, got {:?}",
                    t.size()
                ));
            }
            got.push(t);
        }
        let mut got = got.into_iter();
        let x = got.next().ok_or("no boundary tensor expected")?;
        Ok(Boundary { x, h0: got.next() })
    }

    /// Drops every tensor waiting unclaimed (a new run, or a failed one).
    fn clear_pending(&mut self) {
        while let Ok(r) = self.inbox.try_recv() {
            self.unclaimed.fetch_sub(r.bytes, Ordering::SeqCst);
        }
        for (_, (_, bytes)) in self.pending.drain() {
            self.unclaimed.fetch_sub(bytes, Ordering::SeqCst);
        }
    }

    /// `path` (from the launcher) if it lies under this run's checkpoint root: no `..`, no
    /// absolute path elsewhere.
    fn confined(&self, path: &str) -> Result<std::path::PathBuf, String> {
        let rt = self.state.as_ref().ok_or("not configured")?;
        let root =
            rt.ctx.spec.checkpoint_root.as_deref().ok_or("this run was configured without a checkpoint directory")?;
        let p = std::path::Path::new(path);
        let escapes = p.components().any(|c| matches!(c, std::path::Component::ParentDir));
        if escapes || !p.starts_with(root) {
            return Err(format!("`{path}` is outside this run's checkpoint directory `{root}`"));
        }
        Ok(p.to_path_buf())
    }

    /// Streams one tensor to a peer in the background, its messages cut from the tensor's own
    /// memory as the stream is polled; returns the payload bytes. The tensor must not be
    /// written in place until the epoch's sends are flushed (callers that reuse a buffer send
    /// a copy).
    fn send_tensor(&self, to: &Client, to_addr: &str, meta: TensorMeta, t: &Tensor, tasks: &mut Vec<SendTask>) -> u64 {
        let kind = meta.kind;
        let data = TensorBytes::new(t, meta.value_type);
        let msgs = Pieces::new(meta, data, DEFAULT_CHUNK_BYTES);
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

    fn epoch(&mut self, req: EpochRequest) -> Result<EpochReply, String> {
        // Fail point for the tests: a stage that panics mid-epoch must report itself failed.
        if std::env::var("STRATA_FAILPOINT").is_ok_and(|f| f == "epoch-panic") {
            panic!("fail point epoch-panic");
        }
        let t0 = Instant::now();
        self.epoch_generation = self.generation.load(Ordering::SeqCst);
        let mut rt = self.state.take().ok_or("RunEpoch before Configure")?;
        metrics::counter!("strata_epochs_total", "mode" => if req.train { "train" } else { "eval" }).increment(1);
        self.wire_bytes.store(0, Ordering::Relaxed);
        let mut net =
            Net { c: self, ctx: &rt.ctx, epoch: req.epoch, halo_bytes: 0, weight_bytes: 0, tasks: Vec::new() };
        let result = net.run(&mut rt.engine, &req).and_then(|mut reply| {
            reply.halo_bytes += net.halo_bytes;
            reply.weight_bytes += net.weight_bytes;
            net.flush()?;
            Ok(reply)
        });
        self.state = Some(rt);
        let mut reply = result?;
        reply.compute_ms = t0.elapsed().as_secs_f64() * 1e3;
        reply.wire_bytes = self.wire_bytes.load(Ordering::Relaxed);
        reply.peak_rss_bytes = strata_nn::memory::peak_rss_bytes().unwrap_or(0);
        tracing::info!(
            "epoch {} ({}) done in {:.0} ms: {}",
            req.epoch,
            if req.train { "train" } else { "eval" },
            reply.compute_ms,
            strata_nn::memory::rss_summary()
        );
        reply.cuda_peak_bytes = strata_nn::memory::cuda_peak_bytes(self.device);
        metrics::gauge!("strata_peak_rss_bytes").set(reply.peak_rss_bytes as f64);
        if reply.cuda_peak_bytes > 0 {
            metrics::gauge!("strata_cuda_peak_bytes").set(reply.cuda_peak_bytes as f64);
        }
        Ok(reply)
    }

    fn checkpoint(&mut self, req: CheckpointRequest) -> Result<CheckpointReply, String> {
        let rt = self.state.as_ref().ok_or("Checkpoint before Configure")?;
        let mut tensors = match &rt.engine {
            Engine::Pipe(s) => s.state(),
            Engine::Graph(p) => p.state(),
            Engine::Forward(f) => f.state(),
        };
        tensors.push(("epoch".into(), Tensor::from_slice(&[req.epoch as i64])));
        let rank = rt.ctx.rank;
        let dir = self.confined(&req.dir)?;
        let f = crate::checkpoint::write_worker_state(&dir, rank, &tensors).map_err(|e| e.to_string())?;
        tracing::info!("checkpoint of epoch {} written: {} ({} bytes)", req.epoch, f.file, f.bytes);
        Ok(CheckpointReply { file: f.file, sha256: f.sha256, bytes: f.bytes })
    }

    fn restore(&mut self, req: RestoreRequest) -> Result<(), String> {
        let path = self.confined(&req.path)?;
        let rt = self.state.as_mut().ok_or("Restore before Configure")?;
        let named = crate::checkpoint::read_worker_state(&path, &req.sha256).map_err(|e| e.to_string())?;
        match &mut rt.engine {
            Engine::Pipe(s) => s.load_state(&named),
            Engine::Graph(p) => p.load_state(&named),
            Engine::Forward(f) => f.load_state(&named),
        }
        .map_err(|e| format!("{}: {e}", req.path))?;
        tracing::info!("restored {}", req.path);
        Ok(())
    }

    fn configure(
        &mut self,
        spec: StageSpec,
        npz: tempfile::NamedTempFile,
        rank: usize,
        peer_addrs: Vec<String>,
    ) -> Result<(), String> {
        let data = crate::StageData::from_npz(npz.path()).map_err(|e| format!("graph from launcher: {e}"))?;
        drop(npz);
        tracing::info!("graph from launcher parsed: {}", strata_nn::memory::rss_summary());
        let mut spec = spec;
        if !(spec.train.is_empty() && spec.val.is_empty() && spec.test.is_empty()) {
            return Err("stage spec: the split's node ids come in the graph stream, not in the spec".into());
        }
        [spec.train, spec.val, spec.test] = data.split.clone();
        spec.validate(&data, peer_addrs.len()).map_err(|e| format!("stage spec: {e}"))?;
        // A new run: the old one's tensors and limits go, whatever happens next.
        self.state = None;
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = TensorLimits::default();
        self.clear_pending();
        // tonic channels spawn their connection task on the runtime: enter it from this thread.
        let _guard = self.rt.enter();
        let peers = peer_addrs
            .iter()
            .map(|a| client(a, &self.creds).map_err(|e| format!("{a}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let engine = if spec.config.trainer == PipeTrainer::Sf {
            let f = ForwardStage::new(spec.clone(), &data, self.device)?;
            tracing::info!(
                "forward-only stage {} configured: slots {}..{}, {} parameters",
                spec.stage,
                spec.first,
                spec.last,
                f.parameters()
            );
            Engine::Forward(Box::new(f))
        } else if spec.config.mode == Mode::Graph {
            let p = PartitionStage::new(spec.clone(), &data, self.device)?;
            tracing::info!(
                "partition {} configured: {} halo rows per layer, {} parameters",
                spec.way,
                p.halo_rows(),
                p.parameters()
            );
            Engine::Graph(Box::new(p))
        } else {
            let st = Stage::new(spec.clone(), &data, self.device).map_err(|e| e.to_string())?;
            tracing::info!(
                "way {} stage {} configured: slots {}..{}, {} parameters",
                spec.way,
                spec.stage,
                spec.first,
                spec.last,
                st.parameters()
            );
            Engine::Pipe(Box::new(st))
        };
        // Tensors of an abandoned run must not be mistaken for the new run's.
        self.clear_pending();
        let parameters = match &engine {
            Engine::Pipe(s) => s.parameters(),
            Engine::Graph(p) => p.parameters(),
            Engine::Forward(f) => f.parameters(),
        };
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) =
            TensorLimits::new(&spec, data.num_nodes(), parameters);
        tracing::info!(
            "stage data: {} feature rows, {} labelled; configured: {}",
            data.feature_rows.len(),
            data.labels.iter().filter(|&&l| l >= 0).count(),
            strata_nn::memory::rss_summary()
        );
        drop(data);
        self.state = Some(Runtime { engine, ctx: Ctx { spec, rank, peers, peer_addrs } });
        Ok(())
    }
}

/// One epoch's view of the network: sends, receives, halo exchange and the ring all-reduce,
/// with the bytes sent counted by kind.
struct Net<'a> {
    c: &'a mut Compute,
    ctx: &'a Ctx,
    epoch: u64,
    halo_bytes: u64,
    weight_bytes: u64,
    tasks: Vec<SendTask>,
}

impl Net<'_> {
    fn send_boundary(&mut self, to_rank: usize, kind: TensorKind, chunk: u32, b: &Boundary) -> u64 {
        let mut bytes = 0;
        for (name, t) in [("x", Some(&b.x)), ("h0", b.h0.as_ref())] {
            let Some(t) = t else { continue };
            // Activations travel in the historical embeddings' type (a 16-bit one halves the
            // bytes); gradients stay f32.
            let value_type = if kind == TensorKind::Activation {
                self.ctx.spec.config.history_dtype.value_type()
            } else {
                ValueType::F32
            };
            let meta = TensorMeta { name: name.into(), kind, epoch: self.epoch, chunk, shape: t.size(), value_type };
            bytes +=
                self.c.send_tensor(&self.ctx.peers[to_rank], &self.ctx.peer_addrs[to_rank], meta, t, &mut self.tasks);
        }
        bytes
    }

    /// Waits for every send of the epoch; a failed one names the peer it was for.
    fn flush(&mut self) -> Result<(), String> {
        let tasks: Vec<SendTask> = self.tasks.drain(..).collect();
        for mut t in tasks {
            loop {
                if let Err(e) = self.c.check_abandoned() {
                    t.abort();
                    return Err(e);
                }
                match self.c.rt.block_on(async { tokio::time::timeout(POLL, &mut t).await }) {
                    Ok(done) => {
                        done.map_err(|e| e.to_string())?
                            .map_err(|(addr, s)| format!("sending to {addr} failed: {}", s.message()))?;
                        break;
                    }
                    Err(_) => continue,
                }
            }
        }
        Ok(())
    }

    fn run(&mut self, engine: &mut Engine, req: &EpochRequest) -> Result<EpochReply, String> {
        match engine {
            Engine::Pipe(stage) => self.run_stage(stage, req),
            Engine::Forward(stage) => self.run_forward(stage, req),
            Engine::Graph(part) => {
                let mut reply = EpochReply::default();
                if req.train {
                    reply.loss = part.train_epoch(req.epoch, self)?;
                } else {
                    [reply.train_correct, reply.val_correct, reply.test_correct] = part.evaluate(self)?;
                }
                Ok(reply)
            }
        }
    }

    /// Forward-only: chunks flow up the stages and nothing comes back; each stage steps its own
    /// layers at the end of the epoch.
    fn run_forward(&mut self, stage: &mut ForwardStage, req: &EpochRequest) -> Result<EpochReply, String> {
        let ctx = self.ctx;
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
                    Some(self.c.recv_boundary(TensorKind::Activation, epoch, c, &expect, &ctx.describe(prev))?)
                };
                let out = stage.train_chunk(c as usize, input);
                if !last {
                    reply.activation_bytes += self.send_boundary(next, TensorKind::Activation, c, &out);
                }
            }
            stage.end_epoch();
            reply.loss = stage.last_loss;
        } else {
            let expect = stage.boundary_shapes(None);
            let input = if first {
                None
            } else {
                Some(self.c.recv_boundary(TensorKind::Activation, epoch, FULL_GRAPH, &expect, &ctx.describe(prev))?)
            };
            let out = stage.infer(input);
            if last {
                [reply.train_correct, reply.val_correct, reply.test_correct] =
                    stage.evaluate(out.h0.as_ref().expect("class distributions"));
            } else {
                reply.activation_bytes += self.send_boundary(next, TensorKind::Activation, FULL_GRAPH, &out);
            }
        }
        Ok(reply)
    }

    fn run_stage(&mut self, stage: &mut Stage, req: &EpochRequest) -> Result<EpochReply, String> {
        let ctx = self.ctx;
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
                    Some(self.c.recv_boundary(
                        TensorKind::Activation,
                        epoch,
                        c as u32,
                        &spec.boundary_shapes(Some(c)),
                        &ctx.describe(prev),
                    )?)
                };
                let out = stage.forward(Some(c), input);
                if !last {
                    reply.activation_bytes += self.send_boundary(next, TensorKind::Activation, c as u32, &out);
                }
            }
            for &c in order.iter().rev() {
                let grad = if last {
                    None
                } else {
                    Some(self.c.recv_boundary(
                        TensorKind::Gradient,
                        epoch,
                        c as u32,
                        &spec.boundary_shapes(Some(c)),
                        &ctx.describe(next),
                    )?)
                };
                let back = stage.backward(c, grad);
                if let (false, Some(g)) = (first, back) {
                    reply.gradient_bytes += self.send_boundary(prev, TensorKind::Gradient, c as u32, &g);
                }
            }
            stage.end_epoch(self)?;
            reply.loss = stage.last_loss;
        } else if spec.way == 0 {
            // Exact inference runs down way 0's stages only: every way holds the same weights.
            let input = if first {
                None
            } else {
                Some(self.c.recv_boundary(
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
                reply.activation_bytes += self.send_boundary(next, TensorKind::Activation, FULL_GRAPH, &out);
            }
        }
        Ok(reply)
    }
}

impl Exchange for Net<'_> {
    fn halo(
        &mut self,
        tag: &str,
        slot: usize,
        outgoing: &[(usize, Tensor)],
        incoming: &[usize],
    ) -> Result<Vec<Tensor>, String> {
        let ctx = self.ctx;
        let me = ctx.spec.way;
        for (q, t) in outgoing {
            let to = ctx.rank_of(*q, ctx.spec.stage);
            let meta = TensorMeta {
                name: format!("{tag}:{me}"),
                kind: TensorKind::Halo,
                epoch: self.epoch,
                chunk: slot as u32,
                shape: t.size(),
                value_type: ValueType::F32,
            };
            self.halo_bytes += self.c.send_tensor(&ctx.peers[to], &ctx.peer_addrs[to], meta, t, &mut self.tasks);
        }
        incoming
            .iter()
            .map(|&q| {
                let from = ctx.describe(ctx.rank_of(q, ctx.spec.stage));
                self.c.recv(TensorKind::Halo, self.epoch, slot as u32, &format!("{tag}:{q}"), &from)
            })
            .collect()
    }

    /// Ring all-reduce over the ways of this stage: W−1 reduce-scatter steps, then W−1
    /// all-gather steps, each sending one of W segments to the next way — 2·(W−1)/W of the
    /// vector per worker, 2·(W−1)·|flat| values in all.
    fn all_reduce(&mut self, flat: Tensor) -> Result<Tensor, String> {
        let ctx = self.ctx;
        let w = ctx.spec.ways;
        if w <= 1 {
            return Ok(flat);
        }
        let me = ctx.spec.way;
        let (to, from) = (ctx.rank_of((me + 1) % w, ctx.spec.stage), ctx.rank_of((me + w - 1) % w, ctx.spec.stage));
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
                    epoch: self.epoch,
                    chunk: ctx.spec.stage as u32,
                    shape: vec![len],
                    value_type: ValueType::F32,
                };
                // A copy: `flat` is summed into in place while the segment may still be in flight.
                self.weight_bytes += self.c.send_tensor(
                    &ctx.peers[to],
                    &ctx.peer_addrs[to],
                    meta,
                    &flat.narrow(0, off, len).copy(),
                    &mut self.tasks,
                );
                let got = self
                    .c
                    .recv(
                        TensorKind::Weight,
                        self.epoch,
                        ctx.spec.stage as u32,
                        &format!("{phase}:{step}"),
                        &ctx.describe(from),
                    )?
                    .to(Device::Cpu);
                let (off, len) = seg(recv_seg);
                if got.size() != [len] {
                    return Err(format!(
                        "all-reduce segment from {}: expected {len} values, got {:?}",
                        ctx.describe(from),
                        got.size()
                    ));
                }
                let mut dst = flat.narrow(0, off, len);
                if phase == "reduce" {
                    let _ = dst.g_add_(&got);
                } else {
                    dst.copy_(&got);
                }
            }
        }
        Ok(flat)
    }
}

/// A chunk order from the network must be a permutation of `0..k`.
fn check_permutation(order: &[u32], k: usize) -> Result<(), String> {
    let mut seen = vec![false; k];
    if order.len() != k || order.iter().any(|&c| (c as usize) >= k || std::mem::replace(&mut seen[c as usize], true)) {
        return Err(format!("chunk order {order:?} is not a permutation of 0..{k}"));
    }
    Ok(())
}

/// Options of `strata worker`.
pub struct WorkerOptions {
    pub listen: SocketAddr,
    pub creds: Credentials,
    pub rank: u32,
    pub device: Device,
    /// Set on the coordinating rank 0 of a torchrun/Slurm-style start: receives the other
    /// ranks' `Register` calls.
    pub registrations: Option<tokio::sync::mpsc::UnboundedSender<(u32, String)>>,
    /// Largest graph a Configure stream may carry (bytes).
    pub max_graph_bytes: u64,
}

/// `host:port` with a numeric port (peer addresses arrive from the network).
fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && host.len() < 256 && port.parse::<u16>().is_ok() && !host.contains(['/', '@', ' '])
    })
}

/// How long a signalled worker keeps serving for the launcher's final checkpoint:
/// `STRATA_TERM_GRACE_SECS`, default 100 s (Slurm's `--signal=TERM@120` leaves 120 s).
fn term_grace() -> Duration {
    Duration::from_secs(std::env::var("STRATA_TERM_GRACE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(100))
}

/// The next SIGTERM, or never when the handler could not be installed.
async fn next_signal(term: &mut Option<tokio::signal::unix::Signal>) {
    match term {
        Some(t) => {
            t.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// The text of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Serves until a Shutdown RPC or Ctrl-C. `on_bound` gets the bound address (port 0 resolved).
pub async fn serve(opts: WorkerOptions, on_bound: impl FnOnce(SocketAddr)) -> Result<(), String> {
    opts.creds.validate()?;
    opts.creds.check_listen(opts.listen)?;
    let listener =
        tokio::net::TcpListener::bind(opts.listen).await.map_err(|e| format!("binding {}: {e}", opts.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    on_bound(addr);
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (inbox_tx, inbox_rx) = mpsc::channel::<Received>();
    let generation = Arc::new(AtomicU64::new(0));
    let (limits, unclaimed) = (Arc::new(std::sync::RwLock::new(TensorLimits::default())), Arc::new(AtomicU64::new(0)));
    let state = Arc::new(std::sync::Mutex::new(WorkerState::Idle));
    let mut compute = Compute {
        rt: tokio::runtime::Handle::current(),
        creds: opts.creds.clone(),
        device: opts.device,
        generation: generation.clone(),
        epoch_generation: 0,
        inbox: inbox_rx,
        pending: HashMap::new(),
        unclaimed: unclaimed.clone(),
        limits: limits.clone(),
        state: None,
        wire_bytes: AtomicU64::new(0),
    };
    let health = state.clone();
    std::thread::Builder::new()
        .name("strata-compute".into())
        .spawn(move || {
            while let Ok(cmd) = cmd_rx.recv() {
                // A panic must not leave a worker that still claims to serve: catch it, drop the
                // stage, answer the caller, and report the worker failed until reconfigured.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cmd {
                    Cmd::Configure { spec, npz, rank, peers, reply } => {
                        let r = compute.configure(*spec, npz, rank, peers);
                        if r.is_ok() {
                            *health.lock().unwrap_or_else(|e| e.into_inner()) = WorkerState::Serving;
                        }
                        let _ = reply.send(r);
                    }
                    Cmd::Epoch { req, reply } => {
                        let _ = reply.send(compute.epoch(req));
                    }
                    Cmd::Checkpoint { req, reply } => {
                        let _ = reply.send(compute.checkpoint(req));
                    }
                    Cmd::Restore { req, reply } => {
                        let _ = reply.send(compute.restore(req));
                    }
                }));
                if let Err(p) = outcome {
                    let why = panic_message(p.as_ref());
                    tracing::error!(
                        "compute thread panicked: {why}; the stage is dropped until the launcher configures it again"
                    );
                    compute.state = None;
                    *compute.limits.write().unwrap_or_else(|e| e.into_inner()) = TensorLimits::default();
                    compute.clear_pending();
                    *health.lock().unwrap_or_else(|e| e.into_inner()) = WorkerState::Failed(why);
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let state_for_stop = state.clone();
    let svc = Svc {
        rank: opts.rank,
        roles: opts.creds.tls.is_some(),
        max_graph_bytes: opts.max_graph_bytes,
        limits,
        unclaimed,
        state,
        cmd: cmd_tx,
        inbox: inbox_tx,
        shutdown: shutdown_tx,
        epoch: Default::default(),
        generation,
        registrations: opts.registrations,
    };
    // Messages over 4 MiB are refused with RESOURCE_EXHAUSTED before they are decoded (tensors
    // arrive in smaller pieces), so garbage cannot make a worker allocate without bound.
    let server = InterceptedService::new(
        WorkerServer::new(svc).max_decoding_message_size(MAX_MESSAGE_BYTES),
        CheckAuth(opts.creds.token.clone()),
    );
    let stopping = state_for_stop;
    let stop = async move {
        // Slurm's time limit and Ctrl-C signal every process of the job at once. A configured
        // worker then finishes the step in flight and keeps serving, so the launcher can write
        // its checkpoint and send Shutdown; it stops by itself after the grace period, or at a
        // second signal. An idle worker has nothing to save and stops at once.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = shutdown_rx.wait_for(|s| *s) => return,
            _ = tokio::signal::ctrl_c() => {}
            _ = next_signal(&mut term) => {}
        }
        if matches!(*stopping.lock().unwrap_or_else(|e| e.into_inner()), WorkerState::Idle) {
            return;
        }
        let grace = term_grace();
        tracing::warn!(
            "signalled: finishing the step and waiting up to {grace:?} for the launcher's checkpoint and Shutdown"
        );
        eprintln!("strata worker: signalled; serving until the launcher checkpoints and shuts this worker down (at most {} s)", grace.as_secs());
        tokio::select! {
            _ = shutdown_rx.wait_for(|s| *s) => {}
            _ = tokio::time::sleep(grace) => tracing::warn!("no Shutdown within {grace:?} of the signal; stopping"),
            _ = tokio::signal::ctrl_c() => {}
            _ = next_signal(&mut term) => {}
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &opts.creds.tls {
        builder = builder
            .tls_config(tls.server_config())
            .map_err(|e| format!("TLS identity {}: {e}", tls.source.display()))?;
    }
    builder
        .add_service(server)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), stop)
        .await
        .map_err(|e| e.to_string())
}

/// torchrun/Slurm-style start: announces this worker (`addr`) as `rank` to rank 0 at `master`,
/// retrying until rank 0 is up or `wait` has passed.
pub async fn register(
    master: &str,
    rank: u32,
    addr: &str,
    world_size: u32,
    creds: &Credentials,
    wait: Duration,
) -> Result<(), String> {
    let mut c = client(master, creds).map_err(|e| format!("{master}: {e}"))?;
    let deadline = Instant::now() + wait;
    loop {
        match c.register(RegisterRequest { rank, addr: addr.to_string(), world_size }).await {
            Ok(_) => return Ok(()),
            Err(s) if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::FailedPrecondition) => {
                return Err(format!("rank 0 at {master} refused registration: {}", s.message()))
            }
            Err(s) if Instant::now() > deadline => {
                return Err(format!("rank 0 at {master} not reachable within {wait:?}: {}", s.message()))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
