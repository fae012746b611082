use super::text::{lines, parse_field};
use crate::csr::CsrMatrix;
use crate::dataset::{Dataset, Features};
use crate::error::{GraphError, Result};
use crate::graph::CsrGraph;
use crate::limits;
use crate::npz::Npz;
use crate::split::Split;
use std::path::Path;

/// Reads a dataset in the Geom-GCN text format from `dir`:
/// `out1_graph_edges.txt` (header, then `src<TAB>dst`, directed), `out1_node_feature_label.txt`
/// (header, then `id<TAB>features<TAB>label`) and `splits/*.npz` (`train_mask`, `val_mask`,
/// `test_mask`), sorted by file name. Features are either a dense comma-separated list, or —
/// when the header says `feature(feature_amount:K)` as film's does — the indices of the active
/// entries of a K+1-dimensional binary vector (Geom-GCN's 932 for film).
// Long on purpose: the format's files are read and cross-checked in the order it defines them, every error naming its file and line, and each step fills arrays the next one checks.
pub fn read_geom_gcn(dir: impl AsRef<Path>) -> Result<Dataset> {
    let dir = dir.as_ref();
    let feat_path = dir.join("out1_node_feature_label.txt");
    let mut rows: Vec<(usize, Vec<f32>, Vec<i64>, i64)> = Vec::new(); // id, dense, sparse idx, label
    let mut sparse_dim: Option<usize> = None;
    let mut dense_dim: Option<usize> = None;
    for item in lines(&feat_path)? {
        let (no, line) = item?;
        if no == 1 {
            if let Some(at) = line.find("feature_amount:") {
                let rest = &line[at + "feature_amount:".len()..];
                let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                let amount: usize = parse_field(&feat_path, no, &num, "a feature count")?;
                if amount >= limits::MAX_FEATURE_DIM {
                    return Err(GraphError::Parse {
                        path: feat_path.clone(),
                        line: no,
                        msg: format!(
                            "feature_amount {amount} exceeds {} (strata_graph::limits::MAX_FEATURE_DIM)",
                            limits::MAX_FEATURE_DIM
                        ),
                    });
                }
                sparse_dim = Some(amount + 1);
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('\t').collect();
        if parts.len() != 3 {
            return Err(GraphError::Parse {
                path: feat_path.clone(),
                line: no,
                msg: format!("expected `id<TAB>features<TAB>label`, found {} tab-separated fields", parts.len()),
            });
        }
        let id: usize = parse_field(&feat_path, no, parts[0].trim(), "an integer node id")?;
        let label: i64 = parse_field(&feat_path, no, parts[2].trim(), "an integer label")?;
        limits::label(label).map_err(|msg| GraphError::Parse { path: feat_path.clone(), line: no, msg })?;
        let vals = parts[1].split(',').map(str::trim).filter(|s| !s.is_empty());
        if let Some(dim) = sparse_dim {
            let idx: Vec<i64> =
                vals.map(|v| parse_field(&feat_path, no, v, "a feature index")).collect::<Result<_>>()?;
            if let Some(&bad) = idx.iter().find(|&&i| i < 0 || i as usize >= dim) {
                return Err(GraphError::Parse {
                    path: feat_path.clone(),
                    line: no,
                    msg: format!("feature index {bad} outside 0..{dim}"),
                });
            }
            rows.push((id, Vec::new(), idx, label));
        } else {
            let dense: Vec<f32> =
                vals.map(|v| parse_field(&feat_path, no, v, "a numeric feature")).collect::<Result<_>>()?;
            match dense_dim {
                None => dense_dim = Some(dense.len()),
                Some(d) if d != dense.len() => {
                    return Err(GraphError::Parse {
                        path: feat_path.clone(),
                        line: no,
                        msg: format!("ragged row: {} features where earlier rows have {d}", dense.len()),
                    })
                }
                _ => {}
            }
            rows.push((id, dense, Vec::new(), label));
        }
    }
    let n = rows.len();
    let mut seen = vec![false; n];
    for r in &rows {
        if r.0 >= n || std::mem::replace(&mut seen[r.0], true) {
            return Err(GraphError::invalid(
                feat_path.display(),
                format!("node ids must be exactly 0..{n} (found {} out of range or repeated)", r.0),
            ));
        }
    }
    rows.sort_by_key(|r| r.0);
    let labels: Vec<i64> = rows.iter().map(|r| r.3).collect();
    let features = if let Some(dim) = sparse_dim {
        let row_ids: Vec<i64> = rows.iter().flat_map(|r| std::iter::repeat_n(r.0 as i64, r.2.len())).collect();
        let col_ids: Vec<i64> = rows.iter().flat_map(|r| r.2.iter().copied()).collect();
        Features::Sparse(CsrMatrix::from_coo(&feat_path.display().to_string(), n, dim, &row_ids, &col_ids, None)?)
    } else {
        let d = dense_dim.unwrap_or(0);
        Features::dense(n, d, rows.into_iter().flat_map(|r| r.1).collect())
    };

    let edge_path = dir.join("out1_graph_edges.txt");
    let mut edges = Vec::new();
    for item in lines(&edge_path)? {
        let (no, line) = item?;
        if no == 1 || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 2 {
            return Err(GraphError::Parse {
                path: edge_path.clone(),
                line: no,
                msg: format!("expected `src<TAB>dst`, found {} fields", f.len()),
            });
        }
        edges.push((parse_field(&edge_path, no, f[0], "a node id")?, parse_field(&edge_path, no, f[1], "a node id")?));
    }
    let context = format!("{} (nodes are the rows of {})", edge_path.display(), feat_path.display());
    let graph = CsrGraph::from_edges(&context, n, &edges, None)?;

    let mut splits = Vec::new();
    let split_dir = dir.join("splits");
    if split_dir.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(&split_dir)
            .map_err(|e| GraphError::io(&split_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "npz"))
            .collect();
        // Natural order: split_..._9 before split_..._10.
        files.sort_by_key(|p| {
            let s = p.file_stem().unwrap().to_string_lossy().to_string();
            let num: String =
                s.chars().rev().take_while(|c| c.is_ascii_digit()).collect::<Vec<_>>().into_iter().rev().collect();
            (num.parse::<usize>().unwrap_or(usize::MAX), s)
        });
        for f in files {
            let mut npz = Npz::open(&f)?;
            let mut mask = |k: &str| -> Result<Vec<bool>> {
                let m = npz.i64s(k, "a boolean node mask")?;
                if m.len() != n {
                    return Err(GraphError::invalid(f.display(), format!("{k} has {} entries for {n} nodes", m.len())));
                }
                Ok(m.into_iter().map(|v| v != 0).collect())
            };
            let (tr, va, te) = (mask("train_mask")?, mask("val_mask")?, mask("test_mask")?);
            let split = Split::from_masks(&tr, &va, &te);
            split.check(&f.display().to_string(), n)?;
            splits.push(split);
        }
    }
    let mut d = Dataset::new(feat_path.display().to_string(), graph, features, labels, splits)?;
    d.name = dir.file_name().map_or("geom-gcn".into(), |s| s.to_string_lossy().to_string());
    Ok(d)
}
