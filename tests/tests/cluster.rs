//! Production cluster behaviour across worker processes: a killed worker, then `--resume` from
//! the last checkpoint or `--restart-failed` in one run, ends where an uninterrupted run ends.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata_graph::registry::locate_or_skip;
use strata_tests::resume::*;
use strata_tests::{strata_bin, Procs, HEAVY};

/// Acceptance: kill -9 of a worker at a random epoch, then `--resume`: training completes and
/// the final test accuracy is within 0.5 points of an uninterrupted run (GCNII-32, Cora, same
/// seed). Checkpoints carry strata's own optimizer state, so the resumed run is in fact exact.
#[test]
fn a_killed_worker_then_resume_matches_an_uninterrupted_run() {
    if locate_or_skip("planetoid/cora.npz").is_none() {
        return;
    }
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let whole = uninterrupted();

    let ckpt = dir.path().join("ckpt");
    let (mut launcher, pids, _lines) = start_launcher(&ckpt, &[]);
    let at = random_epoch(4, 20);
    wait_for_checkpoint(&ckpt, at, &mut launcher);
    let victim = (at % 4) as usize;
    kill9(pids[victim]);
    let status = launcher.wait().unwrap();
    assert!(!status.success(), "the launcher finished although worker {victim} was killed");
    eprintln!("killed worker {victim} after epoch {at}");

    let (ok, err) =
        run(&["--resume", ckpt.to_str().unwrap(), "--json", dir.path().join("resumed.json").to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("resumed from"), "{err}");
    let resumed = json(&dir.path().join("resumed.json"));
    assert_same_accuracy(whole, &resumed, "resumed");
    assert_eq!(whole["curve"].as_array().unwrap().len(), resumed["curve"].as_array().unwrap().len());
    // The loss curves agree epoch by epoch, bit for bit: parameters, Adam moments, historical
    // rows and the epoch's RNG streams are restored exactly, on the same threads.
    for (x, y) in whole["curve"].as_array().unwrap().iter().zip(resumed["curve"].as_array().unwrap()) {
        assert_eq!(
            x["loss"].as_f64().unwrap().to_bits(),
            y["loss"].as_f64().unwrap().to_bits(),
            "epoch {}: {} vs {}",
            x["epoch"],
            x["loss"],
            y["loss"]
        );
    }
}

/// `--restart-failed`: the launcher restarts its local workers after one is killed, reloads the
/// last checkpoint everywhere and finishes with the uninterrupted run's accuracy; a torn newest
/// checkpoint is skipped on `--resume`.
#[test]
fn restart_failed_recovers_in_one_run_and_torn_checkpoints_are_skipped() {
    if locate_or_skip("planetoid/cora.npz").is_none() {
        return;
    }
    let _g = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let whole = uninterrupted();

    let ckpt = dir.path().join("ckpt");
    let out = dir.path().join("restarted.json");
    let (mut launcher, pids, lines) = start_launcher(&ckpt, &["--restart-failed", "--json", out.to_str().unwrap()]);
    let at = random_epoch(4, 18);
    wait_for_checkpoint(&ckpt, at, &mut launcher);
    kill9(pids[1]);
    let status = launcher.wait().unwrap();
    let log: Vec<String> = lines.try_iter().collect();
    assert!(status.success(), "{}", log.join("\n"));
    assert!(log.iter().any(|l| l.contains("worker 1") && l.contains("restart 1/3")), "{}", log.join("\n"));
    eprintln!("killed worker 1 after epoch {at}");
    assert_same_accuracy(whole, &json(&out), "restarted");

    // Tear the newest checkpoint (24 epochs): --resume falls back to 21 and runs 3 epochs.
    let newest = ckpt.join("epoch-000024").join("rank2.safetensors");
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 3]).unwrap();
    let (ok, err) = run(&["--resume", ckpt.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        err.contains("epoch-000024")
            && err.contains("checksum")
            && err.contains("resumed from")
            && err.contains("epoch-000021"),
        "{err}"
    );
}

/// Checkpoint options that cannot work are refused up front, naming the flag.
#[test]
fn impossible_checkpoint_options_are_refused() {
    let (ok, err) = run(&["--restart-failed"]);
    assert!(!ok && err.contains("--restart-failed") && err.contains("--checkpoint-dir"), "{err}");
    let (ok, err) = run(&["--resume", "/nonexistent/strata-ckpt"]);
    assert!(!ok && err.contains("--resume /nonexistent/strata-ckpt"), "{err}");
}

/// Slurm at the time limit (`--signal=TERM@120`) and Ctrl-C signal every process of the job at
/// once. Here SIGTERM goes to the launcher and both local workers together: the workers finish
/// the step and keep serving, the launcher finishes the epoch, writes a checkpoint, stops
/// (non-zero, saying where the checkpoint is) and takes its workers down. Starting again with
/// the same `--checkpoint-dir` but no `--resume` is refused naming `--resume`; `--resume`
/// continues from the checkpoint.
#[test]
fn sigterm_to_every_process_checkpoints_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let args = [
        "launch",
        "--dataset",
        "karate",
        "--layers",
        "4",
        "--stages",
        "2",
        "--chunks",
        "4",
        "--checkpoint-every",
        "100000",
    ];
    let mut launcher = Procs(vec![Command::new(strata_bin())
        .args(args)
        .args(["--epochs", "1000000", "--checkpoint-dir", ckpt.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()]);
    let l = &mut launcher.0[0];
    let rx = stderr_lines(l);
    let mut err = String::new();
    let mut pids = vec![l.id().to_string()];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !err.contains("workers ") && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(pid) = line.split(" pid ").nth(1) {
                pids.push(pid.trim().to_string());
            }
            err.push_str(&line);
            err.push('\n');
        }
    }
    assert_eq!(pids.len(), 3, "launcher and two worker pids: {err}");
    std::thread::sleep(Duration::from_secs(4));
    assert!(Command::new("kill").arg("-TERM").args(&pids).status().unwrap().success());
    let status = l.wait().unwrap();
    err.extend(rx.iter().map(|l| l + "\n"));
    assert!(!status.success(), "{err}");
    let epoch: u64 = err
        .split("stopped by a signal after epoch ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|e| e.trim().parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    let manifest = ckpt.join(format!("epoch-{epoch:06}")).join("manifest.json");
    assert!(manifest.exists(), "no checkpoint for epoch {epoch}: {err}");

    let again = Command::new(strata_bin())
        .args(args)
        .args(["--epochs", "3", "--checkpoint-dir", ckpt.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && text.contains("--resume") && text.contains(&format!("{epoch} epochs done")),
        "{text}"
    );

    let out = Command::new(strata_bin())
        .args(args)
        .args(["--epochs", &(epoch + 2).to_string(), "--resume", ckpt.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains(&format!("({epoch} epochs done)")), "{err}");
}
