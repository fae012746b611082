//! Checkpoints of a distributed run. A checkpoint is a directory `epoch-NNNNNN` under the run's
//! checkpoint root holding one safetensors file per worker (parameters, optimizer moments,
//! historical embeddings, epoch) and `manifest.json`, written by the launcher last: a directory
//! without a manifest is incomplete. Every file is written atomically (temp file, fsync,
//! rename) and its SHA-256 is in the manifest, so a torn or altered file is detected and the
//! previous checkpoint is used.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub const FORMAT: &str = "strata-checkpoint/1";
/// Complete checkpoints kept; older ones are deleted after a new one is complete.
pub const KEEP: usize = 2;

use crate::error::PipeError;

fn file_err(path: &Path, msg: impl std::fmt::Display) -> PipeError {
    PipeError::file(path, msg)
}

/// A checkpoint's file, read only when it is a regular file (`strata_graph::files`).
fn read_file(path: &Path) -> Result<Vec<u8>, PipeError> {
    if let Some(what) = strata_graph::files::irregular(path) {
        return Err(file_err(path, format!("{what}: expected a regular file")));
    }
    std::fs::read(path).map_err(|e| file_err(path, e))
}

/// One worker's file in a checkpoint.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerFile {
    pub rank: usize,
    /// File name inside the checkpoint directory.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// `manifest.json`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    /// Epochs completed; training resumes with this epoch.
    pub epoch: u64,
    /// The run's configuration (a resumed run must match it, epochs aside).
    pub config: serde_json::Value,
    pub files: Vec<WorkerFile>,
    /// The launcher's own state (curve, best validation so far).
    pub launcher: serde_json::Value,
    /// SHA-256 of this manifest as compact JSON without this field, set by [`commit`]: an
    /// edited manifest (a later epoch, a rank out of range) is refused like a torn file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Manifest {
    fn digest(&self) -> Result<String, serde_json::Error> {
        let bare = Manifest { sha256: None, ..self.clone() };
        Ok(sha256_hex(serde_json::to_string(&bare)?.as_bytes()))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn dir_for(root: &Path, epoch: u64) -> PathBuf {
    root.join(format!("epoch-{epoch:06}"))
}

/// Writes a worker's state atomically into `dir`; returns its manifest entry.
pub fn write_worker_state(dir: &Path, rank: usize, tensors: &[(String, Tensor)]) -> Result<WorkerFile, PipeError> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    let file = format!("rank{rank}.safetensors");
    let path = dir.join(&file);
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    strata_nn::checkpoint::save_tensors(&path, &named).map_err(|e| file_err(&path, e))?;
    let bytes = std::fs::read(&path).map_err(|e| file_err(&path, e))?;
    Ok(WorkerFile { rank, file, sha256: sha256_hex(&bytes), bytes: bytes.len() as u64 })
}

/// Reads a worker's state, refusing a file whose SHA-256 is not `sha256`.
pub fn read_worker_state(path: &Path, sha256: &str) -> Result<HashMap<String, Tensor>, PipeError> {
    let bytes = read_file(path)?;
    let got = sha256_hex(&bytes);
    if got != sha256 {
        // The expected value comes from a file on disk: cut it by characters, not bytes.
        let said: String = sha256.chars().take(12).collect();
        return Err(file_err(
            path,
            format!("checksum mismatch (SHA-256 {}…, the manifest says {said}…): torn or altered", &got[..12]),
        ));
    }
    let tensors = Tensor::read_safetensors(path).map_err(|e| file_err(path, e))?;
    Ok(tensors.into_iter().collect())
}

/// Writes the manifest (atomically, last), then prunes: the newest [`KEEP`] checkpoints that
/// *verify* (every checksum) are kept, and any other checkpoint older than the newest good one
/// is deleted with the temporary files a crashed writer left behind. A torn checkpoint is
/// never counted as good, so it cannot push the last good one out.
pub fn commit(root: &Path, manifest: &Manifest) -> Result<PathBuf, PipeError> {
    let dir = dir_for(root, manifest.epoch);
    let path = dir.join("manifest.json");
    let sealed = Manifest { sha256: Some(manifest.digest().map_err(|e| file_err(&path, e))?), ..manifest.clone() };
    let text = serde_json::to_string_pretty(&sealed).map_err(|e| file_err(&path, e))?;
    strata_nn::checkpoint::write_atomic(&path, text.as_bytes()).map_err(|e| file_err(&path, e))?;
    let mut all = list(root);
    all.sort_by_key(|e| std::cmp::Reverse(e.0));
    // Newest first, hashing only until KEEP good ones are found: older ones go regardless.
    let mut keep: Vec<u64> = Vec::with_capacity(KEEP);
    for (epoch, d) in &all {
        if keep.len() == KEEP {
            break;
        }
        if verify(d).is_ok() {
            keep.push(*epoch);
        }
    }
    let newest_good = keep.first().copied();
    for (epoch, d) in &all {
        if keep.contains(epoch) {
            remove_temp_files(d);
        } else if newest_good.is_some_and(|g| *epoch < g) {
            if let Err(e) = std::fs::remove_dir_all(d) {
                tracing::warn!("could not delete old checkpoint {}: {e}", d.display());
            }
        }
    }
    remove_temp_files(root);
    Ok(dir)
}

/// Deletes what an interrupted atomic write leaves: `.tmp*` (tempfile's names) and
/// `*.tmp.safetensors` files.
fn remove_temp_files(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().to_string();
        let temp = name.starts_with(".tmp") || name.ends_with(".tmp.safetensors");
        if temp && e.file_type().is_ok_and(|t| t.is_file()) {
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!("could not delete leftover temporary file {}: {err}", e.path().display());
            }
        }
    }
}

fn list(root: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(root) else { return Vec::new() };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("epoch-").and_then(|n| n.parse::<u64>().ok()).map(|n| (n, e.path()))
        })
        .collect()
}

/// Checks a checkpoint directory: a readable manifest of this format and every worker file
/// present with its checksum.
pub fn verify(dir: &Path) -> Result<Manifest, PipeError> {
    let path = dir.join("manifest.json");
    let text = match read_file(&path) {
        Ok(b) => String::from_utf8(b).map_err(|_| file_err(&path, "the manifest is not UTF-8 text"))?,
        Err(PipeError::CheckpointFile { msg, .. }) => {
            return Err(file_err(&path, format!("no readable manifest ({msg}): incomplete checkpoint")))
        }
        Err(e) => return Err(e),
    };
    let m: Manifest = serde_json::from_str(&text).map_err(|e| file_err(&path, format!("invalid manifest: {e}")))?;
    if m.format != FORMAT {
        return Err(file_err(&path, format!("format `{}`, expected `{FORMAT}`", m.format)));
    }
    let digest = m.digest().map_err(|e| file_err(&path, e))?;
    if m.sha256.as_deref() != Some(digest.as_str()) {
        return Err(file_err(&path, "the manifest's own SHA-256 does not match it: edited or torn"));
    }
    if dir.file_name() != dir_for(Path::new(""), m.epoch).file_name() {
        return Err(file_err(&path, format!("epoch {} does not match the directory's name", m.epoch)));
    }
    for f in &m.files {
        let p = dir.join(&f.file);
        let bytes = read_file(&p)?;
        if sha256_hex(&bytes) != f.sha256 {
            return Err(file_err(&p, "checksum mismatch: torn or altered"));
        }
    }
    Ok(m)
}

/// The newest checkpoint under `root` that verifies; the ones skipped are logged with why.
pub fn latest(root: &Path) -> Option<(PathBuf, Manifest)> {
    let mut all = list(root);
    all.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, dir) in all {
        match verify(&dir) {
            Ok(m) => return Some((dir, m)),
            Err(e) => tracing::warn!("skipping checkpoint: {e}"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(epoch: u64, files: Vec<WorkerFile>) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            epoch,
            config: serde_json::json!({}),
            files,
            // Timings as a launcher writes them: floats whose shortest form must read back exactly.
            launcher: serde_json::json!({"ms": [0.008815950999999999, 0.0014332379999999999, 0.0062888169999999995,
                                                 0.0029534169999999994, 0.00018634799999999997, 8.313602999999999]}),
            sha256: None,
        }
    }

    /// Three checkpoints: the oldest is pruned; tearing the newest makes `latest` fall back to
    /// the previous one; a state file with a wrong checksum is refused by name.
    #[test]
    fn torn_checkpoints_fall_back_to_the_previous_one() {
        let root = tempfile::tempdir().unwrap();
        for epoch in [5, 10, 15] {
            let t = Tensor::from_slice(&[epoch as f32; 4]);
            let f = write_worker_state(&dir_for(root.path(), epoch), 0, &[("w".into(), t)]).unwrap();
            commit(root.path(), &manifest(epoch, vec![f])).unwrap();
        }
        assert!(!dir_for(root.path(), 5).exists(), "oldest checkpoint kept");
        assert_eq!(latest(root.path()).unwrap().1.epoch, 15);
        // Tear the newest: truncate its state file.
        let torn = dir_for(root.path(), 15).join("rank0.safetensors");
        let bytes = std::fs::read(&torn).unwrap();
        std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
        let (dir, m) = latest(root.path()).unwrap();
        assert_eq!(m.epoch, 10);
        let state = read_worker_state(&dir.join(&m.files[0].file), &m.files[0].sha256).unwrap();
        assert_eq!(Vec::<f32>::try_from(&state["w"]).unwrap(), vec![10.0; 4]);
        let e = read_worker_state(&torn, &m.files[0].sha256).unwrap_err().to_string();
        assert!(e.contains("rank0.safetensors") && e.contains("checksum"), "{e}");
        // A directory without a manifest (a checkpoint cut short) is skipped too.
        write_worker_state(&dir_for(root.path(), 20), 0, &[("w".into(), Tensor::from_slice(&[1f32]))]).unwrap();
        assert_eq!(latest(root.path()).unwrap().1.epoch, 10);
        // An edited manifest (the epoch moved on) is refused by its own checksum.
        let mpath = dir_for(root.path(), 10).join("manifest.json");
        let good = std::fs::read_to_string(&mpath).unwrap();
        std::fs::write(&mpath, good.replace("\"epoch\": 10", "\"epoch\": 12")).unwrap();
        let e = verify(&dir_for(root.path(), 10)).unwrap_err().to_string();
        assert!(e.contains("manifest.json") && e.contains("own SHA-256"), "{e}");
        std::fs::write(&mpath, &good).unwrap();
        assert_eq!(verify(&dir_for(root.path(), 10)).unwrap().epoch, 10);
        // A non-ASCII checksum in a manifest is an error, not a slicing panic.
        let e = read_worker_state(&torn, "ééééééééééééé").unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
    }

    /// Pruning counts only checkpoints whose checksums hold: committing a torn checkpoint (its
    /// file altered after writing) keeps the last two good ones; a good commit then prunes the
    /// torn one and the oldest, and removes leftover temporary files.
    #[test]
    fn a_torn_checkpoint_never_pushes_out_the_last_good_one() {
        let root = tempfile::tempdir().unwrap();
        let write = |epoch: u64, tear: bool| {
            let f = write_worker_state(
                &dir_for(root.path(), epoch),
                0,
                &[("w".into(), Tensor::from_slice(&[epoch as f32; 8]))],
            )
            .unwrap();
            if tear {
                let p = dir_for(root.path(), epoch).join(&f.file);
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
            }
            commit(root.path(), &manifest(epoch, vec![f])).unwrap();
        };
        write(5, false);
        write(10, false);
        std::fs::write(dir_for(root.path(), 10).join(".rank1.safetensors.99.tmp.safetensors"), b"half").unwrap();
        std::fs::write(root.path().join(".tmpAbC123"), b"half").unwrap();
        write(15, true);
        write(20, true);
        assert!(
            dir_for(root.path(), 5).exists() && dir_for(root.path(), 10).exists(),
            "a torn checkpoint pushed out a good one"
        );
        assert_eq!(latest(root.path()).unwrap().1.epoch, 10);
        write(25, false);
        let mut left: Vec<u64> = list(root.path()).into_iter().map(|(e, _)| e).collect();
        left.sort();
        assert_eq!(left, vec![10, 25], "kept: the two newest good checkpoints");
        assert!(!dir_for(root.path(), 10).join(".rank1.safetensors.99.tmp.safetensors").exists());
        assert!(!root.path().join(".tmpAbC123").exists());
    }
}
