//! `strata launch` (the coordinator) and `strata worker` (one pipeline stage).

use crate::report::{progress, table, write_json};
use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use strata_nn::metrics::median;
use strata_pipe::launcher::{train, Launcher};
use strata_pipe::{plan, PipeModel, PipelineConfig};
use tokio::io::AsyncBufReadExt;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Address to serve on. Loopback by default; any other address requires --token.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// This worker's rank (default: $RANK, then $SLURM_PROCID, then 0).
    #[arg(long)]
    pub rank: Option<u32>,
    /// Shared cluster token required on every RPC.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch CPU threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Serve Prometheus metrics (bytes sent by kind, epochs) at http://ADDR/metrics.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

pub fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    strata_nn::set_threads(a.threads);
    let device = strata_nn::parse_device(&a.device)?;
    let env_rank = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    let rank = a.rank.or_else(|| env_rank("RANK")).or_else(|| env_rank("SLURM_PROCID")).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let opts = strata_pipe::worker::WorkerOptions { listen: a.listen, token: a.token, rank, device };
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
    #[arg(long, default_value = "cora")]
    pub dataset: String,
    /// gcnii or gcn.
    #[arg(long, default_value = "gcnii")]
    pub model: String,
    #[arg(long, default_value_t = 32)]
    pub layers: usize,
    #[arg(long, default_value_t = 64)]
    pub hidden: i64,
    /// Pipeline stages P (one worker each).
    #[arg(long, default_value_t = 4)]
    pub stages: usize,
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
    /// Trick 2: scale of cross-chunk gradients (1 = off).
    #[arg(long, default_value_t = 2.0)]
    pub grad_scale: f64,
    /// Trick 3: refresh the historical snapshot every R epochs (1 = one-epoch staleness).
    #[arg(long, default_value_t = 23)]
    pub refresh: usize,
    /// Exact full-graph evaluation every N epochs.
    #[arg(long, default_value_t = 1)]
    pub eval_every: usize,
    /// Worker addresses in stage order (host:port,...). Default: start P local workers.
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<String>,
    /// A cluster file (see cluster/local.toml) listing the workers.
    #[arg(long, conflicts_with = "workers")]
    pub cluster: Option<PathBuf>,
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Device for locally started workers.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    workers: Vec<String>,
    #[serde(default)]
    token_env: Option<String>,
}

/// Starts `n` local worker processes on loopback; returns them (killed on drop) and their addresses.
async fn spawn_local(n: usize, device: &str, token: Option<&str>) -> anyhow::Result<(Vec<tokio::process::Child>, Vec<String>)> {
    let exe = std::env::current_exe()?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = (cores / n).max(1);
    let (mut children, mut addrs) = (Vec::new(), Vec::new());
    for rank in 0..n {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["worker", "--listen", "127.0.0.1:0", "--rank", &rank.to_string(), "--device", device, "--threads", &threads.to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(t) = token {
            cmd.env("STRATA_TOKEN", t);
        }
        let mut child = cmd.spawn().context("starting a local worker")?;
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

pub fn launch(a: LaunchArgs) -> anyhow::Result<()> {
    let model = match a.model.as_str() {
        "gcnii" => PipeModel::Gcnii,
        "gcn" => PipeModel::Gcn,
        m => bail!("--model {m}: the pipeline trains gcnii or gcn"),
    };
    if a.stages < 1 || a.stages > a.layers + 2 {
        bail!("--stages must be between 1 and layers + 2 = {}", a.layers + 2);
    }
    let mut cfg = PipelineConfig::gcnii(a.layers, a.stages);
    cfg.model = model;
    cfg.hidden = a.hidden;
    cfg.chunks = a.chunks;
    cfg.epochs = a.epochs;
    cfg.seed = a.seed;
    cfg.shuffle = !a.no_shuffle;
    cfg.grad_scale = a.grad_scale;
    cfg.refresh = a.refresh;
    cfg.eval_every = a.eval_every;
    if model == PipeModel::Gcn {
        cfg.dropout = 0.5;
        cfg.weight_decay_conv = 5e-4;
    }
    if let Some(lr) = a.lr {
        cfg.lr = lr;
    }
    if let Some(d) = a.dropout {
        cfg.dropout = d;
    }
    let data = crate::train::load_dataset(&a.dataset, None, None)?;
    let split = data.splits.first().cloned().unwrap_or_else(|| strata_graph::Split::random_stratified(&data.labels, 0.1, 0.1, a.seed));
    let p = plan(&data, &split, &cfg);
    let (mut workers, mut token) = (a.workers.clone(), a.token.clone());
    if let Some(path) = &a.cluster {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let c: ClusterFile = toml::from_str(&text).with_context(|| format!("{}: invalid cluster file", path.display()))?;
        workers = c.workers;
        if let Some(var) = c.token_env {
            token = token.or_else(|| std::env::var(&var).ok());
        }
    }
    if !workers.is_empty() && workers.len() != a.stages {
        bail!("{} workers listed for {} stages: list one worker per stage", workers.len(), a.stages);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let _children;
        if workers.is_empty() {
            let (c, addrs) = spawn_local(a.stages, &a.device, token.as_deref()).await?;
            _children = c;
            workers = addrs;
        }
        let split_desc: Vec<String> = p.specs.iter().map(|s| format!("{}..{}", s.first, s.last)).collect();
        eprintln!(
            "strata launch: {} ({} nodes) · {} with {} layers · {} stages (slots {}) · {} chunks · workers {}",
            data.name,
            data.num_nodes(),
            a.model,
            a.layers,
            a.stages,
            split_desc.join(" | "),
            cfg.num_chunks(),
            workers.join(", ")
        );
        let mut launcher = Launcher::connect(&workers, token.clone(), Duration::from_secs(15)).await?;
        launcher.configure(&p).await?;
        let pb = progress(cfg.epochs as u64, "pipeline");
        let result = train(&launcher, &p, &cfg, |e| {
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
                launcher.shutdown("launcher failed").await;
                return Err(anyhow::Error::new(e));
            }
        };
        launcher.shutdown("training finished").await;
        let ms: Vec<f64> = report.epochs.iter().skip(2).map(|e| e.epoch_ms).collect();
        let bytes: Vec<f64> = report.epochs.iter().map(|e| e.bytes as f64).collect();
        let measured = median(&bytes);
        let rows = vec![
            vec!["mode".to_string(), "stages".into(), "chunks".into(), "epochs".into(), "test acc (best val)".into(), "epoch ms (median)".into(), "MiB/epoch measured".into(), "MiB/epoch predicted".into()],
            vec![
                "pipeline".into(),
                a.stages.to_string(),
                cfg.num_chunks().to_string(),
                cfg.epochs.to_string(),
                format!("{:.2} (epoch {})", report.test_accuracy * 100.0, report.best_epoch + 1),
                format!("{:.1}", median(&ms)),
                format!("{:.3}", measured / (1 << 20) as f64),
                format!("{:.3}", report.predicted_bytes_per_epoch / (1 << 20) as f64),
            ],
        ];
        print!("{}", table(&rows));
        if let Some(path) = &a.json {
            write_json(path, &json!({
                "mode": "pipeline",
                "dataset": data.name,
                "model": a.model,
                "layers": a.layers,
                "stages": a.stages,
                "stage_slots": split_desc,
                "chunks": cfg.num_chunks(),
                "epochs": cfg.epochs,
                "test_accuracy": report.test_accuracy,
                "best_val_accuracy": report.best_val_accuracy,
                "epoch_ms_median": median(&ms),
                "bytes_per_epoch": {"measured": measured, "predicted": report.predicted_bytes_per_epoch},
                "config": cfg,
                "curve": report.epochs,
            }))?;
        }
        Ok(())
    })
}
