//! A corpus of hostile input files against every subcommand that reads a graph: each run must
//! end by itself (no hang on a FIFO, no allocation sized by a header), with exit ≠ 0, an error
//! that names the file, and no panic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// 64 KiB of deterministic noise.
fn noise() -> Vec<u8> {
    let mut x = 0x2545f4914f6cdd1du64;
    (0..1 << 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The hostile files, each with the flags that hand it to a command (an edge list's companions
/// are sound, so the file under test is the one refused).
fn corpus(dir: &Path) -> Vec<(String, Vec<String>)> {
    let p = |name: &str| dir.join(name);
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(p(name), bytes).unwrap();
        s(&p(name))
    };
    let karate = strata_graph::load("karate", None).unwrap();
    let valid = strata_graph::formats::graph_npz(&karate).to_bytes();
    let good_edges = write("good-edges.txt", b"0 1\n1 2\n2 3\n3 0\n");
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    let mut npz = |name: &str, path: String| cases.push((name.to_string(), vec!["--npz".into(), path]));
    npz("empty.npz", write("empty.npz", b""));
    npz("noise.npz", write("noise.npz", &noise()));
    npz("truncated.npz", write("truncated.npz", &valid[..valid.len() / 3]));
    let mut w = strata_graph::npz::NpzWriter::new();
    w.i64s("labels", &[3], &[0, 1, 0]);
    npz("labels-only.npz", write("labels-only.npz", &w.to_bytes()));
    // A valid graph whose index array declares 2^40 entries and holds eight bytes.
    let mut w = strata_graph::npz::NpzWriter::new();
    w.raw("adj_data", "<f4", &[4], vec![0; 16]);
    w.raw("adj_indices", "<i8", &[1 << 40], vec![0; 8]);
    w.i64s("adj_indptr", &[3], &[0, 2, 4]);
    w.i64s("adj_shape", &[2], &[2, 2]);
    w.i64s("labels", &[2], &[0, 1]);
    npz("huge-shape.npz", write("huge-shape.npz", &w.to_bytes()));
    std::fs::create_dir(p("directory.npz")).unwrap();
    npz("directory.npz", s(&p("directory.npz")));
    std::os::unix::fs::symlink("/dev/zero", p("dev-zero.npz")).unwrap();
    npz("dev-zero.npz", s(&p("dev-zero.npz")));
    assert!(Command::new("mkfifo").arg(p("fifo.npz")).status().unwrap().success());
    npz("fifo.npz", s(&p("fifo.npz")));
    let mut edges = |name: &str, path: String| cases.push((name.to_string(), vec!["--edges".into(), path]));
    edges("noise.txt", write("noise.txt", &noise()));
    edges("huge-id.txt", write("huge-id.txt", b"0 268435455\n"));
    edges("nan-weight.txt", write("nan-weight.txt", b"0 1 nan\n1 2 1\n"));
    edges("typo.txt", write("typo.txt", b"1O 2\n2 3\n"));
    assert!(Command::new("mkfifo").arg(p("fifo.txt")).status().unwrap().success());
    edges("fifo.txt", s(&p("fifo.txt")));
    let mut with_edges = |name: &str, flag: &str, path: String| {
        cases.push((name.to_string(), vec!["--edges".into(), good_edges.clone(), flag.into(), path]))
    };
    with_edges("ragged.csv", "--features", write("ragged.csv", b"1,2\n3\n4,5\n6,7\n"));
    with_edges("noise.npy", "--features", write("noise.npy", &noise()));
    std::os::unix::fs::symlink("/dev/zero", p("dev-zero.npy")).unwrap();
    with_edges("dev-zero.npy", "--features", s(&p("dev-zero.npy")));
    with_edges("labels-words.txt", "--labels", write("labels-words.txt", b"a\nb\nc\nd\n"));
    cases
}

#[test]
fn hostile_files_end_in_an_error_naming_them_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let cases = corpus(dir.path());
    let out = dir.path().join("out");
    let commands: Vec<Vec<String>> = [
        &["train", "--epochs", "1"][..],
        &["probe"],
        &["refine", "--runs", "0"],
        &["linkpred", "train", "--epochs", "1", "--out", out.to_str().unwrap()],
        &["launch", "--stages", "2", "--epochs", "1"],
    ]
    .iter()
    .map(|c| c.iter().map(|s| s.to_string()).collect())
    .collect();
    let mut wrong = Vec::new();
    for cmd in &commands {
        for (name, flags) in &cases {
            let args: Vec<String> = cmd.iter().chain(flags).cloned().collect();
            let mut strata = Command::new(strata_tests::strata_bin());
            strata.args(&args);
            let (status, err) = strata_tests::run_bounded(strata, Duration::from_secs(60));
            let what = format!("strata {}", args.join(" "));
            match status {
                None => wrong.push(format!("{what}: still running after 60 s")),
                Some(s) if s.success() => wrong.push(format!("{what}: accepted")),
                Some(_) if err.contains("panicked") => wrong.push(format!("{what}: panicked: {err}")),
                Some(_) if !err.contains(name.as_str()) => {
                    wrong.push(format!("{what}: the error does not name {name}: {err}"))
                }
                Some(_) => {}
            }
        }
    }
    eprintln!("{} hostile files × {} commands", cases.len(), commands.len());
    assert!(
        wrong.is_empty(),
        "{} of {} runs went wrong:\n{}",
        wrong.len(),
        cases.len() * commands.len(),
        wrong.join("\n")
    );
}
