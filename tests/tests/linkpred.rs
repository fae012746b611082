//! Link prediction on real data (Cora): the GAE protocol (85/5/10, ROC-AUC and AP) and the
//! NetInfoF protocol (70/10/20, Hits@100), means over seeds; and the `strata linkpred` CLI.

use strata_graph::registry::locate_or_skip;
use strata_graph::LinkSplit;
use strata_nn::{train_link_predictor, Kernel, LinkConfig, LinkTask, ModelKind};
use strata_tests::HEAVY;

/// Test metrics of `seeds` runs (split seed = model seed), as in both papers' protocols.
fn runs(encoder: ModelKind, val: f64, test: f64, seeds: u64) -> Vec<strata_nn::LinkMetrics> {
    let d = strata_graph::load("cora", None).unwrap();
    strata_nn::set_threads(0);
    let mut xs = Vec::new();
    for seed in 0..seeds {
        let split = LinkSplit::new(&d.graph, val, test, seed).unwrap();
        let task =
            LinkTask::new(split, &d.features, tch::Device::Cpu, strata_graph::FeatureNorm::Auto, Kernel::EdgeList);
        let cfg = LinkConfig::defaults(encoder);
        let (_, r) = train_link_predictor(&task, &cfg, seed, |_| {}).unwrap();
        eprintln!("{} seed {seed}: best epoch {} of {}: test {:?}", encoder.name(), r.best_epoch, r.epochs_run, r.test);
        xs.push(r.test);
    }
    xs
}

fn mean(runs: &[strata_nn::LinkMetrics], pick: impl Fn(&strata_nn::LinkMetrics) -> f64) -> (f64, Vec<f64>) {
    let xs: Vec<f64> = runs.iter().map(pick).collect();
    (strata_nn::metrics::mean_std(&xs).0, xs)
}

/// GAE protocol: GCN encoder, dot decoder, 85/5/10 split, 5 seeds: ROC-AUC and AP ≥ 0.90
/// (the GAE paper: 0.910 / 0.920).
#[test]
fn gcn_dot_on_cora_reaches_gae_auc_and_ap() {
    if locate_or_skip("planetoid/cora.npz").is_none() {
        return;
    }
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let r = runs(ModelKind::Gcn, 0.05, 0.10, 5);
    let (auc, aucs) = mean(&r, |m| m.roc_auc);
    let (ap, aps) = mean(&r, |m| m.ap);
    eprintln!("GAE protocol, GCN + dot on Cora: ROC-AUC {auc:.4} {aucs:.3?}, AP {ap:.4} {aps:.3?}");
    assert!(auc >= 0.90, "ROC-AUC {auc}");
    assert!(ap >= 0.90, "AP {ap}");
}

/// NetInfoF protocol: 70/10/20 split, seeds 0..4, Hits@100 ≥ 0.65 for GCN (their table: 67.1 ± 1.8).
#[test]
fn gcn_hits_at_100_on_cora_matches_the_netinfof_table() {
    if locate_or_skip("planetoid/cora.npz").is_none() {
        return;
    }
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let (h, hs) = mean(&runs(ModelKind::Gcn, 0.10, 0.20, 5), |m| m.hits_100);
    eprintln!("NetInfoF protocol, GCN on Cora: Hits@100 {h:.4} {hs:.3?}");
    assert!(h >= 0.65, "Hits@100 {h}");
}

use strata_tests::run_strata as strata;

fn read_json(p: &std::path::Path) -> serde_json::Value {
    strata_tests::read_json(p)
}

/// train → eval → predict through the CLI: eval reproduces train's test metrics from the saved
/// model and split; predict ranks non-neighbours; a different graph is refused.
#[test]
// Long on purpose: train, eval and predict run on the same model directory in order.
fn cli_trains_evaluates_and_predicts() {
    if locate_or_skip("planetoid/cora.npz").is_none() {
        return;
    }
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (ok, _, e) = strata(&[
        "linkpred",
        "train",
        "--dataset",
        "cora",
        "--epochs",
        "40",
        "--seed",
        "3",
        "--out",
        &p("m"),
        "--json",
        &p("train.json"),
    ]);
    assert!(ok, "{e}");
    for f in ["model.safetensors", "split.npz", "manifest.json", "embeddings.safetensors"] {
        assert!(dir.path().join("m").join(f).exists(), "{f} missing");
    }
    let t = read_json(&dir.path().join("train.json"));
    let (ok, out, e) = strata(&["linkpred", "eval", &p("m"), "--json", &p("eval.json")]);
    assert!(ok, "{e}");
    assert!(out.contains("hits@100") && out.contains("roc_auc"), "{out}");
    let ev = read_json(&dir.path().join("eval.json"));
    for k in ["roc_auc", "ap", "hits@20", "hits@50", "hits@100", "mrr"] {
        let (a, b) = (ev["test"][k].as_f64().unwrap(), t["test"][k].as_f64().unwrap());
        assert!((a - b).abs() < 1e-6, "{k}: eval {a} vs train {b}");
    }
    assert!(ev["test"]["roc_auc"].as_f64().unwrap() > 0.8, "{ev}");
    // Top 5 candidates of node 42: non-neighbours, best first, also as CSV.
    let (ok, out, e) = strata(&[
        "linkpred",
        "predict",
        &p("m"),
        "--node",
        "42",
        "--top",
        "5",
        "--json",
        &p("pred.json"),
        "--csv",
        &p("pred.csv"),
    ]);
    assert!(ok, "{e}");
    let pr = read_json(&dir.path().join("pred.json"));
    let items = pr["predictions"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{out}");
    let cora = strata_graph::load("cora", None).unwrap().graph.symmetrized();
    let scores: Vec<f64> = items.iter().map(|i| i["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for i in items {
        let v = i["dst"].as_u64().unwrap() as usize;
        assert!(v != 42 && !cora.has_edge(42, v), "{v} is already a neighbour of 42");
    }
    assert_eq!(std::fs::read_to_string(p("pred.csv")).unwrap().lines().count(), 6);
    // The cached embeddings give the encoder's answer.
    let (ok, _, e) = strata(&[
        "linkpred",
        "predict",
        &p("m"),
        "--node",
        "42",
        "--top",
        "5",
        "--recompute",
        "--json",
        &p("pred2.json"),
    ]);
    assert!(ok, "{e}");
    let again = read_json(&dir.path().join("pred2.json"));
    for (x, y) in items.iter().zip(again["predictions"].as_array().unwrap()) {
        assert_eq!(x["dst"], y["dst"]);
        assert!((x["score"].as_f64().unwrap() - y["score"].as_f64().unwrap()).abs() < 1e-4);
    }
    // Scoring given pairs.
    std::fs::write(p("pairs.txt"), "0 633\n42 7\n").unwrap();
    let (ok, out, e) =
        strata(&["linkpred", "predict", &p("m"), "--pairs", &p("pairs.txt"), "--json", &p("pairs.json")]);
    assert!(ok, "{e}");
    assert_eq!(read_json(&dir.path().join("pairs.json"))["predictions"].as_array().unwrap().len(), 2, "{out}");
    // Another graph is refused, by name.
    let (ok, _, e) = strata(&["linkpred", "predict", &p("m"), "--node", "1", "--dataset", "citeseer"]);
    assert!(!ok && e.contains("not the graph this model was trained on"), "{e}");
    let (ok, _, e) = strata(&["linkpred", "predict", &p("m"), "--node", "99999"]);
    assert!(!ok && e.contains("--node 99999") && e.contains("2708 nodes"), "{e}");
}

/// Messy edge lists: self loops and duplicates are dropped / merged with a logged count;
/// ids beyond the feature rows and a missing features file are clear errors.
#[test]
fn edge_list_inputs_are_normalised_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    // Two 12-node rings with chords, plus a self loop, a duplicate and a reversed duplicate.
    let mut text = String::from("# src dst\n");
    for c in 0..2 {
        for i in 0..12 {
            text.push_str(&format!(
                "{} {}\n{} {}\n",
                c * 12 + i,
                c * 12 + (i + 1) % 12,
                c * 12 + i,
                c * 12 + (i + 3) % 12
            ));
        }
    }
    text.push_str("5 5\n0 1\n1 0\n");
    std::fs::write(p("g.txt"), &text).unwrap();
    let (ok, _, e) = strata(&[
        "linkpred",
        "train",
        "--edges",
        &p("g.txt"),
        "--epochs",
        "5",
        "--split",
        "0.7,0.1,0.2",
        "--out",
        &p("m"),
    ]);
    assert!(ok, "{e}");
    assert!(e.contains("dropped 1 self loop") && e.contains("merged 2 duplicate edge"), "{e}");
    let m = read_json(&dir.path().join("m/manifest.json"));
    assert_eq!(m["graph"]["undirected_edges"], 48);
    // Features with fewer rows than the ids used.
    std::fs::write(p("f.csv"), "1,0\n0,1\n1,1\n").unwrap();
    let (ok, _, e) =
        strata(&["linkpred", "train", "--edges", &p("g.txt"), "--features", &p("f.csv"), "--out", &p("m2")]);
    assert!(!ok && e.contains("g.txt") && e.contains("f.csv gives 3 nodes"), "{e}");
    let (ok, _, e) =
        strata(&["linkpred", "train", "--edges", &p("g.txt"), "--features", &p("nope.npy"), "--out", &p("m3")]);
    assert!(!ok && e.contains("nope.npy"), "{e}");
    std::fs::write(p("bad.csv"), "1,0\n0,x\n").unwrap();
    let (ok, _, e) =
        strata(&["linkpred", "train", "--edges", &p("g.txt"), "--features", &p("bad.csv"), "--out", &p("m4")]);
    assert!(!ok && e.contains("bad.csv line 2") && e.contains("`x`"), "{e}");
    // The edge list changed after training: refused.
    std::fs::write(p("g.txt"), text.replace("0 1\n1 0\n", "0 6\n")).unwrap();
    let (ok, _, e) = strata(&["linkpred", "eval", &p("m")]);
    assert!(!ok && e.contains("not the graph this model was trained on"), "{e}");
}

/// A model directory lists the SHA-256 of every file in its manifest (written last): `eval`
/// refuses an altered file by name. Retraining into an existing model replaces it whole (a new
/// directory renamed into place; a failed run leaves the old model untouched and no partial
/// directory), and an `--out` that is not a model directory is never replaced.
#[test]
fn model_directories_are_checksummed_and_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(&format!("{} {}\n{} {}\n", i, (i + 1) % 30, i, (i + 7) % 30));
    }
    std::fs::write(p("g.txt"), &text).unwrap();
    let (graph, model) = (p("g.txt"), p("m"));
    let train = |seed: &str, extra: &[&str]| {
        let mut args = vec!["linkpred", "train", "--edges", &graph, "--epochs", "3", "--seed", seed, "--out", &model];
        args.extend_from_slice(extra);
        strata(&args)
    };
    let (ok, _, e) = train("1", &[]);
    assert!(ok, "{e}");
    let m = read_json(&dir.path().join("m/manifest.json"));
    for f in ["model.safetensors", "split.npz", "embeddings.safetensors"] {
        assert_eq!(m["files"][f].as_str().map(str::len), Some(64), "no SHA-256 for {f}: {m}");
    }
    let (ok, _, e) = strata(&["linkpred", "eval", &p("m")]);
    assert!(ok, "{e}");
    // One byte changed: refused, naming the file.
    let emb = dir.path().join("m/embeddings.safetensors");
    let mut bytes = std::fs::read(&emb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&emb, &bytes).unwrap();
    let (ok, _, e) = strata(&["linkpred", "eval", &p("m")]);
    assert!(!ok && e.contains("embeddings.safetensors") && e.contains("SHA-256"), "{e}");
    // Retraining replaces the model whole.
    let (ok, _, e) = train("2", &[]);
    assert!(ok, "{e}");
    assert_eq!(read_json(&dir.path().join("m/manifest.json"))["seed"], 2);
    let (ok, _, e) = strata(&["linkpred", "eval", &p("m")]);
    assert!(ok, "{e}");
    // A failed retraining leaves the model as it was, and nothing partial beside it.
    let missing = p("missing.csv");
    let (ok, _, _) = train("3", &["--features", &missing]);
    assert!(!ok);
    assert_eq!(read_json(&dir.path().join("m/manifest.json"))["seed"], 2);
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
    // A directory that is not a model is not replaced.
    std::fs::create_dir(p("notes")).unwrap();
    std::fs::write(dir.path().join("notes/todo.txt"), "keep me").unwrap();
    let (ok, _, e) = strata(&["linkpred", "train", "--edges", &p("g.txt"), "--epochs", "1", "--out", &p("notes")]);
    assert!(!ok && e.contains("not a linkpred model directory"), "{e}");
    assert_eq!(std::fs::read_to_string(dir.path().join("notes/todo.txt")).unwrap(), "keep me");
}

/// `linkpred train --trainer sf|ff` (ForwardGNN: GCN layers trained one at a time) on Cora's
/// 64/16/20 split (their default), test messages over train + val edges: the held-out edges rank well above random pairs (sf ROC-AUC ≥ 0.88, ff ≥ 0.75
/// after 300 epochs per layer), the JSON report has one AUC per depth and a peak memory, and
/// eval / predict --recompute reproduce the saved model's answers.
#[test]
fn forward_link_trainers_through_the_cli() {
    if locate_or_skip("planetoid/cora.npz").is_none() {
        return;
    }
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    for (trainer, min_auc) in [("sf", 0.88), ("ff", 0.75)] {
        let (ok, _, e) = strata(&[
            "linkpred",
            "train",
            "--dataset",
            "cora",
            "--trainer",
            trainer,
            "--layers",
            "2",
            "--epochs",
            "300",
            "--out",
            &p(trainer),
            "--json",
            &p("t.json"),
        ]);
        assert!(ok, "{e}");
        let t = read_json(&dir.path().join("t.json"));
        let auc = t["test"]["roc_auc"].as_f64().unwrap();
        eprintln!("{trainer}: test ROC-AUC {auc:.4}, by depth {}", t["per_layer_auc"]);
        assert!(auc >= min_auc, "{trainer}: {auc}");
        assert_eq!(t["per_layer_auc"].as_array().unwrap().len(), 2);
        assert!(t["peak_memory_bytes"].as_u64().unwrap() > 0);
        let (ok, _, e) = strata(&["linkpred", "eval", &p(trainer), "--json", &p("e.json")]);
        assert!(ok, "{e}");
        assert!((read_json(&dir.path().join("e.json"))["test"]["roc_auc"].as_f64().unwrap() - auc).abs() < 1e-6);
        let (ok, _, e) =
            strata(&["linkpred", "predict", &p(trainer), "--node", "42", "--top", "3", "--json", &p("a.json")]);
        assert!(ok, "{e}");
        let (ok, _, e) = strata(&[
            "linkpred",
            "predict",
            &p(trainer),
            "--node",
            "42",
            "--top",
            "3",
            "--recompute",
            "--json",
            &p("b.json"),
        ]);
        assert!(ok, "{e}");
        let (a, b) = (read_json(&dir.path().join("a.json")), read_json(&dir.path().join("b.json")));
        for (x, y) in a["predictions"].as_array().unwrap().iter().zip(b["predictions"].as_array().unwrap()) {
            assert_eq!(x["dst"], y["dst"]);
            assert!((x["probability"].as_f64().unwrap() - y["probability"].as_f64().unwrap()).abs() < 1e-5);
        }
    }
    let (ok, _, e) = strata(&["linkpred", "train", "--dataset", "cora", "--trainer", "bogus", "--out", &p("x")]);
    assert!(!ok && e.contains("bogus") && e.contains("sf or ff"), "{e}");
}
