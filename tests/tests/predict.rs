//! From a trained model to answers: `strata train --out DIR` and `strata predict DIR` on
//! generated graphs (no dataset needed).

use std::path::Path;
use strata_tests::run_strata;

fn synth(path: &Path, nodes: usize, features: usize, seed: u64) {
    let (n, f, s) = (nodes.to_string(), features.to_string(), seed.to_string());
    let args =
        ["data", "synth", "--nodes", &n, "--degree", "8", "--features", &f, "--classes", "4", "--seed", &s, "--out"];
    let mut args = args.to_vec();
    args.push(path.to_str().unwrap());
    let (ok, _, err) = run_strata(&args);
    assert!(ok, "{err}");
}

fn json(path: &Path) -> serde_json::Value {
    strata_tests::read_json(path)
}

/// Rows of a predictions CSV: (node, class, probabilities).
fn rows(path: &Path) -> Vec<(i64, i64, Vec<f64>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("node,class,p0,p1,p2,p3"));
    lines
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            (v[0].parse().unwrap(), v[1].parse().unwrap(), v[2..].iter().map(|x| x.parse().unwrap()).collect())
        })
        .collect()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A GCNII trained by `strata train --out` answers `strata predict` with the training run's
/// own predictions (byte for byte) and test accuracy; `--nodes` picks rows; the embeddings
/// are the last hidden layer's width; a model trained on a renumbered graph (`--reorder
/// partition`) predicts the nodes under their ids as given.
#[test]
fn predict_gives_the_training_runs_predictions_and_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let g = d.join("g.npz");
    synth(&g, 1500, 32, 1);
    let model = ["--model", "gcnii", "--layers", "4", "--hidden", "32", "--epochs", "30"];
    let (m, t_csv, t_json) = (d.join("m"), d.join("t.csv"), d.join("t.json"));
    let mut args = vec!["train", "--npz", p(&g), "--out", p(&m), "--predictions", p(&t_csv)];
    args.extend(model);
    args.extend(["--json", p(&t_json)]);
    let (ok, _, err) = run_strata(&args);
    assert!(ok, "{err}");
    let manifest = json(&d.join("m/manifest.json"));
    assert_eq!(manifest["format"], "strata-node/1");
    assert_eq!(manifest["config"]["layers"], 4);
    let (ok, out, err) = run_strata(&[
        "predict",
        p(&d.join("m")),
        "--out",
        p(&d.join("p.csv")),
        "--embeddings",
        p(&d.join("e.npy")),
        "--json",
        p(&d.join("p.json")),
    ]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(d.join("p.csv")).unwrap(), std::fs::read(d.join("t.csv")).unwrap());
    assert_eq!(rows(&d.join("p.csv")).len(), 1500);
    let (trained, predicted) = (json(&d.join("t.json")), json(&d.join("p.json")));
    let t = trained["test_accuracy"]["mean"].as_f64().unwrap();
    assert!((predicted["test_accuracy"].as_f64().unwrap() - t).abs() < 1e-9, "{predicted} vs {t}");
    assert_eq!(predicted["same_graph_as_training"], true);
    assert!(out.contains("test accuracy"), "{out}");
    // float32 [1500, 32] after the .npy header.
    let e = std::fs::read(d.join("e.npy")).unwrap();
    let header = 10 + u16::from_le_bytes([e[8], e[9]]) as usize;
    assert!(String::from_utf8_lossy(&e[..header]).contains("(1500, 32)"));
    assert_eq!(e.len() - header, 1500 * 32 * 4);
    // A subset: the same rows.
    let (ok, _, err) = run_strata(&["predict", p(&d.join("m")), "--nodes", "3,7-9", "--out", p(&d.join("s.csv"))]);
    assert!(ok, "{err}");
    let (all, some) = (rows(&d.join("p.csv")), rows(&d.join("s.csv")));
    assert_eq!(some, [3, 7, 8, 9].map(|i| all[i].clone()).to_vec());
    // Over two worker processes (pipeline stages holding the same layers): the same
    // probabilities up to f32 rounding.
    let (ok, _, err) = run_strata(&["predict", p(&m), "--stages", "2", "--out", p(&d.join("w.csv"))]);
    assert!(ok, "{err}");
    assert_close(&rows(&d.join("p.csv")), &rows(&d.join("w.csv")));
    // Trained on a renumbered graph: predictions under the ids as given, equal to one
    // process's on the graph as given up to the sums' order.
    let (r, r_csv) = (d.join("r"), d.join("r.csv"));
    let mut args = vec!["train", "--npz", p(&g), "--reorder", "partition", "--out", p(&r)];
    args.extend(["--predictions", p(&r_csv)]);
    args.extend(model);
    let (ok, _, err) = run_strata(&args);
    assert!(ok, "{err}");
    let (ok, _, err) = run_strata(&["predict", p(&d.join("r")), "--out", p(&d.join("rp.csv"))]);
    assert!(ok, "{err}");
    assert_close(&rows(&d.join("r.csv")), &rows(&d.join("rp.csv")));
}

/// The same nodes with the same probabilities up to f32 rounding (and the CSV's 6 decimals).
fn assert_close(a: &[(i64, i64, Vec<f64>)], b: &[(i64, i64, Vec<f64>)]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.0, y.0);
        let diff = x.2.iter().zip(&y.2).map(|(u, v)| (u - v).abs()).fold(0.0, f64::max);
        assert!(diff < 1e-4, "node {}: {:?} vs {:?}", x.0, x.2, y.2);
    }
}

/// An updated graph (more nodes and other edges, the same feature width) is predicted, and
/// the output says it is not the graph trained on; no test split is scored on it.
#[test]
fn predict_on_another_graph_of_the_same_width_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (g, h) = (d.join("g.npz"), d.join("h.npz"));
    synth(&g, 800, 16, 1);
    synth(&h, 900, 16, 2);
    let m = d.join("m");
    let args = ["train", "--npz", p(&g), "--model", "gcn", "--epochs", "20", "--out", p(&m)];
    let (ok, _, err) = run_strata(&args);
    assert!(ok, "{err}");
    let (ok, _, err) = run_strata(&[
        "predict",
        p(&d.join("m")),
        "--npz",
        p(&h),
        "--out",
        p(&d.join("p.npy")),
        "--json",
        p(&d.join("p.json")),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("differs from the graph the model was trained on"), "{err}");
    let r = json(&d.join("p.json"));
    assert_eq!(r["same_graph_as_training"], false);
    assert!(r["test_accuracy"].is_null());
    assert_eq!(r["labelled_nodes"], 900);
    // float64 [900, 2 + 4]: node, class, four probabilities summing to one.
    let b = std::fs::read(d.join("p.npy")).unwrap();
    let header = 10 + u16::from_le_bytes([b[8], b[9]]) as usize;
    let v: Vec<f64> = b[header..].chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(v.len(), 900 * 6);
    for (i, row) in v.chunks(6).enumerate() {
        assert_eq!(row[0], i as f64);
        assert!((row[2..].iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row:?}");
    }
}

/// Every bad input is refused by name, without a panic and without touching existing outputs.
#[test]
fn bad_model_directories_and_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (g, wide) = (d.join("g.npz"), d.join("wide.npz"));
    synth(&g, 600, 16, 1);
    synth(&wide, 600, 24, 1);
    let m = d.join("m");
    let (ok, _, err) = run_strata(&["train", "--npz", p(&g), "--model", "gcn", "--epochs", "5", "--out", p(&m)]);
    assert!(ok, "{err}");
    let out = d.join("kept.csv");
    std::fs::write(&out, "precious").unwrap();
    let predict = |model: &Path, extra: &[&str]| {
        let mut args = vec!["predict", p(model)];
        args.extend(extra);
        let (ok, _, err) = run_strata(&args);
        assert!(!ok, "{args:?} succeeded");
        err
    };
    let expect = |err: String, what: &str| assert!(err.contains(what), "expected `{what}` in: {err}");
    let o = ["--out", p(&out)];
    expect(predict(&d.join("none"), &o), "no readable manifest.json");
    expect(predict(&m, &[]), "say what to write");
    expect(predict(&m, &["--out", p(&d.join("x.txt"))]), ".csv or .npy");
    expect(predict(&m, &["--nodes", "600", "--out", p(&out)]), "node 600 does not exist");
    expect(predict(&m, &["--npz", p(&wide), "--out", p(&out)]), "24 columns, the model was trained on 16");
    expect(predict(&m, &["--out", p(&m.join("manifest.json"))]), "--out");
    // Tampered, truncated and foreign directories.
    let copy = |name: &str| {
        let c = d.join(name);
        std::fs::create_dir_all(&c).unwrap();
        for f in ["manifest.json", "model.safetensors"] {
            std::fs::copy(m.join(f), c.join(f)).unwrap();
        }
        c
    };
    let tampered = copy("tampered");
    let mut w = std::fs::read(tampered.join("model.safetensors")).unwrap();
    let last = w.len() - 1;
    w[last] ^= 1;
    std::fs::write(tampered.join("model.safetensors"), w).unwrap();
    expect(predict(&tampered, &o), "model.safetensors: SHA-256 differs");
    let torn = copy("torn");
    let text = std::fs::read_to_string(torn.join("manifest.json")).unwrap();
    std::fs::write(torn.join("manifest.json"), &text[..text.len() / 2]).unwrap();
    expect(predict(&torn, &o), "invalid manifest");
    let foreign = copy("foreign");
    std::fs::write(foreign.join("manifest.json"), text.replace("strata-node/1", "strata-linkpred/1")).unwrap();
    expect(predict(&foreign, &o), "format `strata-linkpred/1`, expected `strata-node/1`");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");
    // `train --out` never replaces a directory that is not a model.
    let notes = d.join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("a.txt"), "mine").unwrap();
    let (ok, _, err) = run_strata(&["train", "--npz", p(&g), "--epochs", "2", "--out", p(&notes)]);
    assert!(!ok && err.contains("is not a node-classification model directory"), "{err}");
    let (ok, _, err) = run_strata(&["launch", "--npz", p(&g), "--epochs", "2", "--stages", "2", "--out", p(&notes)]);
    assert!(!ok && err.contains("is not a node-classification model directory"), "{err}");
    let bad = d.join("p.txt");
    for cmd in [&["train", "--epochs", "2"][..], &["launch", "--epochs", "2", "--stages", "2"][..]] {
        let mut args = cmd.to_vec();
        args.extend(["--npz", p(&g), "--predictions", p(&bad)]);
        let (ok, _, err) = run_strata(&args);
        assert!(!ok && err.contains("predictions are written as .csv or .npy") && !err.contains("epoch"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(notes.join("a.txt")).unwrap(), "mine");
}

/// A model trained by `strata launch` over four pipeline workers (and over two graph-parallel
/// ways) is gathered into one directory, and `strata predict` in one process scores the
/// launch's own test accuracy on it and gives the predictions `launch --predictions` wrote.
#[test]
fn a_model_launched_over_workers_predicts_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let g = d.join("g.npz");
    synth(&g, 1200, 32, 3);
    for (name, shape) in [("pipe", &["--stages", "4"][..]), ("graph", &["--mode", "graph", "--ways", "2"][..])] {
        let (m, report) = (d.join(name), d.join(format!("{name}.json")));
        let mut args = vec!["launch", "--npz", p(&g), "--model", "gcnii", "--layers", "6", "--epochs", "12"];
        args.extend(shape);
        let by_launch = d.join(format!("{name}-launch.csv"));
        args.extend(["--out", p(&m), "--json", p(&report), "--predictions", p(&by_launch)]);
        let (ok, _, err) = run_strata(&args);
        assert!(ok, "{err}");
        let (launched, manifest) = (json(&report), json(&m.join("manifest.json")));
        // The workers' own predictions of the kept weights = predict's in one process.
        let by_predict = d.join(format!("{name}-predict.csv"));
        let (ok, _, err) = run_strata(&["predict", p(&m), "--out", p(&by_predict)]);
        assert!(ok, "{err}");
        assert_close(&rows(&by_launch), &rows(&by_predict));
        assert_eq!(manifest["pipeline"]["layers"], 6);
        assert_eq!(
            manifest["val_accuracy"], launched["best_val_accuracy"],
            "the kept epoch is the best validation one"
        );
        let pj = d.join(format!("{name}-predict.json"));
        let (ok, _, err) = run_strata(&["predict", p(&m), "--json", p(&pj), "--embeddings", p(&d.join("e.npy"))]);
        assert!(ok, "{err}");
        let predicted = json(&pj)["test_accuracy"].as_f64().unwrap();
        let reported = launched["test_accuracy"].as_f64().unwrap();
        assert!((predicted - reported).abs() < 1e-9, "{name}: predict {predicted} vs launch {reported}");
        // And over three worker processes.
        let (ok, _, err) = run_strata(&["predict", p(&m), "--stages", "3", "--json", p(&pj)]);
        assert!(ok, "{err}");
        let over_workers = json(&pj)["test_accuracy"].as_f64().unwrap();
        assert!(
            (over_workers - reported).abs() < 1e-9,
            "{name}: predict --stages 3 {over_workers} vs launch {reported}"
        );
    }
}

/// The parameters of a 4-stage pipeline, gathered by name into one stage holding every slot,
/// give the 4-stage pipeline's own exact-inference logits (to f32 rounding): what `launch --out`
/// and `predict` rely on.
#[test]
fn gathered_stages_give_the_pipelines_own_logits() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("g.npz");
    synth(&g, 600, 16, 7);
    let d = strata_graph::formats::read_graph_npz(&g).unwrap();
    let split = strata_graph::Split::random_per_class(&d.labels, 20, 100, 200, 0);
    let mut cfg = strata_pipe::PipelineConfig::gcnii(6, 4);
    cfg.seed = 2;
    let plan = strata_pipe::PipelinePlan::new(&d, &split, &cfg);
    let mut four = strata_pipe::InProcess::new(&plan, tch::Device::Cpu).unwrap();
    for epoch in 0..3 {
        four.train_epoch(epoch).unwrap();
    }
    four.engines_mut().iter_mut().for_each(|e| e.core_mut().capture = true);
    let acc4 = four.evaluate(3).unwrap();
    let (_, logits4) = four.engines_mut()[3].core_mut().outputs.take().unwrap();
    let weights: Vec<(String, tch::Tensor)> = four.engines().iter().flat_map(|e| e.core().named_parameters()).collect();
    let one_cfg = strata_pipe::PipelineConfig { stages: 1, chunks: 1, ..cfg };
    let one_plan = strata_pipe::PipelinePlan::new(&d, &split, &one_cfg);
    let mut one = strata_pipe::InProcess::new(&one_plan, tch::Device::Cpu).unwrap();
    {
        let core = one.engines_mut()[0].core_mut();
        let mut vars = core.vs.variables();
        assert_eq!(vars.len(), weights.len());
        tch::no_grad(|| {
            for (k, t) in &weights {
                vars.get_mut(k).unwrap_or_else(|| panic!("no `{k}` in one stage")).copy_(t);
            }
        });
        core.capture = true;
    }
    let acc1 = one.evaluate(3).unwrap();
    let (_, logits1) = one.engines_mut()[0].core_mut().outputs.take().unwrap();
    // Each plan renumbers the vertices its own way: compare in the graph's own order.
    let back = |t: &tch::Tensor, order: &[usize]| {
        let mut inverse = vec![0i64; order.len()];
        order.iter().enumerate().for_each(|(new, &old)| inverse[old] = new as i64);
        t.index_select(0, &tch::Tensor::from_slice(&inverse))
    };
    let diff = (back(&logits4, &plan.order) - back(&logits1, &one_plan.order)).abs().max().double_value(&[]);
    let scale = logits4.abs().max().double_value(&[]);
    assert!(diff <= 1e-5 * scale.max(1.0), "logits differ by {diff} (scale {scale})");
    assert_eq!(acc4, acc1);
}
