//! `strata refine`: repair a possibly poisoned graph with STABLE, see what was changed, and
//! write the refined graph for `strata train --npz`.

use crate::report::table;
use crate::reports::{OverSeeds, RefineBaselines};
use crate::source::GraphSource;
use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;
use strata_graph::{Attack, Split};
use strata_stable::{advanced_gcn_runs, refine, StableConfig};

/// The graph refined when none is named.
const DEFAULT: &str = "cora-lcc";

#[derive(Args, Debug)]
pub struct RefineArgs {
    /// The graph (default: the registered `cora-lcc`); the Pro-GNN graphs take --attack.
    #[command(flatten)]
    graph: GraphSource,
    /// Poisoned adjacency: meta:0.05..0.25 or nettack:1..5 (Pro-GNN graphs).
    #[arg(long)]
    attack: Option<String>,
    /// auto (the reference's tuned values for this dataset and perturbation rate), or default.
    #[arg(long, default_value = "auto")]
    preset: String,
    /// Degree exponent of the advanced GCN (default: the preset's, else 0.3).
    #[arg(long)]
    alpha: Option<f64>,
    /// Self-loop weight of the encoder's anchor graph (default: the preset's, else 2.0).
    #[arg(long)]
    beta: Option<f64>,
    /// Reliable neighbours added per node (default: the preset's, else 3).
    #[arg(long)]
    k: Option<usize>,
    /// Jaccard threshold of the pre-pruning, 0 = off (default: the preset's, else 0.03).
    #[arg(long)]
    jt: Option<f64>,
    /// Cosine threshold below which an edge is pruned (default: the preset's, else 0.1).
    #[arg(long)]
    cos: Option<f64>,
    /// Classifier runs (fresh initialisations) on the refined graph; 0 = refine only.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Seed of the split, the encoder and the classifier runs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the refined graph (npz, same layout as the input).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    compute: crate::source::ComputeArgs,
    /// Also write the report as JSON here (edges pruned and added, accuracies, settings used).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also train plain GCN and Jaccard-GCN (threshold 0.01) on the same graph and split, for
    /// comparison (same number of runs).
    #[arg(long)]
    baselines: bool,
    /// Histogram of the embedding cosines of adversarial vs normal edges (.svg or .png; needs a known
    /// clean graph, i.e. --attack on a Pro-GNN dataset).
    #[arg(long, value_parser = crate::plot::plot_path)]
    plot: Option<PathBuf>,
}

/// Whether every node has exactly one non-zero feature, each in its own column (identity-like
/// placeholder features).
fn one_hot_rows(f: &strata_graph::Features) -> bool {
    let mut seen = std::collections::HashSet::new();
    match f {
        strata_graph::Features::Sparse(m) => (0..m.rows()).all(|r| m.row(r).len() == 1 && seen.insert(m.row(r)[0])),
        strata_graph::Features::Dense { rows, cols, data } => (0..*rows).all(|r| {
            let nz: Vec<usize> = (0..*cols).filter(|&c| data[r * cols + c] != 0.0).collect();
            nz.len() == 1 && seen.insert(nz[0] as i64)
        }),
    }
}

pub fn run(a: RefineArgs) -> anyhow::Result<()> {
    let outputs: Vec<(&str, &std::path::Path)> = [("--out", &a.out), ("--json", &a.json), ("--plot", &a.plot)]
        .into_iter()
        .filter_map(|(f, p)| Some((f, p.as_deref()?)))
        .collect();
    crate::report::distinct_paths(&outputs, &a.graph.inputs())?;
    let device = a.compute.start()?;
    let attack: Option<Attack> = a.attack.as_deref().map(str::parse).transpose()?;
    let data = a.graph.load(DEFAULT, a.attack.as_deref())?;
    let registered = a.graph.registered(DEFAULT);
    let rate = match attack {
        Some(Attack::Meta(r)) => r,
        _ => 0.0,
    };
    let cfg = stable_config(&a, registered, rate)?;
    eprintln!(
        "strata refine: {} ({} nodes, {} edges) · α {} β {} k {} jt {} cos {}",
        data.name,
        data.num_nodes(),
        data.graph.symmetrized().num_undirected_edges(),
        cfg.alpha,
        cfg.beta,
        cfg.k,
        cfg.jt,
        cfg.cos
    );
    if a.runs > 0 && data.num_classes < 2 {
        bail!(
            "{}: {} label classes: the classifier runs on the refined graph need labels (--labels); --runs 0 refines the graph only",
            data.name,
            data.num_classes
        );
    }
    if a.runs > 0 {
        crate::source::check_split(&data, &crate::source::default_split(&data, a.seed))?;
    }
    let r = refine(&data, &cfg, a.seed, device);
    // Which removed edges were adversarial: known when the clean graph is (a Pro-GNN attack).
    let clean = match (&attack, registered) {
        (Some(_), Some(name)) => Some(strata_graph::load(name, None).context("loading the clean graph")?),
        _ => None,
    };
    let adversarial =
        clean.as_ref().map(|c| r.report.removed.iter().filter(|&&(u, v, _)| !c.graph.has_edge(u, v)).count());
    print_edges(&r.report, &cfg, adversarial);
    eprintln!(
        "encoder: {} epochs (best: epoch {}), refinement {:.1} s",
        r.report.encoder.epochs,
        r.report.encoder.best_epoch + 1,
        r.report.seconds
    );
    let split = crate::source::default_split(&data, a.seed);
    let acc = (a.runs > 0)
        .then(|| advanced_gcn_runs(&r.graph, &r.embeddings, &data.labels, &split, cfg.alpha, a.runs, a.seed, device));
    if let Some(acc) = &acc {
        println!(
            "advanced GCN on the refined graph, {} runs: test accuracy {:.2} ± {:.2}",
            a.runs,
            acc.mean * 100.0,
            acc.std * 100.0
        );
    }
    if let Some(out) = &a.out {
        let mut d = data.clone();
        d.graph = r.graph.clone();
        d.splits = vec![split.clone()];
        strata_graph::write_atomic(out, &strata_graph::formats::graph_npz(&d).to_bytes())
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("refined graph written to {}", out.display());
    }
    if let (Some(p), Some(c)) = (&a.plot, &clean) {
        plot_cosines(p, &data.name, &r.report, c, cfg.cos)?;
    } else if a.plot.is_some() {
        tracing::warn!("--plot needs a known clean graph (--attack on a Pro-GNN dataset): skipped");
    }
    let baselines = if a.baselines && a.runs > 0 { Some(baselines(&a, &data, &split, device)?) } else { None };
    let peak = strata_nn::memory::peak_rss_bytes();
    if let Some(p) = &a.json {
        let report = crate::reports::RefineReport {
            about: crate::reports::About::of("refine"),
            dataset: data.name.clone(),
            attack: a.attack.clone(),
            nodes: data.num_nodes(),
            config: cfg,
            edges_removed: r.report.edges_removed,
            edges_added: r.report.edges_added,
            adversarial_removed: adversarial,
            jaccard_pruned: r.report.jaccard_pruned,
            test_accuracy: acc.map(|x| OverSeeds::of(x.accuracies)),
            baselines,
            encoder: r.report.encoder.clone(),
            refine_seconds: r.report.seconds,
            peak_rss_bytes: peak,
        };
        crate::reports::write(p, &report)?;
    }
    Ok(())
}

/// The preset (tuned per dataset and attack rate, or the reference defaults), then the flags.
fn stable_config(a: &RefineArgs, registered: Option<&str>, rate: f64) -> anyhow::Result<StableConfig> {
    let mut cfg = match a.preset.as_str() {
        "auto" => registered.and_then(|name| StableConfig::preset(name, rate)).unwrap_or_else(|| {
            tracing::warn!("no tuned STABLE values for `{}`: using the reference defaults", a.graph.describe(DEFAULT));
            StableConfig::default()
        }),
        "default" => StableConfig::default(),
        p => bail!("--preset {p}: expected auto or default"),
    };
    cfg.alpha = a.alpha.unwrap_or(cfg.alpha);
    cfg.beta = a.beta.unwrap_or(cfg.beta);
    cfg.k = a.k.unwrap_or(cfg.k);
    cfg.jt = a.jt.unwrap_or(cfg.jt);
    cfg.cos = a.cos.unwrap_or(cfg.cos);
    Ok(cfg)
}

/// What the refinement did to the edges, with the adversarial ones counted when known.
fn print_edges(report: &strata_stable::Refinement, cfg: &StableConfig, adversarial: Option<usize>) {
    let mut rows = vec![vec!["step".to_string(), "edges".into()]];
    rows.push(vec!["Jaccard pre-pruning (views only)".into(), report.jaccard_pruned.to_string()]);
    rows.push(vec![format!("removed (cosine ≤ {})", cfg.cos), report.edges_removed.to_string()]);
    if let Some(adv) = adversarial {
        rows.push(vec!["  of which adversarial".into(), adv.to_string()]);
        rows.push(vec!["  of which normal".into(), (report.edges_removed - adv).to_string()]);
    }
    rows.push(vec![format!("added (top-{} neighbours, directed)", cfg.k), report.edges_added.to_string()]);
    print!("{}", table(&rows));
}

/// Histograms of the edges' embedding cosines, normal against adversarial (`clean` says which).
fn plot_cosines(
    path: &std::path::Path,
    name: &str,
    report: &strata_stable::Refinement,
    clean: &strata_graph::Dataset,
    threshold: f64,
) -> anyhow::Result<()> {
    let split_cos = |edges: &[(usize, usize, f32)], adversarial: bool| -> Vec<f64> {
        edges.iter().filter(|&&(u, v, _)| clean.graph.has_edge(u, v) != adversarial).map(|e| e.2 as f64).collect()
    };
    let all: Vec<(usize, usize, f32)> = report.removed.iter().chain(&report.kept_cosines).copied().collect();
    crate::plot::histograms(
        path,
        &format!("{name}: embedding cosine of edges"),
        &[("normal edges", split_cos(&all, false)), ("adversarial edges", split_cos(&all, true))],
        threshold,
    )
}

/// `--baselines`: plain GCN and Jaccard-GCN on the unrefined graph, over the same runs.
fn baselines(
    a: &RefineArgs,
    data: &strata_graph::Dataset,
    split: &Split,
    device: tch::Device,
) -> anyhow::Result<RefineBaselines> {
    let gcn = |d: &strata_graph::Dataset| -> anyhow::Result<OverSeeds> {
        let cfg = strata_nn::ModelConfig::defaults(strata_nn::ModelKind::Gcn);
        let task = strata_nn::NodeTask::new(
            d,
            device,
            strata_graph::FeatureNorm::Auto,
            strata_nn::Kernel::for_graph(&d.graph),
        );
        let accs = (0..a.runs as u64)
            .map(|s| Ok(strata_nn::train_node_classifier(&task, &cfg, split, a.seed + s, |_| {})?.1.test_accuracy))
            .collect::<anyhow::Result<Vec<f64>>>()?;
        Ok(OverSeeds::of(accs))
    };
    let plain = gcn(data)?;
    // One-hot "features" (PolBlogs) make every Jaccard similarity 0: the baseline would
    // delete the whole graph, so it is not applicable there.
    let jaccard = if one_hot_rows(&data.features) {
        None
    } else {
        let mut pruned = data.clone();
        pruned.graph =
            strata_stable::jaccard_prune(&data.graph.symmetrized().without_self_loops(), &data.features, 0.01).0;
        Some(gcn(&pruned)?)
    };
    println!(
        "plain GCN {:.2} · Jaccard-GCN {}",
        plain.mean * 100.0,
        jaccard.as_ref().map_or("n/a".into(), |j| format!("{:.2}", j.mean * 100.0))
    );
    Ok(RefineBaselines { gcn: plain, jaccard_gcn: jaccard })
}
