//! The worker process: a tonic server in front of one compute thread that owns the stage's
//! tensors (`tch::Tensor` is not `Sync`, so model state never crosses threads; RPC handlers
//! talk to it through channels). Binds loopback by default, refuses to listen beyond it without
//! credentials, and with them refuses every RPC that lacks the token or a certificate of the
//! cluster's CA (see [`crate::security`]).

use crate::proto::worker_client::WorkerClient;
use crate::proto::worker_server::{Worker, WorkerServer};
use crate::layers::Exchange;
use crate::partition_stage::PartitionStage;
use crate::pipeline::Mode;
use crate::proto::{Ack, CheckpointReply, CheckpointRequest, ConfigChunk, EpochReply, EpochRequest, HealthReply, HealthRequest, RegisterRequest, RestoreRequest, ShutdownRequest, TensorChunk, TensorKind};
use crate::security::Credentials;
use crate::forward_stage::ForwardStage;
use crate::pipeline::PipeTrainer;
use crate::stage::{Boundary, Stage, StageSpec};
use crate::wire::{encode, Assembler, TensorMeta, DEFAULT_CHUNK_BYTES};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tch::{Device, Tensor};
use tokio::sync::{oneshot, watch};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

/// Chunk id used for exact full-graph inference passes.
pub const FULL_GRAPH: u32 = u32::MAX;
/// Largest single gRPC message a worker decodes.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Largest tensor a worker accepts from the network.
const MAX_TENSOR_BYTES: u64 = 8 << 30;
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
            req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().map_err(|_| Status::internal("bad token"))?);
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
                let ok = req.metadata().get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {t}"));
                if ok { Ok(req) } else { Err(Status::unauthenticated("missing or wrong cluster token")) }
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
}

enum Cmd {
    Configure { spec: Box<StageSpec>, npz: Vec<u8>, rank: usize, peers: Vec<String>, reply: oneshot::Sender<Result<(), String>> },
    Epoch { req: EpochRequest, reply: oneshot::Sender<Result<EpochReply, String>> },
    Checkpoint { req: CheckpointRequest, reply: oneshot::Sender<Result<CheckpointReply, String>> },
    Restore { req: RestoreRequest, reply: oneshot::Sender<Result<(), String>> },
}

struct Svc {
    rank: u32,
    cmd: mpsc::Sender<Cmd>,
    inbox: mpsc::Sender<Received>,
    shutdown: watch::Sender<bool>,
    epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Bumped by every Configure: an epoch still waiting on the network (say, for a peer that
    /// was cut off) gives up, so a launcher recovering from a failure is not kept waiting.
    generation: Arc<AtomicU64>,
    registrations: Option<tokio::sync::mpsc::UnboundedSender<(u32, String)>>,
}

#[tonic::async_trait]
impl Worker for Svc {
    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthReply>, Status> {
        Ok(Response::new(HealthReply { rank: self.rank, state: "serving".into(), epoch: self.epoch.load(std::sync::atomic::Ordering::Relaxed) }))
    }

    async fn configure(&self, req: Request<Streaming<ConfigChunk>>) -> Result<Response<Ack>, Status> {
        let mut stream = req.into_inner();
        let (mut spec, mut rank, mut peers, mut npz) = (String::new(), 0, Vec::new(), Vec::new());
        while let Some(c) = stream.message().await? {
            if !c.spec_json.is_empty() {
                spec = c.spec_json;
                rank = c.rank as usize;
                peers = c.peers;
            }
            npz.extend_from_slice(&c.npz);
        }
        if rank >= peers.len() {
            return Err(Status::invalid_argument(format!("rank {rank} is not among the {} peers", peers.len())));
        }
        let spec: StageSpec = serde_json::from_str(&spec).map_err(|e| Status::invalid_argument(format!("stage spec: {e}")))?;
        let bytes = npz.len() as u64;
        self.generation.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Configure { spec: Box::new(spec), npz, rank, peers, reply: tx }).map_err(|_| Status::unavailable("compute thread gone"))?;
        rx.await.map_err(|_| Status::internal("compute thread gone"))?.map_err(Status::invalid_argument)?;
        Ok(Response::new(Ack { bytes_received: bytes }))
    }

    async fn run_epoch(&self, req: Request<EpochRequest>) -> Result<Response<EpochReply>, Status> {
        let req = req.into_inner();
        self.epoch.store(req.epoch, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Epoch { req, reply: tx }).map_err(|_| Status::unavailable("compute thread gone"))?;
        let r = rx.await.map_err(|_| Status::internal("compute thread gone"))?.map_err(Status::internal)?;
        Ok(Response::new(r))
    }

    async fn checkpoint(&self, req: Request<CheckpointRequest>) -> Result<Response<CheckpointReply>, Status> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Checkpoint { req: req.into_inner(), reply: tx }).map_err(|_| Status::unavailable("compute thread gone"))?;
        Ok(Response::new(rx.await.map_err(|_| Status::internal("compute thread gone"))?.map_err(Status::internal)?))
    }

    async fn restore(&self, req: Request<RestoreRequest>) -> Result<Response<Ack>, Status> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Restore { req: req.into_inner(), reply: tx }).map_err(|_| Status::unavailable("compute thread gone"))?;
        rx.await.map_err(|_| Status::internal("compute thread gone"))?.map_err(Status::failed_precondition)?;
        Ok(Response::new(Ack { bytes_received: 0 }))
    }

    async fn push_tensor(&self, req: Request<Streaming<TensorChunk>>) -> Result<Response<Ack>, Status> {
        let mut stream = req.into_inner();
        let mut asm = Assembler::new(MAX_TENSOR_BYTES);
        let mut bytes = 0u64;
        while let Some(c) = stream.message().await? {
            bytes += c.data.len() as u64;
            asm.push(c).map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        let (meta, values) = asm.finish().map_err(|e| Status::invalid_argument(e.to_string()))?;
        let tensor = Tensor::from_slice(&values).view(meta.shape.as_slice());
        let key = (meta.kind as i32, meta.epoch, meta.chunk, meta.name);
        self.inbox.send(Received { key, tensor }).map_err(|_| Status::unavailable("compute thread gone"))?;
        Ok(Response::new(Ack { bytes_received: bytes }))
    }

    async fn register(&self, req: Request<RegisterRequest>) -> Result<Response<Ack>, Status> {
        let r = req.into_inner();
        let Some(tx) = &self.registrations else {
            return Err(Status::failed_precondition(format!("worker {} does not coordinate: register with rank 0", self.rank)));
        };
        tracing::info!("worker {} registered at {}", r.rank, r.addr);
        tx.send((r.rank, r.addr)).map_err(|_| Status::unavailable("coordinator is not waiting for registrations"))?;
        Ok(Response::new(Ack { bytes_received: 0 }))
    }

    async fn shutdown(&self, req: Request<ShutdownRequest>) -> Result<Response<Ack>, Status> {
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
        if self.spec.config.mode == Mode::Graph { 1 } else { self.spec.config.stages }
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
    pending: HashMap<(i32, u64, u32, String), Tensor>,
    state: Option<Runtime>,
}

type SendTask = tokio::task::JoinHandle<Result<(), (String, Status)>>;

impl Compute {
    fn recv(&mut self, kind: TensorKind, epoch: u64, chunk: u32, name: &str, from: &str) -> Result<Tensor, String> {
        let key = (kind as i32, epoch, chunk, name.to_string());
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            if let Some(t) = self.pending.remove(&key) {
                return Ok(t.to(self.device));
            }
            self.check_abandoned()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("timed out after {RECV_TIMEOUT:?} waiting for {kind:?} `{name}` of chunk {chunk}, epoch {epoch} from {from}"));
            }
            if let Ok(r) = self.inbox.recv_timeout(left.min(POLL)) {
                self.pending.insert(r.key, r.tensor);
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

    fn recv_boundary(&mut self, kind: TensorKind, epoch: u64, chunk: u32, with_h0: bool, from: &str) -> Result<Boundary, String> {
        let x = self.recv(kind, epoch, chunk, "x", from)?;
        let h0 = if with_h0 { Some(self.recv(kind, epoch, chunk, "h0", from)?) } else { None };
        Ok(Boundary { x, h0 })
    }

    /// Streams one tensor to a peer in the background; returns the payload bytes.
    fn send_tensor(&self, to: &Client, to_addr: &str, meta: TensorMeta, t: &Tensor, tasks: &mut Vec<SendTask>) -> u64 {
        let t = t.to(Device::Cpu).contiguous();
        let values = Vec::<f32>::try_from(t.view(-1)).unwrap_or_default();
        let kind = meta.kind;
        let msgs = encode(&meta, &values, DEFAULT_CHUNK_BYTES);
        let bytes = (values.len() * 4) as u64;
        let label = match kind {
            TensorKind::Gradient => "gradient",
            TensorKind::Halo => "halo",
            TensorKind::Weight => "weight",
            _ => "activation",
        };
        metrics::counter!("strata_bytes_sent_total", "kind" => label).increment(bytes);
        let mut c = to.clone();
        let addr = to_addr.to_string();
        tasks.push(self.rt.spawn(async move { c.push_tensor(tokio_stream::iter(msgs)).await.map(|_| ()).map_err(|s| (addr, s)) }));
        bytes
    }

    fn epoch(&mut self, req: EpochRequest) -> Result<EpochReply, String> {
        let t0 = Instant::now();
        self.epoch_generation = self.generation.load(Ordering::SeqCst);
        let mut rt = self.state.take().ok_or("RunEpoch before Configure")?;
        metrics::counter!("strata_epochs_total", "mode" => if req.train { "train" } else { "eval" }).increment(1);
        let mut net = Net { c: self, ctx: &rt.ctx, epoch: req.epoch, halo_bytes: 0, weight_bytes: 0, tasks: Vec::new() };
        let result = net.run(&mut rt.engine, &req).and_then(|mut reply| {
            reply.halo_bytes += net.halo_bytes;
            reply.weight_bytes += net.weight_bytes;
            net.flush()?;
            Ok(reply)
        });
        self.state = Some(rt);
        let mut reply = result?;
        reply.compute_ms = t0.elapsed().as_secs_f64() * 1e3;
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
        let f = crate::checkpoint::write_worker_state(std::path::Path::new(&req.dir), rt.ctx.rank, &tensors).map_err(|e| e.to_string())?;
        tracing::info!("checkpoint of epoch {} written: {} ({} bytes)", req.epoch, f.file, f.bytes);
        Ok(CheckpointReply { file: f.file, sha256: f.sha256, bytes: f.bytes })
    }

    fn restore(&mut self, req: RestoreRequest) -> Result<(), String> {
        let rt = self.state.as_mut().ok_or("Restore before Configure")?;
        let named = crate::checkpoint::read_worker_state(std::path::Path::new(&req.path), &req.sha256).map_err(|e| e.to_string())?;
        match &mut rt.engine {
            Engine::Pipe(s) => s.load_state(&named),
            Engine::Graph(p) => p.load_state(&named),
            Engine::Forward(f) => f.load_state(&named),
        }
        .map_err(|e| format!("{}: {e}", req.path))?;
        tracing::info!("restored {}", req.path);
        Ok(())
    }

    fn configure(&mut self, spec: StageSpec, npz: Vec<u8>, rank: usize, peer_addrs: Vec<String>) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("graph.npz");
        std::fs::write(&path, &npz).map_err(|e| e.to_string())?;
        let data = strata_graph::formats::read_graph_npz(&path).map_err(|e| format!("graph from launcher: {e}"))?;
        // tonic channels spawn their connection task on the runtime: enter it from this thread.
        let _guard = self.rt.enter();
        let peers = peer_addrs.iter().map(|a| client(a, &self.creds).map_err(|e| format!("{a}: {e}"))).collect::<Result<Vec<_>, _>>()?;
        let engine = if spec.config.trainer == PipeTrainer::Sf {
            let f = ForwardStage::new(spec.clone(), &data, self.device)?;
            tracing::info!("forward-only stage {} configured: slots {}..{}, {} parameters", spec.stage, spec.first, spec.last, f.parameters());
            Engine::Forward(Box::new(f))
        } else if spec.config.mode == Mode::Graph {
            let p = PartitionStage::new(spec.clone(), &data, self.device).map_err(|e| e.to_string())?;
            tracing::info!("partition {} configured: {} halo rows per layer, {} parameters", spec.way, p.halo_rows(), p.parameters());
            Engine::Graph(Box::new(p))
        } else {
            let st = Stage::new(spec.clone(), &data, self.device).map_err(|e| e.to_string())?;
            tracing::info!("way {} stage {} configured: slots {}..{}, {} parameters", spec.way, spec.stage, spec.first, spec.last, st.parameters());
            Engine::Pipe(Box::new(st))
        };
        // Tensors of an abandoned run must not be mistaken for the new run's.
        self.pending.clear();
        while self.inbox.try_recv().is_ok() {}
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
            let meta = TensorMeta { name: name.into(), kind, epoch: self.epoch, chunk, shape: t.size() };
            bytes += self.c.send_tensor(&self.ctx.peers[to_rank], &self.ctx.peer_addrs[to_rank], meta, t, &mut self.tasks);
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
                        done.map_err(|e| e.to_string())?.map_err(|(addr, s)| format!("sending to {addr} failed: {}", s.message()))?;
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
                let input = if first { None } else { Some(self.c.recv_boundary(TensorKind::Activation, epoch, c, true, &ctx.describe(prev))?) };
                let out = stage.train_chunk(c as usize, input);
                if !last {
                    reply.activation_bytes += self.send_boundary(next, TensorKind::Activation, c, &out);
                }
            }
            stage.end_epoch();
            reply.loss = stage.last_loss;
        } else {
            let input = if first { None } else { Some(self.c.recv_boundary(TensorKind::Activation, epoch, FULL_GRAPH, true, &ctx.describe(prev))?) };
            let out = stage.infer(input);
            if last {
                [reply.train_correct, reply.val_correct, reply.test_correct] = stage.evaluate(out.h0.as_ref().expect("class distributions"));
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
        let h0 = spec.tensors_per_boundary() == 2;
        let (prev, next) = (ctx.rank.wrapping_sub(1), ctx.rank + 1);
        let mut reply = EpochReply::default();
        let epoch = req.epoch;
        if req.train {
            check_permutation(&req.order, stage.num_chunks())?;
            let own = spec.own_chunks();
            let order: Vec<usize> = req.order.iter().map(|&c| c as usize).filter(|c| own.contains(c)).collect();
            stage.begin_epoch(epoch, &order);
            for &c in &order {
                let input = if first { None } else { Some(self.c.recv_boundary(TensorKind::Activation, epoch, c as u32, h0, &ctx.describe(prev))?) };
                let out = stage.forward(Some(c), input);
                if !last {
                    reply.activation_bytes += self.send_boundary(next, TensorKind::Activation, c as u32, &out);
                }
            }
            for &c in order.iter().rev() {
                let grad = if last { None } else { Some(self.c.recv_boundary(TensorKind::Gradient, epoch, c as u32, h0, &ctx.describe(next))?) };
                let back = stage.backward(c, grad);
                if let (false, Some(g)) = (first, back) {
                    reply.gradient_bytes += self.send_boundary(prev, TensorKind::Gradient, c as u32, &g);
                }
            }
            stage.end_epoch(self)?;
            reply.loss = stage.last_loss;
        } else if spec.way == 0 {
            // Exact inference runs down way 0's stages only: every way holds the same weights.
            let input = if first { None } else { Some(self.c.recv_boundary(TensorKind::Activation, epoch, FULL_GRAPH, h0, &ctx.describe(prev))?) };
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
    fn halo(&mut self, tag: &str, slot: usize, outgoing: &[(usize, Tensor)], incoming: &[usize]) -> Result<Vec<Tensor>, String> {
        let ctx = self.ctx;
        let me = ctx.spec.way;
        for (q, t) in outgoing {
            let to = ctx.rank_of(*q, ctx.spec.stage);
            let meta = TensorMeta { name: format!("{tag}:{me}"), kind: TensorKind::Halo, epoch: self.epoch, chunk: slot as u32, shape: t.size() };
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
                let meta = TensorMeta { name: format!("{phase}:{step}"), kind: TensorKind::Weight, epoch: self.epoch, chunk: ctx.spec.stage as u32, shape: vec![len] };
                self.weight_bytes += self.c.send_tensor(&ctx.peers[to], &ctx.peer_addrs[to], meta, &flat.narrow(0, off, len), &mut self.tasks);
                let got = self.c.recv(TensorKind::Weight, self.epoch, ctx.spec.stage as u32, &format!("{phase}:{step}"), &ctx.describe(from))?.to(Device::Cpu);
                let (off, len) = seg(recv_seg);
                if got.size() != [len] {
                    return Err(format!("all-reduce segment from {}: expected {len} values, got {:?}", ctx.describe(from), got.size()));
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
}

/// Serves until a Shutdown RPC or Ctrl-C. `on_bound` gets the bound address (port 0 resolved).
pub async fn serve(opts: WorkerOptions, on_bound: impl FnOnce(SocketAddr)) -> Result<(), String> {
    if !opts.listen.ip().is_loopback() && !opts.creds.authenticates() {
        return Err(format!(
            "refusing to listen on non-loopback address {} without authentication: set --tls-dir (mutual TLS) or --token (or STRATA_TOKEN)",
            opts.listen
        ));
    }
    let listener = tokio::net::TcpListener::bind(opts.listen).await.map_err(|e| format!("binding {}: {e}", opts.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    on_bound(addr);
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (inbox_tx, inbox_rx) = mpsc::channel::<Received>();
    let generation = Arc::new(AtomicU64::new(0));
    let mut compute = Compute { rt: tokio::runtime::Handle::current(), creds: opts.creds.clone(), device: opts.device, generation: generation.clone(), epoch_generation: 0, inbox: inbox_rx, pending: HashMap::new(), state: None };
    std::thread::Builder::new()
        .name("strata-compute".into())
        .spawn(move || {
            while let Ok(cmd) = cmd_rx.recv() {
                match cmd {
                    Cmd::Configure { spec, npz, rank, peers, reply } => {
                        let _ = reply.send(compute.configure(*spec, npz, rank, peers));
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
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let svc = Svc { rank: opts.rank, cmd: cmd_tx, inbox: inbox_tx, shutdown: shutdown_tx, epoch: Default::default(), generation, registrations: opts.registrations };
    // Messages over 4 MiB are refused with RESOURCE_EXHAUSTED before they are decoded (tensors
    // arrive in smaller pieces), so garbage cannot make a worker allocate without bound.
    let server = InterceptedService::new(WorkerServer::new(svc).max_decoding_message_size(MAX_MESSAGE_BYTES), CheckAuth(opts.creds.token.clone()));
    let stop = async move {
        tokio::select! {
            _ = shutdown_rx.wait_for(|s| *s) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &opts.creds.tls {
        builder = builder.tls_config(tls.server_config()).map_err(|e| format!("TLS identity {}: {e}", tls.source.display()))?;
    }
    builder
        .add_service(server)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), stop)
        .await
        .map_err(|e| e.to_string())
}


/// torchrun/Slurm-style start: announces this worker (`addr`) as `rank` to rank 0 at `master`,
/// retrying until rank 0 is up or `wait` has passed.
pub async fn register(master: &str, rank: u32, addr: &str, world_size: u32, creds: &Credentials, wait: Duration) -> Result<(), String> {
    let mut c = client(master, creds).map_err(|e| format!("{master}: {e}"))?;
    let deadline = Instant::now() + wait;
    loop {
        match c.register(RegisterRequest { rank, addr: addr.to_string(), world_size }).await {
            Ok(_) => return Ok(()),
            Err(s) if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::FailedPrecondition) => {
                return Err(format!("rank 0 at {master} refused registration: {}", s.message()))
            }
            Err(s) if Instant::now() > deadline => return Err(format!("rank 0 at {master} not reachable within {wait:?}: {}", s.message())),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
