//! Bad input gives a clear error naming the file and what is wrong — never a panic.

use std::io::Write;
use strata_graph::formats::{read_edge_list, read_geom_gcn, read_graph_npz, read_ogb_raw, read_scipy_sparse};
use strata_graph::npz::NpzWriter;
use strata_graph::{CsrMatrix, Split};

fn tiny_graph_npz() -> NpzWriter {
    let adj = CsrMatrix::from_coo("t", 3, 3, &[0, 1, 1, 2], &[1, 0, 2, 1], None).unwrap();
    let feats = CsrMatrix::from_coo("t", 3, 2, &[0, 1, 2], &[0, 1, 0], None).unwrap();
    let mut w = NpzWriter::new();
    w.csr("adj_", &adj).csr("attr_", &feats).i64s("labels", &[3], &[0, 1, 0]);
    w
}

fn msg<T: std::fmt::Debug>(r: Result<T, strata_graph::GraphError>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn a_valid_npz_roundtrips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.npz");
    tiny_graph_npz().write(&p).unwrap();
    let d = read_graph_npz(&p).unwrap();
    assert_eq!(d.num_nodes(), 3);
    assert_eq!(d.graph.num_undirected_edges(), 2);
    assert_eq!(d.features.dim(), 2);
}

#[test]
fn truncated_zip_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.npz");
    let bytes = tiny_graph_npz().to_bytes();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = msg(read_graph_npz(&p));
    assert!(e.contains("cut.npz") && (e.contains("truncated") || e.contains("zip")), "{e}");
    std::fs::write(&p, b"not a zip at all").unwrap();
    assert!(msg(read_scipy_sparse(&p)).contains("cut.npz"));
}

#[test]
fn wrong_dtype_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.npz");
    // Float indices: a common mistake when arrays go through pandas.
    let mut fresh = NpzWriter::new();
    let adj = CsrMatrix::from_coo("t", 3, 3, &[0, 1, 1, 2], &[1, 0, 2, 1], None).unwrap();
    fresh.f32s("adj_data", &[4], &adj.values_or_ones()).f32s("adj_indices", &[4], &[1.0, 0.0, 2.0, 1.0]);
    fresh.i32s("adj_indptr", &[4], &[0, 1, 3, 4]).i64s("adj_shape", &[2], &[3, 3]);
    fresh.write(&p).unwrap();
    let e = msg(read_graph_npz(&p));
    assert!(
        e.contains("g.npz") && e.contains("adj_indices") && e.contains("dtype <f4") && e.contains("integer"),
        "{e}"
    );
}

#[test]
fn out_of_range_node_id_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.npz");
    let mut w = NpzWriter::new();
    w.f32s("adj_data", &[2], &[1.0, 1.0]).i32s("adj_indices", &[2], &[1, 7]);
    w.i32s("adj_indptr", &[4], &[0, 1, 2, 2]).i64s("adj_shape", &[2], &[3, 3]);
    w.write(&p).unwrap();
    let e = msg(read_graph_npz(&p));
    assert!(e.contains("g.npz") && e.contains("node id 7 out of range"), "{e}");

    let el = dir.path().join("edges.txt");
    std::fs::write(&el, "0 1\n1 2\n").unwrap();
    let e = msg(read_edge_list(&el).unwrap().to_graph("edges.txt", Some(2)));
    assert!(e.contains("node id 2 out of range"), "{e}");

    let split = Split { train: vec![0, 5], val: vec![], test: vec![] };
    assert!(split.check("split.json", 3).unwrap_err().to_string().contains("node id 5 out of range"));
}

#[test]
fn ragged_csv_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("edges.csv");
    std::fs::write(&p, "src,dst\n0,1\n1,2,0.5\n").unwrap();
    let e = msg(read_edge_list(&p));
    assert!(e.contains("edges.csv:3") && e.contains("ragged"), "{e}");
    std::fs::write(&p, "0,1\n1,x\n").unwrap();
    let e = msg(read_edge_list(&p));
    assert!(e.contains("edges.csv:2") && e.contains("`x`"), "{e}");
}

#[test]
fn nan_feature_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("webkb");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("out1_graph_edges.txt"), "node_id\tnode_id\n0\t1\n").unwrap();
    std::fs::write(root.join("out1_node_feature_label.txt"), "node_id\tfeature\tlabel\n0\t1,0\t0\n1\tnan,1\t1\n")
        .unwrap();
    let e = msg(read_geom_gcn(&root));
    assert!(e.contains("out1_node_feature_label.txt") && e.contains("non-finite") && e.contains("row 1"), "{e}");

    let p = dir.path().join("g.npz");
    let feats = CsrMatrix::from_coo("t", 3, 2, &[0, 1, 2], &[0, 1, 0], Some(&[1.0, f32::NAN, 1.0])).unwrap();
    let mut fresh = NpzWriter::new();
    let adj = CsrMatrix::from_coo("t", 3, 3, &[0, 1, 1, 2], &[1, 0, 2, 1], None).unwrap();
    fresh.csr("adj_", &adj).csr("attr_", &feats).i64s("labels", &[3], &[0, 1, 0]);
    fresh.write(&p).unwrap();
    let e = msg(read_graph_npz(&p));
    assert!(e.contains("g.npz") && e.contains("non-finite") && e.contains("row 1, column 1"), "{e}");
}

#[test]
fn missing_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.npz");
    let mut w = NpzWriter::new();
    w.i64s("labels", &[1], &[0]);
    w.write(&p).unwrap();
    let e = msg(read_graph_npz(&p));
    assert!(e.contains("missing key `adj_shape`"), "{e}");
}

#[test]
fn edge_lists_in_every_dialect() {
    let dir = tempfile::tempdir().unwrap();
    let cases =
        [("a.txt", "# comment\n0 1\n1\t2\n\n"), ("b.tsv", "0\t1\n1\t2\n"), ("c.csv", "source,target\n0,1\n1,2\n")];
    for (name, text) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let el = read_edge_list(&p).unwrap();
        assert_eq!(el.edges, vec![(0, 1), (1, 2)], "{name}");
    }
    let gz = dir.path().join("w.txt.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(b"0 1 0.5\n2 0 2.0\n").unwrap();
    enc.finish().unwrap();
    let el = read_edge_list(&gz).unwrap();
    assert_eq!(el.weights.as_deref(), Some(&[0.5f32, 2.0][..]));
    let g = el.to_graph("w", None).unwrap();
    assert_eq!(g.num_nodes(), 3);
    // A corrupt gzip names the file.
    std::fs::write(&gz, b"\x1f\x8b\x08garbage").unwrap();
    assert!(msg(read_edge_list(&gz)).contains("w.txt.gz"));
}

fn gz(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
}

#[test]
fn ogb_raw_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ogbn_tiny");
    gz(&root.join("raw/edge.csv.gz"), "0,1\n1,2\n2,3\n");
    gz(&root.join("raw/node-feat.csv.gz"), "0.1,0.2\n0.3,0.4\n0.5,0.6\n0.7,0.8\n");
    gz(&root.join("raw/node-label.csv.gz"), "0\n1\nnan\n1\n");
    gz(&root.join("raw/num-node-list.csv.gz"), "4\n");
    gz(&root.join("split/time/train.csv.gz"), "0\n1\n");
    gz(&root.join("split/time/valid.csv.gz"), "2\n");
    gz(&root.join("split/time/test.csv.gz"), "3\n");
    let d = read_ogb_raw(&root).unwrap();
    assert_eq!(d.num_nodes(), 4);
    assert_eq!(d.graph.num_entries(), 3);
    assert_eq!(d.features.dim(), 2);
    assert_eq!(d.labels, vec![0, 1, -1, 1]);
    assert_eq!(d.splits[0], Split { train: vec![0, 1], val: vec![2], test: vec![3] });
    // A ragged feature row and an out-of-range split id are errors naming the file.
    gz(&root.join("split/time/test.csv.gz"), "9\n");
    let e = msg(read_ogb_raw(&root));
    assert!(e.contains("test.csv.gz") && e.contains("node id 9 out of range"), "{e}");
    gz(&root.join("raw/node-feat.csv.gz"), "0.1,0.2\n0.3\n0.5,0.6\n0.7,0.8\n");
    let e = msg(read_ogb_raw(&root));
    assert!(e.contains("node-feat.csv.gz:2") && e.contains("ragged"), "{e}");
}
