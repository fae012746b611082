//! `strata data`: list, locate, inspect and download the registered datasets.

use crate::report::table;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use strata_graph::registry::{self, DATASETS};
use strata_graph::Attack;

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    cmd: DataCmd,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Registered datasets and whether their files are present.
    List,
    /// Print the local paths of a dataset's files (fails if any is missing).
    Path {
        name: String,
        #[arg(long)]
        attack: Option<String>,
    },
    /// Load a dataset and print its statistics.
    Info {
        name: String,
        #[arg(long)]
        attack: Option<String>,
    },
    /// Download a dataset's files into the user cache, verifying each SHA-256.
    Get {
        name: String,
        #[arg(long)]
        attack: Option<String>,
        /// Fetch `MIRROR/<relative path>` instead of the upstream address.
        #[arg(long)]
        mirror: Option<String>,
        /// Destination directory (default: the user cache).
        #[arg(long)]
        dest: Option<PathBuf>,
        /// Download even when a verified copy is already present.
        #[arg(long)]
        force: bool,
    },
}

fn attack(a: &Option<String>) -> anyhow::Result<Option<Attack>> {
    Ok(a.as_deref().map(str::parse).transpose()?)
}

pub fn run(a: DataArgs) -> anyhow::Result<()> {
    match a.cmd {
        DataCmd::List => {
            let mut rows = vec![vec!["name".to_string(), "local".into(), "description".into()]];
            for d in DATASETS {
                let files = registry::files(d.name, None)?;
                let present = files.iter().all(|f| registry::locate(f).is_ok());
                rows.push(vec![d.name.into(), if present { "yes" } else { "no" }.into(), d.description.into()]);
            }
            print!("{}", table(&rows));
            println!("data directories searched: {}", registry::data_dirs().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
        }
        DataCmd::Path { name, attack: att } => {
            let files = registry::files(&name, attack(&att)?)?;
            if files.is_empty() {
                println!("{name}: embedded in the strata binary");
            }
            for f in files {
                println!("{}", registry::locate(&f)?.display());
            }
        }
        DataCmd::Info { name, attack: att } => {
            let d = strata_graph::load(&name, attack(&att)?)?;
            let rows = vec![
                vec!["dataset".to_string(), "nodes".into(), "edges".into(), "self loops".into(), "features".into(), "classes".into(), "splits".into()],
                vec![
                    d.name.clone(),
                    d.num_nodes().to_string(),
                    d.graph.num_undirected_edges().to_string(),
                    d.graph.num_self_loops().to_string(),
                    d.features.dim().to_string(),
                    d.num_classes.to_string(),
                    d.splits.len().to_string(),
                ],
            ];
            print!("{}", table(&rows));
        }
        DataCmd::Get { name, attack: att, mirror, dest, force } => {
            let dest = dest.unwrap_or_else(registry::cache_dir);
            let files = registry::files(&name, attack(&att)?)?;
            if files.is_empty() {
                println!("{name} is embedded in the binary: nothing to download");
            }
            for f in files {
                let target = dest.join(&f);
                if !force && target.exists() && registry::verify(&f, &target).is_ok() {
                    println!("ok     {} (already present, checksum verified)", target.display());
                    continue;
                }
                let path = registry::download(&f, mirror.as_deref(), &dest).with_context(|| format!("fetching {f}"))?;
                println!("got    {}", path.display());
            }
        }
    }
    Ok(())
}
