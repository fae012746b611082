//! Named datasets: where their files are, how to load them, and how to download them.
//!
//! Files are found in `STRATA_DATA_DIR`, then `shared/graphs` beside the repository (searched
//! upwards from the working directory: `../shared/graphs` from the repo root), then the user
//! cache (`$XDG_CACHE_HOME/strata/graphs` or `~/.cache/strata/graphs`).

use crate::dataset::{Dataset, Features};
use crate::error::{GraphError, Result};
use crate::formats::{read_geom_gcn, read_graph_npz, read_scipy_sparse};
use crate::graph::CsrGraph;
use crate::prognn::{prognn_clean, with_poisoned_adjacency};
use crate::split::Split;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// SHA-256 of every public dataset file, keyed by path relative to the data directory.
const SHA256SUMS: &str = include_str!("../../../graphs/SHA256SUMS");
const KARATE_EDGES: &str = include_str!("../../../graphs/karate/edges.txt");
const KARATE_LABELS: &str = include_str!("../../../graphs/karate/labels.txt");

const PROGNN_UPSTREAM: &str = "https://raw.githubusercontent.com/ChandlerBang/Pro-GNN/master";
const NETTACK_UPSTREAM: &str = "https://raw.githubusercontent.com/danielzuegner/gnn-meta-attack/master/data";
const GEOMGCN_UPSTREAM: &str = "https://raw.githubusercontent.com/graphdml-uiuc-jlu/geom-gcn/master";

/// How a named dataset is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `planetoid/<file>.npz` with the public split.
    Planetoid(&'static str),
    /// `nettack/<file>.npz` through the Pro-GNN recipe; the poisoned matrices use `<prefix>`.
    ProGnn { file: &'static str, prefix: &'static str },
    /// `nettack/cora_ml.npz` symmetrised, with ForwardGNN's five splits.
    ForwardGnnCoraMl,
    /// `webkb/<name>/` in the Geom-GCN text format.
    GeomGcn(&'static str),
    /// Compiled into the binary.
    Embedded,
}

/// One registry entry.
#[derive(Clone, Copy, Debug)]
pub struct DatasetInfo {
    pub name: &'static str,
    pub source: Source,
    pub description: &'static str,
}

pub const DATASETS: &[DatasetInfo] = &[
    DatasetInfo {
        name: "cora",
        source: Source::Planetoid("cora"),
        description: "Planetoid Cora, public split 140/500/1000",
    },
    DatasetInfo {
        name: "citeseer",
        source: Source::Planetoid("citeseer"),
        description: "Planetoid CiteSeer, public split 120/500/1000",
    },
    DatasetInfo {
        name: "pubmed",
        source: Source::Planetoid("pubmed"),
        description: "Planetoid PubMed graph and public split (no features in this copy)",
    },
    DatasetInfo {
        name: "cora-lcc",
        source: Source::ProGnn { file: "cora", prefix: "cora" },
        description: "Pro-GNN clean Cora LCC (2485 nodes); --attack meta:R / nettack:K",
    },
    DatasetInfo {
        name: "citeseer-lcc",
        source: Source::ProGnn { file: "citeseer", prefix: "citeseer" },
        description: "Pro-GNN clean CiteSeer LCC (2110 nodes)",
    },
    DatasetInfo {
        name: "polblogs-lcc",
        source: Source::ProGnn { file: "polblogs", prefix: "polblogs" },
        description: "Pro-GNN clean PolBlogs LCC (1222 nodes, identity features)",
    },
    DatasetInfo {
        name: "cora-ml-lcc",
        source: Source::ProGnn { file: "cora_ml", prefix: "cora_ml" },
        description: "Pro-GNN clean Cora-ML LCC (2810 nodes)",
    },
    DatasetInfo {
        name: "cora-ml",
        source: Source::ForwardGnnCoraMl,
        description: "Cora-ML (2995 nodes) with ForwardGNN's five official splits",
    },
    DatasetInfo { name: "cornell", source: Source::GeomGcn("cornell"), description: "WebKB Cornell (Geom-GCN splits)" },
    DatasetInfo { name: "texas", source: Source::GeomGcn("texas"), description: "WebKB Texas (Geom-GCN splits)" },
    DatasetInfo {
        name: "wisconsin",
        source: Source::GeomGcn("wisconsin"),
        description: "WebKB Wisconsin (Geom-GCN splits)",
    },
    DatasetInfo {
        name: "film",
        source: Source::GeomGcn("film"),
        description: "Actor co-occurrence (film), Geom-GCN splits",
    },
    DatasetInfo { name: "karate", source: Source::Embedded, description: "Zachary's karate club (embedded)" },
];

/// A poisoning attack on a Pro-GNN dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Attack {
    /// Metattack at a perturbation rate (0.05 .. 0.25).
    Meta(f64),
    /// Nettack with this many perturbations per target (1 .. 5).
    Nettack(u32),
}

impl std::str::FromStr for Attack {
    type Err = GraphError;
    fn from_str(s: &str) -> Result<Attack> {
        let bad =
            || GraphError::invalid("--attack", format!("`{s}`: expected meta:0.05|0.1|0.15|0.2|0.25 or nettack:1..5"));
        let (kind, val) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "meta" => {
                let r: f64 = val.parse().map_err(|_| bad())?;
                [0.05, 0.1, 0.15, 0.2, 0.25]
                    .iter()
                    .any(|&x| (x - r).abs() < 1e-9)
                    .then_some(Attack::Meta(r))
                    .ok_or_else(bad)
            }
            "nettack" => {
                let k: u32 = val.parse().map_err(|_| bad())?;
                (1..=5).contains(&k).then_some(Attack::Nettack(k)).ok_or_else(bad)
            }
            _ => Err(bad()),
        }
    }
}

impl Attack {
    fn file(self, prefix: &str) -> String {
        match self {
            // Pro-GNN names rates as Python prints them: 0.05, 0.1, 0.15, 0.2, 0.25.
            Attack::Meta(r) => format!("prognn/meta/{prefix}_meta_adj_{}.npz", r),
            Attack::Nettack(k) => format!("prognn/nettack/{prefix}_nettack_adj_{k}.0.npz"),
        }
    }
}

pub fn info(name: &str) -> Result<&'static DatasetInfo> {
    DATASETS.iter().find(|d| d.name == name).ok_or_else(|| GraphError::UnknownDataset {
        name: name.into(),
        known: DATASETS.iter().map(|d| d.name).collect::<Vec<_>>().join(", "),
    })
}

/// The user cache for downloaded graphs.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("strata").join("graphs")
}

/// Data directories in search order (see the module doc).
pub fn data_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("STRATA_DATA_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(d) = cwd.ancestors().map(|a| a.join("shared").join("graphs")).find(|p| p.is_dir()) {
            dirs.push(d);
        }
    }
    dirs.push(cache_dir());
    dirs
}

/// Finds a dataset file (relative path like `planetoid/cora.npz`) in the data directories.
pub fn locate(rel: &str) -> Result<PathBuf> {
    let dirs = data_dirs();
    dirs.iter().map(|d| d.join(rel)).find(|p| p.exists()).ok_or_else(|| GraphError::DatasetMissing {
        name: rel.into(),
        searched: dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        hint: "Set STRATA_DATA_DIR, or run `strata data get NAME`.".into(),
    })
}

/// Relative paths of the files a dataset (with an optional attack) needs.
pub fn files(name: &str, attack: Option<Attack>) -> Result<Vec<String>> {
    let info = info(name)?;
    let mut out = match info.source {
        Source::Planetoid(f) => vec![format!("planetoid/{f}.npz")],
        Source::ProGnn { file, prefix } => {
            let mut v = vec![format!("nettack/{file}.npz")];
            let split = format!("prognn/splits/{prefix}_prognn_splits.json");
            let nettack = format!("prognn/nettack/{prefix}_nettacked_nodes.json");
            for s in [split, nettack] {
                if checksum_of(&s).is_some() {
                    v.push(s);
                }
            }
            v
        }
        Source::ForwardGnnCoraMl => {
            let mut v = vec!["nettack/cora_ml.npz".to_string()];
            v.extend((0..5).map(|i| format!("forwardgnn/cora_ml/split{i}.json")));
            v
        }
        Source::GeomGcn(d) => {
            let mut v =
                vec![format!("webkb/{d}/out1_graph_edges.txt"), format!("webkb/{d}/out1_node_feature_label.txt")];
            v.extend((0..10).map(|i| format!("webkb/{d}/splits/{d}_split_0.6_0.2_{i}.npz")));
            v
        }
        Source::Embedded => Vec::new(),
    };
    match (attack, info.source) {
        (None, _) => {}
        (Some(a), Source::ProGnn { prefix, .. }) => out.push(a.file(prefix)),
        (Some(_), _) => {
            return Err(GraphError::invalid(
                name,
                "attacks apply to the Pro-GNN graphs only (cora-lcc, citeseer-lcc, polblogs-lcc, cora-ml-lcc)",
            ))
        }
    }
    Ok(out)
}

/// The published SHA-256 of a dataset file.
pub fn checksum_of(rel: &str) -> Option<&'static str> {
    SHA256SUMS.lines().find_map(|l| {
        let (hash, path) = l.split_once(char::is_whitespace)?;
        (path.trim().trim_start_matches("./") == rel).then_some(hash)
    })
}

/// Where a file lives upstream (its canonical public address), when it is published there byte
/// for byte. Files converted for strata (Planetoid npz, ForwardGNN JSON) have none: fetch them
/// from a mirror of the data directory.
pub fn upstream_url(rel: &str) -> Option<String> {
    if let Some(f) = rel.strip_prefix("nettack/") {
        return Some(format!("{NETTACK_UPSTREAM}/{f}"));
    }
    if let Some(f) = rel.strip_prefix("prognn/") {
        return Some(format!("{PROGNN_UPSTREAM}/{f}"));
    }
    if let Some(rest) = rel.strip_prefix("webkb/") {
        let (name, file) = rest.split_once('/')?;
        return Some(match file.strip_prefix("splits/") {
            Some(s) => format!("{GEOMGCN_UPSTREAM}/splits/{s}"),
            None => format!("{GEOMGCN_UPSTREAM}/new_data/{name}/{file}"),
        });
    }
    None
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads one file into `dest_root/rel`, verifying its SHA-256 before it becomes visible:
/// the bytes go to a temporary file in the same directory, are checked, fsynced, then renamed.
/// A mismatching download is deleted and reported. `mirror`, when given, replaces the
/// upstream address with `mirror/rel`.
pub fn download(rel: &str, mirror: Option<&str>, dest_root: &Path) -> Result<PathBuf> {
    let expected = checksum_of(rel).ok_or_else(|| GraphError::invalid(rel, "no published checksum for this file"))?;
    let url = match mirror {
        Some(m) => format!("{}/{rel}", m.trim_end_matches('/')),
        None => upstream_url(rel).ok_or_else(|| {
            GraphError::invalid(
                rel,
                "this file was converted for strata and has no upstream address; pass --mirror URL",
            )
        })?,
    };
    let dest = dest_root.join(rel);
    let mut resp = ureq::get(&url).call().map_err(|e| GraphError::Download { url: url.clone(), msg: e.to_string() })?;
    let mut bytes = Vec::new();
    resp.body_mut()
        .as_reader()
        .read_to_end(&mut bytes)
        .map_err(|e| GraphError::Download { url: url.clone(), msg: e.to_string() })?;
    let found = sha256_hex(&bytes);
    if found != expected {
        return Err(GraphError::Checksum { what: url, expected: expected.into(), found });
    }
    write_atomic(&dest, &bytes)?;
    Ok(dest)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename.
/// Readers see the old file or the new one, never a torn one. The file gets the permissions a
/// plain create would (0666 less the umask: 0644 usually), so colleagues can read reports,
/// models and datasets; secrets go through [`write_atomic_private`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o666)
}

/// [`write_atomic`] for secrets (TLS private keys): readable by the owner only (0600) from the
/// moment the file exists.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| GraphError::io(dir, e))?;
    let mut tmp = temp_beside(path, "", mode)?;
    tmp.write_all(bytes).map_err(|e| GraphError::io(tmp.path(), e))?;
    persist_atomic(tmp, path)
}

/// A temporary file beside `path` (name `.NAME.XXXX` + `suffix`), created with `mode` less the
/// umask (tempfile's own default is 0600 whatever the umask).
pub(crate) fn temp_beside(path: &Path, suffix: &str, mode: u32) -> Result<tempfile::NamedTempFile> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let prefix = format!(".{}.", path.file_name().unwrap_or_default().to_string_lossy());
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(mode));
    }
    b.tempfile_in(dir).map_err(|e| GraphError::io(dir, e))
}

/// [`write_atomic`] for writers that take a file name: `write` fills a temporary file beside
/// `path` whose name ends in `suffix` (for writers that pick the format from it), which is then
/// made durable and renamed over `path`. The writer's error is reported against `path`.
pub fn write_atomic_with(
    path: &Path,
    suffix: &str,
    write: impl FnOnce(&Path) -> std::result::Result<(), String>,
) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| GraphError::io(dir, e))?;
    let tmp = temp_beside(path, suffix, 0o666)?;
    write(tmp.path()).map_err(|msg| GraphError::invalid(path.display(), msg))?;
    persist_atomic(tmp, path)
}

/// Makes a temporary file beside `path` durable (fsync) and renames it over `path`, then
/// fsyncs the directory so the rename itself survives a crash where the filesystem allows.
pub(crate) fn persist_atomic(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    tmp.as_file().sync_all().map_err(|e| GraphError::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| GraphError::io(path, e.error))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Verifies a local file against its published checksum.
pub fn verify(rel: &str, path: &Path) -> Result<()> {
    let expected = checksum_of(rel).ok_or_else(|| GraphError::invalid(rel, "no published checksum"))?;
    let bytes = crate::files::read(path)?;
    let found = sha256_hex(&bytes);
    if found != expected {
        return Err(GraphError::Checksum { what: path.display().to_string(), expected: expected.into(), found });
    }
    Ok(())
}

fn karate() -> Result<Dataset> {
    let ctx = "embedded karate";
    let mut edges = Vec::new();
    for (i, l) in KARATE_EDGES.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<i64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if f.len() != 2 {
            return Err(GraphError::invalid(ctx, format!("line {}: expected two ids", i + 1)));
        }
        edges.push((f[0], f[1]));
    }
    let labels: Vec<i64> = KARATE_LABELS.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let graph = CsrGraph::from_edges(ctx, labels.len(), &edges, None)?.symmetrized();
    // Classic semi-supervised setting: the two leaders are labelled, everyone else is tested.
    let split = Split { train: vec![0, 33], val: vec![], test: (1..33).collect() };
    Dataset::new("karate", graph, Features::identity(labels.len()), labels, vec![split])
}

/// Loads a named dataset. Pro-GNN graphs get the clean recipe, the split that Pro-GNN
/// published (or a stratified 10/10/80 split with seed 15 where none is available), and the
/// poisoned adjacency when `attack` is given. Every file found is first checked against its
/// published SHA-256 (the registered files are a few MiB at most: milliseconds), so a file
/// truncated or altered on disk is refused rather than read.
pub fn load(name: &str, attack: Option<Attack>) -> Result<Dataset> {
    let info = info(name)?;
    for rel in files(name, attack)? {
        if let (Some(_), Ok(path)) = (checksum_of(&rel), locate(&rel)) {
            verify(&rel, &path)?;
        }
    }
    let mut d = match info.source {
        Source::Embedded => karate()?,
        Source::Planetoid(f) => read_graph_npz(locate(&format!("planetoid/{f}.npz"))?)?,
        Source::GeomGcn(dir) => {
            let edges = locate(&format!("webkb/{dir}/out1_graph_edges.txt"))?;
            read_geom_gcn(edges.parent().unwrap())?
        }
        Source::ForwardGnnCoraMl => {
            let mut d = read_graph_npz(locate("nettack/cora_ml.npz")?)?;
            let sym = d.graph.symmetrized().without_self_loops().into_adjacency().into_binary();
            d.graph = CsrGraph::from_adjacency("cora_ml", sym)?;
            d.splits = (0..5)
                .map(|i| Split::from_json(locate(&format!("forwardgnn/cora_ml/split{i}.json"))?))
                .collect::<Result<_>>()?;
            for s in &d.splits {
                s.check("cora-ml split", d.num_nodes())?;
            }
            d
        }
        Source::ProGnn { file, prefix } => {
            let raw = read_graph_npz(locate(&format!("nettack/{file}.npz"))?)?;
            let mut d = prognn_clean(&raw);
            let split_file = [
                format!("prognn/splits/{prefix}_prognn_splits.json"),
                format!("prognn/nettack/{prefix}_nettacked_nodes.json"),
            ]
            .into_iter()
            .find_map(|rel| locate(&rel).ok());
            let split = match split_file {
                Some(p) => Split::from_json(p)?,
                None => Split::random_stratified(&d.labels, 0.1, 0.1, 15),
            };
            split.check(name, d.num_nodes())?;
            d.splits = vec![split];
            if let Some(a) = attack {
                let rel = a.file(prefix);
                let path = locate(&rel)?;
                let adj = read_scipy_sparse(&path)?;
                d = with_poisoned_adjacency(&d, adj, &path.display().to_string())?;
            }
            d
        }
    };
    d.name = match attack {
        None => name.to_string(),
        Some(Attack::Meta(r)) => format!("{name}@meta:{r}"),
        Some(Attack::Nettack(k)) => format!("{name}@nettack:{k}"),
    };
    Ok(d)
}

/// Whether tests must fail rather than skip when something they need is missing: under
/// `CI=true`, and under `make test` (which sets `STRATA_REQUIRE_TEST_DATA=1`). A plain
/// `cargo test` by hand may skip, saying so.
#[cfg(any(test, feature = "test-support"))]
pub fn tests_must_not_skip() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true") || std::env::var("STRATA_REQUIRE_TEST_DATA").is_ok_and(|v| v == "1")
}

/// For tests that need the real datasets: the file's path, or — when it is missing — a panic
/// where [`tests_must_not_skip`] and a printed skip notice elsewhere.
#[cfg(any(test, feature = "test-support"))]
pub fn locate_or_skip(rel: &str) -> Option<PathBuf> {
    match locate(rel) {
        Ok(p) => Some(p),
        Err(e) if tests_must_not_skip() => {
            panic!("test data is missing (CI=true or make test: a skip would hide it): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED (test data missing): {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs get the permissions a plain create gets (0666 less the umask), secrets 0600,
    /// and a replaced file keeps no trace of the old contents.
    #[cfg(unix)]
    #[test]
    fn outputs_are_readable_as_plain_files_are_and_secrets_are_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, b"x").unwrap();
        let (report, key) = (dir.path().join("report.json"), dir.path().join("key.pem"));
        write_atomic(&report, b"old").unwrap();
        write_atomic(&report, b"{}").unwrap();
        write_atomic_private(&key, b"secret").unwrap();
        assert_eq!(mode(&report), mode(&plain));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(std::fs::read(&report).unwrap(), b"{}");
        let st = dir.path().join("w.bin");
        write_atomic_with(&st, ".bin", |p| std::fs::write(p, b"w").map_err(|e| e.to_string())).unwrap();
        assert_eq!(mode(&st), mode(&plain));
    }
}
