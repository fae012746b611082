//! The cluster tests' shared run: a 24-epoch GCNII launch on Cora with checkpoints, the
//! uninterrupted reference, and helpers to start, watch and kill its processes.

use crate::strata_bin;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const EPOCHS: &str = "24";
/// GCNII-32 on Cora over 4 pipeline stages, 24 epochs, checkpoints every 3.
pub const RUN: &[&str] = &[
    "launch",
    "--dataset",
    "cora",
    "--model",
    "gcnii",
    "--layers",
    "32",
    "--stages",
    "4",
    "--epochs",
    EPOCHS,
    "--seed",
    "7",
];

pub fn json(p: &std::path::Path) -> Value {
    crate::read_json(p)
}

pub fn run(extra: &[&str]) -> (bool, String) {
    let out = Command::new(strata_bin()).args(RUN).args(extra).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.success(), err)
}

/// The report of the run without failures (computed once per test binary).
pub fn uninterrupted() -> &'static Value {
    static WHOLE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    WHOLE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (ok, err) = run(&["--json", dir.path().join("whole.json").to_str().unwrap()]);
        assert!(ok, "{err}");
        json(&dir.path().join("whole.json"))
    })
}

/// The acceptance bound: final test accuracy within 0.5 points of the uninterrupted run.
pub fn assert_same_accuracy(whole: &Value, other: &Value, what: &str) {
    let (a, b) = (whole["test_accuracy"].as_f64().unwrap(), other["test_accuracy"].as_f64().unwrap());
    eprintln!("uninterrupted {a:.4}, {what} {b:.4}");
    assert!((a - b).abs() <= 0.005, "{what} {b} vs uninterrupted {a}");
}

/// A pseudo-random epoch in `lo..hi`, different on every test run.
pub fn random_epoch(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    lo + nanos % (hi - lo)
}

/// The child's stderr, line by line, read on a thread so the child never blocks on a full pipe.
pub fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Starts a launcher with local workers and checkpoints under `ckpt`; returns it and the
/// worker pids it announces.
pub fn start_launcher(ckpt: &std::path::Path, extra: &[&str]) -> (Child, Vec<u32>, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(strata_bin())
        .args(RUN)
        .args(["--checkpoint-dir", ckpt.to_str().unwrap(), "--checkpoint-every", "3"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stderr_lines(&mut child);
    let mut pids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids.len() < 4 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            if let Some(pid) = line.split("pid ").nth(1) {
                pids.push(pid.trim().parse().unwrap());
            }
        }
    }
    assert_eq!(pids.len(), 4, "the launcher did not announce 4 worker pids");
    (child, pids, rx)
}

/// Waits until the checkpoint of at least `epoch` epochs is complete (manifest written), then a
/// little more, so the kill lands mid-epoch.
pub fn wait_for_checkpoint(ckpt: &std::path::Path, epoch: u64, launcher: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = std::fs::read_dir(ckpt).into_iter().flatten().flatten().any(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_prefix("epoch-").and_then(|x| x.parse::<u64>().ok()).is_some_and(|x| x >= epoch)
                && e.path().join("manifest.json").exists()
        });
        if done {
            std::thread::sleep(Duration::from_millis(150));
            return;
        }
        assert!(launcher.try_wait().unwrap().is_none(), "launcher ended before epoch {epoch}");
        assert!(Instant::now() < deadline, "no checkpoint of epoch {epoch} within 2 min");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn kill9(pid: u32) {
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
}
