//! The examples of README.md and docs/ run: every documented `strata …` line that needs only
//! the embedded and shared datasets (or files an earlier example of the same page wrote) runs
//! with the binary, in document order, one scratch directory per page. Training is capped to
//! keep the suite short (`--epochs 2`, `--seeds 1`, `refine --runs 1`, written over the example's
//! own values); every other flag is as documented. The lines that cannot run here are listed
//! with the reason (a GPU, other machines, a download, a server, a file of the reader's own).

#[path = "../../crates/strata-cli/src/doc_commands.rs"]
mod doc_commands;

use std::path::Path;
use std::time::{Duration, Instant};

/// Flags whose value the command writes: it need not exist before.
const OUTPUTS: [&str; 8] =
    ["--json", "--plot", "--out", "--save", "--predictions", "--embeddings", "--csv", "--checkpoint-dir"];

/// Why `args` cannot run in `dir`, if it cannot.
fn cannot_run(args: &[String], dir: &Path) -> Option<String> {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str);
    match args.get(1).map(String::as_str) {
        Some("worker") => return Some("a server: it runs until stopped".into()),
        Some("data") if args.get(2).is_some_and(|a| a == "get") => return Some("a download".into()),
        _ => {}
    }
    if value("--device").is_some_and(|d| d.starts_with("cuda")) {
        return Some("a GPU".into());
    }
    let launch = args.get(1).is_some_and(|a| a == "launch");
    if (launch && (has("--workers") || has("--cluster"))) || has("--ogb") {
        return Some("other machines or the reader's own data".into());
    }
    if value("--nodes").and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 100_000) {
        return Some("minutes of work (a graph of more than 100,000 nodes)".into());
    }
    for (i, a) in args.iter().enumerate().skip(1) {
        let output = i > 0 && OUTPUTS.contains(&args[i - 1].as_str());
        let path_like = a.parse::<f64>().is_err()
            && (a.contains('/') || Path::new(a).extension().is_some_and(|e| e.len() <= 4 && !a.starts_with('-')));
        if path_like && !output && !a.contains(',') && !a.contains(':') && !dir.join(a).exists() {
            return Some(format!("the reader's file {a}"));
        }
    }
    None
}

/// `args` with training capped: `flag value` set over the example's own or added.
fn capped(mut args: Vec<String>) -> Vec<String> {
    let sub = args.get(1).cloned().unwrap_or_default();
    let trains = sub == "train" || sub == "launch" || (sub == "linkpred" && args.get(2).is_some_and(|a| a == "train"));
    let netinfof = args.iter().any(|a| a == "netinfof");
    let mut set = |flag: &str, v: &str| match args.iter().position(|a| a == flag) {
        Some(i) if i + 1 < args.len() => args[i + 1] = v.into(),
        _ => args.extend([flag.to_string(), v.to_string()]),
    };
    if trains && !netinfof {
        set("--epochs", "2");
    }
    if sub == "train" {
        set("--seeds", "1");
    }
    if sub == "refine" {
        set("--runs", "1");
    }
    args
}

#[test]
fn the_documented_examples_run() {
    let Some(cora) = strata_graph::registry::locate_or_skip("planetoid/cora.npz") else { return };
    let data_dir = cora.parent().and_then(Path::parent).unwrap().to_path_buf();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let commands = doc_commands::documented_commands(&root);
    let mut dirs: std::collections::BTreeMap<String, tempfile::TempDir> = Default::default();
    let (mut ran, mut skipped, mut failed) = (0, Vec::new(), Vec::new());
    for (page, cmd) in &commands {
        let dir = dirs.entry(page.clone()).or_insert_with(|| tempfile::tempdir().unwrap()).path().to_path_buf();
        let args = doc_commands::words(cmd);
        if let Some(why) = cannot_run(&args, &dir) {
            skipped.push(format!("{page}: `{cmd}`: needs {why}"));
            continue;
        }
        let args = capped(args);
        let t0 = Instant::now();
        let mut strata = std::process::Command::new(strata_tests::strata_bin());
        strata.args(&args[1..]).current_dir(&dir).env("STRATA_DATA_DIR", &data_dir);
        let (status, err) = strata_tests::run_bounded(strata, Duration::from_secs(180));
        ran += 1;
        eprintln!("{page}: {} ({:.1} s)", args.join(" "), t0.elapsed().as_secs_f64());
        match status {
            Some(s) if s.success() => {}
            Some(_) => {
                failed.push(format!("{page}: `{}`: {}", args.join(" "), err.trim().lines().last().unwrap_or("")))
            }
            None => failed.push(format!("{page}: `{}`: still running after 180 s", args.join(" "))),
        }
    }
    eprintln!("{ran} documented examples ran; {} cannot run here:\n{}", skipped.len(), skipped.join("\n"));
    assert!(ran >= 25, "only {ran} of {} documented examples ran", commands.len());
    assert!(failed.is_empty(), "{} documented example(s) fail:\n{}", failed.len(), failed.join("\n"));
}
