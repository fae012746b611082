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

use crate::chunks::{Chunk, ChunkedGraph};
use crate::layers::{self, ConvParams, Exchange, Layers};
use crate::stage::{history_lists, StageSpec};
use crate::StageData;
use strata_nn::ops::dropout;
use strata_nn::optim::Adam;
use strata_nn::Input;
use tch::{nn, Device, Kind, Tensor};

pub struct PartitionStage {
    pub spec: StageSpec,
    vs: nn::VarStore,
    opt: Adam,
    layers: Layers,
    features: Input,
    /// This partition's rows; inter edges' sources index the halo buffer.
    part: Chunk,
    halo_col: Tensor,
    send: Vec<(usize, Tensor)>,
    recv: Vec<usize>,
    recv_rows: Vec<i64>,
    labels: Tensor,
    labels_vec: Vec<i64>,
    /// Local ids of this partition's train / val / test nodes.
    local_split: [Vec<i64>; 3],
    pub last_loss: f64,
}

/// What one layer's forward keeps for its backward segment.
struct Saved {
    /// `dropout(x_in)` with its autograd link to the layer input leaf.
    xd: Tensor,
    xd_leaf: Tensor,
    halo_leaf: Tensor,
    out: Tensor,
    next_leaf: Tensor,
}

fn grad_or_zeros(t: &Tensor) -> Tensor {
    let g = t.grad();
    if g.defined() { g } else { Tensor::zeros_like(t) }
}

impl PartitionStage {
    pub fn new(spec: StageSpec, data: &StageData, device: Device) -> Result<PartitionStage, tch::TchError> {
        let cfg = &spec.config;
        let vs = nn::VarStore::new(device);
        let layers = layers::build(cfg, spec.features, spec.classes, 0..cfg.layers + 2, &vs, device);
        let opt = layers::optimizer(cfg, &vs);
        layers::define_grads(&vs);
        let mut part = ChunkedGraph::one_chunk(&data.graph, &spec.chunk_offsets, spec.way, device);
        // Scattered into every layer: 64-bit ids, which libtorch's index_add_ is faster with.
        part.inter_row = part.inter_row.to_kind(tch::Kind::Int64);
        let (lo, hi) = (part.start as usize, part.end as usize);
        let sym = data.graph.symmetrized();
        let (send, recv) = history_lists(&sym, &spec, device);
        // Our rows are local here (the partition's tensors start at row `lo`).
        let send: Vec<(usize, Tensor)> = send.into_iter().map(|(q, rows)| (q, rows - lo as i64)).collect();
        // Halo buffer = the received rows of each way, concatenated in `recv` order.
        let recv_rows: Vec<i64> = recv.iter().map(|(_, r)| r.size()[0]).collect();
        let mut position = std::collections::HashMap::new();
        for (i, v) in recv.iter().flat_map(|(_, r)| Vec::<i64>::try_from(r.to(Device::Cpu)).unwrap_or_default()).enumerate() {
            position.insert(v, i as i64);
        }
        let cols = Vec::<i64>::try_from(part.inter_col.to(Device::Cpu).to_kind(tch::Kind::Int64)).unwrap_or_default();
        let halo_col = Tensor::from_slice(&cols.iter().map(|c| position[c]).collect::<Vec<_>>()).to(device);
        let local = |ids: &[usize]| ids.iter().filter(|&&i| i >= lo && i < hi).map(|&i| (i - lo) as i64).collect::<Vec<_>>();
        let local_split = [local(&spec.train), local(&spec.val), local(&spec.test)];
        let labels_vec = data.labels[lo..hi].to_vec();
        Ok(PartitionStage {
            features: Input::from_features(&data.rows(lo..hi), device, strata_graph::FeatureNorm::None),
            vs,
            opt,
            layers,
            part,
            halo_col,
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
        layers::state(&self.vs, &self.opt, Vec::new())
    }
    pub fn load_state(&mut self, named: &std::collections::HashMap<String, Tensor>) -> Result<(), String> {
        layers::load_state(&self.vs, &mut self.opt, named)
    }

    pub fn parameters(&self) -> usize {
        self.vs.trainable_variables().iter().map(|t| t.numel()).sum()
    }
    /// Halo rows this partition sends per layer and direction.
    pub fn halo_rows(&self) -> usize {
        self.send.iter().map(|(_, r)| r.size()[0] as usize).sum()
    }

    fn seed(&self, epoch: u64, slot: usize) {
        let s = self.spec.config.seed.wrapping_mul(1_000_003) ^ ((epoch * 64 + self.spec.way as u64) * 1024 + slot as u64);
        tch::manual_seed(s as i64);
    }

    /// Â·xd over this partition's rows, with the halo rows appended after the local ones.
    fn aggregate(&self, xd: &Tensor, halo: &Tensor) -> Tensor {
        let p = &self.part;
        let out = p.aggregate_intra(xd);
        layers::gather_add(out, &p.inter_row, halo, &self.halo_col, &p.inter_w)
    }

    fn exchange_rows(&self, ex: &mut dyn Exchange, tag: &str, slot: usize, xd: &Tensor) -> Result<Tensor, String> {
        let out: Vec<(usize, Tensor)> = self.send.iter().map(|(q, rows)| (*q, xd.index_select(0, rows))).collect();
        let got = ex.halo(tag, slot, &out, &self.recv)?;
        let d = xd.size()[1];
        for (t, &n) in got.iter().zip(&self.recv_rows) {
            if t.size() != [n, d] {
                return Err(format!("halo `{tag}` of slot {slot}: expected {n}×{d} rows, got {:?}", t.size()));
            }
        }
        let got: Vec<Tensor> = got.into_iter().map(|t| t.to_device(xd.device())).collect();
        Ok(if got.is_empty() { Tensor::zeros([0, d], (Kind::Float, xd.device())) } else { Tensor::cat(&got, 0) })
    }

    fn conv(&self, p: &ConvParams, xd: &Tensor, halo: &Tensor, h0: Option<&Tensor>) -> Tensor {
        layers::conv_update(&self.spec.config, p, self.aggregate(xd, halo), h0)
    }

    /// One training epoch: forward with halo exchange per layer, loss over this partition's
    /// training nodes (divided by the global count, so partitions add up to the mean), backward
    /// one layer at a time with halo gradients returned to their owners, all-reduce, step.
    pub fn train_epoch(&mut self, epoch: u64, ex: &mut dyn Exchange) -> Result<f64, String> {
        let cfg = self.spec.config.clone();
        let gcnii = cfg.model == crate::stage::PipeModel::Gcnii;
        self.opt.zero_grad();
        self.seed(epoch, 0);
        let input = self.layers.input.as_ref().expect("graph-parallel workers own every slot");
        let h = input.forward_input(&self.features, cfg.dropout, true).relu();
        let x0 = h.detach().set_requires_grad(true);
        let mut saved: Vec<Saved> = Vec::new();
        let mut x_in = x0.shallow_clone();
        for p in &self.layers.convs {
            self.seed(epoch, p.slot);
            let xd = dropout(&x_in, cfg.dropout, true);
            let xd_leaf = xd.detach().set_requires_grad(true);
            let halo_leaf = self.exchange_rows(ex, "fwd", p.slot, &xd_leaf.detach())?.set_requires_grad(true);
            let out = self.conv(p, &xd_leaf, &halo_leaf, gcnii.then_some(&x0));
            let next_leaf = out.detach().set_requires_grad(true);
            saved.push(Saved { xd, xd_leaf, halo_leaf, out, next_leaf: next_leaf.shallow_clone() });
            x_in = next_leaf;
        }
        self.seed(epoch, cfg.layers + 1);
        let head = self.layers.head.as_ref().expect("graph-parallel workers own every slot");
        let logits = head.forward(&dropout(&x_in, cfg.dropout, true));
        let train = &self.local_split[0];
        self.last_loss = 0.0;
        if !train.is_empty() {
            let idx = Tensor::from_slice(train).to(logits.device());
            let loss = logits.index_select(0, &idx).cross_entropy_loss::<Tensor>(&self.labels.index_select(0, &idx), None, tch::Reduction::Sum, -100, 0.0)
                / self.spec.train.len().max(1) as f64;
            self.last_loss = loss.double_value(&[]);
            loss.backward();
        }
        for (i, s) in saved.iter().enumerate().rev() {
            let slot = self.layers.convs[i].slot;
            (&s.out * grad_or_zeros(&s.next_leaf)).sum(Kind::Float).backward();
            // Halo gradients go back to the rows' owners; ours come back from the ways we sent to.
            let halo_grad = grad_or_zeros(&s.halo_leaf);
            let mut back = Vec::new();
            let mut off = 0;
            for (&q, &n) in self.recv.iter().zip(&self.recv_rows) {
                back.push((q, halo_grad.narrow(0, off, n)));
                off += n;
            }
            let senders: Vec<usize> = self.send.iter().map(|(q, _)| *q).collect();
            let got = ex.halo("bwd", slot, &back, &senders)?;
            let mut g = grad_or_zeros(&s.xd_leaf);
            for ((_, rows), t) in self.send.iter().zip(got) {
                if t.size() != [rows.size()[0], g.size()[1]] {
                    return Err(format!("halo gradient of slot {slot}: expected {:?} rows, got {:?}", rows.size(), t.size()));
                }
                g = g.index_add(0, rows, &t.to_device(g.device()));
            }
            (&s.xd * g).sum(Kind::Float).backward();
        }
        (&h * grad_or_zeros(&x0)).sum(Kind::Float).backward();
        let summed = ex.all_reduce(layers::flat_grads(&self.vs))?;
        layers::set_flat_grads(&self.vs, &summed);
        self.opt.step();
        Ok(self.last_loss)
    }

    /// Exact inference (no dropout) with forward halo exchange: correct train/val/test counts
    /// on this partition.
    pub fn evaluate(&self, ex: &mut dyn Exchange) -> Result<[u64; 3], String> {
        let cfg = &self.spec.config;
        let gcnii = cfg.model == crate::stage::PipeModel::Gcnii;
        let _guard = tch::no_grad_guard();
        let input = self.layers.input.as_ref().expect("graph-parallel workers own every slot");
        let x0 = input.forward_input(&self.features, 0.0, false).relu();
        let mut x = x0.shallow_clone();
        for p in &self.layers.convs {
            let halo = self.exchange_rows(ex, "eval", p.slot, &x)?;
            x = self.conv(p, &x, &halo, gcnii.then_some(&x0));
        }
        let logits = self.layers.head.as_ref().expect("graph-parallel workers own every slot").forward(&x);
        let pred = Vec::<i64>::try_from(logits.argmax(-1, false).to(Device::Cpu)).unwrap_or_default();
        let correct = |ids: &[i64]| ids.iter().filter(|&&i| pred.get(i as usize) == Some(&self.labels_vec[i as usize])).count() as u64;
        Ok([correct(&self.local_split[0]), correct(&self.local_split[1]), correct(&self.local_split[2])])
    }
}

