//! `strata linkpred eval` and `predict`: a saved model directory loaded back as a scorer.

use super::args::{EvalArgs, PredictArgs};
use super::model_dir::*;
use crate::report::table;
use crate::source::GraphSource;
use anyhow::{bail, Context};
use std::path::Path;
use strata_forward::ForwardLinkModel;
use strata_graph::npz::Npz;
use strata_graph::{CsrGraph, Features, LinkSplit};
use strata_netinfo::{Act, PairFeatures};
use strata_nn::{Kernel, LinkMetrics, LinkModel, LinkTask};
use tch::Device;

/// How a saved model scores pairs.
pub(super) enum Scorer {
    Gnn { task: Box<LinkTask>, model: Box<LinkModel>, z: tch::Tensor },
    NetInfoF { feats: PairFeatures, act: Act },
    Forward { task: Box<LinkTask>, model: Box<ForwardLinkModel>, z: tch::Tensor },
}

impl Scorer {
    /// Logits of the pairs.
    pub(super) fn score(&self, pairs: &[(usize, usize)]) -> Vec<f64> {
        if pairs.is_empty() {
            return Vec::new();
        }
        tch::no_grad(|| {
            let t = match self {
                Scorer::Gnn { model, z, .. } => {
                    let (s, d) = strata_nn::linkpred::pair_tensors(pairs, z.device());
                    model.score(z, &s, &d, false)
                }
                Scorer::NetInfoF { feats, act } => {
                    let (s, d) = strata_nn::linkpred::pair_tensors(pairs, act.params.device());
                    act.logits(&feats.of(&s, &d))
                }
                // The logit of the layers' mean probability, so σ(score) is that probability.
                Scorer::Forward { model, z, .. } => {
                    let (s, d) = strata_nn::linkpred::pair_tensors(pairs, z.device());
                    model.score(z, &s, &d).clamp(1e-7, 1.0 - 1e-7).logit(None)
                }
            };
            strata_nn::ops::host_vec::<f64>(&t)
        })
    }
}

/// A saved model with its split, on the graph it was trained on.
pub(super) struct Loaded {
    pub(super) manifest: Manifest,
    pub(super) split: LinkSplit,
    pub(super) scorer: Scorer,
    pub(super) graph: CsrGraph,
}

/// Loads MODEL_DIR. `cached`: use the embeddings saved at training time instead of running the
/// encoder (GNN models; NetInfoF's pair features are always the saved ones).
pub(super) fn load_model(dir: &Path, graph_args: &GraphSource, device: &str, cached: bool) -> anyhow::Result<Loaded> {
    let device = strata_nn::parse_device(device)?;
    let manifest = read_manifest(dir)?;
    let (graph, features) = graph_for(&manifest, graph_args)?;
    let split = read_split(&dir.join("split.npz"), graph.num_nodes())?;
    let scorer = scorer_for(dir, &manifest, &split, &features, device, cached)?;
    Ok(Loaded { manifest, split, scorer, graph })
}

/// The manifest, with every model file checked against its checksum.
fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    crate::model_dir::read_manifest(
        dir,
        FORMAT,
        &MODEL_FILES,
        |m: &Manifest| &m.files,
        "Retrain with `strata linkpred train`.",
    )
}

/// The graph as given on the command line, else where the manifest says it came from; refused
/// unless it is the one the model was trained on.
fn graph_for(manifest: &Manifest, graph_args: &GraphSource) -> anyhow::Result<(CsrGraph, Features)> {
    let args = if graph_args.is_given() { graph_args.clone() } else { manifest.graph.source.clone() };
    let (graph, features, rec) = load_graph(&args)?;
    if rec.fingerprint != manifest.graph.fingerprint {
        let what = args.describe("");
        bail!(
            "{what} is not the graph this model was trained on: it has {} nodes and {} edges (fingerprint {}), the model's graph had {} nodes and {} edges (fingerprint {}). Refusing to score a different graph; retrain with `strata linkpred train`.",
            rec.nodes,
            rec.undirected_edges,
            &rec.fingerprint[..12],
            manifest.graph.nodes,
            manifest.graph.undirected_edges,
            &manifest.graph.fingerprint[..12]
        );
    }
    if features.dim() != manifest.feature_dim {
        bail!("the features have {} columns but the model was trained on {}", features.dim(), manifest.feature_dim);
    }
    Ok((graph, features))
}

/// The saved split, every pair checked against the graph's `n` nodes.
fn read_split(spath: &Path, n: usize) -> anyhow::Result<LinkSplit> {
    let mut npz = Npz::open(spath)?;
    let train_pos = read_pairs(&mut npz, "train_pos")?;
    let both: Vec<(i64, i64)> =
        train_pos.iter().flat_map(|&(u, v)| [(u as i64, v as i64), (v as i64, u as i64)]).collect();
    let split = LinkSplit {
        train_graph: CsrGraph::from_edges(&spath.display().to_string(), n, &both, None)?,
        val_pos: read_pairs(&mut npz, "val_pos")?,
        val_neg: read_pairs(&mut npz, "val_neg")?,
        test_pos: read_pairs(&mut npz, "test_pos")?,
        test_neg: read_pairs(&mut npz, "test_neg")?,
        train_pos,
    };
    for (k, p) in [
        ("val_pos", &split.val_pos),
        ("val_neg", &split.val_neg),
        ("test_pos", &split.test_pos),
        ("test_neg", &split.test_neg),
    ] {
        if let Some(&(u, v)) = p.iter().find(|&&(u, v)| u >= n || v >= n) {
            bail!("{}: {k} holds pair ({u}, {v}) outside the graph's {n} nodes", spath.display());
        }
    }
    Ok(split)
}

/// The embeddings saved at training time, when asked for and present, checked to be `[n, width]`.
fn saved_embeddings(
    path: &Path,
    cached: bool,
    n: usize,
    width: i64,
    device: Device,
) -> anyhow::Result<Option<tch::Tensor>> {
    if !cached || !path.exists() {
        return Ok(None);
    }
    let z = strata_nn::checkpoint::load_tensor(path, "z")?.to(device);
    if z.size() != [n as i64, width] {
        bail!(
            "{}: embeddings of shape {:?}, expected [{n}, {width}]; rerun with --recompute",
            path.display(),
            z.size()
        );
    }
    Ok(Some(z))
}

/// The scorer the manifest describes: a GNN encoder, ForwardGNN layers or NetInfoF_Act.
fn scorer_for(
    dir: &Path,
    manifest: &Manifest,
    split: &LinkSplit,
    features: &Features,
    device: Device,
    cached: bool,
) -> anyhow::Result<Scorer> {
    let n = split.train_graph.num_nodes();
    let emb_path = dir.join("embeddings.safetensors");
    let task = || {
        let kernel = Kernel::for_graph(&split.train_graph);
        LinkTask::new(split.clone(), features, device, strata_graph::FeatureNorm::Auto, kernel)
    };
    Ok(match (&manifest.config, &manifest.netinfof, &manifest.forward) {
        (None, None, Some(fw)) => {
            let task = task();
            let mut model = ForwardLinkModel::new(fw.trainer, &fw.config, &task.graph, task.input.dim())?;
            model.load(&dir.join("model.safetensors"))?;
            let width = fw.config.layers as i64 * fw.config.hidden;
            let z = match saved_embeddings(&emb_path, cached, n, width, device)? {
                Some(z) => z,
                None => model.embed_on(&task.input.to_dense(), &train_val_tensors(&task)?),
            };
            Scorer::Forward { task: Box::new(task), model: Box::new(model), z }
        }
        (Some(cfg), _, _) => {
            let task = task();
            let mut model = LinkModel::new(cfg, &task.graph, &task.input)?;
            strata_nn::checkpoint::load_checkpoint(model.vs_mut(), &dir.join("model.safetensors"))?;
            let z = match saved_embeddings(&emb_path, cached, n, cfg.out, device)? {
                Some(z) => z,
                None => tch::no_grad(|| model.embed(&task.input, false)),
            };
            Scorer::Gnn { task: Box::new(task), model: Box::new(model), z }
        }
        (None, Some(ni), _) => {
            let params = strata_nn::checkpoint::load_tensor(&dir.join("model.safetensors"), "params")?.to(device);
            let plain = strata_nn::checkpoint::load_tensor(&emb_path, "plain")?.to(device);
            let adjusted = strata_nn::checkpoint::load_tensor(&emb_path, "adjusted")?.to(device);
            let width = ni.components as i64 * ni.dim;
            if plain.size() != [n as i64, width]
                || adjusted.size() != plain.size()
                || params.size() != [width + ni.components as i64]
            {
                bail!(
                    "{}: saved NetInfoF tensors do not match the manifest ({} components × {})",
                    dir.display(),
                    ni.components,
                    ni.dim
                );
            }
            Scorer::NetInfoF {
                feats: PairFeatures::from_tensors(plain, adjusted, ni.components, ni.dim),
                act: Act { params, components: ni.components, dim: ni.dim },
            }
        }
        (None, None, None) => {
            bail!(
                "{}: the manifest has neither a GNN configuration nor a NetInfoF record",
                dir.join("manifest.json").display()
            )
        }
    })
}

pub(super) fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let outputs: Vec<(&str, &std::path::Path)> = a.json.iter().map(|p| ("--json", p.as_path())).collect();
    let mut inputs = vec![("MODEL_DIR", a.model_dir.as_path())];
    inputs.extend(a.graph.inputs());
    crate::report::distinct_paths(&outputs, &inputs)?;
    strata_nn::set_threads(a.compute.threads);
    let l = load_model(&a.model_dir, &a.graph, &a.compute.device, false)?;
    let f = |p: &[(usize, usize)]| l.scorer.score(p).into_iter().map(|x| x as f32).collect::<Vec<_>>();
    let test = LinkMetrics::of(&f(&l.split.test_pos), &f(&l.split.test_neg));
    print!("{}", metrics_table(&[("test", &test)]));
    if let Some(p) = &a.json {
        let report = crate::reports::LinkEvalReport {
            about: crate::reports::About::of("linkpred-eval"),
            model_dir: a.model_dir.clone(),
            encoder: l.manifest.encoder.clone(),
            test_edges: l.split.test_pos.len(),
            test,
        };
        crate::reports::write(p, &report)?;
    }
    Ok(())
}

pub(super) fn predict(a: PredictArgs) -> anyhow::Result<()> {
    let outputs: Vec<(&str, &std::path::Path)> =
        [("--json", &a.json), ("--csv", &a.csv)].into_iter().filter_map(|(f, p)| Some((f, p.as_deref()?))).collect();
    let mut inputs = vec![("MODEL_DIR", a.model_dir.as_path())];
    inputs.extend(a.pairs.iter().map(|p| ("--pairs", p.as_path())));
    inputs.extend(a.graph.inputs());
    crate::report::distinct_paths(&outputs, &inputs)?;
    strata_nn::set_threads(a.compute.threads);
    let l = load_model(&a.model_dir, &a.graph, &a.compute.device, !a.recompute)?;
    let n = l.graph.num_nodes();
    let t0 = std::time::Instant::now();
    // So the reported latency includes the encoder (loading ran it once already).
    match (a.recompute, &l.scorer) {
        (true, Scorer::Gnn { task, model, .. }) => drop(tch::no_grad(|| model.embed(&task.input, false))),
        (true, Scorer::Forward { task, model, .. }) => {
            drop(model.embed_on(&task.input.to_dense(), &train_val_tensors(task)?))
        }
        _ => {}
    }
    let pairs: Vec<(usize, usize)> = match (a.node, &a.pairs) {
        (Some(u), _) => {
            if u >= n {
                bail!("--node {u}: the graph has {n} nodes (ids 0..{})", n - 1);
            }
            let nb: std::collections::HashSet<i64> = l.graph.neighbors(u).iter().copied().collect();
            (0..n).filter(|&v| v != u && !nb.contains(&(v as i64))).map(|v| (u, v)).collect()
        }
        (None, Some(path)) => {
            let list = strata_graph::formats::read_edge_list(path)?;
            if let Some((i, &(u, v))) = list.edges.iter().enumerate().find(|(_, &(u, v))| u.max(v) as usize >= n) {
                bail!(
                    "{}: pair #{} ({u}, {v}) names node {}, but the graph has {n} nodes",
                    path.display(),
                    i + 1,
                    u.max(v)
                );
            }
            list.edges.iter().map(|&(u, v)| (u as usize, v as usize)).collect()
        }
        (None, None) => bail!("give --node N or --pairs FILE"),
    };
    let mut rows: Vec<(usize, usize, f64)> =
        pairs.iter().zip(l.scorer.score(&pairs)).map(|(&(u, v), s)| (u, v, s)).collect();
    if a.node.is_some() {
        rows.sort_by(|x, y| y.2.total_cmp(&x.2));
        rows.truncate(a.top);
    }
    // Scoring every candidate and ranking them (loading excluded; embedding too unless --recompute).
    let latency_ms = t0.elapsed().as_secs_f64() * 1e3;
    tracing::info!("scored in {latency_ms:.1} ms");
    let prob = |s: f64| 1.0 / (1.0 + (-s).exp());
    let mut t = vec![vec!["rank".to_string(), "src".into(), "dst".into(), "score".into(), "probability".into()]];
    for (i, &(u, v, s)) in rows.iter().enumerate() {
        t.push(vec![(i + 1).to_string(), u.to_string(), v.to_string(), format!("{s:.4}"), format!("{:.4}", prob(s))]);
    }
    print!("{}", table(&t));
    if let Some(p) = &a.json {
        let report = crate::reports::LinkPredictReport {
            about: crate::reports::About::of("linkpred-predict"),
            model_dir: a.model_dir.clone(),
            encoder: l.manifest.encoder.clone(),
            node: a.node,
            top: a.node.map(|_| a.top),
            latency_ms,
            predictions: rows
                .iter()
                .map(|&(src, dst, score)| crate::reports::ScoredPair { src, dst, score, probability: prob(score) })
                .collect(),
        };
        crate::reports::write(p, &report)?;
    }
    if let Some(p) = &a.csv {
        let mut text = String::from("src,dst,score,probability\n");
        for &(u, v, s) in &rows {
            text.push_str(&format!("{u},{v},{s},{}\n", prob(s)));
        }
        strata_nn::checkpoint::write_atomic(p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
