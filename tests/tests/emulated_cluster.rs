//! The emulated cluster of `make bench` (`scripts/emulated-cluster.sh`): two workers, each in
//! its own network namespace on its own core, every link shaped to 100 Mbit/s both ways, the
//! launcher outside. The run finishes, its bytes are the volume model's plus the measured
//! framing, the shaped links carried them, and nothing is left behind.

use serde_json::Value;
use std::process::Command;
use strata_graph::registry::locate_or_skip;
use strata_tests::{strata_bin, HEAVY};

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("running a system command");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
// Long on purpose: one run of the harness, then every check on what it left.
fn a_shaped_two_worker_cluster_runs_and_leaves_nothing_behind() {
    if locate_or_skip("planetoid/cora.npz").is_none() {
        return;
    }
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (report, links) = (dir.path().join("launch.json"), dir.path().join("links.json"));
    let tag = (std::process::id() % 100_000).to_string();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/emulated-cluster.sh");
    let epochs = 4;
    let out = Command::new("bash")
        .arg(&script)
        .args(["--workers", "2", "--rate", "100mbit", "--tag", &tag, "--link-bytes", links.to_str().unwrap(), "--"])
        .args(["--dataset", "cora", "--model", "gcnii", "--layers", "8", "--stages", "2"])
        .args(["--epochs", &epochs.to_string(), "--json", report.to_str().unwrap()])
        .env("STRATA", strata_bin())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.code() == Some(2) && stderr.contains("need root") {
        let why = std::env::var("STRATA_NO_NETNS").unwrap_or_default();
        if strata_graph::registry::tests_must_not_skip() && why.is_empty() {
            panic!("{stderr}\nset STRATA_NO_NETNS=<reason> to skip this test knowingly");
        }
        eprintln!("SKIPPED: {stderr}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The run: what the volume model predicts was sent, and the wire carried it plus framing.
    let r: Value = strata_tests::read_json(&report);
    let b = &r["bytes_per_epoch"];
    let (measured, predicted, wire) =
        (b["measured"].as_f64().unwrap(), b["predicted"].as_f64().unwrap(), b["wire"].as_f64().unwrap());
    assert!(measured > 0.0 && measured == predicted, "measured {measured} B/epoch, the model {predicted}");
    let framing = wire - measured;
    assert!(framing > 0.0 && framing < 0.01 * measured, "framing {framing} B on {measured} B");
    assert_eq!(r["curve"].as_array().unwrap().len(), epochs);
    assert!(r["test_accuracy"].as_f64().unwrap() > 0.0);
    // ... and that traffic crossed the shaped links (which also carried the set-up and the
    // evaluations: at least the epochs' wire bytes, not equal to them).
    let wire_total: f64 = r["curve"].as_array().unwrap().iter().map(|e| e["wire_bytes"].as_f64().unwrap()).sum();
    let l: Value = strata_tests::read_json(&links);
    assert_eq!(l["rate"], "100mbit");
    let sent: f64 = l["links"].as_array().unwrap().iter().map(|x| x["sent_bytes"].as_f64().unwrap()).sum();
    assert!(sent >= wire_total, "the workers' links sent {sent} B, the epochs' sends {wire_total} B");

    // Nothing left: no namespace, link or bridge of this tag, no worker on its addresses.
    let netns = sh(&["ip", "netns", "list"]);
    assert!(!netns.contains(&format!("st{tag}w")), "namespaces left: {netns}");
    let linkset = sh(&["ip", "-o", "link"]);
    assert!(
        !linkset.contains(&format!("stv{tag}")) && !linkset.contains(&format!("stb{tag}")),
        "links left: {linkset}"
    );
    let line = stderr.lines().find(|l| l.starts_with("emulated cluster")).expect("the harness names its cluster");
    let addrs = line.split(['(', ')']).nth(1).unwrap();
    for a in addrs.split_whitespace() {
        let ps = sh(&["pgrep", "-af", a]);
        assert!(ps.lines().all(|p| p.contains("pgrep")), "a worker on {a} is still running: {ps}");
    }
}
