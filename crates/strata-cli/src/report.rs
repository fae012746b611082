//! Plain-text tables and atomic JSON reports.

use anyhow::Context;
use std::path::Path;

/// Renders rows as an aligned text table (first row = header).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r.iter().enumerate().map(|(c, s)| format!("{s:>w$}", w = widths[c])).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
            out.push('\n');
        }
    }
    out
}

/// Refuses a run whose output files collide: two outputs at one path, an output at the path of
/// an input it would overwrite, or an output inside an input directory (a model or checkpoint
/// the command reads). Each entry names its flag; paths are compared absolute, and through
/// symbolic links where the file (or, for one not written yet, its directory) exists.
pub fn distinct_paths(outputs: &[(&str, &Path)], inputs: &[(&str, &Path)]) -> anyhow::Result<()> {
    let key = |p: &Path| {
        std::fs::canonicalize(p)
            .or_else(|_| {
                // Not written yet: its directory's real path, and its name.
                let abs = std::path::absolute(p)?;
                match (abs.parent(), abs.file_name()) {
                    (Some(dir), Some(name)) => std::fs::canonicalize(dir).map(|d| d.join(name)).or(Ok(abs)),
                    _ => Ok::<_, std::io::Error>(abs),
                }
            })
            .unwrap_or_else(|_| p.to_path_buf())
    };
    for (fo, po) in outputs {
        let out = key(po);
        // A directory, or one a run will create (a new checkpoint directory): no file is inside
        // a path that exists as a file.
        for (fi, pi) in inputs.iter().filter(|(_, p)| p.is_dir() || !p.exists()) {
            let dir = key(pi);
            if out.starts_with(&dir) && out != dir {
                anyhow::bail!(
                    "{fo} ({}) is inside {fi} ({}), which this command reads: writing there would change it",
                    out.display(),
                    dir.display()
                );
            }
        }
    }
    let all: Vec<(&str, std::path::PathBuf, bool)> = outputs
        .iter()
        .map(|(f, p)| (*f, key(p), true))
        .chain(inputs.iter().map(|(f, p)| (*f, key(p), false)))
        .collect();
    for (i, (f1, p1, out1)) in all.iter().enumerate() {
        for (f2, p2, out2) in &all[i + 1..] {
            if p1 == p2 && (*out1 || *out2) {
                anyhow::bail!("{f1} and {f2} are the same file ({}): one would overwrite the other", p1.display());
            }
        }
    }
    Ok(())
}

/// Writes a JSON report atomically.
pub fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    strata_nn::checkpoint::write_atomic(path, text.as_bytes())
        .with_context(|| format!("writing report {}", path.display()))
}

/// A progress bar on stderr; hidden when stderr is not a terminal.
pub fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .unwrap()
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// A spinner on stderr for one long step without a count (hidden when stderr is not a TTY).
pub fn spinner(what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    pb.set_style(indicatif::ProgressStyle::with_template("{spinner} {prefix} ({elapsed})").unwrap());
    pb.set_prefix(what.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

#[cfg(test)]
mod tests {
    use super::distinct_paths;
    use std::path::Path;

    #[test]
    fn colliding_outputs_and_inputs_are_refused_by_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.svg"));
        std::fs::write(&a, "{}").unwrap();
        assert!(
            distinct_paths(&[("--json", &a), ("--plot", &b)], &[("--plot-with", &dir.path().join("c.json"))]).is_ok()
        );
        // Two readers of one file are fine; an output over an input or another output is not.
        assert!(distinct_paths(&[("--plot", &b)], &[("--plot-with", &a), ("--plot-with", &a)]).is_ok());
        let e = distinct_paths(&[("--plot", &a)], &[("--plot-with", &a)]).unwrap_err().to_string();
        assert!(e.contains("--plot and --plot-with"), "{e}");
        // The same file under another spelling, and one not yet written.
        let other = dir.path().join(".").join("b.svg");
        let e = distinct_paths(&[("--json", &b), ("--plot", &other)], &[]).unwrap_err().to_string();
        assert!(e.contains("--json and --plot"), "{e}");
        let rel = Path::new("r.json");
        assert!(distinct_paths(&[("--json", rel), ("--plot", &std::path::absolute(rel).unwrap())], &[]).is_err());
        // Nothing is written inside a directory the command reads (a model, a checkpoint).
        let model = dir.path().join("model");
        std::fs::create_dir_all(model.join("sub")).unwrap();
        let e = distinct_paths(&[("--json", &model.join("sub/../manifest.json"))], &[("MODEL", &model)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--json") && e.contains("inside MODEL"), "{e}");
        assert!(distinct_paths(&[("--json", &dir.path().join("model.json"))], &[("MODEL", &model)]).is_ok());
    }
}
