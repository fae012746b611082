//! The historical embeddings' plumbing: inter-chunk aggregation over fresh and stale rows,
//! and (hybrid mode) the rows each way exchanges with the others.

use crate::config::StageSpec;
use strata_graph::CsrGraph;
use tch::{Device, Kind, Tensor};

/// Edges gathered at once by the inter-chunk aggregation: bounds its transient E × d tensors
/// (64 MiB at d = 64) on graphs whose chunks have millions of inter edges.
pub(crate) const INTER_SLICE: i64 = 1 << 18;

/// `(start, len)` pieces of `0..n`, each at most [`INTER_SLICE`] long.
pub(crate) fn slices(n: i64) -> impl Iterator<Item = (i64, i64)> {
    (0..n).step_by(INTER_SLICE as usize).map(move |s| (s, INTER_SLICE.min(n - s)))
}

/// Σ over chunk `c`'s inter edges of weighted source rows: fresh edges (the first group of
/// [`Stage::split_inter`]) read `live`, stale ones `snapshot`, in slices and in edge order (the
/// same sums, bit for bit, as one gather per group); `like` gives the output shape.
pub(crate) fn aggregate_inter(
    like: &Tensor,
    live: &Tensor,
    snapshot: &Tensor,
    parts: &[(Tensor, Tensor, Tensor); 2],
) -> Tensor {
    let mut out = Tensor::zeros_like(like);
    for ((rows, cols, w), source) in parts.iter().zip([live, snapshot]) {
        for (start, len) in slices(rows.size()[0]) {
            let msg = source.index_select(0, &cols.narrow(0, start, len)).to_kind(Kind::Float)
                * w.narrow(0, start, len).unsqueeze(-1);
            let _ = out.index_add_(0, &rows.narrow(0, start, len), &msg);
        }
    }
    out
}

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
