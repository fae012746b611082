//! # strata-netinfo
//!
//! NetInfoF (Lee et al., "NetInfoF Framework: Measuring and Exploiting Network Usable
//! Information", ICLR 2024): before training a GNN, measure how much usable information a graph's
//! structure and features hold, and which part holds it — then exploit it with a closed-form-
//! initialised linear link predictor.
//!
//! - [`embed`]: the five closed-form embeddings U, R, F, P, S;
//! - [`compat`]: compatibility matrices and adjusted node similarity;
//! - [`score`]: the NetInfoF score, `2^(−H(Y|B))`, for links and for nodes;
//! - [`act`]: NetInfoF_Act, with the [`lbfgs`] optimiser it needs;
//! - [`probe_links`] / [`probe_nodes`]: the whole probe, as `strata probe` runs it.

pub mod act;
pub mod compat;
pub mod embed;
pub mod lbfgs;
pub mod linalg;
pub mod score;

pub use act::{train_act, Act, ActConfig, ActReport, PairFeatures};
pub use embed::{embeddings, EmbedConfig, Embeddings, COMPONENTS};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
use strata_graph::{CsrGraph, Features, LinkSplit};
use strata_nn::metrics::hits_at_k;
use tch::{Device, Kind, Tensor};

/// One component's result.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ComponentScore {
    pub name: &'static str,
    /// NetInfoF score on the validation set (links: [0.5, 1]; nodes: [1/C, 1]).
    pub score: f64,
    /// Test Hits@K of the component's adjusted similarity used alone as a link predictor
    /// (links only).
    pub test_hits: Option<f64>,
    pub seconds: f64,
}

/// The link probe: scores per component, and the embeddings with their compatibility-adjusted
/// versions for NetInfoF_Act.
pub struct LinkProbe {
    pub components: Vec<ComponentScore>,
    pub parts: Vec<(Tensor, Tensor)>,
    pub dim: i64,
    pub seconds: f64,
}

fn pair_index(pairs: &[(usize, usize)], device: Device) -> (Tensor, Tensor) {
    let (s, d): (Vec<i64>, Vec<i64>) = pairs.iter().map(|&(u, v)| (u as i64, v as i64)).unzip();
    (Tensor::from_slice(&s).to(device), Tensor::from_slice(&d).to(device))
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    strata_nn::ops::host_vec::<f64>(t)
}

/// Runs the link probe on a link split: embeddings of the training graph, a compatibility matrix
/// per component, the NetInfoF score of each on the validation pairs.
pub fn probe_links(
    split: &LinkSplit,
    features: &Features,
    cfg: &EmbedConfig,
    hits_k: usize,
    device: Device,
) -> LinkProbe {
    let t0 = Instant::now();
    let g = &split.train_graph;
    let emb = embeddings(g, features, cfg, device);
    let pairs = compat::fitting_pairs(g, 200_000, cfg.seed, device);
    // Training similarities: every training edge (u < v) and twice as many random pairs.
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xb1e5);
    let n = g.num_nodes();
    let random: Vec<(usize, usize)> =
        (0..2 * split.train_pos.len()).map(|_| (rng.random_range(0..n), rng.random_range(0..n))).collect();
    let (trp, trr) = (pair_index(&split.train_pos, device), pair_index(&random, device));
    let (vp, vn) = (pair_index(&split.val_pos, device), pair_index(&split.val_neg, device));
    let (tp, tn) = (pair_index(&split.test_pos, device), pair_index(&split.test_neg, device));
    let mut components = Vec::new();
    let mut parts = Vec::new();
    for (name, x) in &emb.parts {
        let t1 = Instant::now();
        let c = compat::compatibility(x, g, &pairs);
        let sim = |p: &(Tensor, Tensor)| to_vec(&compat::similarity(x, &c.h, &p.0, &p.1));
        let mut train_sims = sim(&trp);
        train_sims.extend(sim(&trr));
        let score = score::link_score(&train_sims, &sim(&vp), &sim(&vn));
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
        let test_hits = (!split.test_pos.is_empty()).then(|| hits_at_k(&f32s(sim(&tp)), &f32s(sim(&tn)), hits_k));
        let secs = emb.seconds.iter().find(|s| s.0 == *name).map_or(0.0, |s| s.1) + t1.elapsed().as_secs_f64();
        components.push(ComponentScore { name, score, test_hits, seconds: secs });
        let adjusted = x.to_kind(Kind::Double).matmul(&c.h);
        parts.push((x.shallow_clone(), adjusted));
    }
    LinkProbe { components, parts, dim: emb.dim, seconds: t0.elapsed().as_secs_f64() }
}

/// NetInfoF_Act on a finished link probe: `(model, report, test Hits@K)`.
pub fn act_on_probe(probe: &LinkProbe, split: &LinkSplit, cfg: &ActConfig, device: Device) -> (Act, ActReport, f64) {
    let feats = PairFeatures::new(&probe.parts);
    let (act, report) = train_act(
        &feats,
        split.train_graph.num_nodes(),
        &split.train_pos,
        (&split.val_pos, &split.val_neg),
        cfg,
        device,
    );
    let score = |pairs: &[(usize, usize)]| {
        let (s, d) = pair_index(pairs, device);
        strata_nn::ops::host_vec::<f32>(&tch::no_grad(|| act.logits(&feats.of(&s, &d))))
    };
    let hits = hits_at_k(&score(&split.test_pos), &score(&split.test_neg), cfg.hits_k);
    (act, report, hits)
}

/// The node probe: embeddings of the whole graph, the node form of the score per component
/// (validation nodes' labels given a ridge classifier's prediction from the training nodes).
pub fn probe_nodes(
    g: &CsrGraph,
    features: &Features,
    labels: &[i64],
    train: &[usize],
    val: &[usize],
    cfg: &EmbedConfig,
    device: Device,
) -> Vec<ComponentScore> {
    let emb = embeddings(g, features, cfg, device);
    emb.parts
        .iter()
        .map(|(name, x)| {
            let t1 = Instant::now();
            let score = score::node_score(x, labels, train, val);
            let secs = emb.seconds.iter().find(|s| s.0 == *name).map_or(0.0, |s| s.1) + t1.elapsed().as_secs_f64();
            ComponentScore { name, score, test_hits: None, seconds: secs }
        })
        .collect()
}

/// What the scores say, in words: which kind of signal dominates and what to try.
pub fn verdict(scores: &[ComponentScore], floor: f64) -> String {
    let get = |n: &str| scores.iter().find(|s| s.name == n).map_or(floor, |s| s.score);
    let structure = get("U").max(get("R"));
    let features = get("F");
    let propagated = get("P").max(get("S"));
    let best = structure.max(features).max(propagated);
    let margin = 1.0 - floor;
    if best < floor + 0.1 * margin {
        return "little usable information in structure or features: expect any model to stay near chance; check the data before spending GPU hours".into();
    }
    let mut v = if structure >= features.max(propagated) {
        "structure carries most usable information: try structural link predictors (SVD/random-walk embeddings, NetInfoF_Act) or deeper message passing".to_string()
    } else if features >= propagated {
        "the features carry most usable information, the graph adds little: try an MLP on the features before a GNN"
            .to_string()
    } else {
        "features propagated over the graph carry most usable information: try a GNN (GCN/SGC-style propagation)"
            .to_string()
    };
    if (features - structure).abs() < 0.05 * margin {
        v.push_str(
            "; structure and features are about equally informative, so combining them (NetInfoF_Act) should help",
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_graph::synthetic::{synthetic, Signal, SyntheticSpec};

    /// Both optimisers of NetInfoF_Act learn a graph with structure and feature signal.
    #[test]
    fn act_learns_with_lbfgs_and_with_minibatch_adam() {
        let mut spec = SyntheticSpec::new(Signal::Both, false);
        spec.nodes = 600;
        let d = synthetic(&spec);
        let split = LinkSplit::new(&d.graph, 0.1, 0.2, 0).unwrap();
        let probe = probe_links(&split, &d.features, &EmbedConfig { max_dim: 32, walks: 50, seed: 0 }, 20, Device::Cpu);
        for minibatch_above in [usize::MAX, 0] {
            let cfg = ActConfig {
                hits_k: 20,
                max_epochs: 10,
                lambda1: vec![1e-4],
                lambda2: vec![1e-4],
                minibatch_above,
                ..Default::default()
            };
            let (act, report, hits) = act_on_probe(&probe, &split, &cfg, Device::Cpu);
            assert!(hits > 0.5 && report.val_hits > 0.5, "minibatch_above {minibatch_above}: test {hits}, {report:?}");
            assert_eq!(act.component_norms().len(), 5);
        }
    }
}
