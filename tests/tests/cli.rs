//! The `strata` binary end to end: reports, plots, configs, checkpoints and error messages.

use serde_json::Value;
use std::process::Command;
use strata_graph::registry::locate_or_skip;
use strata_tests::strata_bin;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(strata_bin()).args(args).env("STRATA_LOG", "warn").output().expect("run strata");
    let (o, e) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(!e.contains("panicked"), "strata panicked on {args:?}:\n{e}");
    (out.status.success(), o, e)
}

#[test]
fn train_writes_json_report_plot_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let svg = dir.path().join("curves.svg");
    let ckpt = dir.path().join("model.safetensors");
    let (ok, stdout, stderr) = run(&[
        "train",
        "--dataset",
        "karate",
        "--model",
        "gcn",
        "--epochs",
        "60",
        "--seeds",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
        "--save",
        ckpt.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("test acc") && stdout.contains("mean"), "{stdout}");
    let r: Value = strata_tests::report(&json);
    for key in ["dataset", "model", "seeds", "epoch_ms_median"] {
        assert!(r.get(key).is_some(), "missing {key} in {r}");
    }
    assert_eq!(r["dataset"], "karate");
    assert_eq!(r["seeds"], 2);
    let mean = r["test_accuracy"]["mean"].as_f64().unwrap();
    assert!(r["test_accuracy"]["std"].as_f64().is_some());
    assert!(mean > 0.6, "karate accuracy {mean}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    assert!(ckpt.exists() && !ckpt.with_extension("json").exists(), "the metadata is inside the file");
    // No temporary files left behind by the atomic writes.
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
}

#[test]
fn toml_config_sets_hyperparameters_and_rejects_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    std::fs::write(&cfg, "hidden = 24\ndropout = 0.3\nepochs = 20\n").unwrap();
    let json = dir.path().join("r.json");
    let (ok, _, stderr) = run(&[
        "train",
        "--dataset",
        "karate",
        "--model",
        "sage",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let r: Value = strata_tests::read_json(&json);
    assert_eq!(r["config"]["hidden"], 24);
    assert_eq!(r["config"]["epochs"], 20);
    std::fs::write(&cfg, "hiden = 24\n").unwrap();
    let (ok, _, stderr) = run(&["train", "--dataset", "karate", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && stderr.contains("m.toml") && stderr.contains("hiden"), "{stderr}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let (ok, _, e) = run(&["train", "--model", "transformer", "--dataset", "karate"]);
    assert!(!ok && e.contains("unknown model `transformer`") && e.contains("gcnii"), "{e}");
    let (ok, _, e) = run(&["train", "--dataset", "nope"]);
    assert!(!ok && e.contains("unknown dataset `nope`") && e.contains("cora"), "{e}");
    let (ok, _, e) = run(&["train", "--dataset", "cora", "--attack", "meta:0.2"]);
    assert!(!ok && e.contains("Pro-GNN"), "{e}");
    let (ok, _, e) = run(&["train", "--dataset", "cora-lcc", "--attack", "meta:0.33"]);
    assert!(!ok && e.contains("meta:0.33"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.npz");
    std::fs::write(&bad, b"PK\x03\x04 truncated").unwrap();
    let (ok, _, e) = run(&["train", "--npz", bad.to_str().unwrap()]);
    assert!(!ok && e.contains("broken.npz"), "{e}");
    let (ok, _, e) = run(&["train", "--dataset", "karate", "--device", "tpu"]);
    assert!(!ok && e.contains("unknown device `tpu`"), "{e}");
}

/// Runs that would train on nothing, or size their work by a flag before any check, are refused
/// before anything starts, naming what is wrong.
#[test]
fn empty_training_sets_and_oversized_runs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let edges = file("e.txt", "0 1\n1 2\n2 3\n3 0\n");
    let labels = file("y.txt", "0\n1\n0\n1\n");
    let split = file("s.json", r#"{"train": [], "val": [1], "test": [2, 3]}"#);
    let graph = ["--edges", &edges, "--labels", &labels, "--split-file", &split];
    for cmd in [&["train"][..], &["launch", "--stages", "2", "--chunks", "2"]] {
        let args: Vec<&str> = cmd.iter().copied().chain(graph).chain(["--epochs", "2"]).collect();
        let (ok, _, e) = run(&args);
        assert!(!ok && e.contains("the training set is empty"), "{args:?}: {e}");
    }
    // A ring of 40 nodes: zero feature columns (every model read nothing: panics in train,
    // probe and launch), and `refine`'s classifier runs without labels (a panic).
    let ring: String = (0..40).map(|i| format!("{i} {}\n{i} {}\n", (i + 1) % 40, (i + 7) % 40)).collect();
    let ring = file("ring.txt", &ring);
    let ring_y = file("ring_y.txt", &(0..40).map(|i| format!("{}\n", i % 2)).collect::<String>());
    let empty = dir.path().join("x0.npy");
    std::fs::write(&empty, strata_graph::npz::npy_bytes("<f4", &[40, 0], &[])).unwrap();
    let empty = empty.to_str().unwrap();
    for cmd in [&["train", "--epochs", "2"][..], &["probe"], &["launch", "--stages", "2", "--epochs", "2"]] {
        let args: Vec<&str> =
            cmd.iter().copied().chain(["--edges", &ring, "--features", empty, "--labels", &ring_y]).collect();
        let (ok, _, e) = run(&args);
        assert!(!ok && e.contains("0 columns"), "{args:?}: {e}");
    }
    let (ok, _, e) = run(&["refine", "--edges", &ring, "--runs", "1"]);
    assert!(!ok && e.contains("need labels") && e.contains("--runs 0"), "{e}");
    // A graph of self loops only has no structure for `probe` to measure (it printed NaN scores).
    let loops = file("loops.txt", "0 0\n1 1\n2 2\n3 3\n");
    let (ok, _, e) = run(&["probe", "--edges", &loops, "--labels", &labels]);
    assert!(!ok && e.contains("the graph has no edges"), "{e}");
    let t = std::time::Instant::now();
    for (flag, value, says) in [
        ("--chunks", "1000000", "1000000 chunks for a graph of 34 nodes"),
        ("--layers", "100000000", "--layers 100000000"),
        ("--hidden", "100000", "--hidden 100000"),
        ("--refresh", "0", "--refresh must be at least 1"),
    ] {
        let (ok, _, e) = run(&["launch", "--dataset", "karate", "--stages", "2", "--epochs", "2", flag, value]);
        assert!(!ok && e.contains(says), "{flag} {value}: {e}");
    }
    // Refused by checks, not after allocating: a few seconds for all four.
    assert!(t.elapsed().as_secs() < 60, "{:?}", t.elapsed());
}

/// A registered dataset whose file was truncated on disk is refused by its published SHA-256
/// (it loaded before, as whatever the truncated archive still held).
#[test]
fn a_registered_dataset_altered_on_disk_is_refused() {
    let Some(cora) = locate_or_skip("planetoid/cora.npz") else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("planetoid")).unwrap();
    let bytes = std::fs::read(&cora).unwrap();
    std::fs::write(dir.path().join("planetoid/cora.npz"), &bytes[..bytes.len() - 100]).unwrap();
    let out =
        Command::new(strata_bin()).args(["data", "info", "cora"]).env("STRATA_DATA_DIR", dir.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("planetoid/cora.npz") && err.contains("SHA-256 mismatch"), "{err}");
}

/// No output overwrites an input or lands inside a model or checkpoint directory the command
/// reads (each of these destroyed its input, exit 0): refused before any work, by flag.
#[test]
fn outputs_never_overwrite_what_a_command_reads() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (ok, _, e) = run(&["data", "synth", "--nodes", "100", "--out", &p("g.npz")]);
    assert!(ok, "{e}");
    let before = std::fs::read(p("g.npz")).unwrap();
    for args in [
        vec!["train", "--npz", &p("g.npz"), "--json", &p("g.npz")],
        vec!["refine", "--npz", &p("g.npz"), "--out", &p("g.npz"), "--runs", "0"],
        vec!["probe", "--npz", &p("g.npz"), "--json", &p("g.npz")],
        vec!["linkpred", "train", "--npz", &p("g.npz"), "--out", &p("m2"), "--json", &p("g.npz")],
    ] {
        let (ok, _, e) = run(&args);
        assert!(!ok && e.contains("--npz are the same file"), "{args:?}: {e}");
    }
    assert_eq!(std::fs::read(p("g.npz")).unwrap(), before, "the graph was changed");
    let (ok, _, e) = run(&["linkpred", "train", "--dataset", "karate", "--epochs", "5", "--out", &p("m")]);
    assert!(ok, "{e}");
    let manifest = std::fs::read(p("m/manifest.json")).unwrap();
    let (ok, _, e) = run(&["linkpred", "eval", &p("m"), "--json", &p("m/manifest.json")]);
    assert!(!ok && e.contains("is inside MODEL_DIR"), "{e}");
    assert_eq!(std::fs::read(p("m/manifest.json")).unwrap(), manifest, "the model was changed");
    let (ok, _, e) = run(&[
        "launch",
        "--dataset",
        "karate",
        "--epochs",
        "2",
        "--checkpoint-dir",
        &p("ck"),
        "--json",
        &p("ck/r.json"),
    ]);
    assert!(!ok && e.contains("is inside --checkpoint-dir"), "{e}");
}

#[test]
fn data_commands() {
    let (ok, out, _) = run(&["data", "list"]);
    assert!(ok && out.contains("cora-lcc") && out.contains("karate"), "{out}");
    let (ok, out, _) = run(&["data", "info", "karate"]);
    assert!(ok && out.contains("34") && out.contains("78"), "{out}");
    if locate_or_skip("planetoid/cora.npz").is_some() {
        let (ok, out, e) = run(&["data", "path", "cora"]);
        assert!(ok && out.trim().ends_with("planetoid/cora.npz"), "{out}{e}");
        let (ok, out, _) = run(&["data", "info", "cora-lcc", "--attack", "meta:0.05"]);
        assert!(ok && out.contains("2485") && out.contains(&(5069 + 253).to_string()), "{out}");
    }
}

/// `launch --plot` overlays this run's validation curve with other runs' reports; a file that
/// is not a launch report is refused by name before any training.
#[test]
fn launch_plots_validation_curves_of_several_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (first, svg) = (dir.path().join("first.json"), dir.path().join("curves.svg"));
    let base = ["launch", "--dataset", "karate", "--layers", "4", "--stages", "2", "--chunks", "4", "--epochs", "4"];
    let (ok, _, e) = run(&[&base[..], &["--json", first.to_str().unwrap()]].concat());
    assert!(ok, "{e}");
    let plot = ["--plot", svg.to_str().unwrap(), "--plot-with", first.to_str().unwrap()];
    let (ok, _, e) = run(&[&base[..], &["--warm-start", "true"], &plot[..]].concat());
    assert!(ok, "{e}");
    let text = std::fs::read_to_string(&svg).unwrap();
    // Both runs in the legend, one of them warm-started.
    assert_eq!(text.matches("pipeline 1×2, 4 chunks").count(), 2, "{text}");
    assert_eq!(text.matches("warm start").count(), 1, "{text}");
    assert!(text.contains("against training time") && text.contains("seconds"));
    let not_json = dir.path().join("notes.txt");
    std::fs::write(&not_json, "epoch 1: 0.5\n").unwrap();
    let not_report = dir.path().join("other.json");
    std::fs::write(&not_report, r#"{"dataset": "karate"}"#).unwrap();
    for (file, says) in
        [(&not_json, "not JSON"), (&not_report, "no mode"), (&dir.path().join("gone.json"), "gone.json")]
    {
        let (ok, out, e) =
            run(&[&base[..], &["--plot", svg.to_str().unwrap(), "--plot-with", file.to_str().unwrap()]].concat());
        assert!(!ok && e.contains(&file.display().to_string()) && e.contains(says), "{e}");
        assert!(!out.contains("test acc"), "trained before refusing the report: {out}");
    }
    // A plot written over the report it overlays (or under any name but .svg or .png) is refused,
    // and the report left as it was.
    let before = std::fs::read(&first).unwrap();
    let (ok, _, e) =
        run(&[&base[..], &["--plot", first.to_str().unwrap(), "--plot-with", first.to_str().unwrap()]].concat());
    assert!(!ok && e.contains("plots are written as SVG or PNG"), "{e}");
    assert_eq!(std::fs::read(&first).unwrap(), before);
    let pdf = dir.path().join("curves.pdf");
    let png = dir.path().join("curves.png");
    for cmd in [&["train", "--dataset", "karate", "--epochs", "5"][..], &["probe", "--dataset", "karate"][..]] {
        let (ok, _, e) = run(&[cmd, &["--plot", pdf.to_str().unwrap()]].concat());
        assert!(!ok && e.contains("name the file .svg or .png"), "{e}");
        assert!(!pdf.exists());
        let (ok, _, e) = run(&[cmd, &["--plot", png.to_str().unwrap()]].concat());
        assert!(ok, "{e}");
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"), "{cmd:?}: a .png path gets a PNG");
        std::fs::remove_file(&png).unwrap();
    }
    let ckpt = dir.path().join("m.safetensors");
    let (ok, _, e) =
        run(&["train", "--dataset", "karate", "--save", ckpt.to_str().unwrap(), "--json", ckpt.to_str().unwrap()]);
    assert!(!ok && e.contains("--json and --save are the same file"), "{e}");
}

/// A closed pipe (`strata … | head -1`) ends the command quietly with SIGPIPE's 141, no panic;
/// log lines carry no colour codes when stderr is not a terminal.
#[test]
fn a_closed_pipe_ends_quietly_and_logs_are_plain_off_a_terminal() {
    // The reader (`true`) is gone before strata writes its first line.
    let script = format!("'{}' data list 2>err.txt | true; echo ${{PIPESTATUS[0]}}", strata_bin().display());
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash").arg("-c").arg(&script).current_dir(dir.path()).output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = std::fs::read_to_string(dir.path().join("err.txt")).unwrap();
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    assert!(status == "141" || status == "0", "exit {status}: {err}");
    // An edge list with a self loop: the reader logs (WARN) that it dropped it.
    let edges = dir.path().join("e.txt");
    std::fs::write(&edges, "0 0\n0 1\n1 2\n2 0\n").unwrap();
    let (_, _, e) = run(&["probe", "--edges", edges.to_str().unwrap()]);
    assert!(e.contains("WARN") && e.contains("self loop") && !e.contains('\u{1b}'), "{e}");
}

/// A launch whose training loss stops being a finite number ends with an error (exit 1) naming
/// the epoch, unless `--allow-nonfinite-loss` asks to go on (the workers' fail point makes every
/// training loss NaN).
#[test]
fn a_diverged_launch_fails_unless_asked_to_go_on() {
    let args = ["launch", "--dataset", "karate", "--layers", "2", "--stages", "2", "--epochs", "3"];
    let out = Command::new(strata_bin()).args(args).env("STRATA_FAILPOINT", "loss-nan").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("training diverged") && err.contains("after epoch 0") && !err.contains("panicked"), "{err}");
    let out = Command::new(strata_bin())
        .args(args)
        .arg("--allow-nonfinite-loss")
        .env("STRATA_FAILPOINT", "loss-nan")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A worker receiving activations with NaN in them refuses them, naming the sender, unless the
/// run was asked to go on past non-finite values.
#[test]
fn non_finite_tensors_from_a_peer_are_refused_by_name() {
    let args = ["launch", "--dataset", "karate", "--layers", "2", "--stages", "2", "--epochs", "2"];
    let out = Command::new(strata_bin()).args(args).env("STRATA_FAILPOINT", "send-nan").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("holds NaN or infinite values") && err.contains("from worker 0") && !err.contains("panicked"),
        "{err}"
    );
    let out = Command::new(strata_bin())
        .args(args)
        .arg("--allow-nonfinite-loss")
        .env("STRATA_FAILPOINT", "send-nan")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Every value-taking flag of the training and data subcommands that is not a path, an address
/// or a name, given a hostile number (negative, zero, NaN, infinite, huge, beyond u64): each run
/// ends within a minute in a clear error or a normal run, never a panic or a signal. Under
/// `make test` a seeded sample of 40 (flag, value) pairs, under `make test-full` all of them
/// (about 3 minutes here).
#[test]
fn hostile_numeric_flags_end_in_an_error_or_a_run_never_a_panic() {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    const NOT_NUMBERS: &[&str] = &[
        "--dataset",
        "--npz",
        "--edges",
        "--features",
        "--labels",
        "--split-file",
        "--ogb",
        "--json",
        "--plot",
        "--out",
        "--save",
        "--config",
        "--predictions",
        "--workers",
        "--cluster",
        "--tls-dir",
        "--checkpoint-dir",
        "--resume",
        "--token",
        "--metrics-addr",
        "--health-addr",
        "--plot-with",
        "--listen",
        "--device",
        "--model",
        "--mode",
        "--trainer",
        "--attack",
        "--split",
        "--preset",
        "--encoder",
        "--decoder",
        "--task",
        "--synthetic",
        "--history-dtype",
        "--balance",
        "--recompute",
        "--reorder",
        "--kernel",
        "--normalize-features",
        "--memory-budget",
        "--stop-on",
        "--pairs",
        "--log",
        "--warm-start",
    ];
    const VALUES: &[&str] = &["-1", "0", "nan", "inf", "1e308", "18446744073709551615", "-0.5"];
    let dir = tempfile::tempdir().unwrap();
    let synth_out = dir.path().join("g.npz").to_str().unwrap().to_string();
    let subcommands: [&[&str]; 6] =
        [&["train"], &["launch"], &["probe"], &["refine"], &["linkpred", "train"], &["data", "synth"]];
    let mut cases = Vec::new();
    for sub in subcommands {
        let (_, help, _) = run(&[sub, &["--help"]].concat());
        for line in help.lines() {
            let mut words = line.split_whitespace();
            let (Some(flag), Some(meta)) = (words.next(), words.next()) else { continue };
            let flag = flag.trim_end_matches(',');
            if flag.starts_with("--") && meta.starts_with('<') && !NOT_NUMBERS.contains(&flag) {
                cases.extend(VALUES.iter().map(|v| (sub, flag.to_string(), *v)));
            }
        }
    }
    assert!(cases.len() > 200, "only {} cases: the help format changed?", cases.len());
    if !std::env::var("STRATA_FULL").is_ok_and(|v| v == "1") {
        cases.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
        cases.truncate(40);
    }
    for (sub, flag, value) in cases {
        let mut args: Vec<&str> = sub.to_vec();
        args.extend(match sub[0] {
            "data" => ["--out", synth_out.as_str()],
            _ => ["--dataset", "karate"],
        });
        if flag != "--epochs" && matches!(sub[0], "train" | "launch" | "refine" | "linkpred") {
            args.extend(["--epochs", "2"]);
        }
        args.extend([flag.as_str(), value]);
        let mut child = Command::new(strata_bin())
            .args(&args)
            .env("STRATA_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Read while it runs: a full pipe would stall the child.
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut err).map(|_| err)
        });
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed().as_secs() > 60 {
                let _ = child.kill();
                panic!("strata {args:?} still running after 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let err = reader.join().unwrap().unwrap();
        assert!(!err.contains("panicked"), "strata {args:?} panicked:\n{err}");
        assert!(matches!(status.code(), Some(0..=2)), "strata {args:?} ended with {status}:\n{err}");
    }
}
