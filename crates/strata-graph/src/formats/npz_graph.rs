use crate::csr::CsrMatrix;
use crate::dataset::{Dataset, Features};
use crate::error::{GraphError, Result};
use crate::graph::CsrGraph;
use crate::npz::Npz;
use crate::split::Split;
use std::path::Path;

/// Reads the CSR matrix stored under `prefix` (`{prefix}shape`, `indptr`, `indices`, `data`).
pub fn read_csr(npz: &mut Npz, prefix: &str, context: &str) -> Result<CsrMatrix> {
    let key = |k: &str| format!("{prefix}{k}");
    let shape = npz.i64s(&key("shape"), "the matrix shape, int64[2]")?;
    if shape.len() != 2 || shape.iter().any(|&s| s < 0) {
        return Err(GraphError::Npy {
            path: npz.path().into(),
            key: key("shape"),
            msg: format!("expected two non-negative sizes, found {shape:?}"),
        });
    }
    let indptr = npz.i64s(&key("indptr"), "CSR row pointers")?;
    let indices = npz.i64s(&key("indices"), "CSR column indices")?;
    let data = npz.f32s(&key("data"), "CSR values")?;
    let values = if data.iter().all(|&v| v == 1.0) { None } else { Some(data) };
    CsrMatrix::from_parts(context, shape[0] as usize, shape[1] as usize, indptr, indices, values)
}

/// Reads a graph `.npz` in the gnn-benchmark / nettack layout (`adj_*`, optional `attr_*`,
/// `labels`, optional `idx_train`/`idx_val`/`idx_test`). Optional keys that hold pickled objects
/// or strings (`idx_to_node`, `node_names`, ...) are skipped, never decoded. Graphs without
/// features get the identity. The adjacency is returned as stored (not symmetrised).
pub fn read_graph_npz(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let ctx = path.display().to_string();
    let mut npz = Npz::open(path)?;
    let adj = read_csr(&mut npz, "adj_", &format!("{ctx}: adjacency"))?;
    let graph = CsrGraph::from_adjacency(&ctx, adj)?;
    let n = graph.num_nodes();
    let features = if npz.contains("attr_data") {
        let f = read_csr(&mut npz, "attr_", &format!("{ctx}: features"))?;
        Features::Sparse(f)
    } else if npz.contains("attr_matrix") {
        let data = npz.f32s("attr_matrix", "dense features")?;
        if n == 0 || data.len() % n != 0 {
            return Err(GraphError::invalid(
                &ctx,
                format!("attr_matrix has {} values, not a multiple of {n} rows", data.len()),
            ));
        }
        Features::dense(n, data.len() / n, data)
    } else {
        Features::identity(n)
    };
    let labels = if npz.contains("labels") { npz.i64s("labels", "integer class labels")? } else { vec![-1; n] };
    let mut splits = Vec::new();
    if npz.contains("idx_train") {
        let mut ids = |key: &str, what: &str| -> Result<Vec<usize>> {
            let v = npz.i64s(key, what)?;
            match v.iter().find(|&&i| i < 0 || i as u64 >= n as u64) {
                Some(&bad) => Err(GraphError::Npy {
                    path: path.into(),
                    key: key.into(),
                    msg: format!("node id {bad} outside 0..{n}"),
                }),
                None => Ok(v.into_iter().map(|i| i as usize).collect()),
            }
        };
        splits.push(Split {
            train: ids("idx_train", "training node ids")?,
            val: ids("idx_val", "validation node ids")?,
            test: ids("idx_test", "test node ids")?,
        });
    }
    // Validate under the file's path so errors name it, then use the short name.
    let mut d = Dataset::new(&ctx, graph, features, labels, splits)?;
    d.name = path.file_stem().map_or("graph".into(), |s| s.to_string_lossy().to_string());
    Ok(d)
}

/// Reads a `scipy.sparse.save_npz` CSR matrix (deflated entries `data`, `indices`, `indptr`,
/// `shape`, `format`).
pub fn read_scipy_sparse(path: impl AsRef<Path>) -> Result<CsrMatrix> {
    let path = path.as_ref();
    let ctx = path.display().to_string();
    let mut npz = Npz::open(path)?;
    if npz.contains("format") {
        let fmt = npz.array("format", "the sparse format")?;
        let text = String::from_utf8_lossy(fmt.bytes()).trim_end_matches('\0').to_string();
        if text != "csr" {
            return Err(GraphError::invalid(&ctx, format!("sparse format `{text}` is not supported (expected csr)")));
        }
    }
    read_csr(&mut npz, "", &ctx)
}

/// Writes a dataset in the gnn-benchmark npz layout that [`read_graph_npz`] reads (adjacency,
/// features as `attr_*` CSR or a dense `attr_matrix`, labels, and the first split if any).
pub fn graph_npz(d: &Dataset) -> crate::npz::NpzWriter {
    let mut w = crate::npz::NpzWriter::new();
    w.csr("adj_", d.graph.adjacency());
    w.features(&d.features);
    w.i64s("labels", &[d.labels.len()], &d.labels);
    if let Some(s) = d.splits.first() {
        let ids = |v: &[usize]| v.iter().map(|&i| i as i64).collect::<Vec<_>>();
        w.i64s("idx_train", &[s.train.len()], &ids(&s.train));
        w.i64s("idx_val", &[s.val.len()], &ids(&s.val));
        w.i64s("idx_test", &[s.test.len()], &ids(&s.test));
    }
    w
}
