//! The link-prediction model directory ([`crate::model_dir`]): its manifest, the saved split
//! and the graph record.

use super::args::TrainLinkArgs;
pub(super) use crate::model_dir::GraphRecord;
use crate::model_dir::{checksums, replace_dir, write_manifest};
use crate::report::table;
use crate::source::GraphSource;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::Path;
use strata_forward::{ForwardConfig, LinkTrainer};
use strata_graph::npz::{Npz, NpzWriter};
use strata_graph::{CsrGraph, Features, LinkSplit};
use strata_nn::{LinkConfig, LinkMetrics, LinkTask};

/// `manifest.json`.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Manifest {
    pub(super) format: String,
    /// gcn, sage, gat or netinfof.
    pub(super) encoder: String,
    /// The GNN's settings (absent for NetInfoF and ForwardGNN models).
    pub(super) config: Option<LinkConfig>,
    pub(super) netinfof: Option<NetinfofRecord>,
    #[serde(default)]
    pub(super) forward: Option<ForwardRecord>,
    pub(super) seed: u64,
    pub(super) split: Vec<f64>,
    pub(super) graph: GraphRecord,
    pub(super) feature_dim: usize,
    /// The epoch of the kept weights, 0-based; absent for the trainers that keep no single
    /// epoch (ForwardGNN's layer-by-layer fits, NetInfoF_Act's L-BFGS).
    #[serde(default)]
    pub(super) best_epoch: Option<usize>,
    pub(super) epochs_run: usize,
    pub(super) val: LinkMetrics,
    pub(super) test: LinkMetrics,
    /// SHA-256 of every other file of the directory; `eval` and `predict` refuse a mismatch.
    pub(super) files: std::collections::BTreeMap<String, String>,
}

/// The files of a model directory besides the manifest.
pub(super) const MODEL_FILES: [&str; 3] = ["model.safetensors", "split.npz", "embeddings.safetensors"];

/// What a NetInfoF_Act model needs besides its weights.
#[derive(Serialize, Deserialize, Debug, Clone, schemars::JsonSchema)]
pub(super) struct NetinfofRecord {
    pub(super) components: usize,
    pub(super) dim: i64,
    pub(super) lambda1: f64,
    pub(super) lambda2: f64,
    /// Validation NetInfoF score of each component.
    pub(super) scores: Vec<(String, f64)>,
}

/// A ForwardGNN link model: its trainer and layer settings.
#[derive(Serialize, Deserialize, Debug, Clone, schemars::JsonSchema)]
pub(super) struct ForwardRecord {
    pub(super) trainer: LinkTrainer,
    pub(super) config: ForwardConfig,
}

pub(super) const FORMAT: &str = "strata-linkpred/1";

/// Loads the graph as undirected and simple (self loops dropped, reversed edges merged) with
/// its features.
pub(super) fn load_graph(g: &GraphSource) -> anyhow::Result<(CsrGraph, Features, GraphRecord)> {
    if !g.is_given() {
        bail!("give the graph with --dataset NAME, --npz FILE, --edges FILE or --ogb DIR");
    }
    let d = g.load("", None)?;
    let graph = d.graph.symmetrized().without_self_loops();
    let rec = GraphRecord {
        source: g.clone(),
        nodes: graph.num_nodes(),
        undirected_edges: graph.num_undirected_edges(),
        fingerprint: graph.fingerprint(),
    };
    Ok((graph, d.features, rec))
}

pub(super) fn pairs_array(w: &mut NpzWriter, key: &str, pairs: &[(usize, usize)]) {
    let flat: Vec<i64> = pairs.iter().flat_map(|&(u, v)| [u as i64, v as i64]).collect();
    w.i64s(key, &[pairs.len(), 2], &flat);
}

pub(super) fn read_pairs(npz: &mut Npz, key: &str) -> anyhow::Result<Vec<(usize, usize)>> {
    let v = npz.i64s(key, "an [E, 2] array of node pairs")?;
    Ok(v.chunks(2).map(|p| (p[0] as usize, p[1] as usize)).collect())
}

pub(super) fn save_split(dir: &Path, s: &LinkSplit) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut w = NpzWriter::new();
    for (k, p) in [
        ("train_pos", &s.train_pos),
        ("val_pos", &s.val_pos),
        ("val_neg", &s.val_neg),
        ("test_pos", &s.test_pos),
        ("test_neg", &s.test_neg),
    ] {
        pairs_array(&mut w, k, p);
    }
    strata_nn::checkpoint::write_atomic(&dir.join("split.npz"), &w.to_bytes())?;
    Ok(())
}

/// Prints the metrics, writes the manifest (last, so a directory with one is complete) and the
/// JSON report (`report`'s metrics and epochs are the manifest's).
pub(super) fn finish_training(
    a: &TrainLinkArgs,
    manifest: &mut Manifest,
    mut report: crate::reports::LinkTrainReport,
) -> anyhow::Result<()> {
    manifest.files = checksums(&a.staging, &MODEL_FILES)?;
    write_manifest(&a.staging, manifest)?;
    replace_dir(&a.staging, &a.out)?;
    print!("{}", metrics_table(&[("val", &manifest.val), ("test", &manifest.test)]));
    eprintln!("saved to {}", a.out.display());
    if let Some(p) = &a.json {
        report.model_dir = a.out.clone();
        report.encoder = manifest.encoder.clone();
        (report.val, report.test, report.epochs_run) = (manifest.val, manifest.test, manifest.epochs_run);
        crate::reports::write(p, &report)?;
    }
    Ok(())
}

pub(super) fn metrics_table(rows: &[(&str, &LinkMetrics)]) -> String {
    let mut t = vec![["set", "roc_auc", "ap", "hits@20", "hits@50", "hits@100", "mrr"].map(String::from).to_vec()];
    for (name, m) in rows {
        let f = |x: f64| format!("{x:.4}");
        t.push(vec![name.to_string(), f(m.roc_auc), f(m.ap), f(m.hits_20), f(m.hits_50), f(m.hits_100), f(m.mrr)]);
    }
    table(&t)
}

/// The training + validation edges of `task`'s split on its device and kernel.
pub(super) fn train_val_tensors(task: &LinkTask) -> anyhow::Result<strata_nn::GraphTensors> {
    Ok(strata_nn::GraphTensors::new(&task.split.train_val_graph()?, task.graph.device, task.graph.kernel))
}
