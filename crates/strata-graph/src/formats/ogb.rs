use super::text::{fields, lines, parse_field};
use crate::dataset::{Dataset, Features};
use crate::error::{GraphError, Result};
use crate::graph::CsrGraph;
use crate::limits;
use crate::split::Split;
use std::path::{Path, PathBuf};

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.csv.gz"), format!("{stem}.csv")].into_iter().map(|f| dir.join(f)).find(|p| p.exists())
}

fn read_ids(path: &Path, n: usize) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for item in lines(path)? {
        let (no, line) = item?;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let id: i64 = parse_field(path, no, t, "a node id")?;
        if id < 0 || id as usize >= n {
            return Err(GraphError::NodeOutOfRange { context: format!("{}:{no}", path.display()), id, num_nodes: n });
        }
        out.push(id as usize);
    }
    Ok(out)
}

/// Reads an OGB node-property-prediction dataset from its raw directory layout:
/// `raw/edge.csv(.gz)` (`src,dst` per line), `raw/node-feat.csv(.gz)` (one dense row per
/// node), `raw/node-label.csv(.gz)` (one label per line, `nan` for unlabelled),
/// `raw/num-node-list.csv(.gz)` (optional), and `split/<scheme>/{train,valid,test}.csv(.gz)`.
/// `dir` is the dataset root (holding `raw/` and `split/`).
// Long on purpose: the OGB layout's files are read and cross-checked in order, every error naming its file and line, and each step fills arrays the next one checks.
pub fn read_ogb_raw(dir: impl AsRef<Path>) -> Result<Dataset> {
    let dir = dir.as_ref();
    let raw = dir.join("raw");
    let need = |stem: &str| {
        find(&raw, stem)
            .ok_or_else(|| GraphError::invalid(raw.display(), format!("missing {stem}.csv.gz (OGB raw layout)")))
    };
    let edge_path = need("edge")?;
    let mut edges = Vec::new();
    for item in lines(&edge_path)? {
        let (no, line) = item?;
        if line.trim().is_empty() {
            continue;
        }
        let f = fields(&line);
        if f.len() != 2 {
            return Err(GraphError::Parse {
                path: edge_path.clone(),
                line: no,
                msg: format!("expected `src,dst`, found {} columns", f.len()),
            });
        }
        edges.push((
            parse_field::<i64>(&edge_path, no, f[0], "a node id")?,
            parse_field::<i64>(&edge_path, no, f[1], "a node id")?,
        ));
    }
    let feat_path = need("node-feat")?;
    let mut data = Vec::new();
    let mut dim = None;
    let mut rows = 0;
    for item in lines(&feat_path)? {
        let (no, line) = item?;
        if line.trim().is_empty() {
            continue;
        }
        let f = fields(&line);
        match dim {
            None => dim = Some(f.len()),
            Some(d) if d != f.len() => {
                return Err(GraphError::Parse {
                    path: feat_path.clone(),
                    line: no,
                    msg: format!("ragged row: {} values where earlier rows have {d}", f.len()),
                })
            }
            _ => {}
        }
        for v in f {
            let x: f32 = parse_field(&feat_path, no, v, "a numeric feature")?;
            if !x.is_finite() {
                return Err(GraphError::Parse {
                    path: feat_path.clone(),
                    line: no,
                    msg: format!("feature `{v}` is not finite"),
                });
            }
            data.push(x);
        }
        rows += 1;
    }
    let count_path = find(&raw, "num-node-list");
    let n = match &count_path {
        Some(p) => {
            let ids = lines(p)?.next().transpose()?.map(|(_, l)| l).unwrap_or_default();
            let n: usize = parse_field(p, 1, ids.trim(), "the node count")?;
            if n > limits::MAX_NODES {
                let msg = format!("node count {n} exceeds {} (strata_graph::limits::MAX_NODES)", limits::MAX_NODES);
                return Err(GraphError::Parse { path: p.clone(), line: 1, msg });
            }
            n
        }
        None => rows,
    };
    if rows != n {
        let source = count_path.as_ref().map_or(String::new(), |p| format!(" ({} says {n})", p.display()));
        return Err(GraphError::invalid(feat_path.display(), format!("{rows} feature rows for {n} nodes{source}")));
    }
    let label_path = need("node-label")?;
    let mut labels = Vec::with_capacity(n);
    for item in lines(&label_path)? {
        let (no, line) = item?;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let first = fields(t)[0];
        let label = if first.eq_ignore_ascii_case("nan") {
            -1
        } else {
            let x = parse_field::<f64>(&label_path, no, first, "an integer label")?;
            if x.fract() != 0.0 || !x.is_finite() {
                return Err(GraphError::Parse {
                    path: label_path.clone(),
                    line: no,
                    msg: format!("expected an integer label, found `{first}`"),
                });
            }
            limits::label(x as i64).map_err(|msg| GraphError::Parse { path: label_path.clone(), line: no, msg })?
        };
        labels.push(label);
    }
    if labels.len() != n {
        return Err(GraphError::invalid(label_path.display(), format!("{} labels for {n} nodes", labels.len())));
    }
    let graph = CsrGraph::from_edges(&edge_path.display().to_string(), n, &edges, None)?;
    let mut splits = Vec::new();
    let split_root = dir.join("split");
    if split_root.is_dir() {
        let mut schemes: Vec<PathBuf> = std::fs::read_dir(&split_root)
            .map_err(|e| GraphError::io(&split_root, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        schemes.sort();
        for s in schemes {
            let part = |stem: &str| {
                find(&s, stem).ok_or_else(|| GraphError::invalid(s.display(), format!("missing {stem}.csv.gz")))
            };
            let split = Split {
                train: read_ids(&part("train")?, n)?,
                val: read_ids(&part("valid")?, n)?,
                test: read_ids(&part("test")?, n)?,
            };
            split.check(&s.display().to_string(), n)?;
            splits.push(split);
        }
    }
    let mut d =
        Dataset::new(dir.display().to_string(), graph, Features::dense(n, dim.unwrap_or(0), data), labels, splits)?;
    d.name = dir.file_name().map_or("ogb".into(), |s| s.to_string_lossy().to_string());
    Ok(d)
}
