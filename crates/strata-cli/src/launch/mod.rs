//! `strata launch`: flags → a pipeline configuration → workers (spawned, listed, or met at a
//! torchrun/Slurm rendezvous) → the launcher's run → the summary.

mod args;
mod config;
mod rendezvous;
mod summary;
mod worker;

use config::config;
use rendezvous::{env_worker, is_loopback, serve_rank0, ClusterFile, RENDEZVOUS_WAIT};
use summary::summarize;

pub use args::LaunchArgs;
pub use rendezvous::{credentials, rendezvous_env};
pub(crate) use rendezvous::{fresh_token, spawn_local};
pub use worker::{worker, WorkerArgs};

use crate::report::progress;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_pipe::run::RunOptions;
use strata_pipe::security::Credentials;
use strata_pipe::PipeError;
use strata_pipe::PipelineConfig;

pub fn launch(a: LaunchArgs) -> anyhow::Result<()> {
    let mut cfg = config(&a)?;
    // The reports to overlay are read now, so a bad one is refused before the run, not after.
    for p in &a.plot_with {
        summary::curve_from_report(p)?;
    }
    let outputs: Vec<(&str, &std::path::Path)> =
        [("--json", &a.json), ("--plot", &a.plot), ("--out", &a.out), ("--predictions", &a.predictions)]
            .into_iter()
            .filter_map(|(f, p)| Some((f, p.as_deref()?)))
            .collect();
    let mut inputs: Vec<(&str, &std::path::Path)> = a.plot_with.iter().map(|p| ("--plot-with", p.as_path())).collect();
    inputs.extend(a.graph.inputs());
    // The checkpoints it resumes from and writes: no report may land among them.
    inputs.extend(
        [("--checkpoint-dir", &a.checkpoint_dir), ("--resume", &a.resume)]
            .into_iter()
            .filter_map(|(f, p)| Some((f, p.as_deref()?))),
    );
    crate::report::distinct_paths(&outputs, &inputs)?;
    if (a.out.is_some() || a.predictions.is_some()) && cfg.trainer != strata_pipe::PipeTrainer::Bp {
        bail!(
            "--out, --predictions: a model trained with --trainer {} has no classifier to predict with",
            cfg.trainer.name()
        );
    }
    if let Some(out) = &a.out {
        crate::predict::check_out(out)?;
    }
    if let Some(p) = &a.predictions {
        crate::predict::check_predictions_path("--predictions", p)?;
    }
    let (workers, token) = listed_workers(&a)?;
    let env = if workers.is_empty() { rendezvous_env()? } else { None };
    if workers.is_empty() && env.is_none() && cfg.memory_budget.is_none() {
        // Local workers share this host's memory (and cgroup): each gets its share of half of
        // it. Each stage further caps it by half of what its own process limits leave.
        cfg.memory_budget = strata_nn::memory::host_available_bytes().map(|b| b / 2 / cfg.workers() as u64);
    }
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
    let ckpt_root = checkpoint_root(&a)?;
    let data = a.graph.load("cora", None)?;
    // What a model directory records of the graph as given (the plan renumbers it).
    let record = a.out.as_ref().map(|_| GraphFacts {
        graph: crate::model_dir::GraphRecord::of(&a.graph, "cora", &data),
        feature_normalization: strata_graph::FeatureNorm::Auto.resolve(&data.features),
    });
    cfg.validate_for(data.num_nodes()).map_err(|e| anyhow::anyhow!("{}: {e}", data.name))?;
    let split = crate::source::default_split(&data, a.seed);
    crate::source::check_split(&data, &split)?;
    // The plan holds the renumbered copy; the graph as read is not needed again.
    let mut p = strata_pipe::PipelinePlan::from_owned(data, &split, &cfg);
    drop(split);
    // Each worker's share goes to disk now; the launcher keeps only the structure.
    p.stage_to_disk(None).context("writing the stage data")?;
    strata_nn::memory::release_free_heap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    if let Some(addr) = a.metrics_addr {
        let _guard = rt.enter();
        // Under torchrun/Slurm rank 0 also runs worker 0 in this process: its metrics too.
        crate::metrics_endpoint::serve(addr, &[], || {
            strata_pipe::metrics::describe_launch();
            strata_pipe::metrics::describe_worker();
        })?;
    }
    rt.block_on(run_with_restarts(&a, &cfg, &p, env, workers, token, ckpt_root, record.as_ref()))
}

/// The graph as read, for the model directory of `--out`.
struct GraphFacts {
    graph: crate::model_dir::GraphRecord,
    feature_normalization: strata_graph::FeatureNorm,
}

/// Stops after the current epoch on SIGTERM or Ctrl-C (the launcher then checkpoints).
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("strata launch: stopping after this epoch");
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

/// Provides the workers (rank 0 of a rendezvous, local processes, or the listed ones) and runs
/// the training; with `--restart-failed`, a lost worker starts it again from the last checkpoint.
#[allow(clippy::too_many_arguments)]
async fn run_with_restarts(
    a: &LaunchArgs,
    cfg: &PipelineConfig,
    p: &strata_pipe::PipelinePlan,
    env: Option<(usize, usize, String)>,
    mut workers: Vec<String>,
    token: Option<String>,
    ckpt_root: Option<PathBuf>,
    record: Option<&GraphFacts>,
) -> anyhow::Result<()> {
    let stop = stop_on_signal();
    let given = workers.clone();
    // Workers this launch starts always authenticate its calls: without a token of the user's,
    // a fresh one, so no other local process can call into the run.
    let token = match (&env, given.is_empty(), token) {
        (None, true, None) => Some(rendezvous::fresh_token()),
        (_, _, t) => t,
    };
    let mut restarts = 0;
    loop {
        let mut children = Vec::new();
        if let Some((_, world, master)) = &env {
            if restarts == 0 {
                let creds = credentials(token.clone(), a.tls_dir.as_deref(), "worker-0")?;
                workers = serve_rank0(master, *world, &a.device, creds).await?;
            }
        } else if given.is_empty() {
            let (c, addrs) = spawn_local(cfg.workers(), &a.device, token.as_deref(), a.tls_dir.as_deref()).await?;
            children = c;
            workers = addrs;
        }
        // After a failure, listed workers get time to come back (restarted by their supervisor).
        let wait = if restarts == 0 { Duration::from_secs(15) } else { RENDEZVOUS_WAIT };
        let creds = credentials(token.clone(), a.tls_dir.as_deref(), &a.tls_name)?;
        match run_once(a, cfg, p, &p.dataset, &workers, &creds, wait, ckpt_root.as_deref(), &stop, record).await {
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
}

/// `--workers`, or the workers and token of `--cluster FILE`.
fn listed_workers(a: &LaunchArgs) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let (mut workers, mut token) = (a.workers.clone(), a.token.clone());
    if let Some(path) = &a.cluster {
        let text = strata_graph::files::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let c: ClusterFile =
            toml::from_str(&text).with_context(|| format!("{}: invalid cluster file", path.display()))?;
        workers = c.workers;
        if let Some(var) = c.token_env {
            token = token.or_else(|| std::env::var(&var).ok());
        }
    }
    Ok((workers, token))
}

/// Where checkpoints go (`--resume` or `--checkpoint-dir`), refusing combinations that would
/// lose or silently reuse a run.
fn checkpoint_root(a: &LaunchArgs) -> anyhow::Result<Option<PathBuf>> {
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
    Ok(ckpt_root)
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
    record: Option<&GraphFacts>,
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
        if a.resume.is_some() && ckpt_root.and_then(strata_pipe::checkpoint::latest).is_none() {
            bail!(
                "--resume {}: no complete checkpoint there",
                ckpt_root.map(|r| r.display().to_string()).unwrap_or_default()
            );
        }
        let opts = RunOptions {
            workers: workers.to_vec(),
            creds: creds.clone(),
            wait,
            checkpoint: ckpt_root.map(|r| (r.to_path_buf(), a.checkpoint_every)),
            require_checkpoint: a.resume.is_some(),
            stop: Some(stop.clone()),
            keep_workers_on_failure: a.restart_failed,
            gather_parameters: a.out.is_some(),
            gather_outputs: a.predictions.is_some(),
            allow_nonfinite_loss: a.allow_nonfinite_loss,
        };
        let pb = progress(cfg.epochs as u64, cfg.mode.name());
        let on_resume = |dir: &std::path::Path, epoch: u64| {
            eprintln!("strata launch: resumed from {} ({epoch} epochs done)", dir.display());
            pb.inc(epoch);
        };
        let result = strata_pipe::run::run(p, cfg, &opts, on_resume, |e| {
            strata_pipe::metrics::record_launch_epoch(e);
            pb.inc(1);
            if let Some(v) = e.val_accuracy {
                pb.set_message(format!("loss {:.3} val {:.3} · {:.0} ms/epoch", e.loss, v, e.epoch_ms));
            }
        })
        .await;
        pb.finish_and_clear();
        let result = result?;
        summarize(a, cfg, data, &result.report, split_desc)?;
        if let (Some(out), Some(facts), Some(weights)) = (&a.out, record, &result.parameters) {
            let manifest = model_manifest(cfg, p, facts, &result.report);
            crate::predict::save(out, manifest, weights)?;
            eprintln!(
                "strata launch: saved the model of epoch {} to {} (strata predict {1} …)",
                manifest_epoch(&result.report).0,
                out.display()
            );
        }
        if let (Some(path), Some((hidden, logits))) = (&a.predictions, result.outputs) {
            let p = crate::predict::back_in_order(&p.order, hidden, logits);
            let ids: Vec<i64> = (0..p.probabilities.size()[0]).collect();
            crate::predict::write_predictions(path, &p, &ids, &ids)?;
            eprintln!(
                "strata launch: wrote the predictions of epoch {} to {}",
                manifest_epoch(&result.report).0,
                path.display()
            );
        }
        Ok(())
    }
}

/// The epoch whose weights were gathered, its validation and test accuracy: the kept (best
/// validation) epoch, or the last evaluated one when none was kept in this attempt (a resumed
/// run whose best came before the restart).
fn manifest_epoch(r: &strata_pipe::launcher::LaunchReport) -> (u64, f64, f64) {
    match r.kept_epoch {
        Some(e) if e == r.best_epoch => (e, r.best_val_accuracy, r.test_accuracy),
        _ => r.epochs.iter().rev().find_map(|e| Some((e.epoch, e.val_accuracy?, e.test_accuracy?))).unwrap_or((
            r.best_epoch,
            r.best_val_accuracy,
            r.test_accuracy,
        )),
    }
}

/// The manifest of a model this launch trained.
fn model_manifest(
    cfg: &PipelineConfig,
    p: &strata_pipe::PipelinePlan,
    facts: &GraphFacts,
    r: &strata_pipe::launcher::LaunchReport,
) -> crate::predict::Manifest {
    let (epoch, val, test) = manifest_epoch(r);
    let slots: Vec<[usize; 2]> = p.specs.iter().filter(|s| s.way == 0).map(|s| [s.first, s.last]).collect();
    crate::predict::Manifest {
        format: crate::predict::FORMAT.into(),
        task: "node-classification".into(),
        model: cfg.model.name().into(),
        config: None,
        pipeline: Some(cfg.clone()),
        plan: Some(serde_json::json!({
            "mode": cfg.mode.name(), "ways": cfg.ways, "stages": cfg.stages, "chunks": cfg.num_chunks(),
            "stage_slots": slots,
        })),
        trainer: cfg.trainer.name().into(),
        mode: cfg.mode.name().into(),
        graph: facts.graph.clone(),
        attack: None,
        feature_dim: p.dataset.features.dim(),
        classes: p.dataset.num_classes,
        feature_normalization: facts.feature_normalization,
        split: "default".into(),
        seed: cfg.seed,
        best_epoch: epoch as usize,
        epochs_run: r.epochs.last().map_or(0, |e| e.epoch as usize + 1),
        val_accuracy: val,
        test_accuracy: test,
        files: Default::default(),
    }
}
