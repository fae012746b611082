use super::text::{fields, lines, parse_field};
use crate::error::{GraphError, Result};
use crate::graph::CsrGraph;
use crate::limits;
use std::path::Path;

/// A parsed edge list: 0-based ids and optional weights (third column).
#[derive(Clone, Debug)]
pub struct EdgeList {
    pub edges: Vec<(i64, i64)>,
    pub weights: Option<Vec<f32>>,
    /// Lines that were comments or blank.
    pub skipped: usize,
}

impl EdgeList {
    /// Largest id + 1.
    pub fn implied_nodes(&self) -> usize {
        self.edges.iter().map(|&(u, v)| u.max(v) + 1).max().unwrap_or(0) as usize
    }
    /// Builds the graph; ids must be below `num_nodes` (default: the implied count).
    pub fn to_graph(&self, context: &str, num_nodes: Option<usize>) -> Result<CsrGraph> {
        let n = num_nodes.unwrap_or_else(|| self.implied_nodes());
        CsrGraph::from_edges(context, n, &self.edges, self.weights.as_deref())
    }
}

/// Reads `u v [w]` records separated by whitespace, tabs or commas, optionally gzip-compressed
/// (`.gz`). Lines starting with `#` or `%` are comments; a first line that does not parse as
/// numbers is taken as a header (one mixing numbers and words, like `1O 2`, is an error). Weights
/// must be finite and non-negative. Every record must have the same number of columns (2 or 3).
pub fn read_edge_list(path: impl AsRef<Path>) -> Result<EdgeList> {
    let path = path.as_ref();
    let mut edges = Vec::new();
    let mut weights: Vec<f32> = Vec::new();
    let mut columns: Option<usize> = None;
    let mut skipped = 0;
    for item in lines(path)? {
        let (no, line) = item?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('%') {
            skipped += 1;
            continue;
        }
        let f = fields(t);
        let number = |s: &&str| s.parse::<f64>().is_ok();
        if columns.is_none() && f.first().is_some_and(|s| !number(s)) {
            // A header names its columns; a line mixing numbers and words is a typo (`1O 2`).
            if let Some(n) = f.iter().find(|s| number(s)) {
                return Err(GraphError::Parse {
                    path: path.into(),
                    line: no,
                    msg: format!("`{}` is not a number, but `{n}` is: a header line names its columns (e.g. `src dst`), a record has only numbers", f[0]),
                });
            }
            skipped += 1; // header
            continue;
        }
        match columns {
            None if f.len() == 2 || f.len() == 3 => columns = Some(f.len()),
            None => {
                return Err(GraphError::Parse {
                    path: path.into(),
                    line: no,
                    msg: format!("expected `src dst` or `src dst weight`, found {} columns", f.len()),
                })
            }
            Some(c) if c != f.len() => {
                return Err(GraphError::Parse {
                    path: path.into(),
                    line: no,
                    msg: format!("ragged row: {} columns where earlier rows have {c}", f.len()),
                })
            }
            Some(_) => {}
        }
        let u: i64 = parse_field(path, no, f[0], "an integer node id")?;
        let v: i64 = parse_field(path, no, f[1], "an integer node id")?;
        for id in [u, v] {
            limits::node_id(id).map_err(|msg| GraphError::Parse { path: path.into(), line: no, msg })?;
        }
        edges.push((u, v));
        if f.len() == 3 {
            let w: f32 = parse_field(path, no, f[2], "a numeric weight")?;
            if !w.is_finite() || w < 0.0 {
                return Err(GraphError::Parse {
                    path: path.into(),
                    line: no,
                    msg: format!(
                        "weight {w}: weights must be finite and non-negative (the GCN and mean normalisations divide by weighted degrees)"
                    ),
                });
            }
            weights.push(w);
        }
    }
    Ok(EdgeList { edges, weights: (columns == Some(3)).then_some(weights), skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<EdgeList> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.txt");
        std::fs::write(&p, text).unwrap();
        read_edge_list(&p)
    }

    #[test]
    fn headers_typos_and_weights() {
        assert_eq!(read("src dst\n0 1\n1 2\n").unwrap().edges, vec![(0, 1), (1, 2)]);
        // A typo in the first record is not a header.
        let e = read("1O 2\n0 1\n").unwrap_err().to_string();
        assert!(e.contains("g.txt:1") && e.contains("`1O` is not a number"), "{e}");
        assert_eq!(read("0 1 0.5\n1 2 0\n").unwrap().weights, Some(vec![0.5, 0.0]));
        for bad in ["0 1 -0.5\n", "0 1 nan\n", "0 1 inf\n"] {
            let e = read(bad).unwrap_err().to_string();
            assert!(e.contains("g.txt:1") && e.contains("finite and non-negative"), "{bad}: {e}");
        }
    }
}
