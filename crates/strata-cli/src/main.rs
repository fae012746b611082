//! `strata`: train graph neural networks, and manage the datasets they train on.

mod cluster;
mod data;
mod launch;
mod linkpred;
mod plot;
mod probe;
mod refine;
mod report;
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or(cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Train(a) => train::run(*a),
        Command::Data(a) => data::run(a),
        Command::Launch(a) => launch::launch(*a),
        Command::Worker(a) => launch::worker(a),
        Command::Cluster(a) => cluster::run(a),
        Command::Linkpred(a) => linkpred::run(a),
        Command::Probe(a) => probe::run(*a),
        Command::Refine(a) => refine::run(*a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every subcommand's flags are consistent (no two flags share a name), which clap would
    /// otherwise only report by panicking when that subcommand is run.
    #[test]
    fn every_subcommand_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
