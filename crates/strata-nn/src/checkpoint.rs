//! Checkpoints: model weights as safetensors plus a JSON sidecar, each written atomically
//! (temporary file in the same directory, fsync, rename) so a crash never leaves a torn file.

use crate::error::{NnError, Result};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NnError + '_ {
    move |source| NnError::Io { path: path.to_path_buf(), source }
}

/// Writes `bytes` to `path` atomically (see [`strata_graph::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(strata_graph::write_atomic(path, bytes)?)
}

/// fsync the directory so the rename itself is durable (best effort: not all filesystems allow it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Saves every variable of `vs` to `path` (safetensors) atomically, and `metadata` to
/// `path` with extension `.json` beside it.
pub fn save_checkpoint(vs: &VarStore, path: &Path, metadata: &serde_json::Value) -> Result<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // tch picks the format from the extension, so the temporary name must end in .safetensors.
    let tmp = dir.join(format!(".{}.{}.tmp.safetensors", path.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    vs.save(&tmp)?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir);
    let meta_path = path.with_extension("json");
    write_atomic(&meta_path, serde_json::to_string_pretty(metadata).unwrap().as_bytes())?;
    Ok(meta_path)
}

/// Loads weights saved by [`save_checkpoint`] into a var store of the same architecture.
pub fn load_checkpoint(vs: &mut VarStore, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(NnError::Io { path: path.into(), source: std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint not found") });
    }
    vs.load(path)?;
    Ok(())
}
