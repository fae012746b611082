//! The command-line reference, `docs/cli.md`, generated from clap's own description of every
//! subcommand (so it cannot disagree with `--help`). `make docs` rewrites the file; the test
//! beside this module fails when it is out of date, and when any flag lacks a help line.

use clap::Command;
use std::fmt::Write;

/// The reference of `cmd` and every subcommand below it, as Markdown.
pub fn markdown(cmd: &Command) -> String {
    let mut out = String::from(
        "# Command-line reference\n\n\
         Generated from `strata`'s own argument parser by `make docs`; do not edit by hand \
         (a test fails when this file differs from the binary's `--help`).\n",
    );
    let mut root = cmd.clone().bin_name(cmd.get_name().to_string());
    root.build();
    section(&root, "", &mut out);
    out
}

fn section(cmd: &Command, parent: &str, out: &mut String) {
    let path = if parent.is_empty() { cmd.get_name().to_string() } else { format!("{parent} {}", cmd.get_name()) };
    let depth = path.split(' ').count().min(4);
    let _ = write!(out, "\n{} `{path}`\n\n", "#".repeat(depth + 1));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        let _ = writeln!(out, "{}.\n", about.to_string().trim().trim_end_matches('.'));
    }
    let usage = cmd.clone().render_usage().to_string();
    let _ = writeln!(out, "```text\n{}\n```", usage.trim_start_matches("Usage: ").trim());
    // Global flags are listed once, under the command that defines them.
    let args: Vec<_> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !is_builtin(a) && (!a.is_global_set() || parent.is_empty()))
        .collect();
    if !args.is_empty() {
        out.push('\n');
    }
    for a in args {
        let _ = writeln!(out, "- {}", describe(a));
    }
    let subs: Vec<_> = cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help").collect();
    if !subs.is_empty() {
        out.push('\n');
        for s in &subs {
            let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
            let _ = writeln!(out, "- `{path} {}`: {}", s.get_name(), about.trim());
        }
    }
    for s in subs {
        section(s, &path, out);
    }
}

/// clap's own `--help` and `--version`.
fn is_builtin(a: &clap::Arg) -> bool {
    matches!(a.get_id().as_str(), "help" | "version")
}

/// One argument: its spelling, help text, accepted values, default and environment variable.
fn describe(a: &clap::Arg) -> String {
    let mut name = match (a.get_long(), a.get_short()) {
        (Some(l), Some(s)) => format!("`-{s}`, `--{l}`"),
        (Some(l), None) => format!("`--{l}`"),
        (None, Some(s)) => format!("`-{s}`"),
        (None, None) => {
            format!("`{}`", a.get_value_names().and_then(|v| v.first()).map_or(a.get_id().as_str(), |v| v.as_str()))
        }
    };
    if a.get_long().is_some() || a.get_short().is_some() {
        if let Some(v) = a.get_value_names().filter(|_| a.get_action().takes_values()) {
            let _ = write!(name, " `<{}>`", v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("> <"));
        }
    }
    let help = a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default();
    let mut line = format!("{name}: {}", help.split_whitespace().collect::<Vec<_>>().join(" "));
    if !line.ends_with(['.', ':']) {
        line.push('.');
    }
    let values: Vec<String> =
        a.get_possible_values().iter().filter(|v| !v.is_hide_set()).map(|v| format!("`{}`", v.get_name())).collect();
    if !values.is_empty() && a.get_action().takes_values() {
        let _ = write!(line, " Values: {}.", values.join(", "));
    }
    let defaults: Vec<String> = a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    if !defaults.is_empty() && a.get_action().takes_values() {
        let _ = write!(line, " Default: `{}`.", defaults.join(","));
    }
    if let Some(env) = a.get_env() {
        let _ = write!(line, " Environment: `{}`.", env.to_string_lossy());
    }
    if a.is_required_set() {
        line.push_str(" Required.");
    }
    line
}

/// Every argument of `cmd` and its subcommands without a help line, as `subcommand --flag`.
pub fn undocumented(cmd: &Command) -> Vec<String> {
    let mut root = cmd.clone();
    root.build();
    let mut missing = Vec::new();
    walk(&root, "", &mut missing);
    missing
}

fn walk(cmd: &Command, parent: &str, missing: &mut Vec<String>) {
    let path = if parent.is_empty() { cmd.get_name().to_string() } else { format!("{parent} {}", cmd.get_name()) };
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set() && !is_builtin(a)) {
        if a.get_help().or(a.get_long_help()).is_none_or(|h| h.to_string().trim().is_empty()) {
            missing
                .push(format!("{path} {}", a.get_long().map_or_else(|| a.get_id().to_string(), |l| format!("--{l}"))));
        }
    }
    for s in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        walk(s, &path, missing);
    }
}
