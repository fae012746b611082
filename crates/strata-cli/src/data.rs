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
        /// A registered dataset (`strata data list`).
        name: String,
        /// A poisoned adjacency of a Pro-GNN graph: meta:0.05..0.25 or nettack:1..5.
        #[arg(long)]
        attack: Option<String>,
    },
    /// Load a dataset and print its statistics.
    Info {
        /// A registered dataset (`strata data list`).
        name: String,
        /// A poisoned adjacency of a Pro-GNN graph: meta:0.05..0.25 or nettack:1..5.
        #[arg(long)]
        attack: Option<String>,
    },
    /// Download a dataset's files into the user cache, verifying each SHA-256.
    Get {
        /// A registered dataset (`strata data list`).
        name: String,
        /// Also fetch this poisoned adjacency of a Pro-GNN graph: meta:0.05..0.25 or nettack:1..5.
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
    /// Generate a planted-partition graph of any size (dense Gaussian features around a class
    /// centre, a stratified 10/10/80 split) as a graph npz for `--npz`: size a cluster before
    /// buying one. Streams to disk; memory ≈ 8 bytes per undirected edge.
    Synth(SynthArgs),
}

#[derive(Args)]
struct SynthArgs {
    /// Number of nodes.
    #[arg(long)]
    nodes: usize,
    /// Average degree.
    #[arg(long, default_value_t = 20.0)]
    degree: f64,
    /// Dense float32 features per node.
    #[arg(long, default_value_t = 128)]
    features: usize,
    /// Number of classes (node u has class u mod C).
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Fraction of edges inside a class.
    #[arg(long, default_value_t = 0.8)]
    homophily: f64,
    /// Distance of the class centres from the origin, in noise standard deviations per feature.
    #[arg(long, default_value_t = 0.3)]
    signal: f32,
    /// Seed of the edges and features (the same seed gives the same file).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The graph npz to write (atomically: a temporary file, then a rename).
    #[arg(long)]
    out: PathBuf,
    /// Also write what was generated as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn attack(a: &Option<String>) -> anyhow::Result<Option<Attack>> {
    Ok(a.as_deref().map(str::parse).transpose()?)
}

// Long on purpose: one match arm per `strata data` action, each a few lines.
pub fn run(a: DataArgs) -> anyhow::Result<()> {
    match a.cmd {
        DataCmd::Synth(s) => {
            let spec = strata_graph::planted::PlantedSpec {
                nodes: s.nodes,
                classes: s.classes,
                degree: s.degree,
                homophily: s.homophily,
                features: s.features,
                signal: s.signal,
                seed: s.seed,
            };
            spec.check()?;
            let t0 = std::time::Instant::now();
            let r = strata_graph::planted::write_planted_partition(&spec, &s.out)?;
            println!(
                "{}: {} nodes, {} undirected edges (edge homophily {:.3}), {} features, {} classes · {:.1} MiB in {:.1} s",
                s.out.display(),
                r.nodes,
                r.undirected_edges,
                r.edge_homophily,
                r.features,
                r.classes,
                r.bytes as f64 / 1048576.0,
                t0.elapsed().as_secs_f64()
            );
            if let Some(j) = &s.json {
                let report = crate::reports::DataSynthReport {
                    about: crate::reports::About::of("data-synth"),
                    out: s.out.clone(),
                    spec,
                    summary: r,
                    seconds: t0.elapsed().as_secs_f64(),
                };
                crate::reports::write(j, &report)?;
            }
        }
        DataCmd::List => {
            let mut rows = vec![vec!["name".to_string(), "local".into(), "description".into()]];
            for d in DATASETS {
                let files = registry::files(d.name, None)?;
                let present = files.iter().all(|f| registry::locate(f).is_ok());
                rows.push(vec![d.name.into(), if present { "yes" } else { "no" }.into(), d.description.into()]);
            }
            print!("{}", table(&rows));
            println!(
                "data directories searched: {}",
                registry::data_dirs().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            );
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
                vec![
                    "dataset".to_string(),
                    "nodes".into(),
                    "edges".into(),
                    "self loops".into(),
                    "features".into(),
                    "classes".into(),
                    "splits".into(),
                ],
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
