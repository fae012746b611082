use std::path::PathBuf;

/// Everything that can go wrong reading or building a graph. Every variant names the file (or
/// the dataset) and says what was expected, so a user can fix the input without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable zip archive ({source}); the file may be truncated or not an npz")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{path}: missing key `{key}` (expected {expected})")]
    MissingKey { path: PathBuf, key: String, expected: String },
    #[error("{path}: key `{key}`: {msg}")]
    Npy { path: PathBuf, key: String, msg: String },
    #[error("{path}: key `{key}` has dtype {found}, expected {expected}")]
    Dtype { path: PathBuf, key: String, expected: String, found: String },
    #[error("{path}:{line}: {msg}")]
    Parse { path: PathBuf, line: usize, msg: String },
    #[error("{context}: node id {id} out of range (graph has {num_nodes} nodes, ids are 0..{num_nodes})")]
    NodeOutOfRange { context: String, id: i64, num_nodes: usize },
    #[error("{context}: non-finite value {value} at row {row}, column {col}; features must be finite")]
    NonFinite { context: String, row: usize, col: usize, value: f32 },
    #[error("{context}: {msg}")]
    Invalid { context: String, msg: String },
    #[error("{path}: invalid JSON ({source})")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("unknown dataset `{name}`; known datasets: {known}")]
    UnknownDataset { name: String, known: String },
    #[error("dataset `{name}` not found: looked in {searched}. {hint}")]
    DatasetMissing { name: String, searched: String, hint: String },
    #[error("download of {url} failed: {msg}")]
    Download { url: String, msg: String },
    #[error("{what}: SHA-256 mismatch: expected {expected}, got {found}; the file was rejected")]
    Checksum { what: String, expected: String, found: String },
}

pub type Result<T, E = GraphError> = std::result::Result<T, E>;

impl GraphError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GraphError::Io { path: path.into(), source }
    }
    pub fn invalid(context: impl std::fmt::Display, msg: impl Into<String>) -> Self {
        GraphError::Invalid { context: context.to_string(), msg: msg.into() }
    }
}
