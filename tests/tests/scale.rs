//! Graphs that do not fit one worker: every command reads any graph source, workers receive
//! only their share, and a per-process memory cap that stops single-process training does not
//! stop the same graph training across capped workers.

use std::io::Write;
use std::path::{Path, PathBuf};
use strata_graph::planted::{planted_partition, PlantedSpec};
use strata_graph::Features;
use strata_tests::{run_strata, HEAVY};

fn synth(dir: &Path, nodes: usize) -> PathBuf {
    let out = dir.join(format!("planted-{nodes}.npz"));
    let (ok, so, se) = run_strata(&[
        "data",
        "synth",
        "--nodes",
        &nodes.to_string(),
        "--degree",
        "10",
        "--features",
        "16",
        "--classes",
        "4",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok && so.contains(&format!("{nodes} nodes")), "{se}");
    out
}

fn json(path: &Path) -> serde_json::Value {
    strata_tests::read_json(path)
}

/// The same planted graph as text files: an edge list, feature rows, labels.
fn write_text_files(dir: &Path, spec: &PlantedSpec) -> (PathBuf, PathBuf, PathBuf) {
    let d = planted_partition(spec).unwrap();
    let (e, x, y) = (dir.join("edges.txt"), dir.join("features.csv"), dir.join("labels.txt"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&e).unwrap());
    writeln!(f, "# src dst").unwrap();
    for (u, v) in d.graph.edges().into_iter().filter(|&(u, v)| u < v) {
        writeln!(f, "{u} {v}").unwrap();
    }
    drop(f);
    let Features::Dense { cols, data, .. } = &d.features else { unreachable!() };
    let rows: Vec<String> =
        data.chunks(*cols).map(|r| r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")).collect();
    std::fs::write(&x, rows.join("\n")).unwrap();
    std::fs::write(&y, d.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n")).unwrap();
    (e, x, y)
}

/// The same graph in OGB's raw layout (`raw/*.csv`, `split/random/*.csv`).
fn write_ogb(dir: &Path, spec: &PlantedSpec) -> PathBuf {
    let d = planted_partition(spec).unwrap();
    let root = dir.join("ogbn-planted");
    std::fs::create_dir_all(root.join("raw")).unwrap();
    std::fs::create_dir_all(root.join("split/random")).unwrap();
    let edges: Vec<String> =
        d.graph.edges().into_iter().filter(|&(u, v)| u < v).map(|(u, v)| format!("{u},{v}")).collect();
    std::fs::write(root.join("raw/edge.csv"), edges.join("\n")).unwrap();
    let Features::Dense { cols, data, .. } = &d.features else { unreachable!() };
    let rows: Vec<String> =
        data.chunks(*cols).map(|r| r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")).collect();
    std::fs::write(root.join("raw/node-feat.csv"), rows.join("\n")).unwrap();
    std::fs::write(
        root.join("raw/node-label.csv"),
        d.labels.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    std::fs::write(root.join("raw/num-node-list.csv"), d.num_nodes().to_string()).unwrap();
    let s = &d.splits[0];
    for (name, ids) in [("train", &s.train), ("valid", &s.val), ("test", &s.test)] {
        std::fs::write(
            root.join(format!("split/random/{name}.csv")),
            ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n"),
        )
        .unwrap();
    }
    root
}

/// `strata launch` trains a generated npz, an edge list with feature and label files, and an
/// OGB raw directory; its report carries each worker's peak memory and the wire bytes.
#[test]
fn launch_trains_any_graph_source_and_reports_memory_per_worker() {
    let dir = tempfile::tempdir().unwrap();
    let npz = synth(dir.path(), 1200);
    let spec = PlantedSpec { nodes: 600, degree: 8.0, features: 8, classes: 3, seed: 5, ..Default::default() };
    let (e, x, y) = write_text_files(dir.path(), &spec);
    let ogb = write_ogb(dir.path(), &spec);
    let common = ["--model", "gcn", "--layers", "4", "--stages", "2", "--epochs", "30"];
    let sources: Vec<(&str, Vec<String>)> = vec![
        ("npz", vec!["--npz".into(), npz.display().to_string()]),
        (
            "edge list",
            vec![
                "--edges".into(),
                e.display().to_string(),
                "--features".into(),
                x.display().to_string(),
                "--labels".into(),
                y.display().to_string(),
            ],
        ),
        ("ogb", vec!["--ogb".into(), ogb.display().to_string()]),
    ];
    for (what, source) in sources {
        let report = dir.path().join(format!("{}.json", what.replace(' ', "-")));
        let mut args: Vec<&str> = vec!["launch"];
        args.extend(source.iter().map(String::as_str));
        args.extend(common);
        args.extend(["--json", report.to_str().unwrap()]);
        let (ok, out, err) = run_strata(&args);
        assert!(ok, "{what}: {err}");
        assert!(out.contains("peak RSS MiB per worker"), "{out}");
        let r = json(&report);
        let memory = r["memory_bytes_per_worker"].as_array().unwrap();
        assert_eq!(memory.len(), 2, "{what}: {r}");
        assert!(memory.iter().all(|m| m.as_u64().unwrap() > 1 << 20), "{what}: {memory:?}");
        let bytes = &r["bytes_per_epoch"];
        let (payload, wire) = (bytes["measured"].as_f64().unwrap(), bytes["wire"].as_f64().unwrap());
        // Protobuf adds a few bytes per message: more than the payload, by well under 1 %.
        assert!(wire > payload && wire < payload * 1.01, "{what}: wire {wire} vs payload {payload}");
        let acc = r["test_accuracy"].as_f64().unwrap();
        assert!(acc > 0.6, "{what}: test accuracy {acc} on a homophilous planted graph");
        eprintln!("{what}: test {acc:.3}, memory per worker {memory:?}, wire/payload {:.5}", wire / payload);
    }
}

/// Truncated, ragged and out-of-range inputs give an error naming the file from every command.
#[test]
fn bad_graph_files_are_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let npz = synth(dir.path(), 300);
    let bytes = std::fs::read(&npz).unwrap();
    let truncated = dir.path().join("truncated.npz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "1,2\n3,4\n5\n").unwrap();
    let edges = dir.path().join("e.txt");
    std::fs::write(&edges, "0 1\n1 2\n2 9\n").unwrap();
    let labels = dir.path().join("y.txt");
    std::fs::write(&labels, "0\n1\n0\n").unwrap();
    let t = truncated.display().to_string();
    let (r, e, l) = (ragged.display().to_string(), edges.display().to_string(), labels.display().to_string());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--npz", &t], "truncated.npz"),
        (vec!["--edges", &e, "--features", &r], "ragged.csv line 3"),
        (vec!["--edges", &e, "--labels", &l], "edge #3"),
    ];
    let commands: [&[&str]; 5] = [
        &["train", "--epochs", "1"],
        &["launch", "--epochs", "1", "--stages", "2"],
        &["probe"],
        &["refine", "--runs", "0"],
        &["linkpred", "train", "--epochs", "1", "--out", "/nonexistent/never-written"],
    ];
    for cmd in commands {
        for (source, expect) in &cases {
            let mut args: Vec<&str> = cmd.to_vec();
            args.extend(source);
            let (ok, _, err) = run_strata(&args);
            assert!(!ok && err.contains(expect), "{args:?}: expected an error naming `{expect}`, got: {err}");
        }
    }
}

/// Peak resident MiB of `strata train` on `npz` (uncapped), and its test accuracy.
fn single_process(npz: &Path, dir: &Path, extra: &[&str]) -> (u64, f64) {
    let report = dir.join("single.json");
    let mut args = vec!["train", "--npz", npz.to_str().unwrap(), "--json", report.to_str().unwrap()];
    args.extend(extra);
    let (ok, _, err) = run_strata(&args);
    assert!(ok, "{err}");
    let r = json(&report);
    (r["peak_rss_bytes"].as_u64().unwrap() >> 20, r["test_accuracy"]["mean"].as_f64().unwrap())
}

/// Runs `strata ARGS` with every process's data segment capped at `cap_mib` (RLIMIT_DATA,
/// inherited by the workers a launcher starts).
fn capped(cap_mib: u64, args: &[&str]) -> (bool, String) {
    // Fewer malloc arenas: the cap is on address space, which idle per-thread arenas reserve.
    let line = format!("ulimit -d {} && MALLOC_ARENA_MAX=2 exec \"$0\" \"$@\"", cap_mib * 1024);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(line)
        .arg(strata_tests::strata_bin())
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.success(), err)
}

/// A generated graph and a per-process memory cap between what one pipeline worker needs and
/// what single-process training needs: `strata train` stops with a clear out-of-memory error
/// and writes nothing, `strata launch` with 4 workers under the same cap trains it to within
/// 1 point of the uncapped single process.
// Long on purpose: the capped single process and the four capped workers run on the same generated graph in order.
fn cap_stops_one_process_but_not_four(nodes: usize, epochs: usize) {
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("g.npz");
    let (ok, _, err) = run_strata(&[
        "data",
        "synth",
        "--nodes",
        &nodes.to_string(),
        "--signal",
        "0.15",
        "--homophily",
        "0.6",
        "--seed",
        "1",
        "--out",
        npz.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let e = epochs.to_string();
    let model = ["--model", "gcnii", "--layers", "16", "--epochs", &e];
    let mut single_args = model.to_vec();
    single_args.extend(["--seeds", "1", "--patience", &e, "--lr", "0.01"]);
    let (single_mib, single_acc) = single_process(&npz, dir.path(), &single_args);
    let launch_report = dir.path().join("launch.json");
    // `--trim-heap`: the workers return freed heap pages after every chunk, the setting for a
    // memory-bound cluster.
    let mut launch = vec![
        "launch",
        "--npz",
        npz.to_str().unwrap(),
        "--stages",
        "4",
        "--lr",
        "0.01",
        "--trim-heap",
        "--json",
        launch_report.to_str().unwrap(),
    ];
    launch.extend(model);
    // Uncapped first, to know what a worker needs when it holds one chunk's activations at a
    // time (uncapped, `--recompute auto` keeps every chunk's: the host has room for them).
    let mut least = launch.clone();
    least.extend(["--recompute", "always"]);
    let (ok, err) = capped(1 << 20, &least);
    assert!(ok, "{err}");
    let worker_mib = json(&launch_report)["memory_bytes_per_worker"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_u64().unwrap() >> 20)
        .max()
        .unwrap();
    eprintln!("{nodes} nodes: single process {single_mib} MiB (test {single_acc:.3}), largest worker {worker_mib} MiB");
    assert!(
        worker_mib * 10 < single_mib * 7,
        "a worker ({worker_mib} MiB) should need well under a single process ({single_mib} MiB)"
    );
    // `ulimit -d` counts writable address space, which runs a few hundred MiB above the resident
    // peak (address space libtorch and the allocator's per-thread arenas reserve but never touch):
    // a capped `strata train` failed at 477 MiB resident under a 722 MiB cap. So the cap sits a
    // quarter of the gap above the single process's resident peak; that capped `strata train`
    // fails below is what shows the cap is under what one process needs.
    let cap = single_mib + (single_mib - worker_mib) / 4;
    let report = dir.path().join("capped-single.json");
    let mut args = vec!["train", "--npz", npz.to_str().unwrap(), "--json", report.to_str().unwrap()];
    args.extend(&single_args);
    let (ok, err) = capped(cap, &args);
    eprintln!("train capped at {cap} MiB: {err}");
    assert!(
        !ok && err.contains("out of memory") && err.contains("strata launch") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!report.exists(), "no partial report");
    std::fs::remove_file(&launch_report).unwrap();
    let (ok, err) = capped(cap, &launch);
    assert!(ok, "launch with every process capped at {cap} MiB: {err}");
    let r = json(&launch_report);
    let acc = r["test_accuracy"].as_f64().unwrap();
    eprintln!(
        "launch capped at {cap} MiB: test {acc:.3} vs single process {single_acc:.3}; memory per worker {}",
        r["memory_bytes_per_worker"]
    );
    assert!(acc >= single_acc - 0.01, "capped pipeline {acc} vs single process {single_acc}");
    // `--recompute auto` saw the cap: no stage's budget exceeds half of what the cap left it.
    for a in r["activations_per_worker"].as_array().unwrap() {
        let budget = a["budget_bytes"].as_u64().unwrap();
        assert!(budget <= (cap << 20) / 2, "a stage's activation budget {budget} B ignores the {cap} MiB cap: {a}");
    }
}

/// The small version: 20k nodes (in `make test`).
#[test]
fn a_memory_cap_stops_single_process_training_but_not_four_workers() {
    cap_stops_one_process_but_not_four(20_000, 50);
}

/// The large version: 100k nodes (in `make test-full`, about 15 min on 2 cores).
#[test]
#[ignore = "slow: make test-full"]
fn a_memory_cap_stops_single_process_training_of_100k_nodes_but_not_four_workers() {
    cap_stops_one_process_but_not_four(100_000, 40);
}
