//! Shared helpers for strata's end-to-end tests (`tests/tests/*.rs`).

pub mod resume;

use std::path::PathBuf;
use std::sync::Mutex;

/// Accuracy tests each use every core; running two at once would only slow both down.
pub static HEAVY: Mutex<()> = Mutex::new(());

/// The `strata` binary of the same build profile as the running test (`make test` builds it
/// before running the tests).
pub fn strata_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    let bin = profile_dir.join("strata");
    assert!(bin.exists(), "{} not built: run `make test` (it builds the binary first)", bin.display());
    bin
}

/// Whether the slow accuracy suite (`make test-full`) is running.
pub fn full_suite() -> bool {
    std::env::var("STRATA_FULL").is_ok_and(|v| v == "1")
}

/// Runs `strata ARGS`: (success, stdout, stderr). Fails the test if the binary panicked.
pub fn run_strata(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(strata_bin()).args(args).output().expect("running strata");
    let (so, se) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(!se.contains("panicked"), "{se}");
    (out.status.success(), so, se)
}

/// Runs `cmd` (stdin and stdout closed, stderr captured), killing it after `limit`: its exit
/// status (`None` when it was killed) and its stderr.
pub fn run_bounded(
    mut cmd: std::process::Command,
    limit: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String) {
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawning");
    let mut err = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for the child") {
            break Some(s);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}

/// Child processes killed (and reaped) when the test ends, however it ends.
pub struct Procs(pub Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `strata launch ARGS --json FILE`: (success, the JSON report or null, stderr). Fails the test
/// if the binary panicked.
pub fn launch(args: &[&str]) -> (bool, serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("r.json");
    let out = std::process::Command::new(strata_bin())
        .arg("launch")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running strata launch");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let v = if json.exists() { report(&json) } else { serde_json::Value::Null };
    (out.status.success(), v, stderr)
}

/// Reads a `--json` report and fails the test unless it is valid under the schema of the
/// report it says it is (`docs/schemas/REPORT.schema.json`, named by its `report` key).
pub fn report(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let kind = v["report"].as_str().unwrap_or_else(|| panic!("{}: no `report` key", path.display()));
    check_schema(kind, &v);
    v
}

/// Reads a JSON file; one with a `report` key is checked against its schema as [`report`] does
/// (a model directory's manifest has none).
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    if let Some(kind) = v["report"].as_str() {
        check_schema(kind, &v);
    }
    v
}

/// Fails the test unless `v` is valid under `docs/schemas/KIND.schema.json`.
pub fn check_schema(kind: &str, v: &serde_json::Value) {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../docs/schemas/{kind}.schema.json"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())))
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let errors: Vec<String> = validator.iter_errors(v).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "the {kind} report breaks its schema:\n{}", errors.join("\n"));
}
