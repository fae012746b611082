//! `strata launch` (the coordinator) and `strata worker` (one pipeline stage).

use crate::report::{progress, table, write_json};
use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_nn::metrics::median;
use strata_pipe::launcher::{config_identity, train, LaunchReport, Launcher, TrainOptions};
use strata_pipe::security::{Credentials, TlsIdentity};
use strata_pipe::Mode;
use strata_pipe::PipeError;
use strata_pipe::{PipeModel, PipelineConfig};
use tokio::io::AsyncBufReadExt;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Address to serve on. Loopback by default; any other address requires --tls-dir (a token
    /// alone would cross the network in clear text).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// This worker's rank (default: $RANK, then $SLURM_PROCID, then 0).
    #[arg(long)]
    pub rank: Option<u32>,
    /// Shared cluster token required on every RPC.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Mutual TLS: a directory from `strata cluster certs` (ca.pem, NAME.pem, NAME-key.pem).
    #[arg(long, env = "STRATA_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// This worker's certificate name in --tls-dir (default worker-RANK).
    #[arg(long)]
    pub tls_name: Option<String>,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch CPU threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Serve Prometheus metrics (bytes sent by kind, epochs) at http://ADDR/metrics. A bare
    /// port binds loopback (127.0.0.1:PORT); name an address (0.0.0.0:9100) to expose it.
    #[arg(long, value_parser = parse_metrics_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Largest graph (bytes of the npz stream) a launcher may configure this worker with.
    #[arg(long, default_value_t = strata_pipe::worker::DEFAULT_MAX_GRAPH_BYTES)]
    pub max_graph_bytes: u64,
}

/// `PORT` (loopback) or `HOST:PORT`.
fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| format!("`{s}` is neither a port nor HOST:PORT"))
}

pub fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    strata_nn::set_threads(a.threads);
    let device = strata_nn::parse_device(&a.device)?;
    let env_rank = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    let rank = a.rank.or_else(|| env_rank("RANK")).or_else(|| env_rank("SLURM_PROCID")).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let creds = credentials(
        a.token.clone(),
        a.tls_dir.as_deref(),
        &a.tls_name.clone().unwrap_or_else(|| format!("worker-{rank}")),
    )?;
    let opts = strata_pipe::worker::WorkerOptions {
        listen: a.listen,
        creds,
        rank,
        device,
        registrations: None,
        max_graph_bytes: a.max_graph_bytes,
    };
    if let Some(addr) = a.metrics_addr {
        let _guard = rt.enter();
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .add_global_label("rank", rank.to_string())
            .install()
            .with_context(|| format!("serving metrics on {addr}"))?;
    }
    rt.block_on(strata_pipe::worker::serve(opts, |addr| {
        // The launcher reads this line to learn the port.
        println!("strata worker {rank} listening on {addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }))
    .map_err(|e| anyhow::anyhow!(e))
}

#[derive(Args, Debug)]
pub struct LaunchArgs {
    /// The graph (default: the registered `cora`).
    #[command(flatten)]
    pub graph: crate::source::GraphSource,
    /// gcnii, gcn or sage (GraphSAGE, mean aggregator).
    #[arg(long, default_value = "gcnii")]
    pub model: String,
    #[arg(long, default_value_t = 32)]
    pub layers: usize,
    /// Hidden width (default 64; 100 under `--preset gnnpipe`).
    #[arg(long)]
    pub hidden: Option<i64>,
    /// gnnpipe: the GNNPipe paper's settings (hidden 100, dropout 0.5, lr 1e-3, no weight
    /// decay); flags given explicitly override it.
    #[arg(long, value_parser = ["gnnpipe"])]
    pub preset: Option<String>,
    /// L2 penalty on the input and output linear maps (default 5e-4).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// L2 penalty on the convolution weights (default: GCNII 0.01, GCN 5e-4).
    #[arg(long)]
    pub weight_decay_conv: Option<f64>,
    /// pipeline (layers split over stages), graph (the graph-parallel baseline: vertices split
    /// over ways, every worker holds every layer) or hybrid (ways × stages).
    #[arg(long, default_value = "pipeline")]
    pub mode: String,
    /// Pipeline stages S (default 4 in pipeline mode, 1 in graph mode).
    #[arg(long)]
    pub stages: Option<usize>,
    /// Graph-parallel ways W (default 1 in pipeline mode, 4 in graph mode, 2 in hybrid mode).
    #[arg(long)]
    pub ways: Option<usize>,
    /// Vertex chunks K (0 = 4·P).
    #[arg(long, default_value_t = 0)]
    pub chunks: usize,
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub dropout: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Turn off trick 1 (per-epoch chunk shuffling).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Trick 2: scale of cross-chunk gradients (1 = no scaling; gradients reaching stale rows
    /// are still dropped).
    #[arg(long, default_value_t = 2.0)]
    pub grad_scale: f64,
    /// Trick 2 off as GNNPipe's ablation ran it: no ×2 scaling, and gradients that reach stale
    /// historical rows are kept and injected when their chunk's backward runs next epoch.
    #[arg(long, conflicts_with = "grad_scale")]
    pub no_trick2: bool,
    /// Trick 3: refresh the historical snapshot every R epochs (1 = one-epoch staleness).
    #[arg(long, default_value_t = 23)]
    pub refresh: usize,
    /// bp (backprop through the pipeline) or sf (forward-only: ForwardGNN single-forward layers,
    /// each trained by its own loss, so no gradient crosses a stage; needs --model gcn).
    #[arg(long, default_value = "bp")]
    pub trainer: String,
    /// Storage of the historical embeddings: f32, bf16 or f16 (half the memory of each conv
    /// slot's live and snapshot rows); the activations that cross stages travel in the same
    /// type, gradients stay f32.
    #[arg(long, default_value = "f32")]
    pub history_dtype: strata_pipe::HistoryDtype,
    /// What the stage split equalises: compute (per-layer FLOPs, GNNPipe's planner) or memory
    /// (per-layer resident bytes: the largest worker as small as possible).
    #[arg(long, default_value = "compute")]
    pub balance: strata_pipe::Balance,
    /// Return freed heap pages to the system after every chunk (pipeline) or layer
    /// (graph-parallel): a smaller resident peak, usually for slower epochs (measured once each:
    /// pipeline P = 4 at 300k −12 % peak, +23 % epoch time; graph-parallel P = 4 at 100k −31 %, +2 %).
    #[arg(long)]
    pub trim_heap: bool,
    /// Exact full-graph evaluation every N epochs.
    #[arg(long, default_value_t = 1)]
    pub eval_every: usize,
    /// Worker addresses in rank order, rank = way·S + stage (host:port,...). Default: start W·S
    /// local workers, or, under torchrun/Slurm (WORLD_SIZE or SLURM_NTASKS set), rendezvous at
    /// MASTER_ADDR:MASTER_PORT with the other ranks.
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<String>,
    /// A cluster file (see cluster/local.toml) listing the workers.
    #[arg(long, conflicts_with = "workers")]
    pub cluster: Option<PathBuf>,
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Mutual TLS with the workers: a directory from `strata cluster certs`. Local workers and
    /// torchrun/Slurm ranks use its worker-RANK certificates.
    #[arg(long, env = "STRATA_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// The launcher's certificate name in --tls-dir.
    #[arg(long, default_value = "launcher")]
    pub tls_name: String,
    /// Device for locally started workers.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write checkpoints (every worker's parameters, optimizer moments and historical
    /// embeddings; the launcher's manifest last) under this directory. It must be reachable at
    /// the same path from every worker (a shared volume on a cluster).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Epochs between checkpoints (a checkpoint is also written at the end and on SIGTERM).
    #[arg(long, default_value_t = 10)]
    pub checkpoint_every: usize,
    /// Continue from the newest complete checkpoint under DIR (torn ones are skipped) and keep
    /// checkpointing there.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// When a worker dies: restart it (local workers) or wait for it to come back (listed
    /// workers), reload the last checkpoint on every stage and continue. Needs checkpoints.
    #[arg(long)]
    pub restart_failed: bool,
    /// Restarts allowed with --restart-failed.
    #[arg(long, default_value_t = 3)]
    pub max_restarts: usize,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    workers: Vec<String>,
    #[serde(default)]
    token_env: Option<String>,
}

/// Token and TLS identity `name` from `tls_dir`.
pub fn credentials(
    token: Option<String>,
    tls_dir: Option<&std::path::Path>,
    name: &str,
) -> anyhow::Result<Credentials> {
    let tls = tls_dir
        .map(|d| match name.strip_prefix("worker-").and_then(|r| r.parse::<u32>().ok()) {
            Some(rank) => TlsIdentity::load_worker(d, rank),
            None => TlsIdentity::load(d, name),
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let creds = Credentials { token, tls };
    creds.validate().map_err(|e| anyhow::anyhow!(e))?;
    Ok(creds)
}

/// Starts `n` local worker processes on loopback; returns them (killed on drop) and their addresses.
async fn spawn_local(
    n: usize,
    device: &str,
    token: Option<&str>,
    tls_dir: Option<&std::path::Path>,
) -> anyhow::Result<(Vec<tokio::process::Child>, Vec<String>)> {
    let exe = std::env::current_exe()?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = (cores / n).max(1);
    let (mut children, mut addrs) = (Vec::new(), Vec::new());
    for rank in 0..n {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args([
            "worker",
            "--listen",
            "127.0.0.1:0",
            "--rank",
            &rank.to_string(),
            "--device",
            device,
            "--threads",
            &threads.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
        if let Some(t) = token {
            cmd.env("STRATA_TOKEN", t);
        }
        if let Some(d) = tls_dir {
            cmd.arg("--tls-dir").arg(d);
        }
        let mut child = cmd.spawn().context("starting a local worker")?;
        eprintln!("strata launch: worker {rank} pid {}", child.id().unwrap_or(0));
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .with_context(|| format!("worker {rank} did not start within 30 s"))??
            .with_context(|| format!("worker {rank} exited before listening"))?;
        let addr = line.rsplit(' ').next().unwrap_or_default().to_string();
        addrs.push(addr);
        children.push(child);
    }
    Ok((children, addrs))
}

fn config(a: &LaunchArgs) -> anyhow::Result<PipelineConfig> {
    let model: PipeModel = a.model.parse().map_err(|e| anyhow::anyhow!("--model {e}"))?;
    let mode: Mode = a.mode.parse().map_err(|e| anyhow::anyhow!("--mode {e}"))?;
    let (stages, ways) = match mode {
        Mode::Pipeline => (a.stages.unwrap_or(4), a.ways.unwrap_or(1)),
        Mode::Graph => (a.stages.unwrap_or(1), a.ways.unwrap_or(4)),
        Mode::Hybrid => (a.stages.unwrap_or(2), a.ways.unwrap_or(2)),
    };
    let mut cfg = PipelineConfig::gcnii(a.layers, stages);
    cfg.mode = mode;
    cfg.ways = ways;
    cfg.model = model;
    cfg.hidden = 64;
    cfg.chunks = a.chunks;
    cfg.epochs = a.epochs;
    cfg.seed = a.seed;
    cfg.shuffle = !a.no_shuffle;
    cfg.grad_scale = if a.no_trick2 { 1.0 } else { a.grad_scale };
    cfg.carry_stale_grads = a.no_trick2;
    cfg.refresh = a.refresh;
    cfg.eval_every = a.eval_every;
    cfg.history_dtype = a.history_dtype;
    cfg.trim_heap = a.trim_heap;
    cfg.balance = a.balance;
    cfg.trainer = a.trainer.parse().map_err(|e| anyhow::anyhow!("--trainer {e}"))?;
    if model != PipeModel::Gcnii {
        cfg.dropout = 0.5;
        cfg.weight_decay_conv = 5e-4;
    }
    if a.preset.as_deref() == Some("gnnpipe") {
        // GNNPipe's run scripts: hidden 100, dropout 0.5, Adam lr 1e-3 without weight decay.
        cfg.hidden = 100;
        cfg.dropout = 0.5;
        cfg.lr = 1e-3;
        cfg.weight_decay = 0.0;
        cfg.weight_decay_conv = 0.0;
    }
    if let Some(h) = a.hidden {
        cfg.hidden = h;
    }
    if let Some(lr) = a.lr {
        cfg.lr = lr;
    }
    if let Some(d) = a.dropout {
        cfg.dropout = d;
    }
    if let Some(w) = a.weight_decay {
        cfg.weight_decay = w;
    }
    if let Some(w) = a.weight_decay_conv {
        cfg.weight_decay_conv = w;
    }
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("--mode {} --model {} --trainer {}: {e}", a.mode, a.model, a.trainer))?;
    Ok(cfg)
}

/// torchrun / Slurm conventions: (rank, world size, master address) when WORLD_SIZE or
/// SLURM_NTASKS says there are several processes.
pub fn rendezvous_env() -> anyhow::Result<Option<(usize, usize, String)>> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let parse = |k: &str| -> anyhow::Result<Option<usize>> {
        var(k)
            .map(|v| v.parse::<usize>().with_context(|| format!("${k}={v}: expected a non-negative integer")))
            .transpose()
    };
    let world = match parse("WORLD_SIZE")? {
        Some(w) => w,
        None => match parse("SLURM_NTASKS")? {
            Some(w) => w,
            None => return Ok(None),
        },
    };
    if world <= 1 {
        return Ok(None);
    }
    let rank = match parse("RANK")? {
        Some(r) => r,
        None => parse("SLURM_PROCID")?.context("WORLD_SIZE is set but neither $RANK nor $SLURM_PROCID is")?,
    };
    if rank >= world {
        bail!("rank {rank} is not below the world size {world}");
    }
    let host = var("MASTER_ADDR").context("a torchrun/Slurm start needs $MASTER_ADDR (rank 0's host)")?;
    let port = parse("MASTER_PORT")?.unwrap_or(29500);
    Ok(Some((rank, world, format!("{host}:{port}"))))
}

/// Whether `addr` (host:port) names this machine's loopback.
fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The local address other hosts reach us at: $STRATA_ADVERTISE_ADDR, else the interface
/// address the kernel routes to `master` from.
fn advertised_host(master: &str) -> anyhow::Result<String> {
    if let Ok(a) = std::env::var("STRATA_ADVERTISE_ADDR") {
        return Ok(a);
    }
    if is_loopback(master) {
        return Ok("127.0.0.1".into());
    }
    use std::net::ToSocketAddrs;
    let target = master
        .to_socket_addrs()
        .with_context(|| format!("resolving MASTER_ADDR {master}"))?
        .next()
        .context("MASTER_ADDR resolves to nothing")?;
    let sock = std::net::UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    sock.connect(target)?;
    Ok(sock.local_addr()?.ip().to_string())
}

/// Rank ≥ 1 of a torchrun/Slurm start: serve as a worker and announce ourselves to rank 0.
fn env_worker(rank: usize, world: usize, master: String, a: &LaunchArgs, token: Option<String>) -> anyhow::Result<()> {
    let creds = credentials(token, a.tls_dir.as_deref(), &format!("worker-{rank}"))?;
    let device = strata_nn::parse_device(&a.device)?;
    let bind: std::net::SocketAddr = if is_loopback(&master) { "127.0.0.1:0".parse()? } else { "0.0.0.0:0".parse()? };
    let host = advertised_host(&master)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let opts = strata_pipe::worker::WorkerOptions {
            listen: bind,
            creds: creds.clone(),
            rank: rank as u32,
            device,
            registrations: None,
            max_graph_bytes: strata_pipe::worker::DEFAULT_MAX_GRAPH_BYTES,
        };
        let server = tokio::spawn(strata_pipe::worker::serve(opts, move |addr| {
            let _ = addr_tx.send(addr);
        }));
        let port = addr_rx.await.context("worker failed to bind")?.port();
        let me = format!("{host}:{port}");
        eprintln!("strata launch: rank {rank}/{world} serving at {me}, registering with {master}");
        strata_pipe::worker::register(&master, rank as u32, &me, world as u32, &creds, RENDEZVOUS_WAIT)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        server.await?.map_err(|e| anyhow::anyhow!(e))
    })
}

const RENDEZVOUS_WAIT: Duration = Duration::from_secs(300);

pub fn launch(a: LaunchArgs) -> anyhow::Result<()> {
    let cfg = config(&a)?;
    let (mut workers, mut token) = (a.workers.clone(), a.token.clone());
    if let Some(path) = &a.cluster {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let c: ClusterFile =
            toml::from_str(&text).with_context(|| format!("{}: invalid cluster file", path.display()))?;
        workers = c.workers;
        if let Some(var) = c.token_env {
            token = token.or_else(|| std::env::var(&var).ok());
        }
    }
    let env = if workers.is_empty() { rendezvous_env()? } else { None };
    if let Some((rank, world, master)) = &env {
        if *rank > 0 {
            return env_worker(*rank, *world, master.clone(), &a, token);
        }
        if *world != cfg.workers() {
            bail!(
                "world size {world} but --mode {} needs {} workers ({} ways × {} stages)",
                a.mode,
                cfg.workers(),
                cfg.ways,
                cfg.stages
            );
        }
        if !is_loopback(master) && a.tls_dir.is_none() {
            bail!("rank 0 would listen on {master}, which is not loopback: set --tls-dir (mutual TLS, `strata cluster certs`) on every rank; a token alone would cross the network in clear text");
        }
    }
    if !workers.is_empty() && workers.len() != cfg.workers() {
        bail!(
            "{} workers listed but --mode {} needs {} ({} ways × {} stages), in rank order way·S + stage",
            workers.len(),
            a.mode,
            cfg.workers(),
            cfg.ways,
            cfg.stages
        );
    }
    let ckpt_root = a.resume.clone().or_else(|| a.checkpoint_dir.clone());
    if a.restart_failed && ckpt_root.is_none() {
        bail!("--restart-failed resumes from checkpoints: give --checkpoint-dir (or --resume)");
    }
    if let Some(r) = &a.resume {
        if !r.is_dir() {
            bail!("--resume {}: no such checkpoint directory", r.display());
        }
    } else if let Some(dir) = &a.checkpoint_dir {
        // Continuing an earlier run must be asked for: otherwise a finished run would be
        // silently "resumed" and its old result printed as if it were new.
        if let Some((found, m)) = strata_pipe::checkpoint::latest(dir) {
            bail!(
                "--checkpoint-dir {}: already holds a run's checkpoint ({}, {} epochs done). Continue that run with --resume {}, or give an empty directory for a new run",
                dir.display(),
                found.display(),
                m.epoch,
                dir.display()
            );
        }
    }
    let data = a.graph.load("cora", None)?;
    let split = data
        .splits
        .first()
        .cloned()
        .unwrap_or_else(|| strata_graph::Split::random_stratified(&data.labels, 0.1, 0.1, a.seed));
    // The plan holds the renumbered copy; the graph as read is not needed again.
    let mut p = strata_pipe::PipelinePlan::from_owned(data, &split, &cfg);
    drop(split);
    // Each worker's share goes to disk now; the launcher keeps only the structure.
    p.stage_to_disk(None).context("writing the stage data")?;
    strata_nn::memory::release_free_heap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async move {
        // SIGTERM (and Ctrl-C): finish the epoch, checkpoint, stop.
        let flag = stop.clone();
        tokio::spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            eprintln!("strata launch: stopping after this epoch");
            flag.store(true, Ordering::SeqCst);
        });
        let given = workers.clone();
        let mut restarts = 0;
        loop {
            let mut children = Vec::new();
            if let Some((_, world, master)) = &env {
                if restarts == 0 {
                    workers = serve_rank0(
                        master,
                        *world,
                        &a.device,
                        credentials(token.clone(), a.tls_dir.as_deref(), "worker-0")?,
                    )
                    .await?;
                }
            } else if given.is_empty() {
                let (c, addrs) = spawn_local(cfg.workers(), &a.device, token.as_deref(), a.tls_dir.as_deref()).await?;
                children = c;
                workers = addrs;
            }
            // After a failure, listed workers get time to come back (restarted by their supervisor).
            let wait = if restarts == 0 { Duration::from_secs(15) } else { RENDEZVOUS_WAIT };
            let creds = credentials(token.clone(), a.tls_dir.as_deref(), &a.tls_name)?;
            match run_once(&a, &cfg, &p, &p.dataset, &workers, &creds, wait, ckpt_root.as_deref(), &stop).await {
                Err(e)
                    if a.restart_failed
                        && restarts < a.max_restarts
                        && e.downcast_ref::<PipeError>().is_some_and(PipeError::is_worker_failure) =>
                {
                    restarts += 1;
                    eprintln!("strata launch: {e}; restart {restarts}/{} from the last checkpoint", a.max_restarts);
                    drop(children);
                }
                other => return other,
            }
        }
    })
}

/// Connects, configures, restores the newest checkpoint under `ckpt_root` (if any), trains,
/// and prints the summary.
#[allow(clippy::too_many_arguments)]
async fn run_once(
    a: &LaunchArgs,
    cfg: &PipelineConfig,
    p: &strata_pipe::PipelinePlan,
    data: &strata_graph::Dataset,
    workers: &[String],
    creds: &Credentials,
    wait: Duration,
    ckpt_root: Option<&std::path::Path>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    {
        let split_desc: Vec<String> =
            p.specs.iter().take(cfg.stages).map(|s| format!("{}..{}", s.first, s.last)).collect();
        eprintln!(
            "strata launch: {} ({} nodes) · {} with {} layers · {} mode: {} way(s) × {} stage(s) (slots {}) · {} chunks · workers {}",
            data.name,
            data.num_nodes(),
            a.model,
            a.layers,
            cfg.mode.name(),
            cfg.ways,
            cfg.stages,
            split_desc.join(" | "),
            cfg.num_chunks(),
            workers.join(", ")
        );
        let mut launcher = Launcher::connect(workers, creds, wait).await?;
        launcher.configure(p, ckpt_root).await?;
        let mut opts = TrainOptions {
            checkpoint: ckpt_root.map(|r| (r.to_path_buf(), a.checkpoint_every)),
            resume: None,
            stop: Some(stop.clone()),
        };
        if let Some((dir, m)) = ckpt_root.and_then(strata_pipe::checkpoint::latest) {
            if m.config != config_identity(cfg) {
                bail!("{}: the checkpoint was written by a run with a different configuration (model, mode, split or hyper-parameters); refusing to resume it", dir.display());
            }
            launcher.restore(&dir, &m).await?;
            let report: LaunchReport = serde_json::from_value(m.launcher.clone())
                .with_context(|| format!("{}: launcher state", dir.display()))?;
            eprintln!("strata launch: resumed from {} ({} epochs done)", dir.display(), m.epoch);
            opts.resume = Some((m.epoch, report));
        } else if a.resume.is_some() {
            bail!(
                "--resume {}: no complete checkpoint there",
                ckpt_root.map(|r| r.display().to_string()).unwrap_or_default()
            );
        }
        let pb = progress(cfg.epochs as u64, cfg.mode.name());
        pb.inc(opts.resume.as_ref().map_or(0, |r| r.0));
        let result = train(&launcher, p, cfg, &opts, |e| {
            pb.inc(1);
            if let Some(v) = e.val_accuracy {
                pb.set_message(format!("loss {:.3} val {:.3} · {:.0} ms/epoch", e.loss, v, e.epoch_ms));
            }
        })
        .await;
        pb.finish_and_clear();
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                // Workers that will be reused after a restart stay up.
                if !(a.restart_failed && e.is_worker_failure()) {
                    launcher.shutdown("launcher failed").await;
                }
                return Err(anyhow::Error::new(e));
            }
        };
        launcher.shutdown("training finished").await;
        summarize(a, cfg, data, &report, split_desc)
    }
}

/// Rank 0 of a torchrun/Slurm start: serve as worker 0 in this process and collect the other
/// ranks' addresses. Returns every worker's address in rank order.
async fn serve_rank0(master: &str, world: usize, device: &str, creds: Credentials) -> anyhow::Result<Vec<String>> {
    use std::net::ToSocketAddrs;
    let port = master.rsplit_once(':').map_or("29500", |(_, p)| p);
    let bind = if is_loopback(master) { format!("127.0.0.1:{port}") } else { format!("0.0.0.0:{port}") };
    let listen = bind.to_socket_addrs()?.next().context("bind address")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = strata_pipe::worker::WorkerOptions {
        listen,
        creds,
        rank: 0,
        device: strata_nn::parse_device(device)?,
        registrations: Some(tx),
        max_graph_bytes: strata_pipe::worker::DEFAULT_MAX_GRAPH_BYTES,
    };
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Err(e) = strata_pipe::worker::serve(opts, move |a| {
            let _ = bound_tx.send(a);
        })
        .await
        {
            tracing::error!("rank 0 worker: {e}");
        }
    });
    bound_rx.await.with_context(|| format!("rank 0 could not listen on {bind}"))?;
    let mut addrs = vec![String::new(); world];
    addrs[0] = master.to_string();
    let mut missing = world - 1;
    eprintln!("strata launch: rank 0 waiting for {missing} rank(s) at {master}");
    while missing > 0 {
        let (rank, addr) = tokio::time::timeout(RENDEZVOUS_WAIT, rx.recv())
            .await
            .map_err(|_| {
                let absent: Vec<String> =
                    addrs.iter().enumerate().filter(|(_, a)| a.is_empty()).map(|(r, _)| r.to_string()).collect();
                anyhow::anyhow!("ranks {} did not register within {RENDEZVOUS_WAIT:?}", absent.join(", "))
            })?
            .context("registration channel closed")?;
        let r = rank as usize;
        if r == 0 || r >= world {
            bail!("a worker registered as rank {r}, outside 1..{world}");
        }
        if addrs[r].is_empty() {
            missing -= 1;
        }
        addrs[r] = addr;
    }
    Ok(addrs)
}

fn summarize(
    a: &LaunchArgs,
    cfg: &PipelineConfig,
    data: &strata_graph::Dataset,
    report: &strata_pipe::launcher::LaunchReport,
    split_desc: Vec<String>,
) -> anyhow::Result<()> {
    // Warm-up epochs are left out, but never all of them (a short run at scale has two epochs).
    let ms: Vec<f64> =
        report.epochs.iter().skip(2.min(report.epochs.len().saturating_sub(1))).map(|e| e.epoch_ms).collect();
    let med = |f: &dyn Fn(&strata_pipe::launcher::LaunchEpoch) -> u64| {
        median(&report.epochs.iter().map(|e| f(e) as f64).collect::<Vec<_>>())
    };
    let measured = med(&|e| e.bytes);
    let mib = |b: f64| format!("{:.3}", b / (1 << 20) as f64);
    let pred = &report.predicted;
    let wire = med(&|e| e.wire_bytes);
    // Each worker's peak over the run (a resumed run's earlier epochs may not carry it).
    let per_worker = |f: &dyn Fn(&strata_pipe::launcher::LaunchEpoch) -> &Vec<u64>| -> Vec<u64> {
        (0..cfg.workers())
            .map(|r| report.epochs.iter().filter_map(|e| f(e).get(r).copied()).max().unwrap_or(0))
            .collect()
    };
    let memory = per_worker(&|e| &e.memory_bytes_per_worker);
    let cuda = per_worker(&|e| &e.cuda_peak_bytes_per_worker);
    let mem_text = memory.iter().map(|b| format!("{:.0}", *b as f64 / 1048576.0)).collect::<Vec<_>>().join(" / ");
    let rows = vec![
        vec![
            "mode".to_string(),
            "ways×stages".into(),
            "chunks".into(),
            "epochs".into(),
            "test acc (best val)".into(),
            "epoch ms (median)".into(),
            "MiB/epoch measured".into(),
            "MiB/epoch predicted".into(),
            "wire MiB/epoch".into(),
            "peak RSS MiB per worker".into(),
        ],
        vec![
            cfg.mode.name().into(),
            format!("{}×{}", cfg.ways, cfg.stages),
            cfg.num_chunks().to_string(),
            cfg.epochs.to_string(),
            format!("{:.2} (epoch {})", report.test_accuracy * 100.0, report.best_epoch + 1),
            format!("{:.1}", median(&ms)),
            format!(
                "{} (layer {} · halo {} · weights {})",
                mib(measured),
                mib(med(&|e| e.layer_bytes)),
                mib(med(&|e| e.halo_bytes)),
                mib(med(&|e| e.weight_bytes))
            ),
            format!(
                "{} (layer {} · halo {} · weights {})",
                mib(pred.total),
                mib(pred.layer),
                mib(pred.halo),
                mib(pred.weight)
            ),
            format!("{} (×{:.3})", mib(wire), if measured > 0.0 { wire / measured } else { 0.0 }),
            mem_text,
        ],
    ];
    print!("{}", table(&rows));
    if let Some(path) = &a.json {
        write_json(
            path,
            &json!({
                "mode": cfg.mode.name(),
                "dataset": data.name,
                "model": a.model,
                "layers": a.layers,
                "stages": cfg.stages,
                "ways": cfg.ways,
                "workers": cfg.workers(),
                "stage_slots": split_desc,
                "chunks": cfg.num_chunks(),
                "epochs": cfg.epochs,
                "test_accuracy": report.test_accuracy,
                "best_val_accuracy": report.best_val_accuracy,
                "epoch_ms_median": median(&ms),
                "bytes_per_epoch": {
                    "measured": measured,
                    "predicted": pred.total,
                    "measured_by_kind": {"layer": med(&|e| e.layer_bytes), "halo": med(&|e| e.halo_bytes), "weight": med(&|e| e.weight_bytes)},
                    "predicted_by_kind": {"layer": pred.layer, "halo": pred.halo, "weight": pred.weight},
                    "boundary_vertices": pred.boundary,
                    "parameters": pred.parameters,
                    "wire": wire,
                    "wire_overhead_ratio": if measured > 0.0 { wire / measured } else { 0.0 },
                },
                "memory_bytes_per_worker": memory,
                "cuda_peak_bytes_per_worker": cuda,
                "config": cfg,
                "curve": report.epochs,
            }),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: LaunchArgs,
    }

    fn cfg(args: &[&str]) -> anyhow::Result<PipelineConfig> {
        config(&Cli::try_parse_from(std::iter::once("launch").chain(args.iter().copied()))?.a)
    }

    /// `--preset gnnpipe` sets the paper's hyper-parameters; explicit flags still win; bad
    /// values are refused with the setting named.
    #[test]
    fn gnnpipe_preset_and_weight_decay_flags() {
        let d = cfg(&[]).unwrap();
        assert_eq!((d.hidden, d.lr, d.weight_decay, d.weight_decay_conv), (64, 0.01, 5e-4, 0.01));
        let p = cfg(&["--preset", "gnnpipe"]).unwrap();
        assert_eq!((p.hidden, p.dropout, p.lr, p.weight_decay, p.weight_decay_conv), (100, 0.5, 1e-3, 0.0, 0.0));
        let o =
            cfg(&["--preset", "gnnpipe", "--hidden", "32", "--weight-decay", "1e-3", "--weight-decay-conv", "2e-3"])
                .unwrap();
        assert_eq!((o.hidden, o.lr, o.weight_decay, o.weight_decay_conv), (32, 1e-3, 1e-3, 2e-3));
        let e = cfg(&["--weight-decay=-1"]).unwrap_err().to_string();
        assert!(e.contains("weight decay"), "{e}");
        assert!(cfg(&["--preset", "pyg"]).is_err());
    }

    #[test]
    fn trick_flags_map_to_the_paper_ablations() {
        let d = cfg(&[]).unwrap();
        assert_eq!((d.shuffle, d.grad_scale, d.carry_stale_grads, d.refresh), (true, 2.0, false, 23));
        let t = cfg(&["--no-trick2"]).unwrap();
        assert_eq!((t.grad_scale, t.carry_stale_grads), (1.0, true));
        let g = cfg(&["--grad-scale", "1"]).unwrap();
        assert_eq!((g.grad_scale, g.carry_stale_grads), (1.0, false));
        let all_off = cfg(&["--no-shuffle", "--no-trick2", "--refresh", "1"]).unwrap();
        assert_eq!((all_off.shuffle, all_off.carry_stale_grads, all_off.refresh), (false, true, 1));
        assert!(cfg(&["--no-trick2", "--grad-scale", "3"]).is_err(), "--no-trick2 sets the scale itself");
    }

    #[test]
    fn heap_trimming_is_off_unless_asked_for() {
        assert!(!cfg(&[]).unwrap().trim_heap);
        assert!(cfg(&["--trim-heap"]).unwrap().trim_heap);
    }
}
