//! The worker process: a tonic server in front of one compute thread that owns the stage's
//! tensors (`tch::Tensor` is not `Sync`, so model state never crosses threads; RPC handlers
//! talk to it through channels). Binds loopback by default and, when a token is set, refuses
//! every RPC without it.

use crate::proto::worker_client::WorkerClient;
use crate::proto::worker_server::{Worker, WorkerServer};
use crate::proto::{Ack, ConfigChunk, EpochReply, EpochRequest, HealthReply, HealthRequest, ShutdownRequest, TensorChunk, TensorKind};
use crate::stage::{Boundary, Stage, StageSpec};
use crate::wire::{encode, Assembler, TensorMeta, DEFAULT_CHUNK_BYTES};
use std::collections::HashMap;
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
/// Largest tensor a worker accepts from the network.
const MAX_TENSOR_BYTES: u64 = 8 << 30;
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

/// A lazily connecting client to `addr` (`host:port`).
pub fn client(addr: &str, token: Option<String>) -> Result<Client, tonic::transport::Error> {
    let ch = Endpoint::from_shared(format!("http://{addr}"))?.connect_timeout(Duration::from_secs(5)).connect_lazy();
    Ok(WorkerClient::with_interceptor(ch, Auth(token)))
}

struct Received {
    key: (i32, u64, u32, String),
    tensor: Tensor,
}

enum Cmd {
    Configure { spec: StageSpec, npz: Vec<u8>, prev: String, next: String, reply: oneshot::Sender<Result<(), String>> },
    Epoch { req: EpochRequest, reply: oneshot::Sender<Result<EpochReply, String>> },
}

struct Svc {
    rank: u32,
    cmd: mpsc::Sender<Cmd>,
    inbox: mpsc::Sender<Received>,
    shutdown: watch::Sender<bool>,
    epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[tonic::async_trait]
impl Worker for Svc {
    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthReply>, Status> {
        Ok(Response::new(HealthReply { rank: self.rank, state: "serving".into(), epoch: self.epoch.load(std::sync::atomic::Ordering::Relaxed) }))
    }

    async fn configure(&self, req: Request<Streaming<ConfigChunk>>) -> Result<Response<Ack>, Status> {
        let mut stream = req.into_inner();
        let (mut spec, mut prev, mut next, mut npz) = (String::new(), String::new(), String::new(), Vec::new());
        while let Some(c) = stream.message().await? {
            if !c.spec_json.is_empty() {
                spec = c.spec_json;
                prev = c.prev_addr;
                next = c.next_addr;
            }
            npz.extend_from_slice(&c.npz);
        }
        let spec: StageSpec = serde_json::from_str(&spec).map_err(|e| Status::invalid_argument(format!("stage spec: {e}")))?;
        let bytes = npz.len() as u64;
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Configure { spec, npz, prev, next, reply: tx }).map_err(|_| Status::unavailable("compute thread gone"))?;
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

    async fn shutdown(&self, req: Request<ShutdownRequest>) -> Result<Response<Ack>, Status> {
        tracing::info!("shutdown requested: {}", req.into_inner().reason);
        let _ = self.shutdown.send(true);
        Ok(Response::new(Ack { bytes_received: 0 }))
    }
}

struct Runtime {
    stage: Stage,
    prev: Option<Client>,
    next: Option<Client>,
}

struct Compute {
    rt: tokio::runtime::Handle,
    token: Option<String>,
    device: Device,
    inbox: mpsc::Receiver<Received>,
    pending: HashMap<(i32, u64, u32, String), Tensor>,
    state: Option<Runtime>,
}

impl Compute {
    fn recv(&mut self, kind: TensorKind, epoch: u64, chunk: u32, name: &str) -> Result<Tensor, String> {
        let key = (kind as i32, epoch, chunk, name.to_string());
        let deadline = Instant::now() + RECV_TIMEOUT;
        loop {
            if let Some(t) = self.pending.remove(&key) {
                return Ok(t.to(self.device));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(left) {
                Ok(r) => {
                    self.pending.insert(r.key, r.tensor);
                }
                Err(_) => return Err(format!("timed out after {RECV_TIMEOUT:?} waiting for {kind:?} `{name}` of chunk {chunk}, epoch {epoch}")),
            }
        }
    }

    fn recv_boundary(&mut self, kind: TensorKind, epoch: u64, chunk: u32, with_h0: bool) -> Result<Boundary, String> {
        let x = self.recv(kind, epoch, chunk, "x")?;
        let h0 = if with_h0 { Some(self.recv(kind, epoch, chunk, "h0")?) } else { None };
        Ok(Boundary { x, h0 })
    }

    /// Sends a boundary to a neighbour in the background; returns the payload bytes.
    fn send(&self, to: &Client, kind: TensorKind, epoch: u64, chunk: u32, b: &Boundary, tasks: &mut Vec<tokio::task::JoinHandle<Result<(), Status>>>) -> u64 {
        let mut bytes = 0;
        for (name, t) in [("x", Some(&b.x)), ("h0", b.h0.as_ref())] {
            let Some(t) = t else { continue };
            let t = t.to(Device::Cpu).contiguous();
            let values = Vec::<f32>::try_from(t.view(-1)).expect("f32 tensor");
            let meta = TensorMeta { name: name.into(), kind, epoch, chunk, shape: t.size() };
            let msgs = encode(&meta, &values, DEFAULT_CHUNK_BYTES);
            bytes += (values.len() * 4) as u64;
            let mut c = to.clone();
            tasks.push(self.rt.spawn(async move { c.push_tensor(tokio_stream::iter(msgs)).await.map(|_| ()) }));
        }
        let label = if kind == TensorKind::Gradient { "gradient" } else { "activation" };
        metrics::counter!("strata_bytes_sent_total", "kind" => label).increment(bytes);
        bytes
    }

    fn epoch(&mut self, req: EpochRequest) -> Result<EpochReply, String> {
        let t0 = Instant::now();
        let mut rt = self.state.take().ok_or("RunEpoch before Configure")?;
        metrics::counter!("strata_epochs_total", "mode" => if req.train { "train" } else { "eval" }).increment(1);
        let result = self.epoch_inner(&mut rt, &req);
        self.state = Some(rt);
        let mut reply = result?;
        reply.compute_ms = t0.elapsed().as_secs_f64() * 1e3;
        Ok(reply)
    }

    fn epoch_inner(&mut self, rt: &mut Runtime, req: &EpochRequest) -> Result<EpochReply, String> {
        let (first, last) = (rt.stage.spec.is_first(), rt.stage.spec.is_last());
        let h0 = rt.stage.spec.tensors_per_boundary() == 2;
        let mut tasks = Vec::new();
        let mut reply = EpochReply::default();
        if req.train {
            let order: Vec<usize> = req.order.iter().map(|&c| c as usize).collect();
            if order.len() != rt.stage.num_chunks() || order.iter().any(|&c| c >= rt.stage.num_chunks()) {
                return Err(format!("chunk order {order:?} is not a permutation of 0..{}", rt.stage.num_chunks()));
            }
            rt.stage.begin_epoch(req.epoch, &order);
            for &c in &order {
                let input = if first { None } else { Some(self.recv_boundary(TensorKind::Activation, req.epoch, c as u32, h0)?) };
                let out = rt.stage.forward(Some(c), input);
                if let Some(next) = rt.next.as_ref().filter(|_| !last) {
                    reply.activation_bytes += self.send(next, TensorKind::Activation, req.epoch, c as u32, &out, &mut tasks);
                }
            }
            for &c in order.iter().rev() {
                let grad = if last { None } else { Some(self.recv_boundary(TensorKind::Gradient, req.epoch, c as u32, h0)?) };
                let back = rt.stage.backward(c, grad);
                if let (Some(prev), Some(g)) = (rt.prev.as_ref().filter(|_| !first), back) {
                    reply.gradient_bytes += self.send(prev, TensorKind::Gradient, req.epoch, c as u32, &g, &mut tasks);
                }
            }
            rt.stage.end_epoch();
            reply.loss = rt.stage.last_loss;
        } else {
            let input = if first { None } else { Some(self.recv_boundary(TensorKind::Activation, req.epoch, FULL_GRAPH, h0)?) };
            let out = rt.stage.forward(None, input);
            if last {
                let (tr, va, te) = rt.stage.evaluate(&out.x);
                (reply.train_accuracy, reply.val_accuracy, reply.test_accuracy) = (tr, va, te);
            } else if let Some(next) = rt.next.as_ref() {
                reply.activation_bytes += self.send(next, TensorKind::Activation, req.epoch, FULL_GRAPH, &out, &mut tasks);
            }
        }
        for t in tasks {
            self.rt.block_on(t).map_err(|e| e.to_string())?.map_err(|s| format!("sending to a neighbour stage ({}) failed: {}", neighbours(&rt.stage), s.message()))?;
        }
        Ok(reply)
    }

    fn configure(&mut self, spec: StageSpec, npz: Vec<u8>, prev: String, next: String) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("graph.npz");
        std::fs::write(&path, &npz).map_err(|e| e.to_string())?;
        let data = strata_graph::formats::read_graph_npz(&path).map_err(|e| format!("graph from launcher: {e}"))?;
        // tonic channels spawn their connection task on the runtime: enter it from this thread.
        let _guard = self.rt.enter();
        let connect = |a: &str| if a.is_empty() { Ok(None) } else { client(a, self.token.clone()).map(Some).map_err(|e| format!("{a}: {e}")) };
        let (prev, next) = (connect(&prev)?, connect(&next)?);
        let stage = Stage::new(spec, &data, self.device).map_err(|e| e.to_string())?;
        tracing::info!("stage {} configured: slots {}..{}, {} parameters", stage.spec.stage, stage.spec.first, stage.spec.last, stage.parameters());
        self.pending.clear();
        self.state = Some(Runtime { stage, prev, next });
        Ok(())
    }
}

/// Options of `strata worker`.
pub struct WorkerOptions {
    pub listen: SocketAddr,
    pub token: Option<String>,
    pub rank: u32,
    pub device: Device,
}

/// Serves until a Shutdown RPC or Ctrl-C. `on_bound` gets the bound address (port 0 resolved).
pub async fn serve(opts: WorkerOptions, on_bound: impl FnOnce(SocketAddr)) -> Result<(), String> {
    if !opts.listen.ip().is_loopback() && opts.token.is_none() {
        return Err(format!(
            "refusing to listen on non-loopback address {} without authentication: set --token (or STRATA_TOKEN)",
            opts.listen
        ));
    }
    let listener = tokio::net::TcpListener::bind(opts.listen).await.map_err(|e| format!("binding {}: {e}", opts.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    on_bound(addr);
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (inbox_tx, inbox_rx) = mpsc::channel::<Received>();
    let mut compute = Compute { rt: tokio::runtime::Handle::current(), token: opts.token.clone(), device: opts.device, inbox: inbox_rx, pending: HashMap::new(), state: None };
    std::thread::Builder::new()
        .name("strata-compute".into())
        .spawn(move || {
            while let Ok(cmd) = cmd_rx.recv() {
                match cmd {
                    Cmd::Configure { spec, npz, prev, next, reply } => {
                        let _ = reply.send(compute.configure(spec, npz, prev, next));
                    }
                    Cmd::Epoch { req, reply } => {
                        let _ = reply.send(compute.epoch(req));
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let svc = Svc { rank: opts.rank, cmd: cmd_tx, inbox: inbox_tx, shutdown: shutdown_tx, epoch: Default::default() };
    let server = WorkerServer::with_interceptor(svc, CheckAuth(opts.token));
    let stop = async move {
        tokio::select! {
            _ = shutdown_rx.wait_for(|s| *s) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), stop)
        .await
        .map_err(|e| e.to_string())
}

/// Which neighbours a stage talks to, for error messages.
fn neighbours(stage: &Stage) -> String {
    let s = stage.spec.stage;
    match (stage.spec.is_first(), stage.spec.is_last()) {
        (true, true) => "none".into(),
        (true, false) => format!("stage {}", s + 1),
        (false, true) => format!("stage {}", s - 1),
        (false, false) => format!("stage {} or {}", s - 1, s + 1),
    }
}
