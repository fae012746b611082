//! The historical embeddings' plumbing between ways: (hybrid mode) the rows each way exchanges
//! with the others.

use crate::config::StageSpec;
use strata_graph::CsrGraph;
use tch::{Device, Tensor};

/// Row lists per other way: `(way, global row ids)`.
pub(crate) type WayRows = Vec<(usize, Tensor)>;

/// For way `spec.way`: per other way q, the rows of our vertices q reads (sorted), and the
/// rows of q's vertices we read (sorted) — the same sets seen from both ends of a symmetric graph.
pub(crate) fn history_lists(graph: &CsrGraph, spec: &StageSpec, device: Device) -> (WayRows, WayRows) {
    let offs = &spec.way_offsets;
    let way_of = |u: usize| offs.partition_point(|&o| o <= u) - 1;
    let (lo, hi) = (offs[spec.way], offs[spec.way + 1]);
    let mut send = vec![Vec::new(); spec.ways];
    let mut recv = vec![std::collections::BTreeSet::new(); spec.ways];
    for u in lo..hi {
        let mut needed_by: Vec<usize> = Vec::new();
        for &v in graph.neighbors(u) {
            let q = way_of(v as usize);
            if q != spec.way {
                recv[q].insert(v);
                if !needed_by.contains(&q) {
                    needed_by.push(q);
                }
            }
        }
        needed_by.into_iter().for_each(|q| send[q].push(u as i64));
    }
    let t = |v: &[i64]| Tensor::from_slice(v).to(device);
    let send = send.iter().enumerate().filter(|(_, v)| !v.is_empty()).map(|(q, v)| (q, t(v))).collect();
    let recv = recv
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(q, v)| (q, t(&v.iter().copied().collect::<Vec<_>>())))
        .collect();
    (send, recv)
}
