/// Errors of the layer library and trainer.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error(transparent)]
    Graph(#[from] strata_graph::GraphError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("device: {0}")]
    Device(String),
    /// Training produced a loss that is not a finite number: every later epoch would train on
    /// NaN weights and report chance accuracy. `epoch` counts epochs (1 is the first), as printed.
    #[error(
        "training diverged: the loss is {loss} after epoch {epoch} (lower --lr, or check the scale of the features)"
    )]
    Diverged { epoch: usize, loss: f64 },
    /// A bug in strata, not in the input or the configuration.
    #[error("internal error (a bug in strata; please report it): {0}")]
    Internal(String),
}

pub type Result<T, E = NnError> = std::result::Result<T, E>;
