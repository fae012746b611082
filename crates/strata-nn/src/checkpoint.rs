//! Checkpoints: model weights as safetensors plus a JSON sidecar, each written atomically
//! (temporary file in the same directory, fsync, rename) so a crash never leaves a torn file.

use crate::error::{NnError, Result};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;

/// Writes `bytes` to `path` atomically (see [`strata_graph::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(strata_graph::write_atomic(path, bytes)?)
}

/// Writes a safetensors file atomically ([`strata_graph::write_atomic_with`]): tch picks the
/// format from the extension, so the temporary name ends in `.safetensors`.
fn write_safetensors_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), tch::TchError>,
) -> Result<()> {
    Ok(strata_graph::write_atomic_with(path, ".safetensors", |tmp| write(tmp).map_err(|e| e.to_string()))?)
}

/// Saves every variable of `vs` to `path` (safetensors) atomically, and `metadata` to
/// `path` with extension `.json` beside it.
pub fn save_checkpoint(vs: &VarStore, path: &Path, metadata: &serde_json::Value) -> Result<PathBuf> {
    write_safetensors_atomic(path, |tmp| vs.save(tmp))?;
    let meta_path = path.with_extension("json");
    write_atomic(&meta_path, serde_json::to_string_pretty(metadata).unwrap().as_bytes())?;
    Ok(meta_path)
}

/// Saves named tensors to `path` (safetensors) atomically.
pub fn save_tensors(path: &Path, tensors: &[(&str, &tch::Tensor)]) -> Result<()> {
    write_safetensors_atomic(path, |tmp| tch::Tensor::write_safetensors(tensors, tmp))
}

/// Reads the tensor `name` from a safetensors file.
pub fn load_tensor(path: &Path, name: &str) -> Result<tch::Tensor> {
    let all = tch::Tensor::read_safetensors(path)?;
    all.into_iter().find(|(k, _)| k == name).map(|(_, t)| t).ok_or_else(|| NnError::Io {
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("no tensor `{name}` in the file")),
    })
}

/// Loads weights saved by [`save_checkpoint`] into a var store of the same architecture.
pub fn load_checkpoint(vs: &mut VarStore, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(NnError::Io {
            path: path.into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint not found"),
        });
    }
    vs.load(path)?;
    Ok(())
}

/// In-memory copies of every trainable variable, for keeping the best epoch's weights.
pub fn snapshot(vs: &VarStore) -> Vec<tch::Tensor> {
    tch::no_grad(|| vs.trainable_variables().iter().map(|v| v.copy()).collect())
}

/// Writes a [`snapshot`] back into the var store it was taken from.
pub fn restore(vs: &VarStore, saved: &[tch::Tensor]) {
    tch::no_grad(|| vs.trainable_variables().iter_mut().zip(saved).for_each(|(v, s)| v.copy_(s)));
}
