//! `strata`: train graph neural networks, and manage the datasets they train on.

#[cfg(test)]
mod cli_reference;
mod cluster;
mod data;
#[cfg(test)]
mod doc_commands;
mod launch;
mod linkpred;
mod metrics_endpoint;
mod model_dir;
mod plot;
mod predict;
mod probe;
mod refine;
mod report;
mod reports;
mod source;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "strata", version, about = "Train graph neural networks across workers, on libtorch")]
struct Cli {
    /// Log filter (also via RUST_LOG), e.g. `info` or `strata=debug`.
    #[arg(long, global = true, default_value = "warn", env = "STRATA_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a node classifier in this process (full batch).
    Train(Box<train::TrainArgs>),
    /// Predict classes, probabilities and embeddings with a model saved by `train --out`.
    Predict(Box<predict::PredictArgs>),
    /// List, locate, inspect and download datasets.
    Data(data::DataArgs),
    /// Train a deep GNN pipelined across worker processes (starts local workers by default).
    Launch(Box<launch::LaunchArgs>),
    /// Serve one pipeline stage or graph partition.
    Worker(launch::WorkerArgs),
    /// Cluster tools: TLS certificates for a test cluster.
    Cluster(cluster::ClusterArgs),
    /// Train, evaluate and query link predictors.
    Linkpred(linkpred::LinkpredArgs),
    /// Measure the usable information in a graph's structure and features (NetInfoF).
    Probe(Box<probe::ProbeArgs>),
    /// Repair a possibly poisoned graph before training (STABLE).
    Refine(Box<refine::RefineArgs>),
    /// Print the JSON Schema of a `--json` report (docs/reports.md says the convention).
    Schema(reports::SchemaArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or(cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // Colour only on a terminal, and never under NO_COLOR (no-color.org).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    // A file's array may not declare more bytes than this process may take (checked before
    // it is inflated).
    if let Some(bytes) = strata_nn::memory::available_bytes() {
        strata_graph::limits::set_memory_budget(bytes);
    }
    // libtorch reports a failed allocation as an error that tch turns into a panic: say it
    // plainly instead of printing a panic and a backtrace.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = panic_text(info.payload());
        // A closed pipe (`strata … | head -1`) ends the command quietly, as SIGPIPE would.
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        if !out_of_memory(&text) {
            default_hook(info);
        }
    }));
    let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli.command))) {
        Ok(r) => r,
        Err(payload) => {
            let text = panic_text(payload.as_ref());
            if !out_of_memory(&text) {
                std::panic::resume_unwind(payload);
            }
            let what = allocation_failure(&text);
            let peak = strata_nn::memory::peak_rss_bytes()
                .map_or(String::new(), |b| format!(" after a peak of {} MiB resident", b >> 20));
            Err(anyhow::anyhow!(
                "out of memory{peak}: {what}. This graph and model need more memory than this process may use; spread it over workers with `strata launch` (each holds only its share), or lower --hidden / --layers"
            ))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(a) => train::run(*a),
        Command::Predict(a) => predict::run(*a),
        Command::Data(a) => data::run(a),
        Command::Launch(a) => launch::launch(*a),
        Command::Worker(a) => launch::worker(a),
        Command::Cluster(a) => cluster::run(a),
        Command::Linkpred(a) => linkpred::run(a),
        Command::Probe(a) => probe::run(*a),
        Command::Refine(a) => refine::run(*a),
        Command::Schema(a) => reports::print_schema(a),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The allocator's own sentence from a libtorch error (which goes on with a C++ backtrace).
fn allocation_failure(text: &str) -> &str {
    let start = ["DefaultCPUAllocator", "CUDA out of memory", "std::bad_alloc", "OutOfMemoryError"]
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .unwrap_or(0);
    let rest = &text[start..];
    let end = ["\\n", "\n", "\"", " Error code"].iter().filter_map(|m| rest.find(m)).min().unwrap_or(rest.len());
    rest[..end].trim_end_matches(['.', ' '])
}

/// Whether a panic message is libtorch failing to allocate (CPU or CUDA).
fn out_of_memory(text: &str) -> bool {
    ["can't allocate memory", "CUDA out of memory", "std::bad_alloc", "OutOfMemoryError"]
        .iter()
        .any(|m| text.contains(m))
}

#[cfg(test)]
mod tests {
    #[test]
    fn allocation_failures_are_cut_to_their_sentence() {
        let t = r#"called `Result::unwrap()` on an `Err` value: Torch("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 7680000 bytes. Error code 12 (Cannot allocate memory)\nframe #0: c10::ThrowEnforceNotMet"#;
        assert!(super::out_of_memory(t));
        assert_eq!(
            super::allocation_failure(t),
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 7680000 bytes"
        );
        assert!(!super::out_of_memory("index out of range"));
    }

    /// Every subcommand's flags are consistent (no two flags share a name), which clap would
    /// otherwise only report by panicking when that subcommand is run.
    #[test]
    fn every_subcommand_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// Every flag and argument of every subcommand says what it does.
    #[test]
    fn every_flag_has_a_help_line() {
        use clap::CommandFactory;
        let missing = super::cli_reference::undocumented(&super::Cli::command());
        assert!(missing.is_empty(), "{} argument(s) without help text:\n{}", missing.len(), missing.join("\n"));
    }

    /// `docs/cli.md` is what the parser says; `make docs` (STRATA_UPDATE_DOCS=1) rewrites it.
    #[test]
    fn the_cli_reference_is_up_to_date() {
        use clap::CommandFactory;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
        let want = super::cli_reference::markdown(&super::Cli::command());
        if std::env::var("STRATA_UPDATE_DOCS").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "{} is out of date with the parser: run `make docs`", path.display());
    }

    /// Every documented command parses with this binary's parser, so an example cannot name a
    /// subcommand, flag or value list that no longer exists.
    #[test]
    fn every_documented_command_parses() {
        use clap::Parser;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let commands = super::doc_commands::documented_commands(&root);
        assert!(commands.len() >= 40, "only {} documented commands found", commands.len());
        let bad: Vec<String> = commands
            .iter()
            .filter_map(|(file, cmd)| {
                let args = super::doc_commands::words(cmd);
                let e = super::Cli::try_parse_from(&args).err()?;
                Some(format!("{file}: `{cmd}`: {}", e.to_string().lines().next().unwrap_or("")))
            })
            .collect();
        assert!(bad.is_empty(), "{} documented command(s) do not parse:\n{}", bad.len(), bad.join("\n"));
    }
}
