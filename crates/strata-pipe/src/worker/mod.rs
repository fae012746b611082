//! The worker process: a tonic server in front of one compute thread that owns the stage's
//! tensors (`tch::Tensor` is not `Sync`, so model state never crosses threads; RPC handlers
//! talk to it through channels). Binds loopback by default, refuses to listen beyond it without
//! credentials, and with them refuses every RPC that lacks the token or a certificate of the
//! cluster's CA (see [`crate::security`]).

mod auth;
mod compute;
mod net;
mod service;

pub use auth::{client, Auth, Client};
pub use net::FULL_GRAPH;

use crate::error::PipeError;
use crate::proto::worker_server::WorkerServer;
use crate::proto::RegisterRequest;
use crate::security::Credentials;
use auth::CheckAuth;
use compute::WorkerState;
use compute::{Cmd, Compute};
use net::{Mailbox, Received, TensorLimits};
use service::Svc;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tch::Device;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;

/// Largest single gRPC message a worker decodes.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Default cap on the graph a Configure stream may carry (`strata worker --max-graph-bytes`).
pub const DEFAULT_MAX_GRAPH_BYTES: u64 = 32 << 30;

/// Options of `strata worker`.
pub struct WorkerOptions {
    pub listen: SocketAddr,
    pub creds: Credentials,
    pub rank: u32,
    pub device: Device,
    /// Set on the coordinating rank 0 of a torchrun/Slurm-style start: receives the other
    /// ranks' `Register` calls.
    pub registrations: Option<tokio::sync::mpsc::UnboundedSender<Registration>>,
    /// Largest graph a Configure stream may carry (bytes).
    pub max_graph_bytes: u64,
    /// Also serve the standard gRPC health service alone, in plaintext, here (for probes that
    /// cannot present the cluster's certificates, such as Kubernetes' `grpc:` probes).
    pub health_listen: Option<SocketAddr>,
}

/// The service name whose health status says whether this worker is configured.
pub const HEALTH_SERVICE: &str = "strata.v1.Worker";

/// Keeps the standard gRPC health statuses (`grpc.health.v1.Health`) in step with the worker's
/// state: the server ("") SERVING while the process serves, NOT_SERVING once its stage failed;
/// [`HEALTH_SERVICE`] SERVING only while a stage is configured and sound.
async fn report_health(reporter: tonic_health::server::HealthReporter, state: Arc<std::sync::Mutex<WorkerState>>) {
    use tonic_health::ServingStatus::{NotServing, Serving};
    let mut last = None;
    loop {
        let now = match &*state.lock().unwrap_or_else(|e| e.into_inner()) {
            WorkerState::Idle => (Serving, NotServing),
            WorkerState::Serving => (Serving, Serving),
            WorkerState::Failed(_) => (NotServing, NotServing),
        };
        if last != Some(now) {
            reporter.set_service_status("", now.0).await;
            reporter.set_service_status(HEALTH_SERVICE, now.1).await;
            last = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

/// Resolves when the worker should stop serving. Slurm's time limit and Ctrl-C signal every
/// process of the job at once. A configured worker then finishes the step in flight and keeps
/// serving, so the launcher can write its checkpoint and send Shutdown; it stops by itself after
/// the grace period, or at a second signal. An idle worker has nothing to save and stops at once.
async fn stop_signal(mut shutdown_rx: watch::Receiver<bool>, stopping: Arc<std::sync::Mutex<WorkerState>>) {
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
    eprintln!(
        "strata worker: signalled; serving until the launcher checkpoints and shuts this worker down (at most {} s)",
        grace.as_secs()
    );
    tokio::select! {
        _ = shutdown_rx.wait_for(|s| *s) => {}
        _ = tokio::time::sleep(grace) => tracing::warn!("no Shutdown within {grace:?} of the signal; stopping"),
        _ = tokio::signal::ctrl_c() => {}
        _ = next_signal(&mut term) => {}
    }
}

/// One `Register` call as rank 0's coordinator sees it: the rank and address claimed, the
/// caller's own address, and where to answer (`Err`: why it is refused; the caller gets
/// INVALID_ARGUMENT and the rendezvous goes on).
pub struct Registration {
    pub rank: u32,
    pub addr: String,
    pub peer: Option<std::net::SocketAddr>,
    pub reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Serves until a Shutdown RPC or Ctrl-C. `on_bound` gets the bound address (port 0 resolved).
pub async fn serve(opts: WorkerOptions, on_bound: impl FnOnce(SocketAddr)) -> Result<(), PipeError> {
    opts.creds.validate()?;
    opts.creds.check_listen(opts.listen)?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| PipeError::Local { what: format!("binding {}", opts.listen), source: e })?;
    let addr = listener
        .local_addr()
        .map_err(|e| PipeError::Local { what: format!("the address bound for {}", opts.listen), source: e })?;
    on_bound(addr);
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (inbox_tx, inbox_rx) = mpsc::channel::<Received>();
    let generation = Arc::new(AtomicU64::new(0));
    let (limits, unclaimed) = (Arc::new(std::sync::RwLock::new(TensorLimits::default())), Arc::new(AtomicU64::new(0)));
    let state = Arc::new(std::sync::Mutex::new(WorkerState::Idle));
    let mail = Mailbox {
        rt: tokio::runtime::Handle::current(),
        generation: generation.clone(),
        epoch_generation: 0,
        inbox: inbox_rx,
        pending: HashMap::new(),
        unclaimed: unclaimed.clone(),
        wire_bytes: AtomicU64::new(0),
        device: opts.device,
    };
    let compute = Compute { mail, creds: opts.creds.clone(), device: opts.device, limits: limits.clone(), state: None };
    compute::spawn(compute, cmd_rx, state.clone())?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state_for_stop = state.clone();
    let svc = Svc {
        rank: opts.rank,
        roles: opts.creds.tls.is_some(),
        max_graph_bytes: opts.max_graph_bytes,
        uploads: Default::default(),
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
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(reporter, state_for_stop.clone()));
    if let Some(at) = opts.health_listen {
        let probe_listener = tokio::net::TcpListener::bind(at)
            .await
            .map_err(|e| PipeError::Local { what: format!("binding the health port {at}"), source: e })?;
        let mut stopped = shutdown_rx.clone();
        let probe = tonic::transport::Server::builder().add_service(health.clone()).serve_with_incoming_shutdown(
            incoming(probe_listener),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        );
        tokio::spawn(async move {
            if let Err(e) = probe.await {
                tracing::error!("the health port stopped: {e}");
            }
        });
    }
    let stop = stop_signal(shutdown_rx, state_for_stop);
    // A peer that stops answering HTTP/2 pings (a dead host, a cut link) has its connection
    // closed within KEEPALIVE + KEEPALIVE_TIMEOUT, and whatever its streams reserved with it.
    let mut builder = tonic::transport::Server::builder()
        .initial_stream_window_size(auth::STREAM_WINDOW)
        .initial_connection_window_size(auth::CONNECTION_WINDOW)
        .http2_keepalive_interval(Some(auth::KEEPALIVE))
        .http2_keepalive_timeout(Some(auth::KEEPALIVE_TIMEOUT));
    if let Some(tls) = &opts.creds.tls {
        builder = builder
            .tls_config(tls.server_config())
            .map_err(|e| PipeError::Security(format!("TLS identity {}: {e}", tls.source.display())))?;
    }
    // Server reflection (v1 and v1alpha, for older `grpcurl`): the schema of strata.v1 and of
    // the health service. It reveals no state; the worker's own calls still need the token.
    fn reflection() -> tonic_reflection::server::Builder<'static> {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    }
    let refused = |e| PipeError::Internal(format!("the reflection service: {e}"));
    let reflect_v1 = reflection().build_v1().map_err(refused)?;
    let reflect_v1alpha = reflection().build_v1alpha().map_err(refused)?;
    builder
        .add_service(server)
        .add_service(health)
        .add_service(reflect_v1)
        .add_service(reflect_v1alpha)
        .serve_with_incoming_shutdown(incoming(listener), stop)
        .await
        .map_err(|e| PipeError::Local { what: format!("serving on {addr}"), source: std::io::Error::other(e) })
}

/// The accepted connections of `listener` as the server's builder would make them: without
/// Nagle's algorithm (with it, the last small frames of a push and its reply wait for the
/// peer's delayed ACK: a pipeline stage's gradient sends took 43 of Cora's 130 ms per epoch)
/// and with TCP keepalive, so a peer that vanished without closing is noticed.
fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)))
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
) -> Result<(), PipeError> {
    let mut c = client(master, creds).map_err(|e| PipeError::Peer(format!("{master}: {e}")))?;
    let deadline = Instant::now() + wait;
    loop {
        match c.register(RegisterRequest { rank, addr: addr.to_string(), world_size }).await {
            Ok(_) => return Ok(()),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unauthenticated | tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument
                ) =>
            {
                return Err(PipeError::Peer(format!("rank 0 at {master} refused registration: {}", s.message())))
            }
            Err(s) if Instant::now() > deadline => {
                return Err(PipeError::Peer(format!(
                    "rank 0 at {master} not reachable within {wait:?}: {}",
                    s.message()
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
