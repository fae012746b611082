//! One convolution slot of a pipeline stage on one chunk: the aggregate over the chunk's own
//! edges and over its neighbours' rows in the historical embeddings (fresh or stale), the
//! layer's update from strata-nn, and the gradients that reach the fresh neighbours.
//!
//! Linear aggregations (GCN, GCNII, GraphSAGE) read the neighbours through the chunk's
//! [`InterBlock`]: one sparse product over the gathered halo rows, whose result is the leaf;
//! its gradient goes back to the halo rows as one transposed product. GCNII on a CSR chunk is
//! strata-nn's fused layer with the neighbour aggregate folded into its residual term. Attention
//! (GAT) is not linear in the neighbours, so there the gathered rows themselves are the leaves.

use crate::chunks::{Chunk, Intra};
use crate::layers::{Conv, ConvParams};
use strata_nn::conv::GatConv;
use strata_nn::ops::dropout_mask;
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

/// What a chunk's backward reads the neighbours' gradients from.
pub(crate) enum Leaf {
    /// The inter-chunk aggregate (linear layers).
    Aggregate(Tensor),
    /// The gathered rows of each edge group (fresh, then stale when carried; attention).
    Rows(Vec<Tensor>),
}

/// Where a slot reads a chunk's neighbours from.
pub(crate) enum Neighbours<'a> {
    /// Linear layers: the chunk's halo rows, gathered (f32; `None` without inter edges).
    Halo(Option<&'a Tensor>),
    /// Attention: the inter edges split by freshness, read from `live` and `snapshot`.
    Edges(&'a InterParts),
}

/// One slot's result on one chunk.
pub(crate) struct SlotRun {
    pub out: Tensor,
    /// The slot's dropped-out input without autograd: the chunk's rows of the historical buffer.
    pub xd: Tensor,
    /// The dropout mask: gradients later chunks send to the rows enter the slot's input as
    /// `g ⊙ keep / (1 − p)` ([`SlotRun::injected`]).
    pub keep: Option<Tensor>,
    pub leaf: Option<Leaf>,
}

impl SlotRun {
    /// What a gradient `g` of the dropped-out rows is for the slot's input.
    pub(crate) fn injected(keep: Option<&Tensor>, p: f64, g: &Tensor) -> Tensor {
        match keep {
            Some(k) => (g * k) * (1.0 / (1.0 - p)),
            None => g.shallow_clone(),
        }
    }
}

impl ConvSlot {
    /// The slot on chunk `ch` for its input `x` (the generator already seeded for the slot's
    /// dropout of rate `p`); `h0a` is GCNII's `α·H⁰`. With `leaves` (autograd on) the neighbour
    /// reads become leaves; `carry` also makes stale ones leaves (attention).
    pub(crate) fn on_chunk(
        &self,
        ch: &Chunk,
        x: &Tensor,
        p: f64,
        nb: Neighbours,
        h0a: Option<&Tensor>,
        leaves: Option<bool>,
    ) -> SlotRun {
        let keep = (p > 0.0).then(|| dropout_mask(x, p));
        let scale = if keep.is_some() { 1.0 / (1.0 - p) } else { 1.0 };
        // The bits of `strata_nn::ops::dropout`, `(x · keep) · s`, with or without autograd.
        let drop = |x: &Tensor| match &keep {
            Some(k) => (x * k) * scale,
            None => x.shallow_clone(),
        };
        let xd = tch::no_grad(|| drop(x));
        let halo = match nb {
            Neighbours::Edges(parts) => {
                let Conv::Gat(gat) = &self.p.conv else { unreachable!("edge lists are kept for attention only") };
                let mut list = Vec::new();
                let out = self.attend_chunk(gat, ch, &drop(x), parts, leaves.map(|carry| (&mut list, carry)));
                return SlotRun { out, xd, keep, leaf: list.pop() };
            }
            Neighbours::Halo(halo) => halo,
        };
        let mut inter = ch.inter.as_ref().zip(halo).map(|(b, rows)| b.aggregate(rows));
        let mut leaf = None;
        if leaves.is_some() {
            inter = inter.map(|i| i.set_requires_grad(true));
            leaf = inter.as_ref().map(|i| Leaf::Aggregate(i.shallow_clone()));
        }
        let out = match (&self.p.conv, &ch.intra) {
            (Conv::Gcnii(c), Intra::Csr { a, a_t }) => {
                // ((1 − α)·(A_cc·xd + inter) + α·h⁰)·M: the inter aggregate rides in the residual.
                let h0a = h0a.expect("GCNII carries h0");
                let res = match &inter {
                    Some(i) => i * (1.0 - c.alpha) + h0a,
                    None => h0a.shallow_clone(),
                };
                self.p.activate(c.forward_csr(x, &res, keep.as_ref(), scale, (a, a_t), false))
            }
            _ => {
                let xg = if leaves.is_some() { drop(x) } else { xd.shallow_clone() };
                let agg = match inter {
                    Some(i) => ch.aggregate_intra(&xg) + i,
                    None => ch.aggregate_intra(&xg),
                };
                self.p.update(agg, &xg, h0a)
            }
        };
        SlotRun { out, xd, keep, leaf }
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
    /// reads, scaled by `grad_scale` (trick 2): the rows of source chunks where `include` holds
    /// (the fresh ones, or every one when stale gradients are carried over); for attention,
    /// `groups` are the edge groups the leaves were gathered for.
    pub(crate) fn send_grads(
        &self,
        ch: &Chunk,
        leaf: Leaf,
        groups: Option<&InterParts>,
        grad_scale: f64,
        include: impl Fn(usize) -> bool,
    ) {
        match leaf {
            Leaf::Aggregate(inter) => {
                let g = inter.grad();
                if let (true, Some(block)) = (g.defined(), &ch.inter) {
                    block.spread(&g, &self.grad, grad_scale, include);
                }
            }
            Leaf::Rows(gathered) => {
                let mut acc = self.grad.shallow_clone();
                for (t, (_, cols, _)) in gathered.iter().zip(groups.into_iter().flatten()) {
                    let g = t.grad();
                    if g.defined() {
                        let _ = acc.index_add_(0, cols, &(g * grad_scale));
                    }
                }
            }
        }
    }
}
