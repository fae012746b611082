//! The coordinator side of `strata launch`: configures every stage, drives epochs, watches
//! worker health, and sums the bytes each stage reports.

use crate::pipeline::{PipelineConfig, PipelinePlan};
use crate::proto::{ConfigChunk, EpochReply, EpochRequest, HealthRequest, ShutdownRequest};
use crate::schedule::chunk_order;
use crate::volume::VolumeModel;
use crate::worker::{client, Client};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("worker {rank} ({addr}): {msg}")]
    Worker { rank: usize, addr: String, msg: String },
    #[error("{0}")]
    Config(String),
}

/// One epoch as the launcher saw it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LaunchEpoch {
    pub epoch: u64,
    pub loss: f64,
    pub epoch_ms: f64,
    pub bytes: u64,
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
}

pub struct Launcher {
    workers: Vec<(String, Client)>,
}

const HEALTH_PERIOD: Duration = Duration::from_millis(500);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

impl Launcher {
    /// Connects to every worker and waits (up to `wait`) until each answers a health check.
    pub async fn connect(addrs: &[String], token: Option<String>, wait: Duration) -> Result<Launcher, LaunchError> {
        let mut workers = Vec::new();
        for (rank, a) in addrs.iter().enumerate() {
            let err = |msg: String| LaunchError::Worker { rank, addr: a.clone(), msg };
            let mut c = client(a, token.clone()).map_err(|e| err(e.to_string()))?;
            let deadline = Instant::now() + wait;
            loop {
                match tokio::time::timeout(HEALTH_TIMEOUT, c.health(HealthRequest {})).await {
                    Ok(Ok(_)) => break,
                    Ok(Err(s)) if s.code() == tonic::Code::Unauthenticated => return Err(err(s.message().to_string())),
                    other if Instant::now() >= deadline => {
                        let why = match other {
                            Ok(Err(s)) => s.message().to_string(),
                            _ => "no answer".into(),
                        };
                        return Err(err(format!("not reachable within {wait:?}: {why}")));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            workers.push((a.clone(), c));
        }
        Ok(Launcher { workers })
    }

    fn fail(&self, rank: usize, msg: impl Into<String>) -> LaunchError {
        LaunchError::Worker { rank, addr: self.workers[rank].0.clone(), msg: msg.into() }
    }

    /// Ships each stage its spec and the (renumbered) graph.
    pub async fn configure(&mut self, plan: &PipelinePlan) -> Result<(), LaunchError> {
        if plan.specs.len() != self.workers.len() {
            return Err(LaunchError::Config(format!("{} stages but {} workers", plan.specs.len(), self.workers.len())));
        }
        let npz = strata_graph::formats::graph_npz(&plan.dataset).to_bytes();
        let addrs: Vec<String> = self.workers.iter().map(|w| w.0.clone()).collect();
        for (rank, spec) in plan.specs.iter().enumerate() {
            let spec_json = serde_json::to_string(spec).expect("spec serialises");
            let mut pieces: Vec<ConfigChunk> = npz.chunks(crate::wire::DEFAULT_CHUNK_BYTES).map(|b| ConfigChunk { npz: b.to_vec(), ..Default::default() }).collect();
            if pieces.is_empty() {
                pieces.push(ConfigChunk::default());
            }
            pieces[0].spec_json = spec_json;
            pieces[0].prev_addr = if rank > 0 { addrs[rank - 1].clone() } else { String::new() };
            pieces[0].next_addr = addrs.get(rank + 1).cloned().unwrap_or_default();
            let mut c = self.workers[rank].1.clone();
            c.configure(tokio_stream::iter(pieces)).await.map_err(|s| self.fail(rank, format!("configure failed: {}", s.message())))?;
        }
        Ok(())
    }

    /// Fails as soon as any worker stops answering health checks.
    async fn watchdog(&self) -> LaunchError {
        loop {
            tokio::time::sleep(HEALTH_PERIOD).await;
            if let Some(e) = self.find_lost().await {
                return e;
            }
        }
    }

    /// Runs one epoch on every stage at once; returns each stage's reply.
    pub async fn epoch(&self, req: EpochRequest) -> Result<Vec<EpochReply>, LaunchError> {
        let calls = self.workers.iter().enumerate().map(|(rank, (_, c))| {
            let mut c = c.clone();
            let req = req.clone();
            async move {
                c.run_epoch(req).await.map(|r| r.into_inner()).map_err(|s| {
                    let msg = if s.code() == tonic::Code::Unavailable { format!("lost: {}", s.message()) } else { s.message().to_string() };
                    (rank, msg)
                })
            }
        });
        let result = tokio::select! {
            r = futures::future::try_join_all(calls) => r.map_err(|(rank, msg)| self.fail(rank, format!("epoch {}: {msg}", req.epoch))),
            e = self.watchdog() => Err(e),
        };
        match result {
            Ok(r) => Ok(r),
            // A stage that failed to reach its neighbour is a symptom: name the worker that is gone.
            Err(e) => Err(self.find_lost().await.unwrap_or(e)),
        }
    }

    /// The first worker that does not answer a health check, if any.
    async fn find_lost(&self) -> Option<LaunchError> {
        for (rank, (_, c)) in self.workers.iter().enumerate() {
            let mut c = c.clone();
            match tokio::time::timeout(HEALTH_TIMEOUT, c.health(HealthRequest {})).await {
                Ok(Ok(_)) => {}
                Ok(Err(s)) => return Some(self.fail(rank, format!("lost: {}", s.message()))),
                Err(_) => return Some(self.fail(rank, format!("lost: no health answer within {HEALTH_TIMEOUT:?}"))),
            }
        }
        None
    }

    pub async fn shutdown(&self, reason: &str) {
        for (_, c) in &self.workers {
            let mut c = c.clone();
            let _ = tokio::time::timeout(Duration::from_secs(2), c.shutdown(ShutdownRequest { reason: reason.into() })).await;
        }
    }
}

/// Result of a pipelined run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LaunchReport {
    pub epochs: Vec<LaunchEpoch>,
    pub best_val_accuracy: f64,
    pub test_accuracy: f64,
    pub best_epoch: u64,
    pub predicted_bytes_per_epoch: f64,
}

/// Trains `cfg.epochs` epochs through the configured workers; exact full-graph evaluation every
/// `cfg.eval_every` epochs picks the test accuracy at the best validation accuracy.
pub async fn train(launcher: &Launcher, plan: &PipelinePlan, cfg: &PipelineConfig, mut on_epoch: impl FnMut(&LaunchEpoch)) -> Result<LaunchReport, LaunchError> {
    let k = plan.offsets.len() - 1;
    let model = VolumeModel {
        nodes: plan.dataset.num_nodes(),
        layers: cfg.layers,
        width: cfg.hidden as usize,
        tensors_per_boundary: plan.specs[0].tensors_per_boundary(),
        parameters: 0,
    };
    let mut report = LaunchReport { epochs: Vec::new(), best_val_accuracy: -1.0, test_accuracy: 0.0, best_epoch: 0, predicted_bytes_per_epoch: model.pipeline(cfg.stages) };
    for epoch in 0..cfg.epochs as u64 {
        let order: Vec<u32> = chunk_order(k, cfg.seed, epoch, cfg.shuffle).into_iter().map(|c| c as u32).collect();
        let t0 = Instant::now();
        let replies = launcher.epoch(EpochRequest { epoch, order, train: true }).await?;
        let epoch_ms = t0.elapsed().as_secs_f64() * 1e3;
        let bytes = replies.iter().map(|r| r.activation_bytes + r.gradient_bytes).sum();
        let mut e = LaunchEpoch { epoch, loss: replies.last().unwrap().loss, epoch_ms, bytes, val_accuracy: None, test_accuracy: None };
        if cfg.eval_every > 0 && ((epoch + 1) % cfg.eval_every as u64 == 0 || epoch + 1 == cfg.epochs as u64) {
            let r = launcher.epoch(EpochRequest { epoch, order: vec![], train: false }).await?;
            let last = r.last().unwrap();
            e.val_accuracy = Some(last.val_accuracy);
            e.test_accuracy = Some(last.test_accuracy);
            // Without validation nodes (e.g. karate) the latest evaluation is the one reported.
            let has_val = !plan.specs[0].val.is_empty();
            if !has_val || last.val_accuracy > report.best_val_accuracy {
                report.best_val_accuracy = last.val_accuracy;
                report.test_accuracy = last.test_accuracy;
                report.best_epoch = epoch;
            }
        }
        on_epoch(&e);
        report.epochs.push(e);
    }
    Ok(report)
}
