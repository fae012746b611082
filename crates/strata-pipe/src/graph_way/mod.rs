//! The graph-parallel baseline: each of W ways owns one partition of the vertices for every
//! layer (as in ROC, DistGNN or PipeGCN without pipelining). Every convolution exchanges halo
//! rows — the layer inputs of boundary vertices other partitions aggregate — forward, and their
//! gradients backward; weight gradients are summed with a ring all-reduce before each step.
//! Training is exact full-graph training: with dropout off it follows single-process training
//! to rounding, which the tests check.
//!
//! Backward runs one layer at a time, because a halo row's gradient must reach its owner
//! before the owner can back-propagate through the layer below: each layer is a separate
//! autograd segment between detached leaves. The epoch's order is the schedule's
//! ([`schedule::graph`](crate::schedule::graph)): per slot, the halo rows go out
//! ([`Engine::halo_out`]), the others' come in, the slot computes.

use crate::boundary::{Boundary, BoundaryShape};
use crate::chunks::ChunkedGraph;
use crate::config::{PipeModel, StageSpec};
use crate::error::PipeError;
use crate::history::history_lists;
use crate::layers::{self, Conv, ConvParams, Layers};
use crate::schedule::{Halo, Part};
use crate::stage_core::{grad_or_zeros, Breakdown, Engine, StageCore};
use crate::stage_data::StageData;
use strata_nn::conv::Linear;
use strata_nn::ops::{backward_roots, dropout, dropout_mask, host_vec, masked_scale, masked_scale_out, spmm};
use strata_nn::Input;
use tch::{nn, Device, Kind, Tensor};

mod operator;
use operator::PartitionOperator;

/// One graph-parallel way: every layer, over the vertices `lo..hi` it owns.
pub struct GraphWay {
    core: StageCore,
    /// Every slot: the input projection, the convolutions, the classifier.
    input: Linear,
    convs: Vec<ConvParams>,
    head: Linear,
    features: Input,
    /// This partition's rows of the normalised operator, split by where the source lives.
    op: PartitionOperator,
    /// Per way that reads our rows, our rows it reads (local ids).
    send: Vec<(usize, Tensor)>,
    /// The ways we read rows from, and how many rows each.
    recv: Vec<usize>,
    recv_rows: Vec<i64>,
    /// The first vertex this way owns.
    lo: usize,
    epoch: Epoch,
}

/// The tensors one epoch carries from action to action.
#[derive(Default)]
struct Epoch {
    /// The input projection's output (with its autograd graph) and its detached leaf.
    projected: Option<Tensor>,
    x0: Option<Tensor>,
    /// GCNII's `α·h⁰`.
    h0a: Option<Tensor>,
    /// The next slot's input, its dropout mask, and the halo rows received for it.
    x_in: Option<Tensor>,
    keep: Option<Tensor>,
    halo: Option<Tensor>,
    saved: Vec<Saved>,
    loss: Option<Tensor>,
    /// Gradients of our rows the readers returned, to add to the output gradient below.
    returned: Vec<(Tensor, Tensor)>,
    /// The halo gradient of the slot just back-propagated, per source way.
    halo_grad: Vec<(usize, Tensor)>,
}

/// What one layer's forward keeps for its backward segment: the dropout mask (one byte per
/// entry), the received halo rows (the leaf their gradient is read from) and the output; the
/// sparse products and the fused GCNII node keep the rest themselves.
struct Saved {
    keep: Option<Tensor>,
    halo_leaf: Tensor,
    out: Tensor,
    next_leaf: Tensor,
}

impl GraphWay {
    pub fn new(spec: StageSpec, data: &StageData, device: Device) -> Result<GraphWay, PipeError> {
        let cfg = &spec.config;
        let vs = nn::VarStore::new(device);
        let Layers { input, convs, head } =
            layers::build(cfg, spec.features, spec.classes, 0..cfg.layers + 2, &vs, device);
        let owned =
            |l: Option<Linear>| l.ok_or_else(|| PipeError::Internal("a graph-parallel way owns every slot".into()));
        let (input, head) = (owned(input)?, owned(head)?);
        let opt = layers::optimizer(cfg, &vs);
        let part = ChunkedGraph::one_chunk(&data.graph, layers::norm(cfg.model), &spec.chunk_offsets, spec.way, device);
        let (lo, hi) = (part.start as usize, part.end as usize);
        let (send, recv) = history_lists(&data.graph.symmetrized(), &spec, device);
        // Our rows are local here (the partition's tensors start at row `lo`).
        let send: Vec<(usize, Tensor)> = send.into_iter().map(|(q, rows)| (q, rows - lo as i64)).collect();
        // Halo buffer = the received rows of each way, concatenated in `recv` order: the
        // partition's halo (its sorted inter-edge sources), as the ways are ascending id ranges.
        let recv_rows: Vec<i64> = recv.iter().map(|(_, r)| r.size()[0]).collect();
        let listed: Vec<i64> = recv.iter().flat_map(|(_, r)| host_vec::<i64>(r)).collect();
        let halo: Vec<i64> = part.inter.as_ref().and_then(|b| b.halo.as_ref()).map_or_else(Vec::new, host_vec::<i64>);
        if halo != listed {
            return Err(PipeError::Internal(format!(
                "way {}: the partition's {} halo sources differ from the {} rows the other ways send",
                spec.way,
                halo.len(),
                listed.len()
            )));
        }
        let dropout_scale = if cfg.dropout > 0.0 { 1.0 / (1.0 - cfg.dropout) } else { 1.0 };
        let residual = if cfg.model == PipeModel::Gcnii { 1.0 - cfg.alpha } else { 1.0 };
        let op = PartitionOperator::new(&part, dropout_scale * residual, device)?;
        drop(part);
        Ok(GraphWay {
            features: Input::from_features(&data.rows(lo..hi), device, strata_graph::FeatureNorm::None),
            input,
            convs,
            head,
            op,
            send,
            recv: recv.into_iter().map(|(q, _)| q).collect(),
            recv_rows,
            lo,
            epoch: Epoch::default(),
            core: StageCore::new(spec, vs, opt, data.labels.clone(), true),
        })
    }

    /// Halo rows this way sends per layer and direction.
    pub fn halo_rows(&self) -> usize {
        self.send.iter().map(|(_, r)| r.size()[0] as usize).sum()
    }

    fn seed(&self, slot: usize) {
        tch::manual_seed(self.core.seed(self.core.epoch * 64 + self.core.spec.way as u64, slot));
    }
    fn gcnii(&self) -> bool {
        self.core.spec.config.model == PipeModel::Gcnii
    }
    fn scale(&self) -> f64 {
        let p = self.core.spec.config.dropout;
        if p > 0.0 {
            1.0 / (1.0 - p)
        } else {
            1.0
        }
    }
    fn conv(&self, slot: usize) -> Result<&ConvParams, PipeError> {
        self.convs
            .iter()
            .find(|p| p.slot == slot)
            .ok_or_else(|| PipeError::Internal(format!("graph-parallel way has no conv slot {slot}")))
    }
    fn take<T>(v: &mut Option<T>, what: &str, slot: usize) -> Result<T, PipeError> {
        v.take().ok_or_else(|| PipeError::Internal(format!("slot {slot} ran without {what}")))
    }

    /// Slot 0: the input projection (and GCNII's `α·h⁰`).
    fn project(&mut self) {
        let cfg = &self.core.spec.config;
        let train = self.core.train;
        if train {
            self.seed(0);
        }
        let h = self.input.forward_input(&self.features, if train { cfg.dropout } else { 0.0 }, train).relu();
        let x0 = if train { h.detach().set_requires_grad(true) } else { h.shallow_clone() };
        self.epoch.h0a = self.gcnii().then(|| if train { &x0 * cfg.alpha } else { x0.shallow_clone() });
        self.epoch.x_in = Some(x0.shallow_clone());
        self.epoch.x0 = Some(x0);
        self.epoch.projected = train.then_some(h);
    }

    /// The rows of the next slot's input that each other way aggregates, masked by this slot's
    /// dropout (the mask is drawn here, seeded per slot); the reader's operator carries the
    /// dropout scale.
    fn outgoing_rows(&mut self, slot: usize) -> Result<Vec<(usize, Tensor)>, PipeError> {
        let x = self.epoch.x_in.as_ref().ok_or_else(|| PipeError::Internal(format!("slot {slot} has no input")))?;
        let p = self.core.spec.config.dropout;
        let keep = if self.core.train && p > 0.0 {
            self.seed(slot);
            Some(dropout_mask(x, p))
        } else {
            None
        };
        let out = tch::no_grad(|| {
            self.send
                .iter()
                .map(|(q, rows)| {
                    // One gathered copy, masked in place: what goes on the wire.
                    let r = x.index_select(0, rows);
                    if let Some(k) = &keep {
                        masked_scale_out(&r, &r, &k.index_select(0, rows), 1.0);
                    }
                    (*q, r)
                })
                .collect()
        });
        self.epoch.keep = keep;
        Ok(out)
    }

    /// One convolution on this partition, its halo rows received: GCNII through strata-nn's
    /// fused layer (the halo part rides in the residual), the others as `update(Â·x)`.
    ///
    /// Each layer is `relu(((1−α)·(Â_intra·(x ⊙ keep) + Â_halo·halo)/(1−p) + α·h⁰)·M)` for GCNII
    /// and `relu((Â_intra·(x ⊙ keep) + Â_halo·halo)/(1−p)·W + b)` for GCN, where `halo` holds the
    /// other ways' rows masked as they sent them (the factors ride on the halo block's values).
    fn conv_forward(&self, p: &ConvParams, x_in: &Tensor, keep: Option<&Tensor>, halo: &Tensor) -> Tensor {
        let scale = self.scale();
        let from_halo = self.op.halo_part_train(halo);
        if let (Some(h0a), Conv::Gcnii(conv)) = (self.epoch.h0a.as_ref(), &p.conv) {
            let residual = match from_halo {
                // In place: the sparse product keeps nothing of its output for its backward.
                Some(mut f) => {
                    let _ = f.g_add_(h0a);
                    f
                }
                None => h0a.shallow_clone(),
            };
            let (a, a_t) = &self.op.intra;
            return conv.forward_csr(x_in, &residual, keep, scale, (a, a_t), false).relu();
        }
        let xd = match keep {
            Some(k) => masked_scale(x_in, k, scale),
            None => x_in.shallow_clone(),
        };
        let mut agg = spmm(&self.op.intra.0, &self.op.intra.1, &xd);
        if let Some(f) = from_halo {
            let _ = agg.g_add_(&f);
        }
        p.update(agg, &xd, None)
    }

    /// Conv slot `slot` forward: training keeps the layer's segment for its backward.
    fn forward_slot(&mut self, slot: usize) -> Result<(), PipeError> {
        let x_in = Self::take(&mut self.epoch.x_in, "an input", slot)?;
        let halo = Self::take(&mut self.epoch.halo, "its halo rows", slot)?;
        let keep = self.epoch.keep.take();
        let p = self.conv(slot)?;
        if !self.core.train {
            let _guard = tch::no_grad_guard();
            let mut agg = spmm(&self.op.intra.0, &self.op.intra.1, &x_in);
            if let Some(f) = self.op.halo_part(&halo) {
                let _ = agg.g_add_(&f);
            }
            let x0 = self.epoch.x0.as_ref().filter(|_| self.gcnii());
            self.epoch.x_in = Some(p.update_inference(agg, &x_in, x0));
            return Ok(());
        }
        let halo_leaf = halo.set_requires_grad(true);
        let out = self.conv_forward(p, &x_in, keep.as_ref(), &halo_leaf);
        let next_leaf = out.detach().set_requires_grad(true);
        self.epoch.saved.push(Saved { keep, halo_leaf, out, next_leaf: next_leaf.shallow_clone() });
        self.epoch.x_in = Some(next_leaf);
        if self.core.spec.config.trim_heap {
            strata_nn::memory::release_free_heap();
        }
        Ok(())
    }

    /// The classifier: logits, and in training this way's share of the loss.
    fn forward_head(&mut self, slot: usize) -> Result<Option<Boundary>, PipeError> {
        let x = Self::take(&mut self.epoch.x_in, "an input", slot)?;
        if !self.core.train {
            let logits = tch::no_grad(|| self.head.forward(&x));
            if self.core.capture {
                // This way's rows, lo..lo + rows.
                self.core.outputs = Some((x, logits.shallow_clone()));
            }
            return Ok(Some(Boundary { x: logits, side: None }));
        }
        tracing::debug!(
            "graph-parallel way {} forward done: heap in use {} MiB, {}",
            self.core.spec.way,
            strata_nn::memory::heap_in_use() >> 20,
            strata_nn::memory::rss_summary()
        );
        self.seed(slot);
        let logits = self.head.forward(&dropout(&x, self.core.spec.config.dropout, true));
        self.epoch.loss = self.core.loss_share(&logits, self.lo);
        self.core.last_loss = self.epoch.loss.as_ref().map_or(0.0, |l| l.double_value(&[]));
        Ok(None)
    }

    /// The gradient reaching a slot's output: from the slot above, plus what the ways that read
    /// its rows returned.
    fn output_grad(&mut self, leaf: &Tensor) -> Tensor {
        let mut g = grad_or_zeros(leaf);
        tch::no_grad(|| {
            for (rows, t) in self.epoch.returned.drain(..) {
                let _ = g.index_add_(0, &rows, &t);
            }
        });
        g
    }

    /// Conv slot `slot` backward: its segment, and its halo rows' gradients by source way.
    fn backward_slot(&mut self, slot: usize) -> Result<(), PipeError> {
        let s = self.epoch.saved.pop().ok_or_else(|| PipeError::Internal(format!("slot {slot}: nothing saved")))?;
        let g = self.output_grad(&s.next_leaf);
        backward_roots(&[(&s.out, &g)])?;
        let halo_grad = grad_or_zeros(&s.halo_leaf);
        let mut off = 0;
        self.epoch.halo_grad.clear();
        for (&q, &n) in self.recv.iter().zip(&self.recv_rows) {
            self.epoch.halo_grad.push((q, halo_grad.narrow(0, off, n)));
            off += n;
        }
        self.epoch.keep = s.keep;
        if self.core.spec.config.trim_heap {
            strata_nn::memory::release_free_heap();
        }
        Ok(())
    }
}

impl Engine for GraphWay {
    fn core(&self) -> &StageCore {
        &self.core
    }
    fn core_mut(&mut self) -> &mut StageCore {
        &mut self.core
    }
    fn role(&self) -> String {
        format!("graph-parallel way {}", self.core.spec.way)
    }
    fn begin_epoch(&mut self, _epoch: u64, _order: &[usize], _train: bool) -> Result<(), PipeError> {
        self.epoch = Epoch::default();
        Ok(())
    }
    fn forward(&mut self, part: Part, _input: Option<Boundary>) -> Result<Option<Boundary>, PipeError> {
        let head = self.core.spec.config.layers + 1;
        match part {
            Part::Slot(0) => self.project(),
            Part::Slot(s) if s == head => return self.forward_head(s),
            Part::Slot(s) => self.forward_slot(s)?,
            _ => return Err(PipeError::Internal(format!("{} computes slots, not part {part}", self.role()))),
        }
        Ok(None)
    }
    fn backward(
        &mut self,
        part: Part,
        _grad: Option<Boundary>,
        _phases: &mut Breakdown,
    ) -> Result<Option<Boundary>, PipeError> {
        let head = self.core.spec.config.layers + 1;
        match part {
            Part::Slot(0) => {
                let x0 = Self::take(&mut self.epoch.x0, "its projection", 0)?;
                let h = Self::take(&mut self.epoch.projected, "its projection", 0)?;
                let g0 = self.output_grad(&x0);
                backward_roots(&[(&h, &g0)])?;
                self.epoch = Epoch::default();
            }
            Part::Slot(s) if s == head => {
                if let Some(loss) = self.epoch.loss.take() {
                    loss.backward();
                }
                self.epoch.x_in = None;
            }
            Part::Slot(s) => self.backward_slot(s)?,
            _ => return Err(PipeError::Internal(format!("{} computes slots, not part {part}", self.role()))),
        }
        Ok(None)
    }
    /// A way receives no boundary from a neighbouring stage.
    fn boundary_shape(&self, _part: Part) -> BoundaryShape {
        BoundaryShape { x: Vec::new(), side: None }
    }
    fn halo_out(&mut self, halo: Halo, slot: usize) -> Result<Vec<(usize, Tensor)>, PipeError> {
        match halo {
            Halo::Rows => self.outgoing_rows(slot),
            Halo::Gradients => Ok(std::mem::take(&mut self.epoch.halo_grad)),
            Halo::History => Err(PipeError::Internal(format!("{} keeps no history", self.role()))),
        }
    }
    fn halo_sources(&self, halo: Halo) -> Vec<(usize, Vec<i64>)> {
        let d = self.core.spec.config.hidden;
        match halo {
            Halo::Rows => self.recv.iter().zip(&self.recv_rows).map(|(&q, &n)| (q, vec![n, d])).collect(),
            Halo::Gradients => self.send.iter().map(|(q, rows)| (*q, vec![rows.size()[0], d])).collect(),
            Halo::History => Vec::new(),
        }
    }
    /// Forward: the received rows become the next slot's halo buffer. Backward: the gradients
    /// of our rows come back (the readers' operators applied the dropout scale) through our
    /// dropout mask and wait to be added to the output gradient of the slot below.
    fn halo_in(&mut self, halo: Halo, slot: usize, got: Vec<Tensor>) -> Result<(), PipeError> {
        let device = self.core.device();
        let d = self.core.spec.config.hidden;
        match halo {
            Halo::Rows => {
                let mut got: Vec<Tensor> = got.into_iter().map(|t| t.to_device(device)).collect();
                self.epoch.halo = Some(match got.len() {
                    0 => Tensor::zeros([0, d], (Kind::Float, device)),
                    1 => got.remove(0),
                    _ => Tensor::cat(&got, 0),
                });
            }
            Halo::Gradients => {
                let keep = self.epoch.keep.take();
                for ((_, rows), t) in self.send.iter().zip(got) {
                    let t = t.to_device(device);
                    if let Some(k) = &keep {
                        masked_scale_out(&t, &t, &k.index_select(0, rows), 1.0);
                    }
                    self.epoch.returned.push((rows.shallow_clone(), t));
                }
            }
            Halo::History => {
                return Err(PipeError::Internal(format!("{} keeps no history (slot {slot})", self.role())))
            }
        }
        Ok(())
    }
    fn evaluate(&self, out: &Boundary) -> Result<[u64; 3], PipeError> {
        self.core.correct(&out.x, self.lo)
    }
}
