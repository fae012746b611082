//! Where a command's graph comes from: the one argument group and the one loader that `train`,
//! `launch`, `probe`, `refine` and `linkpred` share.

use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};
use strata_graph::{Attack, CsrGraph, Dataset, Features, Split};

/// A registered dataset, a graph npz, an edge list (with feature, label and split files) or an
/// OGB raw directory. Without any of them the command's default dataset is used.
#[derive(Args, Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GraphSource {
    /// A registered dataset (`strata data list`).
    #[arg(long, conflicts_with_all = ["npz", "edges", "ogb"])]
    pub dataset: Option<String>,
    /// A graph npz (gnn-benchmark layout: `strata data synth`, `strata refine --out`).
    #[arg(long, conflicts_with_all = ["edges", "ogb"])]
    pub npz: Option<PathBuf>,
    /// An edge list: `src dst` per line (0-based ids; `#` comments; .gz allowed). Self loops
    /// are dropped and (u, v), (v, u) merged into one undirected edge, both logged.
    #[arg(long, conflicts_with = "ogb")]
    pub edges: Option<PathBuf>,
    /// Node features for --edges: .npy (2-D) or text rows (comma/whitespace separated), one row
    /// per node. Without it every node gets a one-hot feature.
    #[arg(long, requires = "edges")]
    pub features: Option<PathBuf>,
    /// The first column of a text --features file is the node id (0-based, each node once,
    /// rows in any order), not a feature. Without it, a first column that counts the rows
    /// (0, 1, 2, … or 1, 2, 3, …) is refused as a probable index.
    #[arg(long, requires = "features")]
    pub features_index_col: bool,
    /// Node labels for --edges: .npy (1-D integers) or one integer per line; -1, `nan` or an
    /// empty line mark an unlabelled node.
    #[arg(long, requires = "edges")]
    pub labels: Option<PathBuf>,
    /// A split for --labels: JSON `{"train": [ids], "val": [ids], "test": [ids]}`. Without it
    /// each seed draws a stratified 10/10/80 split.
    #[arg(long, requires = "labels")]
    pub split_file: Option<PathBuf>,
    /// The node count of an --edges graph (ids 0..N). Needed only when the largest id is far
    /// above the number of distinct ids the file names (isolated nodes, or ids that are not
    /// 0-based indices), which is refused otherwise; --features and --labels give the count
    /// themselves.
    #[arg(long, requires = "edges", value_name = "N")]
    pub num_nodes: Option<usize>,
    /// An OGB node-property dataset root (holding `raw/` and `split/`, as downloaded).
    #[arg(long)]
    pub ogb: Option<PathBuf>,
}

impl GraphSource {
    /// The files and directories this source reads, by flag (for [`crate::report::distinct_paths`]).
    pub fn inputs(&self) -> Vec<(&'static str, &Path)> {
        [
            ("--npz", &self.npz),
            ("--edges", &self.edges),
            ("--features", &self.features),
            ("--labels", &self.labels),
            ("--split-file", &self.split_file),
            ("--ogb", &self.ogb),
        ]
        .into_iter()
        .filter_map(|(f, p)| Some((f, p.as_deref()?)))
        .collect()
    }
    /// Whether any source flag was given.
    pub fn is_given(&self) -> bool {
        self.dataset.is_some() || self.npz.is_some() || self.edges.is_some() || self.ogb.is_some()
    }

    /// The registered name this source resolves to, if it is one.
    pub fn registered<'a>(&'a self, default: &'a str) -> Option<&'a str> {
        match (&self.npz, &self.edges, &self.ogb) {
            (None, None, None) => Some(self.dataset.as_deref().unwrap_or(default)),
            _ => None,
        }
    }

    /// What the reports call this graph: the dataset name or the path it was read from.
    pub fn describe(&self, default: &str) -> String {
        match (&self.npz, &self.edges, &self.ogb) {
            (Some(p), _, _) | (_, Some(p), _) | (_, _, Some(p)) => p.display().to_string(),
            _ => self.dataset.clone().unwrap_or_else(|| default.to_string()),
        }
    }

    /// Loads the graph; `attack` picks a poisoned adjacency of a registered Pro-GNN dataset.
    pub fn load(&self, default: &str, attack: Option<&str>) -> anyhow::Result<Dataset> {
        if attack.is_some() && self.registered(default).is_none() {
            bail!("--attack applies to a registered Pro-GNN dataset, not to a graph read from a file");
        }
        if let Some(p) = &self.npz {
            return Ok(strata_graph::formats::read_graph_npz(p)?);
        }
        if let Some(dir) = &self.ogb {
            return Ok(strata_graph::formats::read_ogb_raw(dir)?);
        }
        if let Some(edges) = &self.edges {
            return self.load_edge_list(edges);
        }
        let attack: Option<Attack> = attack.map(str::parse).transpose()?;
        Ok(strata_graph::load(self.dataset.as_deref().unwrap_or(default), attack)?)
    }

    fn load_edge_list(&self, path: &Path) -> anyhow::Result<Dataset> {
        let features = self.features.as_deref().map(|f| read_features(f, self.features_index_col)).transpose()?;
        let labels = self.labels.as_deref().map(read_labels).transpose()?;
        // The node count comes from the per-node files when given; they must agree.
        let rows = match (&features, &labels) {
            (Some(f), Some(l)) if f.num_nodes() != l.len() => bail!(
                "{} has {} rows but {} has {} labels: both give one entry per node",
                self.features.as_ref().unwrap().display(),
                f.num_nodes(),
                self.labels.as_ref().unwrap().display(),
                l.len()
            ),
            (Some(f), _) => Some((f.num_nodes(), self.features.as_ref().unwrap().display().to_string())),
            (None, Some(l)) => Some((l.len(), self.labels.as_ref().unwrap().display().to_string())),
            (None, None) => self.num_nodes.map(|n| (n, format!("--num-nodes {n}"))),
        };
        if let (Some(n), Some((rows, file))) = (self.num_nodes, &rows) {
            if n != *rows {
                bail!("--num-nodes {n}, but {file} has {rows} rows (one per node)");
            }
        }
        let graph = undirected_edge_list(path, rows)?;
        let n = graph.num_nodes();
        let labels = labels.unwrap_or_else(|| vec![-1; n]);
        let splits = match &self.split_file {
            Some(p) => vec![read_split(p)?],
            None => Vec::new(),
        };
        let name =
            path.file_stem().map_or("graph".into(), |s| s.to_string_lossy().trim_end_matches(".txt").to_string());
        let mut d = Dataset::new(
            path.display().to_string(),
            graph,
            features.unwrap_or_else(|| Features::identity(n)),
            labels,
            splits,
        )?;
        d.name = name;
        Ok(d)
    }
}

/// Largest node id an edge list may name without `--num-nodes` when its ids are sparse.
const SPARSE_IDS_FROM: usize = 1 << 20;

/// Reads an edge list as an undirected simple graph: self loops dropped, duplicate and reversed
/// edges merged (both logged). `rows` (count, where it comes from) bounds the ids when a per-node
/// file or `--num-nodes` gives it; otherwise the largest id sets the count, unless that is far
/// above the distinct ids named (a graph of 16 bytes naming node 268,435,455 would otherwise
/// size 268 M nodes).
pub fn undirected_edge_list(path: &Path, rows: Option<(usize, String)>) -> anyhow::Result<CsrGraph> {
    let list = strata_graph::formats::read_edge_list(path)?;
    if list.edges.is_empty() {
        bail!("{}: no edges", path.display());
    }
    let n = match rows {
        Some((rows, file)) => {
            if let Some((i, &(u, v))) = list.edges.iter().enumerate().find(|(_, &(u, v))| u.max(v) as usize >= rows) {
                bail!(
                    "{}: edge #{} ({u}, {v}) names node {}, but {file} gives {rows} nodes (ids 0..{})",
                    path.display(),
                    i + 1,
                    u.max(v),
                    rows.saturating_sub(1)
                );
            }
            rows
        }
        None => {
            let n = list.implied_nodes();
            if n > SPARSE_IDS_FROM {
                let mut ids: Vec<i64> = list.edges.iter().flat_map(|&(u, v)| [u, v]).collect();
                ids.sort_unstable();
                ids.dedup();
                if n > 64 * ids.len() {
                    bail!(
                        "{}: the largest node id is {}, so the graph would have {n} nodes, but the edges name only {} distinct nodes; \
                         ids are 0-based indices: renumber them, or pass --num-nodes {n} if the isolated nodes are meant",
                        path.display(),
                        n - 1,
                        ids.len()
                    );
                }
            }
            n
        }
    };
    let loops = list.edges.iter().filter(|(u, v)| u == v).count();
    let mut pairs: Vec<(i64, i64)> =
        list.edges.iter().filter(|(u, v)| u != v).map(|&(u, v)| (u.min(v), u.max(v))).collect();
    drop(list);
    pairs.sort_unstable();
    let before = pairs.len();
    pairs.dedup();
    if loops > 0 {
        tracing::warn!("{}: dropped {loops} self loop(s)", path.display());
    }
    if before > pairs.len() {
        tracing::warn!(
            "{}: merged {} duplicate edge(s) (the graph is undirected: (u, v) and (v, u) are one edge)",
            path.display(),
            before - pairs.len()
        );
    }
    let both: Vec<(i64, i64)> = pairs.iter().flat_map(|&(u, v)| [(u, v), (v, u)]).collect();
    drop(pairs);
    Ok(CsrGraph::from_edges(&path.display().to_string(), n, &both, None)?)
}

/// Reads a feature matrix: `.npy` (2-D, numeric) or text rows; with `index_col`, a text file's
/// first column is each row's node id.
pub fn read_features(path: &Path, index_col: bool) -> anyhow::Result<Features> {
    if path.extension().is_some_and(|e| e == "npy") {
        if index_col {
            bail!(
                "{}: --features-index-col applies to text files; an .npy matrix has one row per node, in order",
                path.display()
            );
        }
        let a = read_npy(path, "features")?;
        if a.shape.len() != 2 {
            bail!("{}: features must be a 2-D array (nodes × features), found shape {:?}", path.display(), a.shape);
        }
        let data = a.f32_values().with_context(|| format!("{}: features must be numeric", path.display()))?;
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            bail!("{}: feature {} of row {} is not finite", path.display(), i % a.shape[1], i / a.shape[1]);
        }
        return Ok(Features::dense(a.shape[0], a.shape[1], data));
    }
    let text =
        strata_graph::files::read_to_string(path).with_context(|| format!("reading features {}", path.display()))?;
    // With an index column, each row's first value is its node id, kept exact as an integer.
    let (mut data, mut ids, mut cols) = (Vec::new(), Vec::new(), None);
    let mut rows = 0;
    for (no, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let vals: Vec<&str> = t.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).collect();
        match cols {
            None => cols = Some(vals.len()),
            Some(c) if c != vals.len() => {
                bail!("{} line {}: {} values where earlier rows have {c}", path.display(), no + 1, vals.len())
            }
            _ => {}
        }
        let mut vals = vals.into_iter();
        if index_col {
            let Some(v) = vals.next() else { continue };
            let id = v.parse::<usize>().map_err(|_| {
                anyhow::anyhow!(
                    "{}: feature row {} has node id {v}; ids must be integers from 0 (one row per node)",
                    path.display(),
                    rows + 1
                )
            })?;
            ids.push(id);
        }
        for v in vals {
            let x: f32 = v
                .parse()
                .ok()
                .filter(|x: &f32| x.is_finite())
                .with_context(|| format!("{} line {}: `{v}` is not a finite number", path.display(), no + 1))?;
            data.push(x);
        }
        rows += 1;
    }
    let cols = cols.with_context(|| format!("{}: no feature rows", path.display()))?;
    if index_col {
        return by_index_column(path, &ids, cols, data);
    }
    let first = |r: usize| data[r * cols];
    let counts_from = |base: f32| (0..rows).all(|r| first(r) == r as f32 + base);
    if cols >= 2 && rows >= 3 && (counts_from(0.0) || counts_from(1.0)) {
        bail!(
            "{}: the first column counts the rows ({} to {}) like a node index, and would be read as a feature: \
             pass --features-index-col to use it as the node id, or remove it (a feature that really counts \
             the rows can be given as an .npy matrix)",
            path.display(),
            first(0),
            first(rows - 1)
        );
    }
    Ok(Features::dense(rows, cols, data))
}

/// Text feature rows with their node ids (0-based, read from the first column): each node once,
/// the rows put in node order.
fn by_index_column(path: &Path, ids: &[usize], cols: usize, data: Vec<f32>) -> anyhow::Result<Features> {
    if cols < 2 {
        bail!(
            "{}: --features-index-col needs an id column and at least one feature; rows have {cols} value(s)",
            path.display()
        );
    }
    let (rows, d) = (ids.len(), cols - 1);
    let mut out = vec![0f32; rows * d];
    let mut seen = vec![false; rows];
    for (r, (&id, row)) in ids.iter().zip(data.chunks_exact(d)).enumerate() {
        if id >= rows {
            bail!(
                "{}: feature row {} has node id {id}; ids must be integers in 0..{rows} (one row per node)",
                path.display(),
                r + 1
            );
        }
        if std::mem::replace(&mut seen[id], true) {
            bail!(
                "{}: node id {id} appears twice (feature row {}); each node needs exactly one row",
                path.display(),
                r + 1
            );
        }
        out[id * d..(id + 1) * d].copy_from_slice(row);
    }
    Ok(Features::dense(rows, d, out))
}

fn read_npy(path: &Path, what: &str) -> anyhow::Result<strata_graph::npz::NpyArray> {
    let bytes = strata_graph::files::read(path).with_context(|| format!("reading {what} {}", path.display()))?;
    Ok(strata_graph::npz::NpyArray::parse(bytes, path, what)?)
}

/// Reads node labels: `.npy` (1-D integers) or one label per line (-1, `nan` or empty:
/// unlabelled).
pub fn read_labels(path: &Path) -> anyhow::Result<Vec<i64>> {
    let check = |i: usize, l: i64| -> anyhow::Result<i64> {
        if l < -1 || l >= strata_graph::limits::MAX_CLASSES as i64 {
            bail!(
                "{}: label {l} of node {i} is outside -1..{} (-1 = unlabelled)",
                path.display(),
                strata_graph::limits::MAX_CLASSES
            );
        }
        Ok(l)
    };
    if path.extension().is_some_and(|e| e == "npy") {
        let a = read_npy(path, "labels")?;
        if a.shape.len() != 1 {
            bail!("{}: labels must be a 1-D array (one per node), found shape {:?}", path.display(), a.shape);
        }
        let v = a.f32_values().with_context(|| format!("{}: labels must be numeric", path.display()))?;
        return v
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                if x.is_nan() {
                    return Ok(-1);
                }
                if x.fract() != 0.0 {
                    bail!("{}: label {x} of node {i} is not an integer", path.display());
                }
                check(i, x as i64)
            })
            .collect();
    }
    let text =
        strata_graph::files::read_to_string(path).with_context(|| format!("reading labels {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with('#'))
        .enumerate()
        .map(|(i, (no, line))| {
            let t = line.trim();
            if t.is_empty() || t.eq_ignore_ascii_case("nan") {
                return Ok(-1);
            }
            let l: i64 = t
                .parse()
                .with_context(|| format!("{} line {}: `{t}` is not an integer label", path.display(), no + 1))?;
            check(i, l).with_context(|| format!("{} line {}", path.display(), no + 1))
        })
        .collect()
}

/// Reads a split file: JSON with `train`, `val` (or `valid`) and `test` node-id arrays.
pub fn read_split(path: &Path) -> anyhow::Result<Split> {
    let text =
        strata_graph::files::read_to_string(path).with_context(|| format!("reading split {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let ids = |keys: &[&str]| -> anyhow::Result<Vec<usize>> {
        let (key, arr) = keys.iter().find_map(|k| v.get(*k).map(|a| (*k, a))).with_context(|| {
            format!(
                "{}: missing key `{}` (expected {{\"train\": [...], \"val\": [...], \"test\": [...]}})",
                path.display(),
                keys[0]
            )
        })?;
        let arr =
            arr.as_array().with_context(|| format!("{}: `{key}` must be an array of node ids", path.display()))?;
        arr.iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_u64()
                    .map(|x| x as usize)
                    .with_context(|| format!("{}: `{key}`[{i}] = {x} is not a node id", path.display()))
            })
            .collect()
    };
    Ok(Split { train: ids(&["train"])?, val: ids(&["val", "valid"])?, test: ids(&["test"])? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn sparse_ids_need_the_node_count_said() {
        let dir = tempfile::tempdir().unwrap();
        // 16 bytes naming node 268,435,455: refused before 268 M nodes are sized.
        let edges = write(dir.path(), "g.txt", "0 268435455\n");
        let src = GraphSource { edges: Some(edges.clone()), ..Default::default() };
        let e = format!("{:#}", src.load("cora", None).unwrap_err());
        assert!(
            e.contains("g.txt")
                && e.contains("268435456 nodes")
                && e.contains("only 2 distinct")
                && e.contains("--num-nodes"),
            "{e}"
        );
        // Said, it is meant (a smaller count here: the check is the same).
        let edges = write(dir.path(), "h.txt", "0 1\n1 2000000\n");
        let src = GraphSource { edges: Some(edges.clone()), ..Default::default() };
        assert!(src.load("cora", None).is_err());
        let src = GraphSource { edges: Some(edges.clone()), num_nodes: Some(2_000_001), ..Default::default() };
        assert_eq!(src.load("cora", None).unwrap().num_nodes(), 2_000_001);
        let src = GraphSource { edges: Some(edges), num_nodes: Some(1000), ..Default::default() };
        let e = format!("{:#}", src.load("cora", None).unwrap_err());
        assert!(e.contains("names node 2000000") && e.contains("--num-nodes 1000 gives 1000 nodes"), "{e}");
        // Dense ids need nothing.
        let edges = write(dir.path(), "k.txt", "0 1\n1 2\n");
        assert_eq!(GraphSource { edges: Some(edges), ..Default::default() }.load("cora", None).unwrap().num_nodes(), 3);
    }

    #[test]
    fn edge_list_with_labels_and_split_loads_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let edges = write(dir.path(), "g.txt", "0 1\n1 0\n1 2\n2 2\n2 3\n");
        let labels = write(dir.path(), "y.txt", "0\n1\n\n1\n");
        let split = write(dir.path(), "s.json", r#"{"train": [0, 1], "val": [3], "test": [2]}"#);
        let src = GraphSource {
            edges: Some(edges.clone()),
            labels: Some(labels.clone()),
            split_file: Some(split),
            ..Default::default()
        };
        let d = src.load("cora", None).unwrap();
        assert_eq!((d.num_nodes(), d.graph.num_undirected_edges(), d.num_classes), (4, 3, 2));
        assert_eq!(d.labels, vec![0, 1, -1, 1]);
        assert_eq!(d.splits[0].test, vec![2]);
        assert_eq!(src.describe("cora"), edges.display().to_string());
        // An id past the label rows, a ragged label file, a bad split and --attack on a file.
        let far = write(dir.path(), "far.txt", "0 1\n1 9\n");
        let e = GraphSource { edges: Some(far), labels: Some(labels.clone()), ..Default::default() }
            .load("cora", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("far.txt") && e.contains("edge #2") && e.contains("y.txt gives 4 nodes"), "{e}");
        let bad = write(dir.path(), "bad.txt", "0\nzero\n");
        let e = format!(
            "{:#}",
            GraphSource { edges: Some(edges.clone()), labels: Some(bad), ..Default::default() }
                .load("cora", None)
                .unwrap_err()
        );
        assert!(e.contains("bad.txt line 2") && e.contains("`zero`"), "{e}");
        let s = write(dir.path(), "s2.json", r#"{"train": [0], "test": [1]}"#);
        let e =
            GraphSource { edges: Some(edges.clone()), labels: Some(labels), split_file: Some(s), ..Default::default() }
                .load("cora", None)
                .unwrap_err()
                .to_string();
        assert!(e.contains("s2.json") && e.contains("`val`"), "{e}");
        let e = GraphSource { edges: Some(edges), ..Default::default() }
            .load("cora", Some("meta:0.05"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--attack"), "{e}");
    }

    /// A headerless feature file whose first column counts the rows is refused as a probable
    /// index (0- or 1-based); `--features-index-col` reads it as the node id, rows in any order.
    #[test]
    fn a_counting_first_feature_column_is_an_index_unless_declared() {
        let dir = tempfile::tempdir().unwrap();
        let edges = write(dir.path(), "g.txt", "0 1\n1 2\n");
        for (name, text) in [("x0.csv", "0,0.5,1\n1,0.25,2\n2,0.75,3\n"), ("x1.csv", "1 0.5 1\n2 0.25 2\n3 0.75 3\n")] {
            let x = write(dir.path(), name, text);
            let src = GraphSource { edges: Some(edges.clone()), features: Some(x), ..Default::default() };
            let e = format!("{:#}", src.load("cora", None).unwrap_err());
            assert!(e.contains(name) && e.contains("like a node index") && e.contains("--features-index-col"), "{e}");
        }
        // Declared: the ids place the rows (given out of order) and the column is dropped.
        let x = write(dir.path(), "xi.csv", "2,0.75,3\n0,0.5,1\n1,0.25,2\n");
        let src = GraphSource {
            edges: Some(edges.clone()),
            features: Some(x),
            features_index_col: true,
            ..Default::default()
        };
        let d = src.load("cora", None).unwrap();
        match &d.features {
            Features::Dense { rows: 3, cols: 2, data } => assert_eq!(data, &[0.5, 1.0, 0.25, 2.0, 0.75, 3.0]),
            other => panic!("{other:?}"),
        }
        // Ids that repeat, fall outside the rows or are fractional are refused by row.
        for (text, want) in [
            ("0,1\n0,2\n1,3\n", "appears twice"),
            ("0,1\n1,2\n5,3\n", "row 3 has node id 5"),
            ("0,1\n1.5,2\n2,3\n", "node id 1.5"),
        ] {
            let x = write(dir.path(), "bad.csv", text);
            let src = GraphSource {
                edges: Some(edges.clone()),
                features: Some(x),
                features_index_col: true,
                ..Default::default()
            };
            let e = format!("{:#}", src.load("cora", None).unwrap_err());
            assert!(e.contains("bad.csv") && e.contains(want), "{e}");
        }
        // A first column that does not count the rows is a feature.
        let x = write(dir.path(), "xf.csv", "0.1,1\n0.2,0\n0.3,1\n");
        let d = GraphSource { edges: Some(edges), features: Some(x), ..Default::default() }.load("cora", None).unwrap();
        assert_eq!(d.features.dim(), 2);
    }

    #[test]
    fn split_ids_past_the_graph_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let edges = write(dir.path(), "g.txt", "0 1\n1 2\n");
        let labels = write(dir.path(), "y.txt", "0\n1\n0\n");
        let split = write(dir.path(), "s.json", r#"{"train": [0], "val": [1], "test": [7]}"#);
        let e = GraphSource { edges: Some(edges), labels: Some(labels), split_file: Some(split), ..Default::default() }
            .load("cora", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains('7'), "{e}");
    }
}

/// Where the work runs: the flags every computing subcommand shares.
#[derive(clap::Args, Debug, Clone)]
pub struct ComputeArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads for libtorch (0 = one per core).
    #[arg(long, default_value_t = 0, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=4096))]
    pub threads: usize,
}

impl ComputeArgs {
    /// Sets libtorch's threads and resolves the device.
    pub fn start(&self) -> anyhow::Result<tch::Device> {
        strata_nn::set_threads(self.threads);
        Ok(strata_nn::parse_device(&self.device)?)
    }
}

/// The dataset's first published split, or (none published) a seeded stratified 10 / 10 / 80
/// one: what every subcommand trains and evaluates on unless told otherwise.
/// Refuses a split that would train on nothing (every loss 0, every weight its initial value).
/// (Split files naming nodes outside the graph are refused as they are read.)
pub fn check_split(d: &strata_graph::Dataset, s: &strata_graph::Split) -> anyhow::Result<()> {
    if s.train.is_empty() {
        anyhow::bail!(
            "{}: the training set is empty ({} labelled nodes; a split file or the graph's masks name no training node)",
            d.name,
            d.labels.iter().filter(|&&y| y >= 0).count()
        );
    }
    Ok(())
}

pub fn default_split(d: &strata_graph::Dataset, seed: u64) -> strata_graph::Split {
    d.splits.first().cloned().unwrap_or_else(|| strata_graph::Split::random_stratified(&d.labels, 0.1, 0.1, seed))
}
