//! The graph surgery of STABLE: Jaccard pre-pruning, augmented views, cosine pruning and
//! reliable-neighbour insertion.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use strata_graph::{CsrGraph, Features};
use tch::{Device, Kind, Tensor};

/// Column indices of the non-zero features of every node (features treated as binary).
fn nonzero_sets(f: &Features) -> Vec<Vec<u32>> {
    match f {
        Features::Dense { rows, cols, data } => {
            (0..*rows).map(|r| (0..*cols).filter(|&c| data[r * cols + c] != 0.0).map(|c| c as u32).collect()).collect()
        }
        Features::Sparse(m) => (0..m.rows())
            .map(|r| {
                let vals = m.row_values(r);
                let mut s: Vec<u32> = m
                    .row(r)
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| vals.is_none_or(|v| v[*j] != 0.0))
                    .map(|(_, &c)| c as u32)
                    .collect();
                s.sort_unstable();
                s
            })
            .collect(),
    }
}

/// Whether the features carry no information for Jaccard similarity: the identity (one-hot of
/// the node id, as PolBlogs gets) or the same non-zero pattern on every row. Pre-pruning such a
/// graph would remove every edge (identity) or none, so STABLE skips it there, as the reference
/// does for PolBlogs.
pub fn is_featureless(f: &Features) -> bool {
    let sets = nonzero_sets(f);
    let identity = sets.iter().enumerate().all(|(i, s)| s.len() == 1 && s[0] as usize == i);
    identity || sets.windows(2).all(|w| w[0] == w[1])
}

fn intersection(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

fn undirected(g: &CsrGraph) -> Vec<(usize, usize)> {
    (0..g.num_nodes())
        .flat_map(|u| g.neighbors(u).iter().filter(move |&&v| (v as usize) > u).map(move |&v| (u, v as usize)))
        .collect()
}

fn from_undirected(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> CsrGraph {
    let both: Vec<(i64, i64)> =
        edges.into_iter().flat_map(|(u, v)| [(u as i64, v as i64), (v as i64, u as i64)]).collect();
    CsrGraph::from_edges("stable", n, &both, None).expect("ids in range")
}

/// Step 1: removes edges whose endpoints' feature Jaccard similarity is below `jt` (0/0 counts
/// as similar, as in the reference). Returns the pruned graph and the removed edges (`u < v`).
pub fn jaccard_prune(g: &CsrGraph, features: &Features, jt: f64) -> (CsrGraph, Vec<(usize, usize)>) {
    if jt <= 0.0 {
        return (g.clone(), Vec::new());
    }
    let sets = nonzero_sets(features);
    let (mut keep, mut drop) = (Vec::new(), Vec::new());
    for (u, v) in undirected(g) {
        let inter = intersection(&sets[u], &sets[v]) as f64;
        let union = (sets[u].len() + sets[v].len()) as f64 - inter;
        let j = if union > 0.0 { inter / union } else { f64::NAN };
        if j < jt {
            drop.push((u, v))
        } else {
            keep.push((u, v))
        }
    }
    (from_undirected(g.num_nodes(), keep), drop)
}

/// Step 2: two views, each the pruned graph plus a random `recover` fraction of the pruned edges.
pub fn augmented_views(pre: &CsrGraph, pruned: &[(usize, usize)], recover: f64, seed: u64) -> [CsrGraph; 2] {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5ab1e);
    let count = (pruned.len() as f64 * recover).floor() as usize;
    let mut view = || {
        let mut back = pruned.to_vec();
        back.shuffle(&mut rng);
        from_undirected(pre.num_nodes(), undirected(pre).into_iter().chain(back.into_iter().take(count)))
    };
    [view(), view()]
}

fn unit_rows(z: &Tensor) -> Tensor {
    z / z.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12)
}

/// Cosine similarity of the embeddings of every undirected edge (`u < v`).
pub fn edge_cosines(g: &CsrGraph, z: &Tensor) -> Vec<(usize, usize, f32)> {
    let zn = unit_rows(&z.to_kind(Kind::Float));
    let edges = undirected(g);
    let mut out = Vec::with_capacity(edges.len());
    for block in edges.chunks(1 << 18) {
        let (s, d): (Vec<i64>, Vec<i64>) = block.iter().map(|&(u, v)| (u as i64, v as i64)).unzip();
        let (s, d) = (Tensor::from_slice(&s).to(zn.device()), Tensor::from_slice(&d).to(zn.device()));
        let c = Vec::<f32>::try_from(
            (zn.index_select(0, &s) * zn.index_select(0, &d)).sum_dim_intlist(1, false, Kind::Float).to(Device::Cpu),
        )
        .unwrap_or_default();
        out.extend(block.iter().zip(c).map(|(&(u, v), c)| (u, v, c)));
    }
    out
}

/// Step 4: removes the edges whose cosine is ≤ `threshold`. Returns the kept graph and the
/// removed edges with their cosines.
pub fn cosine_prune(
    g: &CsrGraph,
    cosines: &[(usize, usize, f32)],
    threshold: f64,
) -> (CsrGraph, Vec<(usize, usize, f32)>) {
    let (keep, removed): (Vec<_>, Vec<_>) = cosines.iter().partition(|&&(_, _, c)| c as f64 > threshold);
    (from_undirected(g.num_nodes(), keep.into_iter().map(|(u, v, _)| (u, v))), removed)
}

/// Step 5: for every node, its `k` most cosine-similar nodes among those of degree > 1 become
/// (directed) neighbours; similarities of other candidates count as 0, and the node itself is
/// never its own neighbour (it usually is its own best match, so at most k − 1 are new). Row
/// blocks bound the memory to `block × N`. Returns the graph and the number of new entries.
pub fn add_reliable_neighbours(g: &CsrGraph, z: &Tensor, k: usize) -> (CsrGraph, usize) {
    let n = g.num_nodes();
    if k == 0 {
        return (g.clone(), 0);
    }
    let zn = unit_rows(&z.to_kind(Kind::Float));
    let eligible: Vec<f32> = (0..n).map(|u| if g.neighbors(u).len() > 1 { 1.0 } else { 0.0 }).collect();
    let k = k.min(eligible.iter().filter(|&&e| e > 0.0).count());
    if k == 0 {
        return (g.clone(), 0);
    }
    let mask = Tensor::from_slice(&eligible).to(zn.device()).unsqueeze(0);
    let mut existing: HashSet<(usize, usize)> =
        (0..n).flat_map(|u| g.neighbors(u).iter().map(move |&v| (u, v as usize))).collect();
    let mut added = 0;
    const BLOCK: i64 = 2048;
    for start in (0..n as i64).step_by(BLOCK as usize) {
        let len = BLOCK.min(n as i64 - start);
        let sim = zn.narrow(0, start, len).matmul(&zn.tr()) * &mask;
        let (_, top) = sim.topk(k as i64, 1, true, true);
        let top = strata_nn::ops::host_vec::<i64>(&top);
        for (i, chunk) in top.chunks(k).enumerate() {
            let u = start as usize + i;
            for &v in chunk {
                if v as usize != u && existing.insert((u, v as usize)) {
                    added += 1;
                }
            }
        }
    }
    let mut edges: Vec<(i64, i64)> = existing.into_iter().map(|(u, v)| (u as i64, v as i64)).collect();
    edges.sort_unstable();
    (CsrGraph::from_edges("stable", n, &edges, None).expect("ids in range"), added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn featureless_inputs_are_detected() {
        assert!(is_featureless(&Features::identity(5)));
        assert!(is_featureless(&Features::dense(3, 2, vec![1.0, 0.0, 2.0, 0.0, 0.5, 0.0])));
        assert!(!is_featureless(&Features::dense(3, 2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0])));
    }

    #[test]
    fn jaccard_prunes_dissimilar_endpoints() {
        // 0 and 1 share everything, 0 and 2 nothing; 3 and 4 have no features (0/0: kept).
        let f = Features::dense(5, 3, vec![1., 1., 0., 1., 1., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0.]);
        let g = from_undirected(5, [(0, 1), (0, 2), (2, 3), (3, 4)]);
        let (pre, dropped) = jaccard_prune(&g, &f, 0.03);
        assert_eq!(dropped, vec![(0, 2), (2, 3)]);
        assert!(pre.has_edge(0, 1) && pre.has_edge(3, 4) && !pre.has_edge(0, 2));
        let views = augmented_views(&pre, &dropped, 1.0, 0);
        assert!(views[0].has_edge(0, 2) && views[0].has_edge(2, 0));
    }

    #[test]
    fn cosine_pruning_and_reliable_neighbours() {
        let g = from_undirected(4, [(0, 1), (1, 2), (2, 3), (0, 3)]);
        let z = Tensor::from_slice(&[1f32, 0., 0.9, 0.1, 0., 1., 0.1, 0.9]).view([4, 2]);
        let cos = edge_cosines(&g, &z);
        let (kept, removed) = cosine_prune(&g, &cos, 0.5);
        // 1–2 and 0–3 point in nearly orthogonal directions.
        assert_eq!(removed.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), vec![(0, 3), (1, 2)]);
        assert!(kept.has_edge(0, 1) && kept.has_edge(2, 3));
        // Every node now has degree 1: nobody is eligible, so nothing is added...
        assert_eq!(add_reliable_neighbours(&kept, &z, 2).1, 0);
        // ...but on the square (degrees 2) with k = 4 every node also takes its one non-neighbour.
        let (refined, added) = add_reliable_neighbours(&g, &z, 4);
        assert_eq!(added, 4);
        assert!(refined.has_edge(0, 2) && refined.has_edge(1, 3) && !refined.has_edge(0, 0));
    }
}
