//! Fuzz-style tests of the file readers on stable Rust: real files (and small generated ones)
//! mutated by truncation, bit flips, hostile tokens and huge declared sizes. Every case must end
//! in `Ok` or in an error that names the file — never a panic, never an allocation sized by a
//! forged header (that would abort the test binary).
//!
//! Cases per reader: 200 under `make test`, 5 000 under `make test-full` (`STRATA_FULL=1`), or
//! `STRATA_FUZZ_CASES`. Each test prints how many cases ran and how many the reader refused.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use strata_graph::formats::{read_edge_list, read_geom_gcn, read_graph_npz, read_ogb_raw, read_scipy_sparse};
use strata_graph::npz::NpzWriter;
use strata_graph::{CsrMatrix, GraphError};

fn cases() -> u32 {
    if let Some(n) = std::env::var("STRATA_FUZZ_CASES").ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    if std::env::var("STRATA_FULL").is_ok_and(|v| v == "1") {
        5000
    } else {
        200
    }
}

/// Tokens that have broken readers: negative and absurd ids, overflowing integers, non-finite
/// and non-numeric values, non-ASCII text.
const NASTY: &[&str] = &[
    "-1",
    "-999999999999",
    "1000000000",
    "2147483648",
    "18446744073709551615",
    "99999999999999999999999999",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "",
    "é",
    "0x10",
    "1.5",
    "\u{0}",
];

/// One way to damage a file.
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(usize),
    FlipBit(usize, u8),
    /// Overwrite four bytes with a large little-endian u32 (a forged length field).
    HugeU32(usize, u32),
    /// Replace the token around a position with a hostile one (text files).
    Token(usize, usize),
    DuplicateLine(usize),
    DeleteLine(usize),
    /// Rewrite every `'shape': (...)` of the npy headers inside (stored npz entries).
    NpyShape(u64),
    /// Forge the sizes in every zip local and central header.
    ZipSizes(u32),
    /// Damage one `.npy` entry of an archive and re-zip it with valid checksums, so the damage
    /// reaches the npy parser instead of stopping at the zip CRC.
    InEntry(usize, Box<Mutation>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let leaf = plain_mutation();
    prop_oneof![plain_mutation(), (any::<usize>(), leaf).prop_map(|(k, m)| Mutation::InEntry(k, Box::new(m)))]
}

fn plain_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        (any::<usize>(), prop_oneof![Just(u32::MAX), Just(0x7fff_ffff), (1u32 << 20)..u32::MAX])
            .prop_map(|(p, v)| Mutation::HugeU32(p, v)),
        (any::<usize>(), 0..NASTY.len()).prop_map(|(p, t)| Mutation::Token(p, t)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        prop_oneof![Just(u64::MAX), Just(1u64 << 40), Just(1u64 << 62), any::<u64>()].prop_map(Mutation::NpyShape),
        prop_oneof![Just(u32::MAX), Just(0), any::<u32>()].prop_map(Mutation::ZipSizes),
    ]
}

fn line_bounds(b: &[u8], pos: usize) -> (usize, usize) {
    let start = b[..pos].iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
    let end = b[pos..].iter().position(|&c| c == b'\n').map_or(b.len(), |i| pos + i + 1);
    (start, end)
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

fn apply(m: &Mutation, original: &[u8]) -> Vec<u8> {
    let mut b = original.to_vec();
    if b.is_empty() {
        return b;
    }
    let at = |p: usize| p % b.len();
    match *m {
        Mutation::Truncate(p) => b.truncate(at(p)),
        Mutation::FlipBit(p, bit) => {
            let i = at(p);
            b[i] ^= 1 << bit;
        }
        Mutation::HugeU32(p, v) => {
            let i = at(p).min(b.len().saturating_sub(4));
            let n = (b.len() - i).min(4);
            b[i..i + n].copy_from_slice(&v.to_le_bytes()[..n]);
        }
        Mutation::Token(p, t) => {
            let i = at(p);
            let sep = |c: u8| matches!(c, b' ' | b'\t' | b',' | b'\n' | b'\r');
            let start = b[..i].iter().rposition(|&c| sep(c)).map_or(0, |k| k + 1);
            let end = b[i..].iter().position(|&c| sep(c)).map_or(b.len(), |k| i + k);
            b.splice(start..end.max(start), NASTY[t].bytes());
        }
        Mutation::DuplicateLine(p) => {
            let (s, e) = line_bounds(&b, at(p));
            let line = b[s..e].to_vec();
            b.splice(e..e, line);
        }
        Mutation::DeleteLine(p) => {
            let (s, e) = line_bounds(&b, at(p));
            b.drain(s..e);
        }
        Mutation::NpyShape(v) => {
            for i in find_all(original, b"'shape': (") {
                let from = i + b"'shape': (".len();
                if let Some(len) = original[from..].iter().position(|&c| c == b')') {
                    // Same length keeps the zip entry sizes right, so the npy parser sees it.
                    let text = format!("{v}, {v}");
                    let mut repl = text.into_bytes();
                    repl.resize(len, b' ');
                    b[from..from + len].copy_from_slice(&repl);
                }
            }
        }
        Mutation::InEntry(k, ref inner) => {
            return mutate_entry(original, k, inner).unwrap_or_else(|| apply(inner, original))
        }
        Mutation::ZipSizes(v) => {
            for (sig, offsets) in [(&b"PK\x03\x04"[..], &[18usize, 22][..]), (&b"PK\x01\x02"[..], &[20, 24][..])] {
                for i in find_all(original, sig) {
                    for &o in offsets {
                        if i + o + 4 <= b.len() {
                            b[i + o..i + o + 4].copy_from_slice(&v.to_le_bytes());
                        }
                    }
                }
            }
        }
    }
    b
}

fn mutate_entry(archive: &[u8], k: usize, m: &Mutation) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut src = zip::ZipArchive::new(std::io::Cursor::new(archive)).ok()?;
    let target = k % src.len().max(1);
    let mut out = std::io::Cursor::new(Vec::new());
    let mut dst = zip::ZipWriter::new(&mut out);
    for i in 0..src.len() {
        let mut e = src.by_index(i).ok()?;
        let method = e.compression();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).ok()?;
        if i == target {
            bytes = apply(m, &bytes);
        }
        dst.start_file(e.name().to_string(), zip::write::SimpleFileOptions::default().compression_method(method))
            .ok()?;
        dst.write_all(&bytes).ok()?;
    }
    dst.finish().ok()?;
    Some(out.into_inner())
}

/// Runs `cases()` mutations of `seeds` through `read`, which returns the reader's result for a
/// file written at the path it is given. An error must name `must_name`.
fn fuzz(
    what: &str,
    seeds: &[(PathBuf, Vec<u8>)],
    read: impl Fn(&Path) -> Result<(), GraphError>,
    must_name: &dyn Fn(&Path) -> String,
) {
    assert!(!seeds.is_empty());
    // The unmutated seeds must read: otherwise every case would be an error and test nothing.
    for (p, bytes) in seeds {
        std::fs::write(p, bytes).unwrap();
    }
    for (p, _) in seeds {
        read(p).unwrap_or_else(|e| panic!("{what}: seed {} does not read: {e}", p.display()));
    }
    let ran = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let n = cases();
    let mut runner = TestRunner::new(Config { cases: n, failure_persistence: None, ..Config::default() });
    let result = runner.run(&(0..seeds.len(), mutation()), |(k, m)| {
        let (path, original) = &seeds[k];
        std::fs::write(path, apply(&m, original)).unwrap();
        let outcome = read(path);
        std::fs::write(path, original).unwrap();
        ran.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = outcome {
            refused.fetch_add(1, Ordering::Relaxed);
            let name = must_name(path);
            let text = e.to_string();
            if !text.contains(&name) {
                return Err(TestCaseError::fail(format!("{m:?}: error does not name `{name}`: {text}")));
            }
        }
        Ok(())
    });
    let (ran, refused) = (ran.into_inner(), refused.into_inner());
    println!(
        "fuzz {what}: {ran} cases ran, {refused} refused with an error naming the file, {} read, no panic",
        ran - refused
    );
    if let Err(e) = result {
        panic!("fuzz {what}: {e}");
    }
    assert_eq!(ran as u32, n, "every case ran");
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into()
}

fn real(rel: &str) -> Option<Vec<u8>> {
    strata_graph::registry::locate_or_skip(rel).map(|p| std::fs::read(p).unwrap())
}

fn tiny_npz() -> Vec<u8> {
    let adj = CsrMatrix::from_coo("t", 4, 4, &[0, 1, 1, 2, 2, 3], &[1, 0, 2, 1, 3, 2], None).unwrap();
    let feats = CsrMatrix::from_coo("t", 4, 3, &[0, 1, 2, 3], &[0, 1, 2, 0], None).unwrap();
    let mut w = NpzWriter::new();
    w.csr("adj_", &adj).csr("attr_", &feats).i64s("labels", &[4], &[0, 1, 0, 1]);
    w.i64s("idx_train", &[1], &[0]).i64s("idx_val", &[1], &[1]).i64s("idx_test", &[2], &[2, 3]);
    w.to_bytes()
}

#[test]
fn npz_readers_survive_mutated_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds = vec![(dir.path().join("tiny.npz"), tiny_npz())];
    if let Some(b) = real("nettack/polblogs.npz") {
        seeds.push((dir.path().join("polblogs.npz"), b));
    }
    fuzz("graph npz", &seeds, |p| read_graph_npz(p).map(drop), &file_name);
    // scipy.sparse.save_npz files are deflated: the same mutations go through the inflater.
    let m = CsrMatrix::from_coo("t", 3, 5, &[0, 1, 2, 2], &[4, 0, 1, 3], Some(&[1.0, 2.0, 3.0, 4.0])).unwrap();
    let mut w = NpzWriter::new();
    w.csr("", &m).raw("format", "|S3", &[], b"csr".to_vec());
    let deflated = deflate_npz(&w.to_bytes());
    fuzz("scipy sparse npz", &[(dir.path().join("m.npz"), deflated)], |p| read_scipy_sparse(p).map(drop), &file_name);
}

/// Rewrites a stored archive with deflated entries, as `scipy.sparse.save_npz` writes them.
fn deflate_npz(stored: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut src = zip::ZipArchive::new(std::io::Cursor::new(stored)).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    let mut dst = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for i in 0..src.len() {
        let mut e = src.by_index(i).unwrap();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        dst.start_file(e.name().to_string(), opts).unwrap();
        dst.write_all(&bytes).unwrap();
    }
    dst.finish().unwrap();
    out.into_inner()
}

#[test]
fn edge_list_reader_survives_mutated_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds = vec![(dir.path().join("weighted.tsv"), b"# u v w\n0\t1\t0.5\n1\t2\t2\n2\t0\t1e-3\n".to_vec())];
    if let Some(b) = real("karate/edges.txt") {
        seeds.push((dir.path().join("karate.txt"), b.clone()));
        seeds.push((dir.path().join("karate.txt.gz"), gzip(&b)));
    }
    fuzz("edge list", &seeds, |p| read_edge_list(p).and_then(|e| e.to_graph("fuzz", None)).map(drop), &file_name);
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b).unwrap();
    enc.finish().unwrap()
}

#[test]
fn ogb_reader_survives_mutated_files() {
    // A small OGB raw directory, some files gzipped as OGB ships them.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ogbn-fuzz");
    std::fs::create_dir_all(root.join("raw")).unwrap();
    std::fs::create_dir_all(root.join("split/random")).unwrap();
    let n = 12;
    let edges: String = (0..n).map(|i| format!("{},{}\n", i, (i * 5 + 1) % n)).collect();
    let feats: String =
        (0..n).map(|i| format!("{:.3},{:.3},-{:.3}\n", i as f32 * 0.1, 1.0 / (i + 1) as f32, i as f32)).collect();
    let labels: String = (0..n).map(|i| if i == 3 { "nan\n".to_string() } else { format!("{}\n", i % 3) }).collect();
    let files = [
        (root.join("raw/edge.csv.gz"), gzip(edges.as_bytes())),
        (root.join("raw/node-feat.csv"), feats.into_bytes()),
        (root.join("raw/node-label.csv.gz"), gzip(labels.as_bytes())),
        (root.join("raw/num-node-list.csv"), format!("{n}\n").into_bytes()),
        (root.join("split/random/train.csv"), b"0\n1\n2\n4\n5\n".to_vec()),
        (root.join("split/random/valid.csv"), b"6\n7\n8\n".to_vec()),
        (root.join("split/random/test.csv.gz"), gzip(b"9\n10\n11\n")),
    ];
    // A split part's errors may name its scheme directory (overlap between train and valid).
    fuzz("OGB raw", &files, |_| read_ogb_raw(&root).map(drop), &|p: &Path| {
        if p.parent().unwrap().parent().unwrap().ends_with("split") {
            p.parent().unwrap().display().to_string()
        } else {
            file_name(p)
        }
    });
}

#[test]
fn geom_gcn_reader_survives_mutated_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("texas");
    std::fs::create_dir_all(root.join("splits")).unwrap();
    let Some(src) = strata_graph::registry::locate_or_skip("webkb/texas/out1_node_feature_label.txt") else { return };
    let src = src.parent().unwrap().to_path_buf();
    let split = "texas_split_0.6_0.2_0.npz";
    let files = [
        (root.join("out1_node_feature_label.txt"), std::fs::read(src.join("out1_node_feature_label.txt")).unwrap()),
        (root.join("out1_graph_edges.txt"), std::fs::read(src.join("out1_graph_edges.txt")).unwrap()),
        (root.join("splits").join(split), std::fs::read(src.join("splits").join(split)).unwrap()),
    ];
    fuzz("Geom-GCN", &files, |_| read_geom_gcn(&root).map(drop), &file_name);
}
