//! The `strata …` command lines of README.md and docs/, for the tests that keep the documents
//! true: every one parses (`strata-cli`'s unit test) and the ones that run on the embedded or
//! shared datasets run (`tests/tests/doc_examples.rs`, which includes this file).

use std::path::Path;

/// The command lines of `root`'s README.md and docs/*.md (shell blocks; `\` continuations
/// joined, `# comments` dropped), with the file they came from, in document order; lines with a
/// placeholder (`[…]` or `…`) are left out. docs/cli.md is the parser's own output (usage
/// lines, not examples) and is skipped.
pub fn documented_commands(root: &Path) -> Vec<(String, String)> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs")).unwrap().map(|e| e.unwrap().path()).collect();
    docs.sort();
    files.extend(docs.into_iter().filter(|p| p.extension().is_some_and(|e| e == "md") && !p.ends_with("cli.md")));
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let mut in_shell = false;
        let mut line = String::new();
        for l in text.lines() {
            if l.starts_with("```") {
                in_shell = matches!(l.trim_start_matches('`'), "sh" | "bash" | "console");
                continue;
            }
            if !in_shell || (line.is_empty() && !l.trim_start().starts_with("strata ")) {
                continue;
            }
            // A comment starts at a `#` after a space (never inside these examples' words).
            let code = l.split(" #").next().unwrap_or(l).trim();
            line.push_str(code.trim_end_matches('\\'));
            line.push(' ');
            if !code.ends_with('\\') {
                if !line.contains('[') && !line.contains('…') {
                    out.push((name.clone(), line.trim().to_string()));
                }
                line.clear();
            }
        }
    }
    out
}

/// `cmd`'s words as the shell splits them, up to where the shell takes over (a pipe, a
/// redirection, `&&`).
pub fn words(cmd: &str) -> Vec<String> {
    shlex::split(cmd)
        .unwrap_or_default()
        .into_iter()
        .take_while(|a| !matches!(a.as_str(), "|" | ">" | ">>" | "2>" | "<" | "&&" | "||" | ";"))
        .collect()
}
