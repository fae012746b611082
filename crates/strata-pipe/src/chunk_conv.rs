//! One convolution slot of a pipeline stage on one chunk: the aggregate over the chunk's own
//! edges and over its neighbours' rows in the historical embeddings (fresh or stale), the
//! layer's update from strata-nn, and the gradients that reach the fresh neighbours.
//!
//! Linear aggregations (GCN, GCNII, GraphSAGE) read the neighbours through the chunk's
//! [`InterBlock`](crate::chunks::InterBlock): one sparse product over the historical buffer,
//! whose result is the leaf. Its gradient is stored, scaled, as the chunk's rows of `grad`;
//! a chunk whose backward comes later takes what is due to it with one product of its own
//! block over `grad` (the transposed product, as its row block of `Aᵀ`). GCNII on a CSR chunk is
//! strata-nn's fused layer with the neighbour aggregate folded into its residual term. Attention
//! (GAT) is not linear in the neighbours, so there the gathered rows themselves are the leaves
//! and their gradients are added to the source rows of `grad`.

use crate::chunks::{Chunk, Intra};
use crate::layers::{Conv, ConvParams};
use strata_nn::conv::GatConv;
use strata_nn::ops::{dropout_mask, masked_scale, masked_scale_out};
use tch::{Kind, Tensor};

/// Inter-chunk edges of one chunk split by freshness: (target row, source id, weight) of the
/// fresh edges, then of the stale ones.
pub(crate) type InterParts = [(Tensor, Tensor, Tensor); 2];

/// A conv slot's parameters and its historical buffers.
pub(crate) struct ConvSlot {
    pub p: ConvParams,
    /// Every vertex's rows: fresh for the chunks computed this epoch, the snapshot's otherwise.
    pub live: Tensor,
    /// The rows as they were when the epoch began (trick 3 restores `live` from it, and a
    /// refresh epoch begins right after it was re-taken). When chunks are recomputed, a chunk's
    /// rows here and in `live` trade places after its backward, so the recomputations still to
    /// come read its stale rows from `live` (the stage's `after_backward`).
    pub snapshot: Tensor,
    /// Linear layers: each row's neighbour-aggregate gradient, scaled by `grad_scale` and the readers'
    /// dropout scale 1/(1 − p), written when its chunk's backward runs (zero until then); attention:
    /// the gradient each source row got from the chunks that read it, accumulated.
    pub grad: Tensor,
    /// `--no-trick2` with linear layers: what each row is due from readers whose backward ran
    /// after its own, injected when its chunk's backward runs next epoch.
    pub carried: Option<Tensor>,
    /// GCNII in a training epoch: the mixing matrix `(1 − β) I + β W` as a leaf, formed once
    /// for every chunk; its gradient reaches `W` after the last chunk's backward
    /// ([`ConvSlot::end_epoch`]).
    pub mixing: Option<Tensor>,
}

/// What a chunk's backward reads the neighbours' gradients from.
pub(crate) enum Leaf {
    /// The inter-chunk aggregate (linear layers).
    Aggregate(Tensor),
    /// The gathered rows of each edge group (fresh, then stale when carried; attention).
    Rows(Vec<Tensor>),
}

/// How a slot reads a chunk's neighbours (always from `live`, whose rows are fresh for the
/// chunks computed earlier this epoch and stale for the others).
pub(crate) enum Neighbours<'a> {
    /// Linear layers: the inter block's product.
    Block,
    /// Attention: the inter edges split by freshness.
    Edges(&'a InterParts),
}

/// One slot's result on one chunk.
pub(crate) struct SlotRun {
    pub out: Tensor,
    /// The dropout mask: what is due to the chunk's rows (a gradient of the dropped-out rows)
    /// enters the slot's input through it ([`ConvSlot::due`]).
    pub keep: Option<Tensor>,
    pub leaf: Option<Leaf>,
}

/// GCNII's initial residual on one chunk: `h⁰` and, where formed, `α·h⁰`.
#[derive(Clone, Copy)]
pub(crate) struct Residual<'a> {
    pub h0: &'a Tensor,
    pub h0a: Option<&'a Tensor>,
}

impl ConvSlot {
    /// Starts a training epoch: GCNII's mixing matrix as a leaf (see [`ConvSlot::mixing`]).
    pub(crate) fn begin_epoch(&mut self) {
        self.mixing = match &self.p.conv {
            Conv::Gcnii(c) => Some(tch::no_grad(|| c.mixing()).set_requires_grad(true)),
            _ => None,
        };
    }

    /// After the epoch's last chunk backward: the mixing leaf's gradient goes to `W`.
    pub(crate) fn end_epoch(&mut self) -> Result<(), tch::TchError> {
        if let (Some(m), Conv::Gcnii(c)) = (self.mixing.take(), &self.p.conv) {
            let g = m.grad();
            if g.defined() {
                strata_nn::ops::backward_roots(&[(&c.mixing(), &g)])?;
            }
        }
        Ok(())
    }

    /// The slot on chunk `ch` for its input `x` (the generator already seeded for the slot's
    /// dropout of rate `p`); `res` is GCNII's initial residual. With `leaves` (autograd on) the
    /// neighbour reads become leaves; `carry` also makes stale ones leaves (attention). With
    /// `write`, the dropped-out rows are written to the chunk's rows of `live`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_chunk(
        &self,
        ch: &Chunk,
        x: &Tensor,
        p: f64,
        nb: Neighbours,
        res: Option<Residual>,
        leaves: Option<bool>,
        write: bool,
    ) -> SlotRun {
        let keep = (p > 0.0).then(|| dropout_mask(x, p));
        let scale = if keep.is_some() { 1.0 / (1.0 - p) } else { 1.0 };
        // The bits of `strata_nn::ops::dropout`, `(x · keep) · s`.
        let drop = |x: &Tensor| match &keep {
            Some(k) => masked_scale(x, k, scale),
            None => x.shallow_clone(),
        };
        let live_rows = || self.live.narrow(0, ch.start, ch.len());
        let write_rows = |xd: &Tensor| {
            if write {
                tch::no_grad(|| live_rows().copy_(xd));
            }
        };
        if let Neighbours::Edges(parts) = nb {
            let Conv::Gat(gat) = &self.p.conv else { unreachable!("edge lists are kept for attention only") };
            let xd = drop(x);
            write_rows(&xd);
            let mut list = Vec::new();
            let out = self.attend_chunk(gat, ch, &xd, parts, leaves.map(|carry| (&mut list, carry)));
            return SlotRun { out, keep, leaf: list.pop() };
        }
        let mut inter = ch.inter.as_ref().map(|b| b.aggregate(&self.live));
        let mut leaf = None;
        if leaves.is_some() {
            inter = inter.map(|i| i.set_requires_grad(true));
            leaf = inter.as_ref().map(|i| Leaf::Aggregate(i.shallow_clone()));
        }
        let scaled_h0 = |res: Residual, alpha: f64| res.h0a.map_or_else(|| res.h0 * alpha, |h| h.shallow_clone());
        let out = match (&self.p.conv, &ch.intra) {
            (Conv::Gcnii(c), Intra::Csr { a, a_t }) => {
                if write {
                    tch::no_grad(|| match &keep {
                        // Straight into the buffer: no chunk-sized temporary.
                        Some(k) if self.live.kind() == Kind::Float => masked_scale_out(&live_rows(), x, k, scale),
                        _ => live_rows().copy_(&drop(x)),
                    });
                }
                // ((1 − α)·(A_cc·xd + inter) + α·h⁰)·M: the inter aggregate rides in the residual
                // term, `lerp(inter, h⁰, α)`.
                let res = res.expect("GCNII carries h0");
                let res = match &inter {
                    Some(i) => i.lerp(res.h0, c.alpha),
                    None => scaled_h0(res, c.alpha),
                };
                let m = self.mixing.as_ref().map_or_else(|| c.mixing(), |m| m.shallow_clone());
                self.p.activate(c.forward_csr_mixing(&m, x, &res, keep.as_ref(), scale, (a, a_t), false))
            }
            (conv, _) => {
                let xd = drop(x);
                write_rows(&xd);
                let agg = match inter {
                    Some(i) => ch.aggregate_intra(&xd) + i,
                    None => ch.aggregate_intra(&xd),
                };
                let alpha = if let Conv::Gcnii(c) = conv { c.alpha } else { 0.0 };
                let h0a = res.map(|r| scaled_h0(r, alpha));
                self.p.update(agg, &xd, h0a.as_ref())
            }
        };
        SlotRun { out, keep, leaf }
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
        let mut stale = self.live.index_select(0, sc).to_kind(Kind::Float);
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

    /// Hands what the chunk's backward gave its neighbour reads to `grad`, scaled by
    /// `grad_scale` (trick 2): a linear layer's aggregate gradient becomes the chunk's rows; an
    /// attention layer's row gradients are added to the source rows (`groups`: the edge groups
    /// the leaves were gathered for).
    pub(crate) fn send_grads(
        &self,
        ch: &Chunk,
        leaf: Leaf,
        groups: Option<&[(Tensor, Tensor, Tensor)]>,
        grad_scale: f64,
        p: f64,
    ) {
        match leaf {
            Leaf::Aggregate(inter) => {
                let g = inter.grad();
                if g.defined() {
                    // The readers' dropout scale 1/(1 − p) rides here, once, not on every `due`.
                    let dropout_scale = if p > 0.0 { 1.0 / (1.0 - p) } else { 1.0 };
                    let _ = g.mul_scalar_out(&self.grad.narrow(0, ch.start, ch.len()), grad_scale * dropout_scale);
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

    /// The gradient chunk `ch`'s rows are due at its backward, as a gradient of this slot's
    /// input (through the dropout mask `keep` of rate `p`): a linear layer's share of the later
    /// chunks' aggregate gradients (and what was carried over), an attention layer's rows of
    /// `grad`. `None`: nothing is due.
    pub(crate) fn due(&self, ch: &Chunk, received: bool, keep: Option<&Tensor>, p: f64) -> Option<Tensor> {
        let rows = |t: &Tensor| t.narrow(0, ch.start, ch.len());
        let fresh = match (&ch.inter_edges, &ch.inter) {
            (Some(_), _) => {
                let g = received.then(|| rows(&self.grad))?;
                return Some(match keep {
                    Some(k) => masked_scale(&g, k, 1.0 / (1.0 - p)),
                    None => g,
                });
            }
            (None, Some(b)) if received => Some(b.gradient_from(&self.grad)),
            _ => None,
        };
        let due = match (fresh, &self.carried) {
            (Some(f), Some(c)) => f + rows(c),
            (None, Some(c)) => rows(c),
            (Some(f), None) => f,
            (None, None) => return None,
        };
        // `grad` and `carried` hold the dropout scale already ([`ConvSlot::send_grads`]).
        Some(match keep {
            Some(k) => masked_scale(&due, k, 1.0),
            None => due,
        })
    }
}
