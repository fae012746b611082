//! Model directories, for every task: `manifest.json` (a format tag, what was trained and on
//! which graph, metrics, and the SHA-256 of every other file, written last so a directory that
//! has one is complete), the weights beside it, and the atomic replacement of a directory by a
//! finished training. `strata linkpred` (format `strata-linkpred/1`) and node classification
//! (`train --out`, `predict`: format `strata-node/1`) share this code.

use crate::source::GraphSource;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The graph a model was trained on.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct GraphRecord {
    /// Where the graph was read from (older manifests: `dataset`, `edges`, `features`).
    #[serde(flatten)]
    pub source: GraphSource,
    pub nodes: usize,
    pub undirected_edges: usize,
    pub fingerprint: String,
}

impl GraphRecord {
    /// The record of `dataset`, read from `source` (a registered default resolved to its name,
    /// so the model names its graph whatever the command's default is).
    pub fn of(source: &GraphSource, default: &str, dataset: &strata_graph::Dataset) -> GraphRecord {
        let mut source = source.clone();
        if let Some(name) = source.registered(default) {
            source.dataset = Some(name.to_string());
        }
        GraphRecord {
            source,
            nodes: dataset.num_nodes(),
            undirected_edges: dataset.graph.num_undirected_edges(),
            fingerprint: dataset.graph.fingerprint(),
        }
    }
}

/// Refuses an `--out` that holds something other than a `kind` model directory (manifest
/// format `format`; replacing it would destroy it); returns the staging directory beside it, where the new
/// model is written before [`replace_dir`] moves it into place.
pub fn staging_for(out: &Path, format: &str, kind: &str) -> anyhow::Result<PathBuf> {
    if out.exists() {
        if !out.is_dir() {
            bail!("--out {}: exists and is not a directory; refusing to replace it", out.display());
        }
        let empty = std::fs::read_dir(out).with_context(|| format!("--out {}", out.display()))?.next().is_none();
        let is_model = std::fs::read_to_string(out.join("manifest.json")).is_ok_and(|t| t.contains(format));
        if !empty && !is_model {
            bail!(
                "--out {}: exists and is not a {kind} model directory (no `{format}` manifest.json); refusing to replace it",
                out.display()
            );
        }
    }
    let name =
        out.file_name().with_context(|| format!("--out {}: not a directory name", out.display()))?.to_string_lossy();
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    Ok(parent.join(format!(".{name}.partial-{}", std::process::id())))
}

/// Moves the complete `staging` directory to `out`: the old model (if any) is renamed aside
/// first and deleted after, so `out` holds the old model or the new one, never a mix.
pub fn replace_dir(staging: &Path, out: &Path) -> anyhow::Result<()> {
    let sync_parent = || {
        if let Some(d) = out
            .parent()
            .and_then(|p| std::fs::File::open(if p.as_os_str().is_empty() { Path::new(".") } else { p }).ok())
        {
            let _ = d.sync_all();
        }
    };
    let old = staging.with_file_name(format!("{}.old", staging.file_name().unwrap_or_default().to_string_lossy()));
    let had_old = out.exists();
    if had_old {
        std::fs::rename(out, &old).with_context(|| format!("moving the previous model {} aside", out.display()))?;
    }
    std::fs::rename(staging, out).with_context(|| format!("moving the new model into {}", out.display()))?;
    sync_parent();
    if had_old {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("deleting the previous model (now at {})", old.display()))?;
    }
    Ok(())
}

/// The SHA-256 of each of `files` in `dir`, read back from disk.
pub fn checksums(dir: &Path, files: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    files
        .iter()
        .map(|f| {
            let p = dir.join(f);
            let bytes = std::fs::read(&p).with_context(|| format!("reading back {}", p.display()))?;
            Ok((f.to_string(), strata_pipe::checkpoint::sha256_hex(&bytes)))
        })
        .collect()
}

/// Reads `dir/manifest.json` as `T`, refusing another format than `format` (read from the
/// manifest's `format` key before the rest is parsed) and any of `files` whose SHA-256 is not
/// the one `checksums(&manifest)` records. `retrain` says how to make a new model.
pub fn read_manifest<T: serde::de::DeserializeOwned>(
    dir: &Path,
    format: &str,
    files: &[&str],
    checksums: impl Fn(&T) -> &BTreeMap<String, String>,
    retrain: &str,
) -> anyhow::Result<T> {
    let mpath = dir.join("manifest.json");
    let text = strata_graph::files::read_to_string(&mpath)
        .with_context(|| format!("{} is not a model directory (no readable manifest.json)", dir.display()))?;
    let raw: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid manifest (not JSON)", mpath.display()))?;
    let found = raw.get("format").and_then(|f| f.as_str()).unwrap_or("none");
    if found != format {
        bail!("{}: format `{found}`, expected `{format}`", mpath.display());
    }
    let manifest: T = serde_json::from_value(raw).with_context(|| format!("{}: invalid manifest", mpath.display()))?;
    let sums = checksums(&manifest);
    for f in files {
        let p = dir.join(f);
        let expected = sums.get(*f).with_context(|| format!("{}: no checksum for {f}", mpath.display()))?;
        let bytes = strata_graph::files::read(&p).with_context(|| format!("{}: missing or unreadable", p.display()))?;
        if &strata_pipe::checkpoint::sha256_hex(&bytes) != expected {
            bail!("{}: SHA-256 differs from the manifest's: the file was altered or torn. {retrain}", p.display());
        }
    }
    Ok(manifest)
}

/// Writes `manifest` as `dir/manifest.json`, atomically.
pub fn write_manifest(dir: &Path, manifest: &impl Serialize) -> anyhow::Result<()> {
    strata_nn::checkpoint::write_atomic(
        &dir.join("manifest.json"),
        serde_json::to_string_pretty(manifest)?.as_bytes(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct M {
        format: String,
        files: BTreeMap<String, String>,
    }

    /// A directory written, verified, then tampered with, truncated or of another format is
    /// refused by name; an `--out` holding something else is never replaced.
    #[test]
    fn manifests_verify_their_files() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("model");
        let staging = staging_for(&out, "fmt/1", "test").unwrap();
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("w.bin"), b"weights").unwrap();
        let m = M { format: "fmt/1".into(), files: checksums(&staging, &["w.bin"]).unwrap() };
        write_manifest(&staging, &m).unwrap();
        replace_dir(&staging, &out).unwrap();
        let read = |fmt: &str| read_manifest::<M>(&out, fmt, &["w.bin"], |m| &m.files, "retrain");
        assert!(read("fmt/1").is_ok());
        let e = read("other/1").err().unwrap().to_string();
        assert!(e.contains("format `fmt/1`, expected `other/1`"), "{e}");
        std::fs::write(out.join("w.bin"), b"weightz").unwrap();
        let e = format!("{:#}", read("fmt/1").err().unwrap());
        assert!(e.contains("w.bin") && e.contains("SHA-256"), "{e}");
        std::fs::remove_file(out.join("w.bin")).unwrap();
        let e = format!("{:#}", read("fmt/1").err().unwrap());
        assert!(e.contains("w.bin") && e.contains("missing"), "{e}");
        // Another kind of directory, and a file, are not replaced.
        let other = root.path().join("notes");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("a.txt"), b"x").unwrap();
        assert!(staging_for(&other, "fmt/1", "test").is_err());
        assert!(staging_for(&other.join("a.txt"), "fmt/1", "test").is_err());
        assert!(other.join("a.txt").exists());
    }
}
