//! One convolution slot of a pipeline stage on one chunk: the aggregate over the chunk's own
//! edges and over its neighbours' rows in the historical embeddings (fresh or stale), the
//! layer's update from strata-nn, and the gradients that reach the fresh neighbours.
//!
//! Linear aggregations (GCN, GCNII, GraphSAGE) keep the inter-chunk aggregate as the leaf: its
//! gradient spread back over the edges by weight is what autograd would give the gathered
//! rows, without an E × d copy of them per slot. Attention (GAT) is not linear in the
//! neighbours, so there the gathered rows themselves are the leaves.

use crate::chunks::{Chunk, Intra};
use crate::history::{aggregate_inter, slices};
use crate::layers::{Conv, ConvParams};
use strata_nn::conv::GatConv;
use tch::{Kind, Tensor};

/// Inter-chunk edges of one chunk split by freshness: (target row, source id, weight) of the
/// fresh edges, then of the stale ones.
pub(crate) type InterParts = [(Tensor, Tensor, Tensor); 2];

/// A conv slot's parameters and its historical buffers.
pub(crate) struct ConvSlot {
    pub p: ConvParams,
    pub live: Tensor,
    /// The rows as they were when the epoch began (trick 3 restores `live` from it, and a
    /// refresh epoch begins right after it was re-taken), so the stale reads of the backward
    /// recomputation come from here; no separate epoch-start copy is kept.
    pub snapshot: Tensor,
    /// Gradients later chunks sent to these rows, to be injected when their chunk's backward runs.
    pub grad: Tensor,
}

/// What a backward recomputation reads the neighbours' gradients from.
pub(crate) enum Leaf {
    /// The inter-chunk aggregate (linear layers).
    Aggregate(Tensor),
    /// The gathered rows of each edge group (fresh, then stale when carried; attention).
    Rows(Vec<Tensor>),
}

impl ConvSlot {
    /// The slot on chunk `ch`: `xd` is the chunk's dropped-out input (already written to
    /// `live`), `h0` GCNII's initial residual. With `leaves` (the backward recomputation) the
    /// neighbour reads become leaves, pushed there; `carry` also makes stale ones leaves.
    pub(crate) fn on_chunk(
        &self,
        ch: &Chunk,
        xd: &Tensor,
        parts: &InterParts,
        h0: Option<&Tensor>,
        leaves: Option<(&mut Vec<Leaf>, bool)>,
    ) -> Tensor {
        if let Conv::Gat(gat) = &self.p.conv {
            return self.attend_chunk(gat, ch, xd, parts, leaves);
        }
        let mut inter = tch::no_grad(|| aggregate_inter(xd, &self.live, &self.snapshot, parts));
        if let Some((list, _)) = leaves {
            inter = inter.set_requires_grad(true);
            list.push(Leaf::Aggregate(inter.shallow_clone()));
        }
        self.p.update(ch.aggregate_intra(xd) + inter, xd, h0)
    }

    /// GAT on a chunk: targets are the chunk's rows, sources its rows then every inter edge's
    /// neighbour row (fresh from `live`, stale from `snapshot`).
    fn attend_chunk(
        &self,
        gat: &GatConv,
        ch: &Chunk,
        xd: &Tensor,
        parts: &InterParts,
        leaves: Option<(&mut Vec<Leaf>, bool)>,
    ) -> Tensor {
        let Intra::Edges { row, col, .. } = &ch.intra else { unreachable!("attention chunks keep edge lists") };
        let [(fr, fc, _), (sr, sc, _)] = parts;
        let mut fresh = self.live.index_select(0, fc).to_kind(Kind::Float);
        let mut stale = self.snapshot.index_select(0, sc).to_kind(Kind::Float);
        if let Some((list, carry)) = leaves {
            fresh = fresh.detach().set_requires_grad(true);
            let mut rows = vec![fresh.shallow_clone()];
            if carry {
                stale = stale.detach().set_requires_grad(true);
                rows.push(stale.shallow_clone());
            }
            list.push(Leaf::Rows(rows));
        }
        let n = ch.len();
        let (ef, es) = (fr.size()[0], sr.size()[0]);
        let ids = |lo: i64, len: i64| Tensor::arange_start(lo, lo + len, (Kind::Int64, xd.device()));
        let src_w = Tensor::cat(&[xd, &fresh, &stale], 0).matmul(&gat.lin.w);
        let rows = Tensor::cat(&[row, fr, sr], 0);
        let cols = Tensor::cat(&[col.shallow_clone(), ids(n, ef), ids(n + ef, es)], 0);
        self.p.activate(gat.attend_sources(&src_w, &src_w.narrow(0, 0, n), &rows, &cols, 0.0, false))
    }

    /// The slot on the whole graph without autograd, one row block at a time: the layer holds
    /// its input, its output and one block's aggregate (in place where it can be).
    pub(crate) fn on_graph(&self, blocks: &[Chunk], x: &Tensor, h0: Option<&Tensor>) -> Tensor {
        let out = x.empty_like();
        let projected = match &self.p.conv {
            Conv::Gat(gat) => Some(x.matmul(&gat.lin.w)),
            _ => None,
        };
        for b in blocks {
            let rows = |t: &Tensor| t.narrow(0, b.start, b.len());
            let y = match (&self.p.conv, &projected, &b.intra) {
                (Conv::Gat(gat), Some(xw), Intra::Edges { row, col, .. }) => {
                    self.p.activate(gat.attend_sources(xw, &rows(xw), row, col, 0.0, false))
                }
                _ => self.p.update_inference(b.aggregate_block(x), &rows(x), h0.map(rows).as_ref()),
            };
            rows(&out).copy_(&y);
        }
        out
    }

    /// Accumulates, into the source rows' `grad`, what the chunk's backward gave its neighbour
    /// reads, scaled by `grad_scale` (trick 2): `groups` are the fresh edges, and the stale
    /// ones when their gradients are carried over.
    pub(crate) fn send_grads(&self, leaf: Leaf, groups: &[(Tensor, Tensor, Tensor)], grad_scale: f64) {
        let mut acc = self.grad.shallow_clone();
        match leaf {
            Leaf::Aggregate(inter) => {
                let g = inter.grad();
                if !g.defined() {
                    return;
                }
                for (rows, cols, w) in groups {
                    // d loss / d source[e] = w_e · d loss / d inter[row_e].
                    for (start, len) in slices(rows.size()[0]) {
                        let msg =
                            g.index_select(0, &rows.narrow(0, start, len)) * w.narrow(0, start, len).unsqueeze(-1);
                        let _ = acc.index_add_(0, &cols.narrow(0, start, len), &(msg * grad_scale));
                    }
                }
            }
            Leaf::Rows(gathered) => {
                for (t, (_, cols, _)) in gathered.iter().zip(groups) {
                    let g = t.grad();
                    if g.defined() {
                        let _ = acc.index_add_(0, cols, &(g * grad_scale));
                    }
                }
            }
        }
    }
}
