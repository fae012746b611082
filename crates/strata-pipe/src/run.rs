//! A run through the launcher: the epochs (training, exact evaluation, checkpoints, the stop
//! signal) and one attempt of a whole run (connect → configure → resume → train → shutdown).

use crate::config::PipelineConfig;
use crate::error::PipeError;
use crate::launcher::{LaunchEpoch, LaunchReport, Launcher};
use crate::plan::PipelinePlan;
use crate::proto::EpochRequest;
use crate::schedule::chunk_order;
use crate::volume::predict;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checkpointing, resuming and stopping of [`train`].
#[derive(Default)]
pub struct TrainOptions {
    /// Write a checkpoint under this root every `every` epochs (and when stopped).
    pub checkpoint: Option<(PathBuf, usize)>,
    /// Continue from a restored checkpoint: epochs completed and the launcher's report then.
    pub resume: Option<(u64, LaunchReport)>,
    /// Set (e.g. on SIGTERM) to stop after the current epoch.
    pub stop: Option<Arc<AtomicBool>>,
    /// After each evaluation that improves the best validation accuracy, have the workers
    /// copy their parameters aside ([`Launcher::keep`]).
    pub keep_best: bool,
    /// Go on when an epoch's loss is not finite (otherwise the run ends with
    /// [`PipeError::Diverged`], before any checkpoint of the broken weights).
    pub allow_nonfinite_loss: bool,
}

/// Each reply's breakdown; a worker that sent none is refused by rank.
fn phases(replies: &[crate::proto::EpochReply]) -> Result<Vec<crate::stage_core::Breakdown>, PipeError> {
    replies
        .iter()
        .enumerate()
        .map(|(rank, r)| {
            r.phases
                .as_ref()
                .map(Into::into)
                .ok_or_else(|| PipeError::Protocol(format!("worker {rank} replied to an epoch without its breakdown")))
        })
        .collect()
}

/// Trains `cfg.epochs` epochs through the configured workers; exact full-graph evaluation every
/// `cfg.eval_every` epochs picks the test accuracy at the best validation accuracy.
pub async fn train(
    launcher: &Launcher,
    plan: &PipelinePlan,
    cfg: &PipelineConfig,
    opts: &TrainOptions,
    mut on_epoch: impl FnMut(&LaunchEpoch),
) -> Result<LaunchReport, PipeError> {
    let k = plan.offsets.len() - 1;
    let spec = &plan.specs[0];
    let frac = |c: u64, n: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
    let (start, mut report) = match &opts.resume {
        // A resumed run's workers hold no kept copy: the weights gathered at the end are the
        // last epoch's unless a later evaluation improves on the best.
        Some((epoch, r)) => (*epoch, LaunchReport { predicted: predict(plan, cfg), kept_epoch: None, ..r.clone() }),
        None => (
            0,
            LaunchReport {
                epochs: Vec::new(),
                best_val_accuracy: -1.0,
                test_accuracy: 0.0,
                best_epoch: 0,
                predicted: predict(plan, cfg),
                warm_start_ms: None,
                kept_epoch: None,
            },
        ),
    };
    if start == 0 && cfg.warm_start {
        let t0 = Instant::now();
        launcher.epoch(EpochRequest { epoch: 0, order: vec![], train: false, warm: true, capture: false }).await?;
        report.warm_start_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
    }
    for epoch in start..cfg.epochs as u64 {
        let order: Vec<u32> = chunk_order(k, cfg.seed, epoch, cfg.shuffle).into_iter().map(|c| c as u32).collect();
        let t0 = Instant::now();
        let replies = launcher.epoch(EpochRequest { epoch, order, train: true, warm: false, capture: false }).await?;
        let epoch_ms = t0.elapsed().as_secs_f64() * 1e3;
        let layer_bytes = replies.iter().map(|r| r.activation_bytes + r.gradient_bytes).sum();
        let halo_bytes = replies.iter().map(|r| r.halo_bytes).sum();
        let weight_bytes = replies.iter().map(|r| r.weight_bytes).sum();
        let mut e = LaunchEpoch {
            epoch,
            loss: replies.iter().map(|r| r.loss).sum(),
            epoch_ms,
            bytes: layer_bytes + halo_bytes + weight_bytes,
            layer_bytes,
            halo_bytes,
            weight_bytes,
            wire_bytes: replies.iter().map(|r| r.wire_bytes).sum(),
            memory_bytes_per_worker: replies.iter().map(|r| r.peak_rss_bytes).collect(),
            cuda_peak_bytes_per_worker: replies.iter().map(|r| r.cuda_peak_bytes).collect(),
            phases_per_worker: phases(&replies)?,
            eval_phases_per_worker: Vec::new(),
            eval_ms: None,
            activations_per_worker: replies.iter().map(|r| r.activations.as_ref().map(Into::into)).collect(),
            val_accuracy: None,
            test_accuracy: None,
        };
        if !e.loss.is_finite() && !opts.allow_nonfinite_loss {
            return Err(PipeError::Diverged { epoch, loss: e.loss });
        }
        if cfg.eval_every > 0 && ((epoch + 1) % cfg.eval_every as u64 == 0 || epoch + 1 == cfg.epochs as u64) {
            let t_eval = Instant::now();
            let r = launcher
                .epoch(EpochRequest { epoch, order: vec![], train: false, warm: false, capture: false })
                .await?;
            e.eval_ms = Some(t_eval.elapsed().as_secs_f64() * 1e3);
            e.eval_phases_per_worker = phases(&r)?;
            let val = frac(r.iter().map(|x| x.val_correct).sum(), spec.val.len());
            let test = frac(r.iter().map(|x| x.test_correct).sum(), spec.test.len());
            // Evaluation can raise a worker's peak (the full-graph forward pass).
            for (m, x) in e.memory_bytes_per_worker.iter_mut().zip(&r) {
                *m = (*m).max(x.peak_rss_bytes);
            }
            e.val_accuracy = Some(val);
            e.test_accuracy = Some(test);
            // Without validation nodes (e.g. karate) the latest evaluation is the one reported.
            if spec.val.is_empty() || val > report.best_val_accuracy {
                report.best_val_accuracy = val;
                report.test_accuracy = test;
                report.best_epoch = epoch;
                if opts.keep_best {
                    launcher.keep(epoch).await?;
                    report.kept_epoch = Some(epoch);
                }
            }
        }
        on_epoch(&e);
        report.epochs.push(e);
        let done = epoch + 1;
        let stopping = opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
        let mut written = None;
        if let Some((root, every)) = &opts.checkpoint {
            if (*every > 0 && done.is_multiple_of(*every as u64)) || stopping || done == cfg.epochs as u64 {
                written = Some(launcher.checkpoint(root, done, cfg, &report).await?);
            }
        }
        if stopping && done < cfg.epochs as u64 {
            return Err(PipeError::Interrupted { epoch: done, checkpoint: written });
        }
    }
    Ok(report)
}

/// One attempt of a run, besides its plan: where the workers are and how to reach them, and
/// what to checkpoint and resume.
pub struct RunOptions {
    pub workers: Vec<String>,
    pub creds: crate::security::Credentials,
    /// How long the workers get to answer the first health check.
    pub wait: Duration,
    /// Checkpoint root and period (epochs); the newest checkpoint there is resumed.
    pub checkpoint: Option<(PathBuf, usize)>,
    /// Refuse to start without a checkpoint to resume (`--resume`).
    pub require_checkpoint: bool,
    /// Set (e.g. on SIGTERM) to stop after the current epoch.
    pub stop: Option<Arc<AtomicBool>>,
    /// Leave the workers up when one of them is lost (a restart reuses them).
    pub keep_workers_on_failure: bool,
    /// Gather the whole model at the end (the best validation epoch's weights, kept on the
    /// workers as training goes; the last epoch's when no evaluation improved in this attempt).
    pub gather_parameters: bool,
    /// Then set every worker to those weights and bring back one inference pass's output.
    pub gather_outputs: bool,
    /// See [`TrainOptions::allow_nonfinite_loss`].
    pub allow_nonfinite_loss: bool,
}

/// What a run gives back: the report and, when asked for, the whole model's parameters by
/// variable name (`slotN.…`) and the kept weights' embeddings and logits of every vertex (rows
/// in the plan's order).
pub struct RunResult {
    pub report: LaunchReport,
    pub parameters: Option<Vec<(String, tch::Tensor)>>,
    pub outputs: Option<(tch::Tensor, tch::Tensor)>,
}

/// Every worker set to `params` (each its slots' share), one inference pass with the output
/// kept, and the output of each way's last stage: embeddings and logits of every vertex in the
/// plan's order (graph-parallel ways each hold their own rows, concatenated in way order).
async fn gather_outputs(
    launcher: &Launcher,
    plan: &PipelinePlan,
    params: &[(String, tch::Tensor)],
) -> Result<(tch::Tensor, tch::Tensor), PipeError> {
    for (rank, spec) in plan.specs.iter().enumerate() {
        launcher.load_parameters(rank, crate::layers::slots_share(params, spec.first..spec.last)).await?;
    }
    let epoch = plan.specs[0].config.epochs as u64;
    launcher.epoch(EpochRequest { epoch, order: vec![], train: false, warm: false, capture: true }).await?;
    let last = plan.specs.iter().map(|s| s.last).max().unwrap_or(0);
    let n = plan.dataset.num_nodes() as i64;
    let (mut hidden, mut logits) = (Vec::new(), Vec::new());
    for (rank, _) in plan.specs.iter().enumerate().filter(|(_, s)| s.last == last) {
        let (h, l) = launcher.outputs(rank, plan.specs[rank].classes).await?;
        if hidden.first().is_some_and(|f: &tch::Tensor| f.size()[1] != h.size()[1]) {
            return Err(PipeError::Protocol(format!("worker {rank} sent embeddings of another width")));
        }
        // A pipeline's last stage holds every vertex; one is enough.
        let whole = l.size()[0] == n;
        hidden.push(h);
        logits.push(l);
        if whole {
            break;
        }
    }
    let (hidden, logits) = (tch::Tensor::cat(&hidden, 0), tch::Tensor::cat(&logits, 0));
    if logits.size()[0] != n {
        return Err(PipeError::Protocol(format!("the outputs hold {} rows, the graph {n}", logits.size()[0])));
    }
    Ok((hidden, logits))
}

/// One attempt of a run: connect → configure → resume the newest checkpoint → train → shut
/// the workers down. `on_resume` hears where training continues from (checkpoint, epochs
/// done), `on_epoch` every epoch. Restarting after a lost worker is the caller's loop: it
/// also decides where the workers come from.
pub async fn run(
    plan: &PipelinePlan,
    cfg: &PipelineConfig,
    opts: &RunOptions,
    on_resume: impl FnOnce(&Path, u64),
    on_epoch: impl FnMut(&LaunchEpoch),
) -> Result<RunResult, PipeError> {
    let mut launcher = Launcher::connect(&opts.workers, &opts.creds, opts.wait).await?;
    let root = opts.checkpoint.as_ref().map(|(r, _)| r.as_path());
    launcher.configure(plan, root).await?;
    let resume = match root {
        Some(r) => launcher.resume_latest(r, cfg).await?,
        None => None,
    };
    match (&resume, root) {
        (Some((dir, epoch, _)), _) => on_resume(dir, *epoch),
        (None, Some(r)) if opts.require_checkpoint => {
            return Err(PipeError::State(format!("{}: no complete checkpoint to resume", r.display())))
        }
        _ => {}
    }
    let train_opts = TrainOptions {
        checkpoint: opts.checkpoint.clone(),
        resume: resume.map(|(_, epoch, report)| (epoch, report)),
        stop: opts.stop.clone(),
        keep_best: opts.gather_parameters,
        allow_nonfinite_loss: opts.allow_nonfinite_loss,
    };
    let result = match train(&launcher, plan, cfg, &train_opts, on_epoch).await {
        Ok(report) if opts.gather_parameters || opts.gather_outputs => {
            // One replica: way 0's workers hold every slot between them.
            let ranks: Vec<usize> = (0..plan.specs.len()).filter(|&r| plan.specs[r].way == 0).collect();
            match launcher.parameters(&ranks).await {
                Ok(p) if opts.gather_outputs => gather_outputs(&launcher, plan, &p).await.map(|o| RunResult {
                    report,
                    parameters: Some(p),
                    outputs: Some(o),
                }),
                Ok(p) => Ok(RunResult { report, parameters: Some(p), outputs: None }),
                Err(e) => Err(e),
            }
        }
        Ok(report) => Ok(RunResult { report, parameters: None, outputs: None }),
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => {
            launcher.shutdown("training finished").await;
            Ok(r)
        }
        Err(e) => {
            if !(opts.keep_workers_on_failure && e.is_worker_failure()) {
                launcher.shutdown("launcher failed").await;
            }
            Err(e)
        }
    }
}
