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
    let prototypes: Vec<Vec<f32>> =
        (0..groups).map(|_| (0..f).map(|_| if rng.random_bool(0.5) { 1.0 } else { 0.0 }).collect()).collect();
    let mut data = Vec::with_capacity(n * f);
    for u in 0..n {
        for &p in &prototypes[group(u)] {
            let x = if informative {
                // The group's prototype with 10 % of its bits flipped.
                if rng.random_bool(0.1) {
                    1.0 - p
                } else {
                    p
                }
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
    Dataset::new(spec.name(), graph, Features::dense(n, f, data), labels, vec![split])
        .expect("consistent synthetic dataset")
}

/// Both directions of each undirected edge `(u, v)`, `u < v`, as a graph on `n` nodes.
fn undirected_graph(context: &str, n: usize, edges: HashSet<(usize, usize)>) -> CsrGraph {
    let mut list: Vec<(i64, i64)> =
        edges.into_iter().flat_map(|(u, v)| [(u as i64, v as i64), (v as i64, u as i64)]).collect();
    list.sort_unstable();
    CsrGraph::from_edges(context, n, &list, None).expect("generated ids are in range")
}

#[cfg(test)]
mod tests {
    use super::*;

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
