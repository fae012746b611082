//! Synthetic graphs whose usable information is known by construction, for testing probes such
//! as NetInfoF. Nodes belong to small groups (the hidden truth) gathered into 4 classes (labels).
//!
//! | signal | edges | features |
//! |---|---|---|
//! | `structure` | dense inside groups (avg degree `degree`) | random bits |
//! | `features` | sparse inside groups (avg degree 2: few common neighbours) | group prototype + noise |
//! | `both` | dense inside groups | group prototype + noise |
//! | `neither` | uniformly random (Erdős–Rényi) | random bits |
//!
//! `homophilous`: a group links to itself. `heterophilous`: groups come in pairs (g, g xor 1)
//! and edges only join the two sides of a pair, so "similar" endpoints are never linked —
//! informative only through a compatibility matrix. (The reference generator,
//! `Network-Usable-Info-Framework:src/data/synthetic.py`, cannot run: it calls the random-walk
//! routine with a missing argument; this one is ours.)

use crate::dataset::{Dataset, Features};
use crate::graph::CsrGraph;
use crate::split::Split;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// Which parts carry link information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Structure,
    Features,
    Both,
    Neither,
}

/// Settings of [`synthetic`].
#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    pub nodes: usize,
    pub group_size: usize,
    pub features: usize,
    /// Average degree of the dense scenarios.
    pub degree: f64,
    pub signal: Signal,
    pub heterophilous: bool,
    pub seed: u64,
}

impl SyntheticSpec {
    pub fn new(signal: Signal, heterophilous: bool) -> SyntheticSpec {
        SyntheticSpec { nodes: 2000, group_size: 20, features: 64, degree: 10.0, signal, heterophilous, seed: 0 }
    }

    /// Parses `structure|features|both|neither` with an optional `-heterophilous` /
    /// `-homophilous` suffix.
    pub fn parse(name: &str) -> Option<SyntheticSpec> {
        let (base, het) = match name.rsplit_once('-') {
            Some((b, "heterophilous")) => (b, true),
            Some((b, "homophilous")) => (b, false),
            _ => (name, false),
        };
        let signal = match base {
            "structure" => Signal::Structure,
            "features" => Signal::Features,
            "both" => Signal::Both,
            "neither" => Signal::Neither,
            _ => return None,
        };
        Some(SyntheticSpec::new(signal, het))
    }

    pub fn name(&self) -> String {
        let s = match self.signal {
            Signal::Structure => "structure",
            Signal::Features => "features",
            Signal::Both => "both",
            Signal::Neither => "neither",
        };
        format!("synthetic-{s}-{}", if self.heterophilous { "heterophilous" } else { "homophilous" })
    }
}

/// Generates the graph, features, labels (class = group mod 4) and a stratified split.
pub fn synthetic(spec: &SyntheticSpec) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let n = spec.nodes.max(8);
    let gs = spec.group_size.clamp(2, n / 2);
    let groups = n.div_ceil(gs);
    let group = |u: usize| u / gs;
    let members = |g: usize| (g * gs)..((g + 1) * gs).min(n);
    // The group a group links to.
    let partner = |g: usize| if spec.heterophilous { (g ^ 1).min(groups - 1) } else { g };
    let degree = match spec.signal {
        Signal::Features => 2.0,
        _ => spec.degree,
    };
    let target = (n as f64 * degree / 2.0).round() as usize;
    let mut edges: HashSet<(usize, usize)> = HashSet::with_capacity(target);
    let mut tries = 0;
    while edges.len() < target && tries < target * 50 {
        tries += 1;
        let u = rng.random_range(0..n);
        let v = if spec.signal == Signal::Neither {
            rng.random_range(0..n)
        } else {
            let m = members(partner(group(u)));
            rng.random_range(m.start..m.end)
        };
        if u != v {
            edges.insert((u.min(v), u.max(v)));
        }
    }
    let graph = undirected_graph("synthetic", n, edges);
    let f = spec.features.max(1);
    let informative = matches!(spec.signal, Signal::Features | Signal::Both);
    let prototypes: Vec<Vec<f32>> = (0..groups).map(|_| (0..f).map(|_| if rng.random_bool(0.5) { 1.0 } else { 0.0 }).collect()).collect();
    let mut data = Vec::with_capacity(n * f);
    for u in 0..n {
        for &p in &prototypes[group(u)] {
            let x = if informative {
                // The group's prototype with 10 % of its bits flipped.
                if rng.random_bool(0.1) { 1.0 - p } else { p }
            } else if rng.random_bool(0.5) {
                1.0
            } else {
                0.0
            };
            data.push(x);
        }
    }
    let labels: Vec<i64> = (0..n).map(|u| (group(u) % 4) as i64).collect();
    let split = Split::random_stratified(&labels, 0.1, 0.1, spec.seed);
    Dataset::new(spec.name(), graph, Features::dense(n, f, data), labels, vec![split]).expect("consistent synthetic dataset")
}

/// Both directions of each undirected edge `(u, v)`, `u < v`, as a graph on `n` nodes.
fn undirected_graph(context: &str, n: usize, edges: HashSet<(usize, usize)>) -> CsrGraph {
    let mut list: Vec<(i64, i64)> = edges.into_iter().flat_map(|(u, v)| [(u as i64, v as i64), (v as i64, u as i64)]).collect();
    list.sort_unstable();
    CsrGraph::from_edges(context, n, &list, None).expect("generated ids are in range")
}

/// Settings of [`planted_partition`].
#[derive(Clone, Debug)]
pub struct PlantedSpec {
    pub nodes: usize,
    pub classes: usize,
    /// Average degree (undirected edges ≈ nodes · degree / 2).
    pub degree: f64,
    /// Fraction of edges that join two nodes of the same class.
    pub homophily: f64,
    /// Dense real-valued features: class mean (standard normal, scaled by `signal`) plus
    /// standard normal noise, so rows have sums near zero and of either sign.
    pub features: usize,
    pub signal: f32,
    pub seed: u64,
}

impl Default for PlantedSpec {
    fn default() -> Self {
        PlantedSpec { nodes: 2000, classes: 10, degree: 20.0, homophily: 0.8, features: 128, signal: 0.3, seed: 0 }
    }
}

/// A planted-partition graph (the stochastic block model with equal classes) with Gaussian
/// features and a 10/10/80 stratified split: data whose features are not bag-of-words, at any
/// size.
pub fn planted_partition(spec: &PlantedSpec) -> Dataset {
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let (n, k) = (spec.nodes.max(2), spec.classes.clamp(2, spec.nodes.max(2)));
    let labels: Vec<i64> = (0..n).map(|u| (u % k) as i64).collect();
    // Node u of class c is c + k·j: members of a class are drawn without a lookup table.
    let per_class = |c: usize| (n - c).div_ceil(k);
    let target = (n as f64 * spec.degree / 2.0).round() as usize;
    let mut edges: HashSet<(usize, usize)> = HashSet::with_capacity(target);
    let mut tries = 0;
    while edges.len() < target && tries < target * 20 {
        tries += 1;
        let u = rng.random_range(0..n);
        let c = if rng.random_bool(spec.homophily.clamp(0.0, 1.0)) { u % k } else { (u % k + rng.random_range(1..k)) % k };
        let v = c + k * rng.random_range(0..per_class(c));
        if u != v {
            edges.insert((u.min(v), u.max(v)));
        }
    }
    let graph = undirected_graph("planted partition", n, edges);
    let f = spec.features.max(1);
    let mut normal = move || -> f32 { StandardNormal.sample(&mut rng) };
    let means: Vec<f32> = (0..k * f).map(|_| spec.signal * normal()).collect();
    // Row u is node u, of class u % k.
    let data: Vec<f32> = (0..n * f).map(|i| means[(i / f) % k * f + i % f] + normal()).collect();
    let split = Split::random_stratified(&labels, 0.1, 0.1, spec.seed);
    let name = format!("planted-{n}-{k}c-h{}", spec.homophily);
    Dataset::new(name, graph, Features::dense(n, f, data), labels, vec![split]).expect("consistent generated dataset")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_partition_has_its_homophily_and_real_valued_features() {
        let d = planted_partition(&PlantedSpec { nodes: 3000, ..Default::default() });
        let undirected = d.graph.num_undirected_edges();
        assert!((29_000..=30_000).contains(&undirected), "{undirected}");
        let edges = d.graph.edges();
        let same = edges.iter().filter(|&&(u, v)| d.labels[u] == d.labels[v]).count() as f64 / edges.len() as f64;
        assert!((same - 0.8).abs() < 0.02, "homophily {same}");
        let Features::Dense { data, .. } = &d.features else { panic!("dense features") };
        assert!(data.iter().any(|&x| x < 0.0), "real-valued, not bag-of-words");
        assert_eq!(d.num_classes, 10);
    }

    #[test]
    fn scenarios_have_their_shape() {
        let d = synthetic(&SyntheticSpec::new(Signal::Structure, false));
        assert_eq!(d.num_nodes(), 2000);
        let e = d.graph.num_undirected_edges();
        assert!((9000..=10000).contains(&e), "{e}");
        // Homophilous: every edge inside a group.
        assert!(d.graph.edges().iter().all(|&(u, v)| u / 20 == v / 20));
        let h = synthetic(&SyntheticSpec::new(Signal::Both, true));
        assert!(h.graph.edges().iter().all(|&(u, v)| (u / 20) ^ 1 == v / 20));
        let sparse = synthetic(&SyntheticSpec::new(Signal::Features, false));
        assert!(sparse.graph.num_undirected_edges() <= 2000);
        assert_eq!(SyntheticSpec::parse("both-heterophilous").unwrap().name(), "synthetic-both-heterophilous");
        assert!(SyntheticSpec::parse("nonsense").is_none());
    }
}
