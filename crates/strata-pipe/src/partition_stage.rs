//! The graph-parallel baseline: each of W workers owns one partition of the vertices for every
//! layer (as in ROC, DistGNN or PipeGCN without pipelining). Every convolution exchanges halo
//! rows — the layer inputs of boundary vertices other partitions aggregate — forward, and their
//! gradients backward; weight gradients are summed with a ring all-reduce before each step.
//! Training is exact full-graph training: with dropout off it follows single-process training
//! to rounding, which the tests check.
//!
//! Backward runs one layer at a time, because a halo row's gradient must reach its owner
//! before the owner can back-propagate through the layer below: each layer is a separate
//! autograd segment between detached leaves.

use crate::chunks::{Chunk, ChunkedGraph, Intra};
use crate::collective::Exchange;
use crate::config::StageSpec;
use crate::error::PipeError;
use crate::history::history_lists;
use crate::layers::{self, Conv, ConvParams, Layers};
use crate::stage_data::StageData;
use strata_graph::CsrMatrix;
use strata_nn::ops::{dropout, dropout_mask, spmm};
use strata_nn::optim::Adam;
use strata_nn::Input;
use tch::{nn, Device, Kind, Tensor};

pub struct PartitionStage {
    pub spec: StageSpec,
    vs: nn::VarStore,
    opt: Adam,
    layers: Layers,
    features: Input,
    /// This partition's rows of the normalised operator, split by where the source lives.
    op: PartitionOperator,
    send: Vec<(usize, Tensor)>,
    recv: Vec<usize>,
    recv_rows: Vec<i64>,
    labels: Tensor,
    labels_vec: Vec<i64>,
    /// Local ids of this partition's train / val / test nodes.
    local_split: [Vec<i64>; 3],
    pub last_loss: f64,
}

/// A partition's rows of `Â` as CSR tensors: `intra` (n × n, its own columns) with its
/// transpose (itself for the bit-symmetric GCN operator) and `halo` (n × h, the received halo rows' columns) with its
/// cached transpose. Both halves are sparse products whose backward needs only the operator,
/// so a layer's forward keeps neither its input rows nor an edge-sized message tensor for the
/// backward pass (libtorch's `index_add` would keep its E × d source).
struct PartitionOperator {
    intra: (Tensor, Tensor),
    halo: Option<(Tensor, Tensor)>,
}

impl PartitionOperator {
    fn new(part: &Chunk, halo_col: Vec<i64>, halo_rows: usize, device: Device) -> Result<PartitionOperator, PipeError> {
        let n = part.len() as usize;
        let cpu_i64 = |t: &Tensor| {
            Vec::<i64>::try_from(t.to(Device::Cpu).to_kind(Kind::Int64)).map_err(|e| PipeError::Config(e.to_string()))
        };
        let cpu_f32 =
            |t: &Tensor| Vec::<f32>::try_from(t.to(Device::Cpu)).map_err(|e| PipeError::Config(e.to_string()));
        let intra = match &part.intra {
            Intra::Csr { a, a_t } => (a.shallow_clone(), a_t.shallow_clone()),
            Intra::Edges { row, col, w } => {
                let m = sorted_rows_csr("partition operator", n, n, &cpu_i64(row)?, cpu_i64(col)?, cpu_f32(w)?)?;
                let t = m.transpose();
                let a = to_tensor(&m, device);
                (a.shallow_clone(), if t == m { a } else { to_tensor(&t, device) })
            }
        };
        let halo = if halo_rows == 0 {
            None
        } else {
            let m = sorted_rows_csr(
                "partition halo operator",
                n,
                halo_rows,
                &cpu_i64(&part.inter_row)?,
                halo_col,
                cpu_f32(&part.inter_w)?,
            )?;
            Some((to_tensor(&m, device), to_tensor(&m.transpose(), device)))
        };
        Ok(PartitionOperator { intra, halo })
    }

    /// `Â_halo · halo`, or `None` for a partition that receives no halo rows.
    fn halo_part(&self, halo: &Tensor) -> Option<Tensor> {
        self.halo.as_ref().map(|(a, a_t)| spmm(a, a_t, halo))
    }
}

/// A CSR matrix from COO arrays whose rows are already in ascending order.
fn sorted_rows_csr(
    ctx: &str,
    rows: usize,
    cols: usize,
    row: &[i64],
    col: Vec<i64>,
    w: Vec<f32>,
) -> Result<CsrMatrix, PipeError> {
    let mut indptr = vec![0i64; rows + 1];
    row.iter().for_each(|&r| indptr[r as usize + 1] += 1);
    for i in 0..rows {
        indptr[i + 1] += indptr[i];
    }
    CsrMatrix::from_parts(ctx, rows, cols, indptr, col, Some(w)).map_err(|e| PipeError::Config(e.to_string()))
}

fn to_tensor(m: &CsrMatrix, device: Device) -> Tensor {
    let t = |v: &[i64]| Tensor::from_slice(v).to(device);
    let values = Tensor::from_slice(&m.values_or_ones()).to(device);
    Tensor::sparse_csr_tensor_crow_col_value_size(
        &t(m.indptr()),
        &t(m.indices()),
        &values,
        [m.rows() as i64, m.cols() as i64],
        (Kind::Float, device),
    )
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

fn grad_or_zeros(t: &Tensor) -> Tensor {
    let g = t.grad();
    if g.defined() {
        g
    } else {
        Tensor::zeros_like(t)
    }
}

impl PartitionStage {
    pub fn new(spec: StageSpec, data: &StageData, device: Device) -> Result<PartitionStage, PipeError> {
        let cfg = &spec.config;
        let vs = nn::VarStore::new(device);
        let layers = layers::build(cfg, spec.features, spec.classes, 0..cfg.layers + 2, &vs, device);
        let opt = layers::optimizer(cfg, &vs);
        crate::collective::define_grads(&vs);
        let part = ChunkedGraph::one_chunk(&data.graph, layers::norm(cfg.model), &spec.chunk_offsets, spec.way, device);
        let (lo, hi) = (part.start as usize, part.end as usize);
        let (send, recv) = history_lists(&data.graph.symmetrized(), &spec, device);
        // Our rows are local here (the partition's tensors start at row `lo`).
        let send: Vec<(usize, Tensor)> = send.into_iter().map(|(q, rows)| (q, rows - lo as i64)).collect();
        // Halo buffer = the received rows of each way, concatenated in `recv` order.
        let recv_rows: Vec<i64> = recv.iter().map(|(_, r)| r.size()[0]).collect();
        let mut position = std::collections::HashMap::new();
        for (i, v) in
            recv.iter().flat_map(|(_, r)| Vec::<i64>::try_from(r.to(Device::Cpu)).unwrap_or_default()).enumerate()
        {
            position.insert(v, i as i64);
        }
        let cols = Vec::<i64>::try_from(part.inter_col.to(Device::Cpu).to_kind(Kind::Int64))
            .map_err(|e| PipeError::Config(e.to_string()))?;
        let halo_col = cols
            .iter()
            .map(|c| {
                position
                    .get(c)
                    .copied()
                    .ok_or_else(|| PipeError::Config(format!("inter edge source {c} is in no halo list")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let op = PartitionOperator::new(&part, halo_col, position.len(), device)?;
        drop(part);
        let local =
            |ids: &[usize]| ids.iter().filter(|&&i| i >= lo && i < hi).map(|&i| (i - lo) as i64).collect::<Vec<_>>();
        let local_split = [local(&spec.train), local(&spec.val), local(&spec.test)];
        let labels_vec = data.labels[lo..hi].to_vec();
        Ok(PartitionStage {
            features: Input::from_features(&data.rows(lo..hi), device, strata_graph::FeatureNorm::None),
            vs,
            opt,
            layers,
            op,
            send,
            recv: recv.into_iter().map(|(q, _)| q).collect(),
            recv_rows,
            labels: Tensor::from_slice(&labels_vec).to(device),
            labels_vec,
            local_split,
            last_loss: 0.0,
            spec,
        })
    }

    /// Parameters and optimizer moments (a partition keeps no historical rows).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        crate::state::state(&self.vs, &self.opt, Vec::new())
    }
    pub fn load_state(&mut self, named: &std::collections::HashMap<String, Tensor>) -> Result<(), PipeError> {
        crate::state::load_state(&self.vs, &mut self.opt, named)
    }

    pub fn parameters(&self) -> usize {
        self.vs.trainable_variables().iter().map(|t| t.numel()).sum()
    }
    /// Halo rows this partition sends per layer and direction.
    pub fn halo_rows(&self) -> usize {
        self.send.iter().map(|(_, r)| r.size()[0] as usize).sum()
    }

    fn seed(&self, epoch: u64, slot: usize) {
        let s =
            self.spec.config.seed.wrapping_mul(1_000_003) ^ ((epoch * 64 + self.spec.way as u64) * 1024 + slot as u64);
        tch::manual_seed(s as i64);
    }

    /// Sends `out[i].1` to way `out[i].0` and returns the halo buffer (the received rows of
    /// every way in `recv` order), each way's block checked against its expected shape.
    fn exchange(
        &self,
        ex: &mut dyn Exchange,
        tag: &str,
        slot: usize,
        out: &[(usize, Tensor)],
        like: &Tensor,
    ) -> Result<Tensor, PipeError> {
        let got = ex.halo(tag, slot, out, &self.recv)?;
        let d = like.size()[1];
        for (t, &n) in got.iter().zip(&self.recv_rows) {
            if t.size() != [n, d] {
                return Err(PipeError::Config(format!(
                    "halo `{tag}` of slot {slot}: expected {n}×{d} rows, got {:?}",
                    t.size()
                )));
            }
        }
        let got: Vec<Tensor> = got.into_iter().map(|t| t.to_device(like.device())).collect();
        Ok(if got.is_empty() { Tensor::zeros([0, d], (Kind::Float, like.device())) } else { Tensor::cat(&got, 0) })
    }

    /// The rows of `x ⊙ keep · scale` (the layer's dropped-out input) that each other way aggregates.
    fn outgoing_rows(&self, x: &Tensor, keep: Option<&Tensor>, scale: f64) -> Vec<(usize, Tensor)> {
        tch::no_grad(|| {
            self.send
                .iter()
                .map(|(q, rows)| {
                    let r = x.index_select(0, rows);
                    (
                        *q,
                        match keep {
                            Some(k) => (r * k.index_select(0, rows)) * scale,
                            None => r,
                        },
                    )
                })
                .collect()
        })
    }

    /// One training epoch: forward with halo exchange per layer, loss over this partition's
    /// training nodes (divided by the global count, so partitions add up to the mean), backward
    /// one layer at a time with halo gradients returned to their owners, all-reduce, step.
    ///
    /// Each layer is `relu(((1−α)·(Â_intra·(x ⊙ keep)/(1−p) + Â_halo·halo) + α·h⁰)·M)` for GCNII
    /// (strata-nn's fused layer: the support is its only saved activation) and
    /// `relu((Â_intra·(x ⊙ keep)/(1−p) + Â_halo·halo)·W + b)` for GCN, where `halo` holds the
    /// other ways' dropped-out rows as they sent them.
    pub fn train_epoch(&mut self, epoch: u64, ex: &mut dyn Exchange) -> Result<f64, PipeError> {
        let cfg = self.spec.config.clone();
        let gcnii = cfg.model == crate::config::PipeModel::Gcnii;
        let scale = if cfg.dropout > 0.0 { 1.0 / (1.0 - cfg.dropout) } else { 1.0 };
        self.opt.zero_grad();
        self.seed(epoch, 0);
        let input = self.layers.input.as_ref().expect("graph-parallel workers own every slot");
        let h = input.forward_input(&self.features, cfg.dropout, true).relu();
        let x0 = h.detach().set_requires_grad(true);
        let h0a = gcnii.then(|| &x0 * cfg.alpha);
        let mut saved: Vec<Saved> = Vec::new();
        let mut x_in = x0.shallow_clone();
        for p in &self.layers.convs {
            self.seed(epoch, p.slot);
            let keep = (cfg.dropout > 0.0).then(|| dropout_mask(&x_in, cfg.dropout));
            let outgoing = self.outgoing_rows(&x_in, keep.as_ref(), scale);
            let halo_leaf = self.exchange(ex, "fwd", p.slot, &outgoing, &x_in)?.set_requires_grad(true);
            drop(outgoing);
            let out = self.conv_forward(p, &x_in, keep.as_ref(), &halo_leaf, h0a.as_ref(), scale);
            let next_leaf = out.detach().set_requires_grad(true);
            saved.push(Saved { keep, halo_leaf, out, next_leaf: next_leaf.shallow_clone() });
            x_in = next_leaf;
            if cfg.trim_heap {
                strata_nn::memory::release_free_heap();
            }
        }
        tracing::debug!(
            "partition {} forward done: heap in use {} MiB, {}",
            self.spec.way,
            strata_nn::memory::heap_in_use() >> 20,
            strata_nn::memory::rss_summary()
        );
        self.seed(epoch, cfg.layers + 1);
        let head = self.layers.head.as_ref().expect("graph-parallel workers own every slot");
        let logits = head.forward(&dropout(&x_in, cfg.dropout, true));
        self.last_loss = self.backward_loss(&logits);
        drop((logits, x_in));
        // The gradient the ways we sent to return for our rows of the layer above's input,
        // w.r.t. the dropped-out rows they received: through the dropout it lands on that
        // input, which is this layer's output.
        let mut returned: Vec<(Tensor, Tensor)> = Vec::new();
        let add_returned = |g: &mut Tensor, returned: &mut Vec<(Tensor, Tensor)>| {
            tch::no_grad(|| {
                for (rows, t) in returned.drain(..) {
                    let _ = g.index_add_(0, &rows, &t);
                }
            })
        };
        let senders: Vec<usize> = self.send.iter().map(|(q, _)| *q).collect();
        while let Some(s) = saved.pop() {
            let slot = self.layers.convs[saved.len()].slot;
            let mut g = grad_or_zeros(&s.next_leaf);
            add_returned(&mut g, &mut returned);
            (&s.out * g).sum(Kind::Float).backward();
            returned.extend(self.exchange_halo_grads(ex, slot, &s, &senders, scale)?);
            if cfg.trim_heap {
                strata_nn::memory::release_free_heap();
            }
        }
        let mut g0 = grad_or_zeros(&x0);
        add_returned(&mut g0, &mut returned);
        (&h * g0).sum(Kind::Float).backward();
        let summed = ex.all_reduce(crate::collective::flat_grads(&self.vs))?;
        crate::collective::set_flat_grads(&self.vs, &summed);
        self.opt.step();
        Ok(self.last_loss)
    }

    /// One convolution on this partition, its halo rows received: GCNII through strata-nn's
    /// fused layer (the halo part rides in the residual), the others as `update(Â·x)`.
    fn conv_forward(
        &self,
        p: &ConvParams,
        x_in: &Tensor,
        keep: Option<&Tensor>,
        halo: &Tensor,
        h0a: Option<&Tensor>,
        scale: f64,
    ) -> Tensor {
        let from_halo = self.op.halo_part(halo);
        if let (Some(h0a), Conv::Gcnii(conv)) = (h0a, &p.conv) {
            let residual = match from_halo {
                Some(f) => f * (1.0 - conv.alpha) + h0a,
                None => h0a.shallow_clone(),
            };
            let (a, a_t) = &self.op.intra;
            return conv.forward_csr(x_in, &residual, keep, scale, (a, a_t), false).relu();
        }
        let xd = match keep {
            Some(k) => (x_in * k) * scale,
            None => x_in.shallow_clone(),
        };
        let agg = spmm(&self.op.intra.0, &self.op.intra.1, &xd);
        let agg = match from_halo {
            Some(f) => agg + f,
            None => agg,
        };
        p.update(agg, &xd, None)
    }

    /// The loss over this partition's training nodes (summed, divided by the global count so
    /// that partitions add up to the mean), back-propagated; its value.
    fn backward_loss(&self, logits: &Tensor) -> f64 {
        let train = &self.local_split[0];
        if train.is_empty() {
            return 0.0;
        }
        let idx = Tensor::from_slice(train).to(logits.device());
        let y = self.labels.index_select(0, &idx);
        let sum = logits.index_select(0, &idx).cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Sum, -100, 0.0);
        let loss = sum / self.spec.train.len().max(1) as f64;
        loss.backward();
        loss.double_value(&[])
    }

    /// One layer's halo gradients go back to the rows' owners; ours come back from the ways we
    /// sent to, through our dropout mask (`scale` = 1/(1−p)): `(rows, gradient)` to add to
    /// this layer's output gradient.
    fn exchange_halo_grads(
        &self,
        ex: &mut dyn Exchange,
        slot: usize,
        s: &Saved,
        senders: &[usize],
        scale: f64,
    ) -> Result<Vec<(Tensor, Tensor)>, PipeError> {
        let halo_grad = grad_or_zeros(&s.halo_leaf);
        let mut back = Vec::new();
        let mut off = 0;
        for (&q, &n) in self.recv.iter().zip(&self.recv_rows) {
            back.push((q, halo_grad.narrow(0, off, n)));
            off += n;
        }
        let got = ex.halo("bwd", slot, &back, senders)?;
        drop((back, halo_grad));
        let mut returned = Vec::new();
        for ((_, rows), t) in self.send.iter().zip(got) {
            if t.size() != [rows.size()[0], self.spec.config.hidden] {
                return Err(PipeError::Peer(format!(
                    "halo gradient of slot {slot}: expected {} rows, got {:?}",
                    rows.size()[0],
                    t.size()
                )));
            }
            let t = t.to_device(rows.device());
            let t = match &s.keep {
                Some(k) => tch::no_grad(|| (t * k.index_select(0, rows)) * scale),
                None => t,
            };
            returned.push((rows.shallow_clone(), t));
        }
        Ok(returned)
    }

    /// Exact inference (no dropout) with forward halo exchange: correct train/val/test counts
    /// on this partition.
    pub fn evaluate(&self, ex: &mut dyn Exchange) -> Result<[u64; 3], PipeError> {
        let cfg = &self.spec.config;
        let gcnii = cfg.model == crate::config::PipeModel::Gcnii;
        let _guard = tch::no_grad_guard();
        let input = self.layers.input.as_ref().expect("graph-parallel workers own every slot");
        let x0 = input.forward_input(&self.features, 0.0, false).relu();
        let mut x = x0.shallow_clone();
        for p in &self.layers.convs {
            let outgoing = self.outgoing_rows(&x, None, 1.0);
            let halo = self.exchange(ex, "eval", p.slot, &outgoing, &x)?;
            drop(outgoing);
            let mut agg = spmm(&self.op.intra.0, &self.op.intra.1, &x);
            if let Some(f) = self.op.halo_part(&halo) {
                let _ = agg.g_add_(&f);
            }
            x = p.update_inference(agg, &x, gcnii.then_some(&x0));
        }
        let logits = self.layers.head.as_ref().expect("graph-parallel workers own every slot").forward(&x);
        let pred = Vec::<i64>::try_from(logits.argmax(-1, false).to(Device::Cpu)).unwrap_or_default();
        let correct = |ids: &[i64]| {
            ids.iter().filter(|&&i| pred.get(i as usize) == Some(&self.labels_vec[i as usize])).count() as u64
        };
        Ok([correct(&self.local_split[0]), correct(&self.local_split[1]), correct(&self.local_split[2])])
    }
}
