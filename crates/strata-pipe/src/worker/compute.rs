//! The compute thread: owns the stage's tensors (`tch::Tensor` is not `Sync`), takes commands
//! from the RPC handlers over a channel, and drives each epoch of its engine over the network.

use super::auth::client;
use super::net::{Ctx, Mailbox, Net, TensorLimits};
use crate::config::StageSpec;
use crate::error::PipeError;
use crate::in_process::build_engine;
use crate::interpreter::{Interpreter, Progress};
use crate::proto::{CheckpointReply, CheckpointRequest, EpochReply, EpochRequest, RestoreRequest};
use crate::security::Credentials;
use crate::stage_core::{Breakdown, Engine};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;
use tch::{Device, Tensor};
use tokio::sync::oneshot;

/// The worker's health as reported to anyone who asks.
#[derive(Clone, Debug)]
pub(crate) enum WorkerState {
    /// Up, waiting for Configure.
    Idle,
    Serving,
    /// The compute thread panicked: the stage's state is gone until the next Configure.
    Failed(String),
}

/// What the RPC handlers ask of the compute thread; each carries its reply channel.
pub(crate) enum Cmd {
    Configure {
        spec: Box<StageSpec>,
        npz: tempfile::NamedTempFile,
        rank: usize,
        peers: Vec<String>,
        reply: oneshot::Sender<Result<(), PipeError>>,
    },
    Epoch {
        req: EpochRequest,
        reply: oneshot::Sender<Result<EpochReply, PipeError>>,
    },
    Checkpoint {
        req: CheckpointRequest,
        reply: oneshot::Sender<Result<CheckpointReply, PipeError>>,
    },
    Restore {
        req: RestoreRequest,
        reply: oneshot::Sender<Result<(), PipeError>>,
    },
    Keep {
        epoch: u64,
        reply: oneshot::Sender<Result<(), PipeError>>,
    },
    Parameters {
        reply: oneshot::Sender<Result<Vec<(String, Tensor)>, PipeError>>,
    },
    LoadParameters {
        named: Vec<(String, Tensor)>,
        reply: oneshot::Sender<Result<(), PipeError>>,
    },
    Outputs {
        reply: oneshot::Sender<Result<Vec<(String, Tensor)>, PipeError>>,
    },
}

pub(crate) struct Runtime {
    engine: Box<dyn Engine>,
    ctx: Ctx,
    /// The parameters copied aside by the last Keep, and their epoch.
    kept: Option<(u64, Vec<(String, Tensor)>)>,
}

pub(crate) struct Compute {
    pub(crate) mail: Mailbox,
    pub(crate) creds: Credentials,
    pub(crate) device: Device,
    pub(crate) limits: Arc<std::sync::RwLock<TensorLimits>>,
    pub(crate) state: Option<Runtime>,
}

impl Compute {
    /// `path` (from the launcher) if it lies under this run's checkpoint root: no `..`, no
    /// absolute path elsewhere.
    fn confined(&self, path: &str) -> Result<std::path::PathBuf, PipeError> {
        let rt = self.state.as_ref().ok_or_else(|| PipeError::Protocol("not configured".into()))?;
        let root = rt
            .ctx
            .spec
            .checkpoint_root
            .as_deref()
            .ok_or_else(|| PipeError::Protocol("this run was configured without a checkpoint directory".into()))?;
        let p = std::path::Path::new(path);
        let escapes = p.components().any(|c| matches!(c, std::path::Component::ParentDir));
        if escapes || !p.starts_with(root) {
            return Err(PipeError::Peer(format!("`{path}` is outside this run's checkpoint directory `{root}`")));
        }
        Ok(p.to_path_buf())
    }

    pub(crate) fn epoch(&mut self, req: EpochRequest) -> Result<EpochReply, PipeError> {
        // Fail point for the tests: a stage that panics mid-epoch must report itself failed.
        if std::env::var("STRATA_FAILPOINT").is_ok_and(|f| f == "epoch-panic") {
            panic!("fail point epoch-panic");
        }
        let t0 = Instant::now();
        self.mail.epoch_generation = self.mail.generation.load(Ordering::SeqCst);
        let mut rt = self.state.take().ok_or_else(|| PipeError::Protocol("RunEpoch before Configure".into()))?;
        metrics::counter!("strata_epochs_total", "mode" => if req.train { "train" } else { "eval" }).increment(1);
        self.mail.wire_bytes.store(0, Ordering::Relaxed);
        let mut net = Net { mail: &mut self.mail, ctx: &rt.ctx, tasks: Vec::new() };
        let result = run_epoch(rt.engine.as_mut(), &mut net, &req);
        self.state = Some(rt);
        let mut reply = result?;
        // Fail point for the tests: a training loss that is not a number.
        if req.train && std::env::var("STRATA_FAILPOINT").is_ok_and(|f| f == "loss-nan") {
            reply.loss = f64::NAN;
        }
        reply.compute_ms = t0.elapsed().as_secs_f64() * 1e3;
        reply.wire_bytes = self.mail.wire_bytes.load(Ordering::Relaxed);
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
        if let Some(p) = &reply.phases {
            crate::metrics::record_worker_phases(&Breakdown::from(p), req.train);
        }
        if reply.cuda_peak_bytes > 0 {
            metrics::gauge!("strata_cuda_peak_bytes").set(reply.cuda_peak_bytes as f64);
        }
        Ok(reply)
    }

    pub(crate) fn checkpoint(&mut self, req: CheckpointRequest) -> Result<CheckpointReply, PipeError> {
        let rt = self.state.as_ref().ok_or_else(|| PipeError::Protocol("Checkpoint before Configure".into()))?;
        let mut tensors = rt.engine.state();
        tensors.push(("epoch".into(), Tensor::from_slice(&[req.epoch as i64])));
        let rank = rt.ctx.rank;
        let dir = self.confined(&req.dir)?;
        let f = crate::checkpoint::write_worker_state(&dir, rank, &tensors)?;
        tracing::info!("checkpoint of epoch {} written: {} ({} bytes)", req.epoch, f.file, f.bytes);
        Ok(CheckpointReply { file: f.file, sha256: f.sha256, bytes: f.bytes })
    }

    pub(crate) fn restore(&mut self, req: RestoreRequest) -> Result<(), PipeError> {
        let path = self.confined(&req.path)?;
        let rt = self.state.as_mut().ok_or_else(|| PipeError::Protocol("Restore before Configure".into()))?;
        let named = crate::checkpoint::read_worker_state(&path, &req.sha256)?;
        rt.engine.load_state(&named).map_err(|e| PipeError::Peer(format!("{}: {e}", req.path)))?;
        tracing::info!("restored {}", req.path);
        Ok(())
    }

    /// Copies the parameters aside (the weights of the best epoch so far).
    pub(crate) fn keep(&mut self, epoch: u64) -> Result<(), PipeError> {
        let rt = self.state.as_mut().ok_or_else(|| PipeError::Protocol("Keep before Configure".into()))?;
        rt.kept = Some((epoch, rt.engine.core().named_parameters()));
        tracing::info!("parameters of epoch {epoch} kept");
        Ok(())
    }

    /// The kept parameters, else the current ones.
    pub(crate) fn parameters(&self) -> Result<Vec<(String, Tensor)>, PipeError> {
        let rt = self.state.as_ref().ok_or_else(|| PipeError::Protocol("Parameters before Configure".into()))?;
        Ok(match &rt.kept {
            Some((_, kept)) => kept.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect(),
            None => rt.engine.core().named_parameters(),
        })
    }

    /// Sets every parameter from `named` (from the launcher): all of the stage's variables,
    /// each of its own shape, or nothing changes.
    pub(crate) fn load_parameters(&mut self, named: Vec<(String, Tensor)>) -> Result<(), PipeError> {
        let rt = self.state.as_mut().ok_or_else(|| PipeError::Protocol("LoadParameters before Configure".into()))?;
        let vars = rt.engine.core().vs.variables();
        let given: std::collections::HashMap<&str, &Tensor> = named.iter().map(|(k, t)| (k.as_str(), t)).collect();
        if given.len() != named.len() {
            return Err(PipeError::Peer("a parameter was sent twice".into()));
        }
        for (k, t) in &given {
            let Some(v) = vars.get(*k) else {
                return Err(PipeError::Peer(format!("parameter `{k}` is not one of this stage's")));
            };
            if v.size() != t.size() {
                return Err(PipeError::Peer(format!(
                    "parameter `{k}`: shape {:?}, this stage's is {:?}",
                    t.size(),
                    v.size()
                )));
            }
        }
        if let Some(missing) = vars.keys().find(|k| !given.contains_key(k.as_str())) {
            return Err(PipeError::Peer(format!("parameter `{missing}` of this stage was not sent")));
        }
        tch::no_grad(|| {
            for (k, t) in &given {
                let mut v = vars[*k].shallow_clone();
                v.copy_(&t.to_device(v.device()).to_kind(v.kind()));
            }
        });
        rt.kept = None;
        tracing::info!("{} parameters loaded", given.len());
        Ok(())
    }

    /// The output the last inference pass kept (`capture`), taken.
    pub(crate) fn outputs(&mut self) -> Result<Vec<(String, Tensor)>, PipeError> {
        let rt = self.state.as_mut().ok_or_else(|| PipeError::Protocol("Outputs before Configure".into()))?;
        let (embeddings, logits) = rt.engine.core_mut().outputs.take().ok_or_else(|| {
            PipeError::Protocol("no output kept: run an inference pass with capture on the last stage first".into())
        })?;
        Ok(vec![("embeddings".into(), embeddings), ("logits".into(), logits)])
    }

    pub(crate) fn configure(
        &mut self,
        spec: StageSpec,
        npz: tempfile::NamedTempFile,
        rank: usize,
        peer_addrs: Vec<String>,
    ) -> Result<(), PipeError> {
        let data = crate::stage_data::StageData::from_npz(npz.path())
            .map_err(|e| PipeError::Peer(format!("graph from launcher: {e}")))?;
        drop(npz);
        tracing::info!("graph from launcher parsed: {}", strata_nn::memory::rss_summary());
        let mut spec = spec;
        if !(spec.train.is_empty() && spec.val.is_empty() && spec.test.is_empty()) {
            return Err(PipeError::Peer(
                "stage spec: the split's node ids come in the graph stream, not in the spec".into(),
            ));
        }
        [spec.train, spec.val, spec.test] = data.split.clone();
        spec.validate(&data, peer_addrs.len()).map_err(|e| PipeError::Peer(format!("stage spec: {e}")))?;
        // A new run: the old one's tensors and limits go, whatever happens next.
        self.state = None;
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = TensorLimits::default();
        self.mail.clear_pending();
        // tonic channels spawn their connection task on the runtime: enter it from this thread.
        let _guard = self.mail.rt.enter();
        let peers = peer_addrs
            .iter()
            .map(|a| client(a, &self.creds).map_err(|e| PipeError::Peer(format!("{a}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let engine = build_engine(spec.clone(), &data, self.device)?;
        tracing::info!(
            "{} configured: slots {}..{}, {} parameters",
            engine.role(),
            spec.first,
            spec.last,
            engine.parameters()
        );
        // Tensors of an abandoned run must not be mistaken for the new run's.
        self.mail.clear_pending();
        let parameters = engine.parameters();
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) =
            TensorLimits::new(&spec, data.num_nodes(), parameters);
        tracing::info!(
            "stage data: {} feature rows, {} labelled; configured: {}",
            data.feature_rows.len(),
            data.labels.iter().filter(|&&l| l >= 0).count(),
            strata_nn::memory::rss_summary()
        );
        drop(data);
        self.state = Some(Runtime { engine, ctx: Ctx { spec, rank, peers, peer_addrs }, kept: None });
        Ok(())
    }
}

/// Runs one epoch's schedule over the network and reports it.
fn run_epoch(engine: &mut dyn Engine, net: &mut Net, req: &EpochRequest) -> Result<EpochReply, PipeError> {
    let order: Vec<usize> = req.order.iter().map(|&c| c as usize).collect();
    engine.core_mut().warm = req.warm && !req.train;
    engine.core_mut().capture = req.capture && !req.train;
    let mut it = Interpreter::new(engine, req.epoch, &order, req.train)?;
    let progress = it.run(engine, net);
    engine.core_mut().warm = false;
    engine.core_mut().capture = false;
    if progress? == Progress::Blocked {
        return Err(PipeError::Internal(format!("a network receive returned without a tensor at {}", it.current())));
    }
    let out = it.finish(engine);
    let [train_correct, val_correct, test_correct] = out.correct;
    Ok(EpochReply {
        loss: out.loss,
        activation_bytes: out.bytes.activation,
        gradient_bytes: out.bytes.gradient,
        halo_bytes: out.bytes.halo,
        weight_bytes: out.bytes.weight,
        train_correct,
        val_correct,
        test_correct,
        phases: Some((&out.phases).into()),
        activations: engine.activations().as_ref().map(Into::into),
        ..Default::default()
    })
}

/// Starts the compute thread: it runs each command in turn until the RPC side hangs up.
pub(crate) fn spawn(
    mut compute: Compute,
    cmd_rx: mpsc::Receiver<Cmd>,
    health: Arc<std::sync::Mutex<WorkerState>>,
) -> Result<(), PipeError> {
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
                    Cmd::Keep { epoch, reply } => {
                        let _ = reply.send(compute.keep(epoch));
                    }
                    Cmd::Parameters { reply } => {
                        let _ = reply.send(compute.parameters());
                    }
                    Cmd::LoadParameters { named, reply } => {
                        let _ = reply.send(compute.load_parameters(named));
                    }
                    Cmd::Outputs { reply } => {
                        let _ = reply.send(compute.outputs());
                    }
                }));
                if let Err(p) = outcome {
                    let why = panic_message(p.as_ref());
                    tracing::error!(
                        "compute thread panicked: {why}; the stage is dropped until the launcher configures it again"
                    );
                    compute.state = None;
                    *compute.limits.write().unwrap_or_else(|e| e.into_inner()) = TensorLimits::default();
                    compute.mail.clear_pending();
                    *health.lock().unwrap_or_else(|e| e.into_inner()) = WorkerState::Failed(why);
                }
            }
        })
        .map_err(|e| PipeError::Local { what: "starting the compute thread".into(), source: e })?;
    Ok(())
}

/// The text of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
