//! Every subcommand's `--json` report on a shared dataset (Cora): valid under its published
//! schema (`docs/schemas/`), and saying the same number as the table the command printed
//! (accuracies: percent in the table, a fraction in the report; epochs: 1-based in the text,
//! 0-based in the report).

use serde_json::Value;
use std::path::Path;
use strata_graph::registry::locate_or_skip;
use strata_tests::{report, run_strata};

/// Runs `strata ARGS`, which must succeed: its stdout.
fn ok(args: &[&str]) -> String {
    let (ok, out, err) = run_strata(args);
    assert!(ok, "strata {}: {err}", args.join(" "));
    out
}

/// The numbers in `line`, in order (a `±` or `%` after a number ends it).
fn numbers(line: &str) -> Vec<f64> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter_map(|w| w.trim_matches('.').parse::<f64>().ok())
        .collect()
}

/// The first line of `out` starting (after its padding) with `prefix`.
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines().find(|l| l.trim_start().starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` line:\n{out}"))
}

/// `printed` is `fraction` written in percent with two decimals.
fn same_percent(printed: f64, fraction: f64, what: &str) {
    assert!((printed - fraction * 100.0).abs() <= 0.005 + 1e-9, "{what}: table {printed} vs report {fraction}");
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn every_report_is_valid_under_its_schema_and_agrees_with_the_table() {
    if locate_or_skip("planetoid/cora.npz").is_none() {
        return;
    }
    let _heavy = strata_tests::HEAVY.lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // train (backprop): the mean row's test accuracy, the per-seed best epoch.
    let out = ok(&[
        "train",
        "--dataset",
        "cora",
        "--model",
        "gcn",
        "--epochs",
        "40",
        "--seeds",
        "2",
        "--json",
        p(&d.join("train.json")),
        "--out",
        p(&d.join("model")),
    ]);
    let t = report(&d.join("train.json"));
    let mean_row = numbers(line(&out, "mean"));
    same_percent(mean_row[mean_row.len() - 2], t["test_accuracy"]["mean"].as_f64().unwrap(), "train test mean");
    let seed0 = numbers(line(&out, "0 "));
    let run0 = &t["runs"][0];
    assert_eq!(seed0[2] as u64, run0["best_epoch"].as_u64().unwrap() + 1, "best epoch: 1-based in the table\n{out}");
    same_percent(seed0[4], run0["test_accuracy"].as_f64().unwrap(), "train seed 0 test");
    let curve = run0["curve"].as_array().unwrap();
    assert_eq!(curve[0]["epoch"], 0, "curves count epochs from 0");
    assert_eq!(curve.len() as u64, run0["epochs_run"].as_u64().unwrap());

    // train (a ForwardGNN trainer): same keys, the per-layer readouts.
    let out = ok(&[
        "train",
        "--dataset",
        "cora",
        "--trainer",
        "sf",
        "--layers",
        "2",
        "--epochs",
        "20",
        "--json",
        p(&d.join("sf.json")),
    ]);
    let sf = report(&d.join("sf.json"));
    assert_eq!(sf["trainer"], "sf");
    let mean_row = numbers(line(&out, "mean"));
    same_percent(mean_row[2], sf["test_accuracy"]["mean"].as_f64().unwrap(), "sf test mean");
    assert_eq!(sf["per_layer_accuracy"].as_array().unwrap().len(), 2);

    // predict: the training run's test split, the same fraction.
    let out = ok(&["predict", p(&d.join("model")), "--json", p(&d.join("predict.json"))]);
    let pr = report(&d.join("predict.json"));
    let text = numbers(line(&out, "test accuracy"));
    same_percent(text[0], pr["test_accuracy"].as_f64().unwrap(), "predict test");
    assert_eq!(pr["trained_test_accuracy"], t["runs"][1]["test_accuracy"], "the saved model is the last seed's");

    // launch: the summary's test accuracy and its epoch.
    let out = ok(&[
        "launch",
        "--dataset",
        "cora",
        "--layers",
        "4",
        "--stages",
        "2",
        "--epochs",
        "6",
        "--json",
        p(&d.join("launch.json")),
    ]);
    let l = report(&d.join("launch.json"));
    let at = out.find(" (epoch ").unwrap_or_else(|| panic!("no `(epoch N)` in the summary:\n{out}"));
    let before = numbers(&out[..at]);
    same_percent(*before.last().unwrap(), l["test_accuracy"].as_f64().unwrap(), "launch test");
    assert_eq!(numbers(&out[at..])[0] as u64, l["best_epoch"].as_u64().unwrap() + 1, "{out}");
    assert_eq!(l["curve"][0]["epoch"], 0);

    // linkpred train / eval / predict: ranking metrics are fractions in the table too.
    let lm = d.join("links");
    let out = ok(&[
        "linkpred",
        "train",
        "--dataset",
        "cora",
        "--epochs",
        "20",
        "--out",
        p(&lm),
        "--json",
        p(&d.join("lp-train.json")),
    ]);
    let lt = report(&d.join("lp-train.json"));
    let test_row = numbers(line(&out, "test"));
    let auc = lt["test"]["roc_auc"].as_f64().unwrap();
    assert!((test_row[0] - auc).abs() <= 5e-5 + 1e-9, "linkpred test ROC-AUC: table {} vs report {auc}", test_row[0]);
    assert_eq!(lt["curve"].as_array().unwrap().len() as u64, lt["epochs_run"].as_u64().unwrap());
    ok(&["linkpred", "eval", p(&lm), "--json", p(&d.join("lp-eval.json"))]);
    assert_eq!(report(&d.join("lp-eval.json"))["test"], lt["test"], "eval reproduces the trained test metrics");
    ok(&["linkpred", "predict", p(&lm), "--node", "0", "--top", "3", "--json", p(&d.join("lp-pred.json"))]);
    assert_eq!(report(&d.join("lp-pred.json"))["predictions"].as_array().unwrap().len(), 3);

    // probe: each component's score as printed.
    let out = ok(&["probe", "--dataset", "cora", "--json", p(&d.join("probe.json"))]);
    let pb = report(&d.join("probe.json"));
    for c in pb["components"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        // The first decimal after the name (the description holds a plain "2").
        let row = line(&out, &format!("{name} "));
        let printed: f64 = row.split_whitespace().find(|w| w.contains('.')).and_then(|w| w.parse().ok()).unwrap();
        let score = pb["scores"][name].as_f64().unwrap();
        assert!((printed - score).abs() <= 5e-4 + 1e-9, "probe {name}: table {printed} vs report {score}");
    }

    // refine: the classifier's accuracy on the refined graph.
    let out = ok(&["refine", "--dataset", "cora", "--runs", "1", "--json", p(&d.join("refine.json"))]);
    let rf = report(&d.join("refine.json"));
    let text = numbers(line(&out, "advanced GCN"));
    same_percent(text[text.len() - 2], rf["test_accuracy"]["mean"].as_f64().unwrap(), "refine test");

    // data synth.
    let out = ok(&[
        "data",
        "synth",
        "--nodes",
        "300",
        "--degree",
        "4",
        "--features",
        "8",
        "--classes",
        "3",
        "--out",
        p(&d.join("g.npz")),
        "--json",
        p(&d.join("synth.json")),
    ]);
    let sy: Value = report(&d.join("synth.json"));
    assert_eq!(sy["summary"]["nodes"], 300, "{out}");
}

/// A report that breaks the convention is caught by its schema: an accuracy in percent, a
/// negative count.
#[test]
fn the_schemas_refuse_a_percent_accuracy() {
    let predict = serde_json::json!({
        "report": "predict", "version": 1, "strata": "0", "model_dir": "m", "model": "gcn", "graph": "g",
        "nodes": 10, "predicted_nodes": 10, "fingerprint": "f", "same_graph_as_training": true,
        "test_accuracy": 0.8, "trained_test_accuracy": 0.8, "labelled_nodes": 10, "labelled_accuracy": null,
        "inference_ms": 1.0, "peak_rss_bytes": null, "predictions": null, "embeddings": null,
    });
    strata_tests::check_schema("predict", &predict);
    let mut percent = predict.clone();
    percent["test_accuracy"] = 80.0.into();
    let caught = std::panic::catch_unwind(|| strata_tests::check_schema("predict", &percent));
    assert!(caught.is_err(), "a percent accuracy passed the schema");
    let mut count = predict;
    count["nodes"] = (-1).into();
    assert!(std::panic::catch_unwind(|| strata_tests::check_schema("predict", &count)).is_err());
}
