//! The crate's one error type: what went wrong, named for the user (which worker, file, key or
//! setting), so the binary's edge can print it as it is.

use std::path::PathBuf;

/// Every failure strata-pipe reports.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// This machine's own resources: a port that cannot be bound, a thread that cannot start,
    /// the server failing under us (not another worker's fault, not a setting's).
    #[error("{what}: {source}")]
    Local { what: String, source: std::io::Error },
    /// A bug in strata itself: an invariant its own code should have kept.
    #[error("internal error (a bug in strata; please report it): {0}")]
    Internal(String),
    /// Settings or a stage spec that do not fit together (refused before any work starts).
    #[error("{0}")]
    Config(String),
    /// A worker the launcher talks to failed or was lost.
    #[error("worker {rank} ({addr}): {msg}")]
    Worker { rank: usize, addr: String, msg: String },
    /// Another worker of the same run (halo rows, all-reduce, boundary tensors).
    #[error("{0}")]
    Peer(String),
    /// A request that does not fit the worker's state (out of order, outside its directory).
    #[error("{0}")]
    Protocol(String),
    /// A checkpoint file that cannot be written or read back.
    #[error("{path}: {msg}")]
    CheckpointFile { path: PathBuf, msg: String },
    /// A checkpoint whose contents do not fit this run (missing or misshapen tensors).
    #[error("checkpoint: {0}")]
    State(String),
    /// Credentials or TLS material.
    #[error("{0}")]
    Security(String),
    #[error(transparent)]
    Wire(#[from] crate::wire::WireError),
    #[error(transparent)]
    Graph(#[from] strata_graph::GraphError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// An epoch's training loss was not a finite number (the run would go on training NaN
    /// weights and report chance accuracy).
    #[error("training diverged: the loss is {loss} after epoch {epoch} (0-based); lower --lr, or pass --allow-nonfinite-loss to go on")]
    Diverged { epoch: u64, loss: f64 },
    /// The run was stopped by SIGINT/SIGTERM; the last checkpoint written, if any.
    #[error("stopped by a signal after epoch {epoch}{}", .checkpoint.as_ref().map(|c| format!("; checkpoint at {}", c.display())).unwrap_or_default())]
    Interrupted { epoch: u64, checkpoint: Option<PathBuf> },
}

impl PipeError {
    /// A worker was lost (as opposed to a configuration or checkpoint problem).
    pub fn is_worker_failure(&self) -> bool {
        matches!(self, PipeError::Worker { .. })
    }
    pub(crate) fn file(path: &std::path::Path, msg: impl std::fmt::Display) -> PipeError {
        PipeError::CheckpointFile { path: path.to_path_buf(), msg: msg.to_string() }
    }
}

pub type Result<T, E = PipeError> = std::result::Result<T, E>;
