//! One pipeline stage: a contiguous range of layer slots (slot 0 = input projection, slots
//! 1..=L = graph convolutions, slot L+1 = classifier) with its historical embeddings, run one
//! vertex chunk at a time.
//!
//! Forward (no autograd): chunk `c` reads its neighbours' layer inputs from the historical
//! buffer `H_l` — fresh for chunks already processed this epoch, stale otherwise — and writes
//! its own rows. Backward (reverse chunk order) recomputes the chunk's activations with
//! autograd, exactly as they were: stale rows come from the copy taken at the start of the
//! epoch, dropout masks from a per-(epoch, chunk, slot) seed. Gradients reach neighbours only
//! through fresh rows; those are scaled by `grad_scale` (2: a source is fresh with probability
//! ½ under a random chunk order, so ×2 keeps the estimate unbiased) and accumulated in `G_l`,
//! to be injected when that (earlier) chunk's backward runs. Gradients that would reach stale
//! rows are dropped. Every `refresh` epochs the stale rows are re-snapshotted.

use crate::chunks::{Chunk, ChunkedGraph};
use crate::layers::{self, ConvParams, Exchange};
use crate::pipeline::PipelineConfig;
use crate::stage_data::StageData;
use strata_graph::CsrGraph;
use strata_nn::conv::Linear;
use strata_nn::ops::dropout;
use strata_nn::optim::Adam;
use strata_nn::Input;
use tch::{nn, Device, Kind, Tensor};

/// Which deep model the pipeline trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PipeModel {
    Gcn,
    Gcnii,
}

/// Everything a stage needs to know, shipped by the launcher as JSON.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StageSpec {
    pub stage: usize,
    /// Graph-parallel way (0 in a pure pipeline) and the number of ways.
    #[serde(default)]
    pub way: usize,
    #[serde(default = "one")]
    pub ways: usize,
    /// Vertex range of each way (`[0, N]` in a pure pipeline); chunk boundaries fall on them.
    #[serde(default)]
    pub way_offsets: Vec<usize>,
    /// Layer slots owned: `first..last` within `0..layers+2`.
    pub first: usize,
    pub last: usize,
    pub classes: i64,
    pub features: i64,
    pub chunk_offsets: Vec<usize>,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    /// The run's model and training settings (the same on every stage).
    pub config: PipelineConfig,
    /// The only directory Checkpoint and Restore may touch (the launcher's checkpoint root);
    /// `None`: this run writes no checkpoints and restores none.
    #[serde(default)]
    pub checkpoint_root: Option<String>,
}

fn one() -> usize {
    1
}

impl StageSpec {
    /// The chunks this stage's way trains (all of them in a pure pipeline).
    pub fn own_chunks(&self) -> std::ops::Range<usize> {
        let k = self.chunk_offsets.len() - 1;
        if self.ways <= 1 || self.way_offsets.len() != self.ways + 1 {
            return 0..k;
        }
        let (lo, hi) = (self.way_offsets[self.way], self.way_offsets[self.way + 1]);
        let first = self.chunk_offsets.partition_point(|&o| o < lo);
        let end = self.chunk_offsets.partition_point(|&o| o < hi);
        first..end
    }
    pub fn is_first(&self) -> bool {
        self.first == 0
    }
    pub fn is_last(&self) -> bool {
        self.last == self.config.layers + 2
    }
    /// Checks every field against itself and against the graph received with it (its vertices,
    /// the feature rows and columns this stage's role needs, labels below `classes`) and the
    /// `peers` listed, so a bad spec is refused by name instead of panicking a stage later.
    pub fn validate(&self, data: &StageData, peers: usize) -> Result<(), String> {
        let nodes = data.num_nodes();
        let c = &self.config;
        c.validate()?;
        if c.layers == 0 || c.layers > 4096 || c.hidden < 1 || c.hidden > 1 << 16 {
            return Err(format!("layers {} and hidden {} must be in 1..=4096 and 1..=65536", c.layers, c.hidden));
        }
        if ![c.dropout, c.alpha, c.theta, c.lr, c.weight_decay, c.weight_decay_conv, c.grad_scale]
            .iter()
            .all(|v| v.is_finite())
            || !(0.0..1.0).contains(&c.dropout)
        {
            return Err("hyper-parameters must be finite, and dropout in [0, 1)".into());
        }
        if peers != c.workers() {
            return Err(format!("{peers} peers listed but the configuration has {} workers", c.workers()));
        }
        if self.ways != c.ways.max(1) || self.way >= self.ways || self.stage >= c.stages.max(1) {
            return Err(format!(
                "way {} of {} and stage {} do not fit {} ways × {} stages",
                self.way, self.ways, self.stage, c.ways, c.stages
            ));
        }
        if self.first >= self.last || self.last > c.layers + 2 {
            return Err(format!("slots {}..{} are not a range within 0..{}", self.first, self.last, c.layers + 2));
        }
        let offsets_ok = |o: &[usize], parts: usize| {
            o.len() == parts + 1 && o[0] == 0 && o[parts] == nodes && o.windows(2).all(|w| w[0] <= w[1])
        };
        if !offsets_ok(&self.chunk_offsets, c.num_chunks()) {
            return Err(format!("chunk offsets must rise from 0 to {nodes} in {} chunks", c.num_chunks()));
        }
        if !self.way_offsets.is_empty() && !offsets_ok(&self.way_offsets, self.ways) {
            return Err(format!("way offsets must rise from 0 to {nodes} in {} ways", self.ways));
        }
        for (name, ids) in [("train", &self.train), ("val", &self.val), ("test", &self.test)] {
            if let Some(&bad) = ids.iter().find(|&&i| i >= nodes) {
                return Err(format!("{name} node {bad} is out of range (the graph has {nodes} nodes)"));
            }
        }
        let (rows, _) = StageData::needed(self, nodes);
        if data.feature_rows != rows {
            return Err(format!("this stage needs feature rows {rows:?}, the launcher sent {:?}", data.feature_rows));
        }
        let max_label = data.labels.iter().copied().max().unwrap_or(-1);
        if self.classes < 1
            || max_label >= self.classes
            || (!rows.is_empty() && data.features.dim() as i64 != self.features)
        {
            return Err(format!(
                "the spec says {} features and {} classes, the graph has {} features and labels up to {max_label}",
                self.features,
                self.classes,
                data.features.dim()
            ));
        }
        Ok(())
    }
    /// The shapes of the tensors this stage receives for `chunk` (`None`: the full graph) —
    /// activations from the stage below and gradients from the stage above alike.
    pub fn boundary_shapes(&self, chunk: Option<usize>) -> Vec<Vec<i64>> {
        let n = *self.chunk_offsets.last().unwrap_or(&0) as i64;
        let rows = chunk.map_or(n, |c| (self.chunk_offsets[c + 1] - self.chunk_offsets[c]) as i64);
        vec![vec![rows, self.config.hidden]; self.tensors_per_boundary()]
    }
    /// Tensors crossing each stage boundary: GCNII also ships its initial residual h⁰.
    pub fn tensors_per_boundary(&self) -> usize {
        if self.config.model == PipeModel::Gcnii {
            2
        } else {
            1
        }
    }
}

/// Activations (or their gradients) of one chunk crossing a stage boundary.
pub struct Boundary {
    pub x: Tensor,
    /// GCNII's h⁰ rows (or its gradient); undefined for GCN.
    pub h0: Option<Tensor>,
}

impl Boundary {
    /// Activations as the next stage receives them: rounded to the 16-bit type they travel in
    /// (`HistoryDtype::value_type`), back in f32. The in-process schedule calls it so that it
    /// computes what the workers compute.
    pub fn as_sent(self, dtype: crate::pipeline::HistoryDtype) -> Boundary {
        let kind = dtype.kind();
        if kind == Kind::Float {
            return self;
        }
        let round = |t: Tensor| t.to_kind(kind).to_kind(Kind::Float);
        Boundary { x: round(self.x), h0: self.h0.map(round) }
    }

    /// Copies to keep for the backward recomputation, in the activations' wire type (exact:
    /// the values arrived in it).
    fn kept(&self, dtype: crate::pipeline::HistoryDtype) -> Boundary {
        let keep = |t: &Tensor| if dtype.kind() == Kind::Float { t.shallow_clone() } else { t.to_kind(dtype.kind()) };
        Boundary { x: keep(&self.x), h0: self.h0.as_ref().map(keep) }
    }
}

struct ConvSlot {
    p: ConvParams,
    live: Tensor,
    /// The rows as they were when the epoch began (trick 3 restores `live` from it, and a
    /// refresh epoch begins right after it was re-taken), so the stale reads of the backward
    /// recomputation come from here; no separate epoch-start copy is kept.
    snapshot: Tensor,
    grad: Tensor,
}

pub struct Stage {
    pub spec: StageSpec,
    graph: ChunkedGraph,
    vs: nn::VarStore,
    opt: Adam,
    input: Option<(Linear, Vec<Input>, Input)>,
    /// Hybrid mode: rows of this way's vertices each other way reads (sent after every epoch),
    /// and the rows of other ways' vertices this stage reads (received).
    history_send: Vec<(usize, Tensor)>,
    history_recv: Vec<(usize, Tensor)>,
    convs: Vec<ConvSlot>,
    head: Option<Linear>,
    labels: Tensor,
    labels_vec: Vec<i64>,
    train_mask: Vec<bool>,
    /// Position of each chunk in this epoch's order.
    pos: Vec<usize>,
    epoch: u64,
    saved_inputs: Vec<Option<Boundary>>,
    pub last_loss: f64,
}

impl Stage {
    pub fn new(spec: StageSpec, data: &StageData, device: Device) -> Result<Stage, tch::TchError> {
        let graph = ChunkedGraph::new(&data.graph, &spec.chunk_offsets, device);
        tracing::debug!("chunk operators built: {}", strata_nn::memory::rss_summary());
        let n = graph.n;
        let vs = nn::VarStore::new(device);
        let cfg = &spec.config;
        let layers = layers::build(cfg, spec.features, spec.classes, spec.first..spec.last, &vs, device);
        let k = spec.chunk_offsets.len() - 1;
        // The features arrive normalised (StageData); dense chunks are views of the whole.
        let none = strata_graph::FeatureNorm::None;
        let input = layers.input.map(|lin| {
            let all = Input::from_features(&data.rows(0..data.num_nodes()), device, none);
            let per_chunk = (0..k)
                .map(|c| {
                    let (lo, hi) = (spec.chunk_offsets[c], spec.chunk_offsets[c + 1]);
                    match &all {
                        Input::Dense(x) => Input::Dense(x.narrow(0, lo as i64, (hi - lo) as i64)),
                        Input::Sparse { .. } => Input::from_features(&data.rows(lo..hi), device, none),
                    }
                })
                .collect();
            (lin, per_chunk, all)
        });
        tracing::debug!("input projection built: {}", strata_nn::memory::rss_summary());
        let z = || Tensor::zeros([n, cfg.hidden], (Kind::Float, device));
        let hist = || Tensor::zeros([n, cfg.hidden], (cfg.history_dtype.kind(), device));
        let convs: Vec<ConvSlot> =
            layers.convs.into_iter().map(|p| ConvSlot { p, live: hist(), snapshot: hist(), grad: z() }).collect();
        let head = layers.head;
        let opt = layers::optimizer(cfg, &vs);
        layers::define_grads(&vs);
        let (history_send, history_recv) =
            if spec.ways > 1 { history_lists(&data.graph, &spec, device) } else { (Vec::new(), Vec::new()) };
        let mut train_mask = vec![false; n as usize];
        spec.train.iter().for_each(|&i| train_mask[i] = true);
        Ok(Stage {
            graph,
            vs,
            opt,
            input,
            history_send,
            history_recv,
            convs,
            head,
            labels: Tensor::from_slice(&data.labels).to(device),
            labels_vec: data.labels.clone(),
            train_mask,
            pos: (0..k).collect(),
            epoch: 0,
            saved_inputs: (0..k).map(|_| None).collect(),
            last_loss: 0.0,
            spec,
        })
    }

    pub fn num_chunks(&self) -> usize {
        self.graph.chunks.len()
    }
    pub fn num_nodes(&self) -> i64 {
        self.graph.n
    }
    pub fn parameters(&self) -> usize {
        self.vs.trainable_variables().iter().map(|t| t.numel()).sum()
    }

    /// The per-slot buffers a checkpoint carries: live rows and snapshot, plus the cross-chunk
    /// gradients where they outlive the epoch ([`PipelineConfig::carry_stale_grads`]).
    fn buffers(&self) -> Vec<(String, &Tensor)> {
        let carry = self.spec.config.carry_stale_grads;
        self.convs
            .iter()
            .flat_map(|s| {
                let slot = s.p.slot;
                let grad = carry.then(|| (format!("history.{slot}.grad"), &s.grad));
                [(format!("history.{slot}.live"), &s.live), (format!("history.{slot}.snapshot"), &s.snapshot)]
                    .into_iter()
                    .chain(grad)
            })
            .collect()
    }

    /// Parameters, optimizer moments and historical buffers.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let extra = self
            .buffers()
            .into_iter()
            .map(|(k, t)| (k, t.to_device(Device::Cpu).to_kind(Kind::Float).copy()))
            .collect();
        layers::state(&self.vs, &self.opt, extra)
    }

    /// Restores [`Stage::state`].
    pub fn load_state(&mut self, named: &std::collections::HashMap<String, Tensor>) -> Result<(), String> {
        layers::load_state(&self.vs, &mut self.opt, named)?;
        for (key, t) in self.buffers() {
            layers::load_buffer(named, &key, t)?;
        }
        Ok(())
    }

    /// Starts an epoch with chunk `order`: restores the snapshot (trick 3), remembers the
    /// stale rows, clears the cross-chunk gradients.
    pub fn begin_epoch(&mut self, epoch: u64, order: &[usize]) {
        self.epoch = epoch;
        // Chunks of other ways are never fresh here: they are read from the snapshot.
        self.pos.iter_mut().for_each(|p| *p = usize::MAX);
        for (p, &c) in order.iter().enumerate() {
            self.pos[c] = p;
        }
        let refresh = self.spec.config.refresh.max(1) as u64;
        tch::no_grad(|| {
            for s in &mut self.convs {
                if !epoch.is_multiple_of(refresh) {
                    s.live.copy_(&s.snapshot);
                }
                if !self.spec.config.carry_stale_grads {
                    let _ = s.grad.zero_();
                } else {
                    // Rows of other ways' chunks are never consumed here: nothing to carry.
                    for (ch, _) in self.graph.chunks.iter().zip(&self.pos).filter(|(_, &p)| p == usize::MAX) {
                        let _ = s.grad.narrow(0, ch.start, ch.len()).zero_();
                    }
                }
            }
        });
        self.opt.zero_grad();
        self.last_loss = 0.0;
    }

    /// Ends the epoch: gradients summed over the ways holding these layers, one optimizer step,
    /// the snapshot refresh every R epochs, and (hybrid) the other ways' boundary rows.
    pub fn end_epoch(&mut self, ex: &mut dyn Exchange) -> Result<(), String> {
        if self.spec.ways > 1 {
            let summed = ex.all_reduce(layers::flat_grads(&self.vs))?;
            layers::set_flat_grads(&self.vs, &summed);
        }
        self.opt.step();
        self.opt.zero_grad();
        let refresh = self.spec.config.refresh.max(1) as u64;
        if (self.epoch + 1).is_multiple_of(refresh) {
            tch::no_grad(|| self.convs.iter_mut().for_each(|s| s.snapshot.copy_(&s.live)));
        }
        if self.spec.ways > 1 {
            self.exchange_history(ex)?;
        }
        Ok(())
    }

    /// Hybrid mode: every conv slot's rows of this way's vertices that other ways read as
    /// neighbours go to them once per epoch, one direction only (gradients that would reach
    /// them are dropped, as for any historical row); received rows are one epoch stale.
    fn exchange_history(&mut self, ex: &mut dyn Exchange) -> Result<(), String> {
        let incoming: Vec<usize> = self.history_recv.iter().map(|r| r.0).collect();
        for i in 0..self.convs.len() {
            let s = &self.convs[i];
            let out: Vec<(usize, Tensor)> = self
                .history_send
                .iter()
                .map(|(q, rows)| (*q, s.live.index_select(0, rows).to_kind(Kind::Float)))
                .collect();
            let got = ex.halo("history", s.p.slot, &out, &incoming)?;
            tch::no_grad(|| {
                for ((_, rows), t) in self.history_recv.iter().zip(got) {
                    let t = t.to_device(s.live.device()).to_kind(s.live.kind());
                    let _ = s.live.shallow_clone().index_copy_(0, rows, &t);
                    let _ = s.snapshot.shallow_clone().index_copy_(0, rows, &t);
                }
            });
        }
        Ok(())
    }

    fn seed_for(&self, chunk: usize, slot: usize) -> i64 {
        let k = self.num_chunks() as u64 + 1;
        (self.spec.config.seed.wrapping_mul(1_000_003) ^ ((self.epoch * k + chunk as u64) * 1024 + slot as u64)) as i64
    }

    /// Inter-edge messages of chunk `c` for slot buffer `s`, split into fresh (source chunk
    /// earlier in this epoch) and stale edges: (row, col, w) of each.
    fn split_inter(&self, c: usize) -> [(Tensor, Tensor, Tensor); 2] {
        let ch = &self.graph.chunks[c];
        let (mut fresh, mut stale) = (Vec::new(), Vec::new());
        for (e, &src) in ch.inter_src_chunk.iter().enumerate() {
            if self.pos[src as usize] < self.pos[c] {
                fresh.push(e as i64)
            } else {
                stale.push(e as i64)
            }
        }
        let pick = |idx: Vec<i64>| {
            let i = Tensor::from_slice(&idx).to(ch.inter_row.device());
            // Stored in 32 bits, used in 64: libtorch's index_add_ takes 1.6× as long with
            // 32-bit ids (measured on this host), and a chunk's picks are transient.
            let id = |t: &Tensor| t.index_select(0, &i).to_kind(Kind::Int64);
            (id(&ch.inter_row), id(&ch.inter_col), ch.inter_w.index_select(0, &i))
        };
        [pick(fresh), pick(stale)]
    }

    /// One conv slot on chunk rows: `xd` is the (dropped-out) layer input of the chunk,
    /// `inter` the aggregated inter-chunk messages.
    fn conv_update(&self, s: &ConvSlot, ch: &Chunk, xd: &Tensor, inter: Tensor, h0: Option<&Tensor>) -> Tensor {
        layers::conv_update(&self.spec.config, &s.p, ch.aggregate_intra(xd) + inter, h0)
    }

    /// One conv slot on the whole graph without autograd, one row block at a time: the layer
    /// holds its input, its output and one block's aggregate (in place where it can be).
    fn infer_conv(&self, s: &ConvSlot, x: &Tensor, h0: Option<&Tensor>) -> Tensor {
        let out = x.empty_like();
        for b in &self.graph.full_blocks {
            let h0b = h0.map(|h| h.narrow(0, b.start, b.len()));
            let y = layers::conv_update_inference(&self.spec.config, &s.p, b.aggregate_block(x), h0b.as_ref());
            out.narrow(0, b.start, b.len()).copy_(&y);
        }
        out
    }

    /// Stage 0's input projection of chunk `c` (`None` = all nodes): `relu(dropout(X)·W)`,
    /// also GCNII's h⁰. Seeded per (epoch, chunk), so the backward recomputation matches.
    fn project(&self, c: Option<usize>, train: bool) -> (Tensor, Option<Tensor>) {
        let (lin, per_chunk, all) = self.input.as_ref().expect("stage 0 owns the input projection");
        if let Some(c) = c {
            tch::manual_seed(self.seed_for(c, 0));
        }
        let h = lin.forward_input(c.map_or(all, |c| &per_chunk[c]), self.spec.config.dropout, train).relu();
        let h0 = (self.spec.config.model == PipeModel::Gcnii).then(|| h.shallow_clone());
        (h, h0)
    }

    /// Forward of chunk `c` (`None` = the whole graph, exact inference without staleness or
    /// dropout). Stage 0 takes no input. Returns the boundary tensors for the next stage, or
    /// the logits on the last stage.
    pub fn forward(&mut self, c: Option<usize>, input: Option<Boundary>) -> Boundary {
        let train = c.is_some();
        if let (Some(c), Some(b)) = (c, input.as_ref()) {
            self.saved_inputs[c] = Some(b.kept(self.spec.config.history_dtype));
        }
        tch::no_grad(|| {
            let (mut x, mut h0) = match input {
                Some(b) => (b.x, b.h0),
                None => self.project(c, train),
            };
            let inter_parts = c.map(|c| (c, self.split_inter(c)));
            for s in &self.convs {
                if let Some(c) = c {
                    tch::manual_seed(self.seed_for(c, s.p.slot));
                }
                let xd = dropout(&x, self.spec.config.dropout, train);
                x = match &inter_parts {
                    Some((c, parts)) => {
                        let ch = &self.graph.chunks[*c];
                        s.live.narrow(0, ch.start, ch.len()).copy_(&xd);
                        let inter = aggregate_inter(&xd, &s.live, &s.snapshot, parts);
                        self.conv_update(s, ch, &xd, inter, h0.as_ref())
                    }
                    None => self.infer_conv(s, &xd, h0.as_ref()),
                };
            }
            if let Some(head) = &self.head {
                if let Some(c) = c {
                    tch::manual_seed(self.seed_for(c, self.spec.config.layers + 1));
                }
                x = head.forward(&dropout(&x, self.spec.config.dropout, train));
                h0 = None;
            }
            Boundary { x, h0 }
        })
    }

    /// Backward of chunk `c`: recomputes its forward with autograd and back-propagates
    /// `grad_out` (ignored on the last stage, which computes the loss itself). Returns the
    /// gradient for the previous stage (`None` on stage 0).
    pub fn backward(&mut self, c: usize, grad_out: Option<Boundary>) -> Option<Boundary> {
        let ch_start = self.graph.chunks[c].start;
        let saved = self.saved_inputs[c].take();
        let (x_leaf, h0_leaf) = match &saved {
            Some(b) => (
                Some(b.x.to_kind(Kind::Float).detach().set_requires_grad(true)),
                b.h0.as_ref().map(|h| h.to_kind(Kind::Float).detach().set_requires_grad(true)),
            ),
            None => (None, None),
        };
        let mut surrogate = Tensor::zeros([], (Kind::Float, self.labels.device()));
        let (mut x, h0) = match (&x_leaf, &self.input) {
            (Some(x), _) => (x.shallow_clone(), h0_leaf.as_ref().map(|h| h.shallow_clone())),
            (None, _) => self.project(Some(c), true),
        };
        let parts = self.split_inter(c);
        // The inter-chunk aggregate of each slot is a leaf: its gradient, spread back over the
        // fresh edges below, is what autograd would give the gathered fresh rows, without
        // keeping an E × d copy of them (and its gradient) per slot until the backward pass.
        let mut inter_leaves = Vec::new();
        for (i, s) in self.convs.iter().enumerate() {
            tch::manual_seed(self.seed_for(c, s.p.slot));
            let xd = dropout(&x, self.spec.config.dropout, true);
            // Gradient that later chunks sent to these rows (they read them as fresh neighbours).
            let injected = s.grad.narrow(0, ch_start, xd.size()[0]);
            surrogate += (&xd * injected).sum(Kind::Float);
            let inter = tch::no_grad(|| aggregate_inter(&xd, &s.live, &s.snapshot, &parts)).set_requires_grad(true);
            inter_leaves.push((i, inter.shallow_clone()));
            let ch = &self.graph.chunks[c];
            x = self.conv_update(s, ch, &xd, inter, h0.as_ref());
        }
        if let Some(head) = &self.head {
            tch::manual_seed(self.seed_for(c, self.spec.config.layers + 1));
            let logits = head.forward(&dropout(&x, self.spec.config.dropout, true));
            let ch = &self.graph.chunks[c];
            let local: Vec<i64> =
                (ch.start..ch.end).filter(|&u| self.train_mask[u as usize]).map(|u| u - ch.start).collect();
            if !local.is_empty() {
                let idx = Tensor::from_slice(&local).to(logits.device());
                let y = self.labels.narrow(0, ch.start, ch.len()).index_select(0, &idx);
                // Sum over the chunk / all training nodes: the chunks add up to the mean loss.
                let loss =
                    logits.index_select(0, &idx).cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Sum, -100, 0.0)
                        / self.spec.train.len() as f64;
                self.last_loss += loss.double_value(&[]);
                surrogate += loss;
            }
        } else if let Some(g) = grad_out {
            surrogate += (&x * g.x).sum(Kind::Float);
            if let (Some(h), Some(gh)) = (h0.as_ref(), g.h0) {
                surrogate += (h * gh).sum(Kind::Float);
            }
        }
        if surrogate.requires_grad() {
            surrogate.backward();
        }
        let carry = self.spec.config.carry_stale_grads;
        tch::no_grad(|| {
            if carry {
                // Consumed: what stays in these rows now comes from the stale edges below and
                // is injected next epoch.
                for s in &self.convs {
                    let _ = s.grad.narrow(0, ch_start, self.graph.chunks[c].len()).zero_();
                }
            }
            // Fresh edges always; stale ones too when their gradients are carried over.
            let groups = if carry { &parts[..] } else { &parts[..1] };
            for (i, leaf) in inter_leaves {
                let g = leaf.grad();
                if !g.defined() {
                    continue;
                }
                let mut acc = self.convs[i].grad.shallow_clone();
                for (rows, cols, w) in groups {
                    // d loss / d source[e] = w_e · d loss / d inter[row_e], scaled (trick 2).
                    for (start, len) in slices(rows.size()[0]) {
                        let msg =
                            g.index_select(0, &rows.narrow(0, start, len)) * w.narrow(0, start, len).unsqueeze(-1);
                        let _ = acc.index_add_(0, &cols.narrow(0, start, len), &(msg * self.spec.config.grad_scale));
                    }
                }
            }
        });
        // The chunk's autograd graph is gone: hand its freed pages back, so that freed
        // chunk-sized blocks (below glibc's mmap threshold) do not pile up in the heap from chunk
        // to chunk (`--trim-heap`: less memory, slower epochs).
        if self.spec.config.trim_heap {
            strata_nn::memory::release_free_heap();
        }
        // A chunk whose outputs reach no loss (e.g. a classifier-only stage on a chunk without
        // training nodes) sends zeros, not an undefined gradient.
        let grad_of = |t: Tensor| {
            let g = t.grad();
            if g.defined() {
                g
            } else {
                t.zeros_like()
            }
        };
        x_leaf.map(|x| Boundary { x: grad_of(x), h0: h0_leaf.map(grad_of) })
    }

    /// Correct full-graph predictions (last stage only) on the train, val and test nodes.
    pub fn evaluate(&self, logits: &Tensor) -> [u64; 3] {
        let pred = Vec::<i64>::try_from(logits.argmax(-1, false).to(Device::Cpu)).unwrap_or_default();
        let correct = |ids: &[usize]| ids.iter().filter(|&&i| pred.get(i) == Some(&self.labels_vec[i])).count() as u64;
        [correct(&self.spec.train), correct(&self.spec.val), correct(&self.spec.test)]
    }
}

/// Edges gathered at once by the inter-chunk aggregation: bounds its transient E × d tensors
/// (64 MiB at d = 64) on graphs whose chunks have millions of inter edges.
const INTER_SLICE: i64 = 1 << 18;

/// `(start, len)` pieces of `0..n`, each at most [`INTER_SLICE`] long.
fn slices(n: i64) -> impl Iterator<Item = (i64, i64)> {
    (0..n).step_by(INTER_SLICE as usize).map(move |s| (s, INTER_SLICE.min(n - s)))
}

/// Σ over chunk `c`'s inter edges of weighted source rows: fresh edges (the first group of
/// [`Stage::split_inter`]) read `live`, stale ones `snapshot`, in slices and in edge order (the
/// same sums, bit for bit, as one gather per group); `like` gives the output shape.
fn aggregate_inter(like: &Tensor, live: &Tensor, snapshot: &Tensor, parts: &[(Tensor, Tensor, Tensor); 2]) -> Tensor {
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
