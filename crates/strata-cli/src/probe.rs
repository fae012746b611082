//! `strata probe`: NetInfoF's answer to "is there usable information in this graph, and where?"
//! before any GNN is trained.

use crate::report::table;
use crate::source::GraphSource;
use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use strata_graph::synthetic::{synthetic, SyntheticSpec};
use strata_graph::{Dataset, LinkSplit};
use strata_netinfo::{act_on_probe, probe_links, probe_nodes, verdict, ActConfig, EmbedConfig};

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The graph (default: the registered `cora`).
    #[command(flatten)]
    graph: GraphSource,
    /// A generated graph with known information: structure|features|both|neither, optionally
    /// suffixed -homophilous / -heterophilous.
    #[arg(long, conflicts_with_all = ["dataset", "npz", "edges", "ogb"])]
    synthetic: Option<String>,
    /// Nodes of the synthetic graph.
    #[arg(long, default_value_t = 2000)]
    nodes: usize,
    /// Average degree of the synthetic graph.
    #[arg(long, default_value_t = 10.0)]
    degree: f64,
    /// link (70/10/20 link split) or node (the dataset's split).
    #[arg(long, default_value = "link")]
    task: String,
    /// Seed of the link split and of the probe's embeddings and classifiers.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// K of the per-component Hits@K.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    hits_k: usize,
    /// Also train NetInfoF_Act on all components and report its test Hits@K.
    #[arg(long)]
    act: bool,
    #[command(flatten)]
    compute: crate::source::ComputeArgs,
    /// Also write the scores, the verdict and the settings as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Bar chart of the scores (.svg or .png).
    #[arg(long, value_parser = crate::plot::plot_path)]
    plot: Option<PathBuf>,
}

fn load(a: &ProbeArgs) -> anyhow::Result<Dataset> {
    if let Some(name) = &a.synthetic {
        let mut spec = SyntheticSpec::parse(name).with_context(|| {
            format!("--synthetic {name}: expected structure|features|both|neither[-homophilous|-heterophilous]")
        })?;
        spec.nodes = a.nodes;
        spec.degree = a.degree;
        spec.seed = a.seed;
        return Ok(synthetic(&spec));
    }
    a.graph.load("cora", None)
}

// Long on purpose: the probe's subcommand in the order the user sees it (data, NetInfoF's measures, table, plot, JSON), each step a few lines.
pub fn run(a: ProbeArgs) -> anyhow::Result<()> {
    let outputs: Vec<(&str, &std::path::Path)> =
        [("--json", &a.json), ("--plot", &a.plot)].into_iter().filter_map(|(f, p)| Some((f, p.as_deref()?))).collect();
    crate::report::distinct_paths(&outputs, &a.graph.inputs())?;
    let device = a.compute.start()?;
    let t0 = Instant::now();
    let d = load(&a)?;
    let graph = d.graph.symmetrized().without_self_loops();
    if graph.num_undirected_edges() == 0 {
        // Every structural measure would divide by zero (NaN scores and a verdict about NaN).
        bail!("{}: the graph has no edges (self loops aside): there is no structure to measure", d.name);
    }
    let cfg = EmbedConfig { seed: a.seed, ..Default::default() };
    let (components, floor, act) = match a.task.as_str() {
        "link" => {
            let split = LinkSplit::new(&graph, 0.10, 0.20, a.seed)?;
            let probe = probe_links(&split, &d.features, &cfg, a.hits_k, device);
            let act = a.act.then(|| {
                act_on_probe(
                    &probe,
                    &split,
                    &ActConfig { seed: a.seed, hits_k: a.hits_k, ..Default::default() },
                    device,
                )
                .2
            });
            (probe.components, 0.5, act)
        }
        "node" => {
            let split = crate::source::default_split(&d, a.seed);
            crate::source::check_split(&d, &split)?;
            let floor = 1.0 / d.num_classes.max(1) as f64;
            (probe_nodes(&graph, &d.features, &d.labels, &split.train, &split.val, &cfg, device), floor, None)
        }
        t => bail!("--task {t}: expected link or node"),
    };
    let seconds = t0.elapsed().as_secs_f64();
    let text = verdict(&components, floor);
    let mut rows = vec![vec!["component".to_string(), "what it is".into(), "NetInfoF score".into()]];
    if a.task == "link" {
        rows[0].push(format!("test hits@{} alone", a.hits_k));
    }
    rows[0].push("seconds".into());
    let what = |n: &str| match n {
        "U" => "adjacency SVD",
        "R" => "random-walk co-visits",
        "F" => "features",
        "P" => "features, 2 hops",
        _ => "features, 2 hops + self",
    };
    for c in &components {
        let mut r = vec![c.name.to_string(), what(c.name).into(), format!("{:.3}", c.score)];
        if a.task == "link" {
            r.push(c.test_hits.map_or("-".into(), |h| format!("{h:.3}")));
        }
        r.push(format!("{:.2}", c.seconds));
        rows.push(r);
    }
    println!(
        "{} · {} nodes · {} edges · task {} (chance {:.2})",
        d.name,
        graph.num_nodes(),
        graph.num_undirected_edges(),
        a.task,
        floor
    );
    print!("{}", table(&rows));
    if let Some(h) = act {
        println!("NetInfoF_Act (all components): test hits@{} {h:.3}", a.hits_k);
    }
    println!("verdict: {text}");
    println!("{seconds:.1} s");
    if let Some(p) = &a.plot {
        let bars: Vec<(String, f64)> = components.iter().map(|c| (c.name.to_string(), c.score)).collect();
        crate::plot::score_bars(p, &format!("NetInfoF scores · {} · {} task", d.name, a.task), &bars, floor)?;
    }
    if let Some(p) = &a.json {
        let report = crate::reports::ProbeReport {
            about: crate::reports::About::of("probe"),
            dataset: d.name.clone(),
            task: a.task.clone(),
            nodes: graph.num_nodes(),
            edges: graph.num_undirected_edges(),
            scores: components.iter().map(|c| (c.name.to_string(), c.score)).collect(),
            chance: floor,
            verdict: text,
            act_test_hits: act,
            hits_k: a.hits_k,
            seconds,
            components,
        };
        crate::reports::write(p, &report)?;
    }
    Ok(())
}
