//! The coordinator side of `strata launch`: configures every worker, drives epochs, watches
//! worker health, and sums the bytes each worker reports beside the volume model's prediction.

use crate::checkpoint::{self, Manifest, WorkerFile};
use crate::config::PipelineConfig;
use crate::error::PipeError;
use crate::plan::PipelinePlan;
use crate::proto::{
    CheckpointRequest, ConfigPiece, EpochReply, EpochRequest, HealthRequest, KeepRequest, OutputsRequest,
    ParametersRequest, RestoreRequest, ShutdownRequest, TensorKind,
};
use crate::volume::Predicted;
use crate::worker::{client, Client};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One epoch as the launcher saw it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct LaunchEpoch {
    pub epoch: u64,
    pub loss: f64,
    pub epoch_ms: f64,
    /// Bytes sent by all workers during the training epoch, and by kind.
    pub bytes: u64,
    pub layer_bytes: u64,
    pub halo_bytes: u64,
    pub weight_bytes: u64,
    /// What those sends put on the wire: protobuf encoding plus gRPC's length prefixes.
    #[serde(default)]
    pub wire_bytes: u64,
    /// Each worker's (rank order) peak resident memory so far, and on CUDA its caching
    /// allocator's peak.
    #[serde(default)]
    pub memory_bytes_per_worker: Vec<u64>,
    #[serde(default)]
    pub cuda_peak_bytes_per_worker: Vec<u64>,
    /// Where each worker's (rank order) training epoch went, by kind of action, in seconds.
    #[serde(default)]
    pub phases_per_worker: Vec<crate::stage_core::Breakdown>,
    /// The same for the evaluation pass after this epoch (empty when none ran), and its time.
    #[serde(default)]
    pub eval_phases_per_worker: Vec<crate::stage_core::Breakdown>,
    #[serde(default)]
    pub eval_ms: Option<f64>,
    /// Each pipeline stage's choice of keeping or recomputing activations (`None`: not a
    /// pipeline stage).
    #[serde(default)]
    pub activations_per_worker: Vec<Option<crate::stage_core::Activations>>,
    /// Fractions; `null` on epochs without evaluation.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub val_accuracy: Option<f64>,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub test_accuracy: Option<f64>,
}

/// A file as `Configure` pieces of at most [`crate::wire::DEFAULT_PIECE_BYTES`], read as the
/// stream is polled. A read error ends the stream early; the worker then refuses the graph as
/// shorter than announced.
struct FilePieces {
    file: std::fs::File,
    left: u64,
}

impl Iterator for FilePieces {
    type Item = ConfigPiece;
    fn next(&mut self) -> Option<ConfigPiece> {
        if self.left == 0 {
            return None;
        }
        let mut npz = vec![0u8; self.left.min(crate::wire::DEFAULT_PIECE_BYTES as u64) as usize];
        match std::io::Read::read_exact(&mut self.file, &mut npz) {
            Ok(()) => {
                self.left -= npz.len() as u64;
                Some(ConfigPiece { npz, ..Default::default() })
            }
            Err(e) => {
                tracing::error!("reading the stage data back: {e}");
                self.left = 0;
                None
            }
        }
    }
}

pub struct Launcher {
    workers: Vec<(String, Client)>,
}

/// The largest tensor the launcher accepts from a worker (bytes): an input projection of 2²⁰
/// features × 1024 hidden in f32 is 4 GiB, as are the logits of 10⁸ vertices × 10 classes.
const RECEIVE_LIMIT: u64 = 8 << 30;
const HEALTH_PERIOD: Duration = Duration::from_millis(500);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

impl Launcher {
    /// Connects to every worker and waits (up to `wait`) until each answers a health check.
    pub async fn connect(
        addrs: &[String],
        creds: &crate::security::Credentials,
        wait: Duration,
    ) -> Result<Launcher, PipeError> {
        let mut workers = Vec::new();
        for (rank, a) in addrs.iter().enumerate() {
            let err = |msg: String| PipeError::Worker { rank, addr: a.clone(), msg };
            let mut c = client(a, creds).map_err(|e| err(e.to_string()))?;
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

    fn fail(&self, rank: usize, msg: impl Into<String>) -> PipeError {
        PipeError::Worker { rank, addr: self.workers[rank].0.clone(), msg: msg.into() }
    }

    /// Ships each stage its spec and the (renumbered) graph; `checkpoint_root` is the only
    /// directory the workers may then write checkpoints to or restore from.
    pub async fn configure(&mut self, plan: &PipelinePlan, checkpoint_root: Option<&Path>) -> Result<(), PipeError> {
        if plan.specs.len() != self.workers.len() {
            return Err(PipeError::Config(format!(
                "the plan has {} workers (ways × stages) but {} are listed",
                plan.specs.len(),
                self.workers.len()
            )));
        }
        let addrs: Vec<String> = self.workers.iter().map(|w| w.0.clone()).collect();
        for (rank, spec) in plan.specs.iter().enumerate() {
            // Each worker gets what its role uses: no features without the input projection.
            // Its share goes through a temporary file read back one piece at a time, so the
            // launcher holds the plan's graph and one piece, never a second copy.
            // A plan not staged by `stage_to_disk` (in-process callers) writes this share now.
            let (_written, path) = match &plan.staged {
                Some((_, paths)) => (None, paths[rank].clone()),
                None => {
                    let dir = tempfile::tempdir()
                        .map_err(|e| PipeError::Config(format!("a temporary directory for the stage data: {e}")))?;
                    let path = dir.path().join(format!("stage-{rank}.npz"));
                    crate::stage_data::StageData::write_stage_npz(&plan.dataset, spec, &path)
                        .map_err(|e| PipeError::Config(format!("writing stage {rank}'s data: {e}")))?;
                    (Some(dir), path)
                }
            };
            let file = std::fs::File::open(&path).map_err(|e| PipeError::Config(format!("{}: {e}", path.display())))?;
            let size = file.metadata().map_err(|e| PipeError::Config(format!("{}: {e}", path.display())))?.len();
            let mut spec = spec.clone();
            // The split's ids travel in the npz (a million of them do not fit one message).
            for ids in [&mut spec.train, &mut spec.val, &mut spec.test] {
                ids.clear();
            }
            spec.checkpoint_root = checkpoint_root.map(|r| r.display().to_string());
            let spec_json = serde_json::to_string(&spec).expect("spec serialises");
            let first =
                ConfigPiece { spec_json, rank: rank as u32, peers: addrs.clone(), graph_bytes: size, npz: Vec::new() };
            let pieces = std::iter::once(first).chain(FilePieces { file, left: size });
            let mut c = self.workers[rank].1.clone();
            c.configure(tokio_stream::iter(pieces))
                .await
                .map_err(|s| self.fail(rank, format!("configure failed: {}", s.message())))?;
        }
        Ok(())
    }

    /// Fails as soon as any worker stops answering health checks.
    async fn watchdog(&self) -> PipeError {
        loop {
            tokio::time::sleep(HEALTH_PERIOD).await;
            if let Some(e) = self.find_lost().await {
                return e;
            }
        }
    }

    /// Runs one epoch on every stage at once; returns each stage's reply.
    pub async fn epoch(&self, req: EpochRequest) -> Result<Vec<EpochReply>, PipeError> {
        let calls = self.workers.iter().enumerate().map(|(rank, (_, c))| {
            let mut c = c.clone();
            let req = req.clone();
            async move {
                c.run_epoch(req).await.map(|r| r.into_inner()).map_err(|s| {
                    let msg = if s.code() == tonic::Code::Unavailable {
                        format!("lost: {}", s.message())
                    } else {
                        s.message().to_string()
                    };
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
    async fn find_lost(&self) -> Option<PipeError> {
        for (rank, (_, c)) in self.workers.iter().enumerate() {
            let mut c = c.clone();
            match tokio::time::timeout(HEALTH_TIMEOUT, c.health(HealthRequest {})).await {
                Ok(Ok(r)) if r.get_ref().state.starts_with("failed") => {
                    return Some(self.fail(rank, format!("lost: {}", r.get_ref().state)))
                }
                Ok(Ok(_)) => {}
                Ok(Err(s)) => return Some(self.fail(rank, format!("lost: {}", s.message()))),
                Err(_) => return Some(self.fail(rank, format!("lost: no health answer within {HEALTH_TIMEOUT:?}"))),
            }
        }
        None
    }

    /// Every worker writes its state into the checkpoint of `epoch` (epochs completed) under
    /// `root`; then the manifest is written, last.
    pub async fn checkpoint(
        &self,
        root: &Path,
        epoch: u64,
        cfg: &PipelineConfig,
        report: &LaunchReport,
    ) -> Result<PathBuf, PipeError> {
        let dir = checkpoint::dir_for(root, epoch);
        let calls = self.workers.iter().enumerate().map(|(rank, (_, c))| {
            let mut c = c.clone();
            let req = CheckpointRequest { dir: dir.display().to_string(), epoch };
            async move {
                c.checkpoint(req).await.map(|r| (rank, r.into_inner())).map_err(|s| (rank, s.message().to_string()))
            }
        });
        let replies = futures::future::try_join_all(calls)
            .await
            .map_err(|(rank, msg)| self.fail(rank, format!("checkpoint of epoch {epoch}: {msg}")))?;
        let files = replies
            .into_iter()
            .map(|(rank, r)| WorkerFile { rank, file: r.file, sha256: r.sha256, bytes: r.bytes })
            .collect();
        let manifest = Manifest {
            format: checkpoint::FORMAT.into(),
            epoch,
            config: config_identity(cfg),
            files,
            launcher: serde_json::to_value(report).map_err(|e| PipeError::State(e.to_string()))?,
            sha256: None,
        };
        checkpoint::commit(root, &manifest)
    }

    /// Loads a verified checkpoint into the (configured) workers.
    pub async fn restore(&self, dir: &Path, manifest: &Manifest) -> Result<(), PipeError> {
        if manifest.files.len() != self.workers.len() {
            return Err(PipeError::State(format!(
                "{} holds {} worker files, this run has {} workers",
                dir.display(),
                manifest.files.len(),
                self.workers.len()
            )));
        }
        for f in &manifest.files {
            let mut c = self.workers[f.rank].1.clone();
            let req = RestoreRequest { path: dir.join(&f.file).display().to_string(), sha256: f.sha256.clone() };
            c.restore(req).await.map_err(|s| self.fail(f.rank, format!("restore: {}", s.message())))?;
        }
        Ok(())
    }

    /// Restores the newest complete checkpoint under `root` (if any) into every worker: the
    /// checkpoint's directory, the epochs it completed and the launcher's report then. A
    /// checkpoint of a run with another configuration is refused.
    pub async fn resume_latest(
        &self,
        root: &Path,
        cfg: &PipelineConfig,
    ) -> Result<Option<(PathBuf, u64, LaunchReport)>, PipeError> {
        let Some((dir, m)) = checkpoint::latest(root) else { return Ok(None) };
        if m.config != config_identity(cfg) {
            return Err(PipeError::State(format!(
                "{}: written by a run with a different configuration (model, mode, split or hyper-parameters); refusing to resume it",
                dir.display()
            )));
        }
        self.restore(&dir, &m).await?;
        let report: LaunchReport = serde_json::from_value(m.launcher.clone())
            .map_err(|e| PipeError::file(&dir, format!("launcher state: {e}")))?;
        Ok(Some((dir, m.epoch, report)))
    }

    /// Every worker copies its parameters aside: the weights of `epoch`, the best so far.
    pub async fn keep(&self, epoch: u64) -> Result<(), PipeError> {
        let calls = self.workers.iter().enumerate().map(|(rank, (_, c))| {
            let mut c = c.clone();
            async move { c.keep(KeepRequest { epoch }).await.map(|_| ()).map_err(|s| (rank, s.message().to_string())) }
        });
        futures::future::try_join_all(calls).await.map_err(|(rank, msg)| self.fail(rank, format!("keep: {msg}")))?;
        Ok(())
    }

    /// The whole model: the parameters (the kept copies, else the current ones) of the workers
    /// `ranks` (one replica: way 0's stages), by variable name. A name sent twice, a tensor of
    /// another kind or a broken stream is refused by rank.
    pub async fn parameters(&self, ranks: &[usize]) -> Result<Vec<(String, tch::Tensor)>, PipeError> {
        let mut all: Vec<(String, tch::Tensor)> = Vec::new();
        for &rank in ranks {
            let mut c = self.workers[rank].1.clone();
            let stream = c
                .parameters(ParametersRequest {})
                .await
                .map_err(|s| self.fail(rank, format!("parameters: {}", s.message())))?
                .into_inner();
            for (name, t) in self.receive_named(rank, stream, TensorKind::Parameter, "parameters").await? {
                if all.iter().any(|(k, _)| *k == name) {
                    return Err(self.fail(rank, format!("parameters: `{name}` sent twice")));
                }
                all.push((name, t));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    /// Sets worker `rank`'s parameters (every variable its stage holds) from `named`.
    pub async fn load_parameters(&self, rank: usize, named: Vec<(String, tch::Tensor)>) -> Result<(), PipeError> {
        let mut c = self.workers[rank].1.clone();
        let pieces = crate::wire::named_pieces(named, TensorKind::Parameter, rank as u32);
        c.load_parameters(futures::stream::iter(pieces))
            .await
            .map_err(|s| self.fail(rank, format!("load parameters: {}", s.message())))?;
        Ok(())
    }

    /// The output worker `rank` kept from the last inference pass run with `capture`: its
    /// embeddings and logits, checked before use (a peer is not trusted): both 2-D with the same
    /// rows, `classes` logit columns.
    pub async fn outputs(&self, rank: usize, classes: i64) -> Result<(tch::Tensor, tch::Tensor), PipeError> {
        let mut c = self.workers[rank].1.clone();
        let stream = c
            .outputs(OutputsRequest {})
            .await
            .map_err(|s| self.fail(rank, format!("outputs: {}", s.message())))?
            .into_inner();
        let got = self.receive_named(rank, stream, TensorKind::Output, "outputs").await?;
        let take = |name: &str| {
            got.iter()
                .find(|(k, _)| k == name)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| self.fail(rank, format!("outputs: no `{name}` tensor")))
        };
        let (hidden, logits) = (take("embeddings")?, take("logits")?);
        let (h, l) = (hidden.size(), logits.size());
        match (&h[..], &l[..]) {
            ([rows, _], [r, c]) if rows == r && *c == classes => Ok((hidden, logits)),
            _ => Err(self.fail(
                rank,
                format!("outputs: embeddings {h:?} and logits {l:?} are not [rows, width] and [rows, {classes}]"),
            )),
        }
    }

    /// Named tensors of `kind` from worker `rank`, reassembled with every invariant checked
    /// (pieces of one tensor arrive in order, tensor after tensor).
    async fn receive_named(
        &self,
        rank: usize,
        mut stream: tonic::Streaming<crate::proto::TensorPiece>,
        kind: TensorKind,
        what: &str,
    ) -> Result<Vec<(String, tch::Tensor)>, PipeError> {
        let mut got: Vec<(String, tch::Tensor)> = Vec::new();
        let mut asm: Option<(String, crate::wire::Assembler)> = None;
        let mut finish = |asm: Option<(String, crate::wire::Assembler)>| -> Result<(), PipeError> {
            let Some((_, a)) = asm else { return Ok(()) };
            let (meta, t) = a.finish_tensor().map_err(|e| self.fail(rank, format!("{what}: {e}")))?;
            if meta.kind != kind {
                return Err(self.fail(rank, format!("{what}: `{}` arrived as a {:?} tensor", meta.name, meta.kind)));
            }
            got.push((meta.name, t));
            Ok(())
        };
        while let Some(piece) =
            stream.message().await.map_err(|s| self.fail(rank, format!("{what}: {}", s.message())))?
        {
            if asm.as_ref().is_none_or(|(name, _)| *name != piece.name) {
                finish(asm.take())?;
                asm = Some((piece.name.clone(), crate::wire::Assembler::new(RECEIVE_LIMIT)));
            }
            let (_, a) = asm.as_mut().expect("started above");
            a.push(piece).map_err(|e| self.fail(rank, format!("{what}: {e}")))?;
        }
        finish(asm.take())?;
        Ok(got)
    }

    pub async fn shutdown(&self, reason: &str) {
        for (_, c) in &self.workers {
            let mut c = c.clone();
            let _ = tokio::time::timeout(Duration::from_secs(2), c.shutdown(ShutdownRequest { reason: reason.into() }))
                .await;
        }
    }
}

/// Result of a distributed run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LaunchReport {
    pub epochs: Vec<LaunchEpoch>,
    pub best_val_accuracy: f64,
    pub test_accuracy: f64,
    pub best_epoch: u64,
    pub predicted: Predicted,
    /// The warm start's inference pass (`--warm-start`), milliseconds; `None` when none ran.
    #[serde(default)]
    pub warm_start_ms: Option<f64>,
    /// The epoch whose weights the workers hold aside (when the run gathers its model).
    #[serde(default)]
    pub kept_epoch: Option<u64>,
}

/// The part of a configuration a checkpoint must agree with to be resumed: all but the epoch
/// count, which a resumed run may extend, how stages hold their activations (`recompute`,
/// `memory_budget`: the budget follows the host's free memory at each launch, and keeping or
/// recomputing trains alike, to the bit) and `warm_start` (it acts before the first epoch only,
/// which a resumed run has behind it).
pub fn config_identity(cfg: &PipelineConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(cfg).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        for key in ["epochs", "recompute", "memory_budget", "warm_start"] {
            o.remove(key);
        }
    }
    v
}
