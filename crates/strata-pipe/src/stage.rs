//! One pipeline stage: a contiguous range of layer slots (slot 0 = input projection, slots
//! 1..=L = graph convolutions, slot L+1 = classifier) with its historical embeddings, run one
//! vertex chunk at a time.
//!
//! Forward: chunk `c` reads its neighbours' layer inputs from the historical buffer `H_l` —
//! fresh for chunks already processed this epoch, stale otherwise — and writes its own rows.
//! What its backward needs depends on [`Recompute`]: either the forward keeps the chunk's
//! autograd graph until the chunk's backward (activations kept), or it runs without autograd
//! and the backward (reverse chunk order) recomputes the chunk's activations, exactly as they
//! were: stale rows come from the copy taken at the start of the epoch, dropout masks from a
//! per-(epoch, chunk, slot) seed. Both give the same gradients. Gradients reach neighbours only
//! through fresh rows; those are scaled by `grad_scale` (2: a source is fresh with probability
//! ½ under a random chunk order, so ×2 keeps the estimate unbiased) and accumulated in `G_l`,
//! to be injected when that (earlier) chunk's backward runs. Gradients that would reach stale
//! rows are dropped. Every `refresh` epochs the stale rows are re-snapshotted.
//!
//! In hybrid mode the stage is one of W ways' copies of the same layers; after each step the
//! conv slots' rows other ways read go to them ([`Halo::History`], one epoch stale there).

use crate::boundary::{Boundary, BoundaryShape, Side, SideKind};
use crate::chunk_conv::{ConvSlot, InterParts, Leaf, Neighbours, Residual};
use crate::chunks::{ChunkedGraph, Columns};
use crate::config::{HistoryDtype, PipeModel, Recompute, StageSpec};
use crate::error::PipeError;
use crate::history::history_lists;
use crate::layers;
use crate::schedule::{Halo, Part};
use crate::stage_core::{grad_or_zeros, Activations, Breakdown, Engine, StageCore};
use crate::stage_data::StageData;
use std::time::Instant;
use strata_nn::conv::Linear;
use strata_nn::ops::dropout;
use strata_nn::Input;
use tch::{nn, Device, Kind, Tensor};

/// A backprop pipeline stage (pipeline and hybrid modes).
pub struct Stage {
    core: StageCore,
    graph: ChunkedGraph,
    input: Option<(Linear, Vec<Input>, Input)>,
    /// Hybrid mode: rows of this way's vertices each other way reads (sent after every epoch),
    /// and the rows of other ways' vertices this stage reads (received).
    history_send: Vec<(usize, Tensor)>,
    history_recv: Vec<(usize, Tensor)>,
    convs: Vec<ConvSlot>,
    head: Option<Linear>,
    /// Position of each chunk in this epoch's order.
    pos: Vec<usize>,
    /// What each chunk's forward left for its backward.
    saved: Vec<Option<Saved>>,
    /// Whether later chunks sent gradients to a chunk's rows this epoch.
    received: Vec<bool>,
    /// This epoch's own chunks in order, and how many have yet to run backward.
    order: Vec<usize>,
    backwards_left: usize,
    /// Whether forwards keep their autograd graphs, and the estimate that decided it.
    activations: Activations,
}

/// What a chunk's forward leaves for its backward.
enum Saved {
    /// Recomputation: the input boundary (`None` on stage 0, which projects its features).
    Input(Option<Boundary>),
    /// The forward's autograd graph.
    Graph(ChunkGraph),
}

/// One chunk's forward with autograd: its leaves, its output and what its backward reads.
struct ChunkGraph {
    /// The received boundary as leaves (not on stage 0).
    x_leaf: Option<Tensor>,
    h0_leaf: Option<Tensor>,
    /// GCNII's h⁰ as this stage used it (the leaf, or stage 0's projection).
    h0: Option<Tensor>,
    /// The last slot's output: the logits on the last stage.
    out: Tensor,
    /// Each conv slot's input and dropout mask (where injected gradients enter).
    inputs: Vec<(Tensor, Option<Tensor>)>,
    leaves: Vec<Leaf>,
    /// Attention: the inter edges split by freshness.
    parts: Option<InterParts>,
}

/// How a chunk's slots run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Forward without autograd (recomputation follows).
    Forward,
    /// Forward keeping the autograd graph.
    Keep,
    /// The backward's recomputation: stale neighbours read from the snapshot, nothing written.
    Recompute,
}

impl Stage {
    pub fn new(spec: StageSpec, data: &StageData, device: Device) -> Result<Stage, PipeError> {
        // libtorch's sparse products take f32 only: 16-bit history is gathered row by row.
        let columns = if spec.config.history_dtype == HistoryDtype::F32 { Columns::Global } else { Columns::Halo };
        let graph =
            ChunkedGraph::new(&data.graph, layers::norm(spec.config.model), &spec.chunk_offsets, columns, device);
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
        // Carried gradients (`--no-trick2`) have their own buffer with linear layers; attention's
        // accumulator carries them itself.
        let carried = || (cfg.carry_stale_grads && cfg.model != PipeModel::Gat).then(z);
        let convs: Vec<ConvSlot> = layers
            .convs
            .into_iter()
            .map(|p| ConvSlot { p, live: hist(), snapshot: hist(), grad: z(), carried: carried(), mixing: None })
            .collect();
        let head = layers.head;
        let opt = layers::optimizer(cfg, &vs);
        let activations = choose_activations(&spec, &graph, &convs);
        tracing::info!(
            "stage {}: activations {} (estimated {} MiB, budget {} MiB)",
            spec.stage,
            if activations.kept { "kept" } else { "recomputed" },
            activations.estimate_bytes >> 20,
            activations.budget_bytes >> 20
        );
        let (history_send, history_recv) =
            if spec.ways > 1 { history_lists(&data.graph, &spec, device) } else { (Vec::new(), Vec::new()) };
        Ok(Stage {
            graph,
            input,
            history_send,
            history_recv,
            convs,
            head,
            pos: (0..k).collect(),
            saved: (0..k).map(|_| None).collect(),
            received: vec![false; k],
            order: Vec::new(),
            backwards_left: 0,
            activations,
            core: StageCore::new(spec, vs, opt, data.labels.clone(), true),
        })
    }

    pub fn spec(&self) -> &StageSpec {
        &self.core.spec
    }

    pub fn num_chunks(&self) -> usize {
        self.graph.chunks.len()
    }
    pub fn num_nodes(&self) -> i64 {
        self.graph.n
    }

    /// The per-slot buffers a checkpoint carries: live rows and snapshot, plus the cross-chunk
    /// gradients where they outlive the epoch ([`PipelineConfig::carry_stale_grads`]).
    fn history_buffers(&self) -> Vec<(String, &Tensor)> {
        let carry = self.core.spec.config.carry_stale_grads;
        self.convs
            .iter()
            .flat_map(|s| {
                let slot = s.p.slot;
                // What outlives the epoch: the carried rows (linear layers) or the accumulator.
                let grad = carry.then(|| (format!("history.{slot}.grad"), s.carried.as_ref().unwrap_or(&s.grad)));
                [(format!("history.{slot}.live"), &s.live), (format!("history.{slot}.snapshot"), &s.snapshot)]
                    .into_iter()
                    .chain(grad)
            })
            .collect()
    }

    /// Starts an epoch with chunk `order`: restores the snapshot (trick 3), remembers the
    /// stale rows, clears the cross-chunk gradients.
    fn begin_training(&mut self, epoch: u64, order: &[usize]) {
        // Chunks of other ways are never fresh here: they are read from the snapshot.
        self.pos.iter_mut().for_each(|p| *p = usize::MAX);
        for (p, &c) in order.iter().enumerate() {
            self.pos[c] = p;
        }
        self.order = order.to_vec();
        self.backwards_left = order.len();
        self.convs.iter_mut().for_each(ConvSlot::begin_epoch);
        let cfg = &self.core.spec.config;
        let refresh = cfg.refresh.max(1) as u64;
        self.received.iter_mut().for_each(|r| *r = false);
        tch::no_grad(|| {
            for s in &mut self.convs {
                if !epoch.is_multiple_of(refresh) {
                    s.live.copy_(&s.snapshot);
                }
                if !cfg.carry_stale_grads || s.carried.is_some() {
                    let _ = s.grad.zero_();
                } else {
                    // Rows of other ways' chunks are never consumed here: nothing to carry.
                    for (ch, _) in self.graph.chunks.iter().zip(&self.pos).filter(|(_, &p)| p == usize::MAX) {
                        let _ = s.grad.narrow(0, ch.start, ch.len()).zero_();
                    }
                }
            }
        });
    }

    fn seed_for(&self, chunk: usize, slot: usize) -> i64 {
        let k = self.num_chunks() as u64 + 1;
        self.core.seed(self.core.epoch * k + chunk as u64, slot)
    }

    /// Whether chunk `q`'s rows are fresh for chunk `c` (computed earlier this epoch).
    fn fresh(&self, c: usize, q: usize) -> bool {
        self.pos[q] < self.pos[c]
    }

    /// Attention: chunk `c`'s inter edges split into fresh (source chunk earlier in this
    /// epoch) and stale edges: (row, col, w) of each.
    fn split_inter(&self, c: usize) -> Option<InterParts> {
        let ch = self.graph.chunks[c].inter_edges.as_ref()?;
        let (mut fresh, mut stale) = (Vec::new(), Vec::new());
        for (e, &src) in ch.src_chunk.iter().enumerate() {
            if self.pos[src as usize] < self.pos[c] {
                fresh.push(e as i64)
            } else {
                stale.push(e as i64)
            }
        }
        let pick = |idx: Vec<i64>| {
            let i = Tensor::from_slice(&idx).to(ch.row.device());
            // Stored in 32 bits, used in 64: libtorch's index_add_ takes 1.6× as long with
            // 32-bit ids (measured on this host), and a chunk's picks are transient.
            let id = |t: &Tensor| t.index_select(0, &i).to_kind(Kind::Int64);
            (id(&ch.row), id(&ch.col), ch.w.index_select(0, &i))
        };
        Some([pick(fresh), pick(stale)])
    }

    /// Stage 0's input projection of chunk `c` (`None` = all nodes): `relu(dropout(X)·W)`,
    /// also GCNII's h⁰. Seeded per (epoch, chunk), so the backward recomputation matches.
    fn project(&self, c: Option<usize>, train: bool) -> (Tensor, Option<Tensor>) {
        let (lin, per_chunk, all) = self.input.as_ref().expect("stage 0 owns the input projection");
        if let Some(c) = c {
            tch::manual_seed(self.seed_for(c, 0));
        }
        let h = lin.forward_input(c.map_or(all, |c| &per_chunk[c]), self.core.spec.config.dropout, train).relu();
        let h0 = (self.core.spec.config.model == PipeModel::Gcnii).then(|| h.shallow_clone());
        (h, h0)
    }

    /// Forward of chunk `c` (`None` = the whole graph, exact inference without staleness or
    /// dropout). Stage 0 takes no input. Returns the boundary tensors for the next stage, or
    /// the logits on the last stage.
    pub fn forward_chunk(&mut self, c: Option<usize>, input: Option<Boundary>) -> Boundary {
        let Some(c) = c else {
            let (out, hidden) = self.forward_whole(input);
            if let (true, Some(h)) = (self.core.capture, hidden) {
                self.core.outputs = Some((h, out.x.shallow_clone()));
            }
            return out;
        };
        if self.activations.kept {
            let graph = self.chunk_graph(c, input, Pass::Keep);
            let side = graph.h0.as_ref().filter(|_| self.head.is_none()).map(|h| Side::H0(h.detach()));
            let out = Boundary { x: graph.out.detach(), side };
            self.saved[c] = Some(Saved::Graph(graph));
            return out;
        }
        self.saved[c] = Some(Saved::Input(input.as_ref().map(|b| b.kept(self.core.spec.config.history_dtype))));
        let graph = tch::no_grad(|| self.chunk_graph(c, input, Pass::Forward));
        Boundary { x: graph.out, side: graph.h0.filter(|_| self.head.is_none()).map(Side::H0) }
    }

    /// The whole graph forward, without autograd, staleness or dropout (exact inference). On a
    /// warm-start pass ([`StageCore::warm`]) each slot's input rows also become its historical
    /// embeddings, `live` and `snapshot`: the first epoch's stale neighbours are then exact for
    /// the initial weights instead of zero. On the last stage, also what the classifier read.
    fn forward_whole(&self, input: Option<Boundary>) -> (Boundary, Option<Tensor>) {
        tch::no_grad(|| {
            let (mut x, mut h0) = match input {
                Some(b) => (b.x, b.side.map(Side::into_tensor)),
                None => self.project(None, false),
            };
            for s in &self.convs {
                if self.core.warm {
                    s.live.shallow_clone().copy_(&x);
                    s.snapshot.shallow_clone().copy_(&x);
                }
                x = s.on_graph(&self.graph.full_blocks, &x, h0.as_ref());
            }
            let mut hidden = None;
            if let Some(head) = &self.head {
                let logits = head.forward(&x);
                hidden = Some(std::mem::replace(&mut x, logits));
                h0 = None;
            }
            (Boundary { x, side: h0.map(Side::H0) }, hidden)
        })
    }

    /// Chunk `c`'s slots on `input` (stage 0: its projected features): with autograd unless
    /// `pass` is [`Pass::Forward`] (the caller then turns it off).
    fn chunk_graph(&mut self, c: usize, input: Option<Boundary>, pass: Pass) -> ChunkGraph {
        let grad = pass != Pass::Forward;
        let leaf = |t: &Tensor| {
            let t = t.to_kind(Kind::Float);
            if grad {
                t.detach().set_requires_grad(true)
            } else {
                t
            }
        };
        let x_leaf = input.as_ref().map(|b| leaf(&b.x));
        let h0_leaf = input.as_ref().and_then(|b| b.h0().map(leaf));
        let (mut x, h0) = match &x_leaf {
            Some(x) => (x.shallow_clone(), h0_leaf.as_ref().map(|h| h.shallow_clone())),
            None => self.project(Some(c), true),
        };
        let ch = &self.graph.chunks[c];
        let parts = self.split_inter(c);
        let cfg = &self.core.spec.config;
        let (mut inputs, mut leaves) = (Vec::new(), Vec::new());
        // α·h⁰ once per chunk where a slot adds it whole (no inter edges, or no fused layer).
        let fused = matches!(ch.intra, crate::chunks::Intra::Csr { .. }) && ch.inter.is_some();
        let h0a = h0.as_ref().filter(|_| !fused).map(|h| h * cfg.alpha);
        for s in &self.convs {
            tch::manual_seed(self.seed_for(c, s.p.slot));
            let nb = match &parts {
                Some(parts) => Neighbours::Edges(parts),
                None => Neighbours::Block,
            };
            let res = h0.as_ref().map(|h0| Residual { h0, h0a: h0a.as_ref() });
            let write = pass != Pass::Recompute;
            let run = s.on_chunk(ch, &x, cfg.dropout, nb, res, grad.then_some(cfg.carry_stale_grads), write);
            if grad {
                inputs.push((x.shallow_clone(), run.keep));
                leaves.extend(run.leaf);
            }
            x = run.out;
        }
        if let Some(head) = &self.head {
            tch::manual_seed(self.seed_for(c, cfg.layers + 1));
            x = head.forward(&dropout(&x, cfg.dropout, true));
        }
        ChunkGraph { x_leaf, h0_leaf, h0, out: x, inputs, leaves, parts }
    }

    /// Backward of chunk `c`: back-propagates `grad_out` (ignored on the last stage, which
    /// computes the loss itself) through the chunk's kept graph, or through its recomputed
    /// forward. Returns the gradient for the previous stage (`None` on stage 0).
    fn backward_chunk(
        &mut self,
        c: usize,
        grad_out: Option<Boundary>,
        phases: &mut Breakdown,
    ) -> Result<Option<Boundary>, PipeError> {
        let t = Instant::now();
        let graph = match self.saved[c].take() {
            Some(Saved::Graph(g)) => g,
            Some(Saved::Input(input)) => {
                let g = self.chunk_graph(c, input, Pass::Recompute);
                phases.recompute += t.elapsed().as_secs_f64();
                g
            }
            None => {
                return Err(PipeError::Internal(format!("{}: chunk {c} has no forward to back-propagate", self.role())))
            }
        };
        let ch = &self.graph.chunks[c];
        // Back-propagation from every root at once: the loss (last stage) or the output with
        // the next stage's gradient, and each slot's input with what its rows are due from the
        // chunks that read them as fresh neighbours.
        let (p, carry) = (self.core.spec.config.dropout, self.core.spec.config.carry_stale_grads);
        let mut roots: Vec<(Tensor, Tensor)> = Vec::new();
        for (s, (x, keep)) in self.convs.iter().zip(&graph.inputs) {
            if let Some(due) = s.due(ch, self.received[c] || carry, keep.as_ref(), p) {
                roots.push((x.shallow_clone(), due));
            }
        }
        match (&self.head, grad_out) {
            (Some(_), _) => {
                if let Some(loss) = self.core.loss_share(&graph.out, ch.start as usize) {
                    self.core.last_loss += loss.double_value(&[]);
                    roots.push((loss.shallow_clone(), loss.ones_like()));
                }
            }
            (None, Some(g)) => {
                roots.push((graph.out.shallow_clone(), g.x.shallow_clone()));
                if let (Some(h), Some(gh)) = (graph.h0.as_ref(), g.h0()) {
                    roots.push((h.shallow_clone(), gh.shallow_clone()));
                }
            }
            (None, None) => {}
        }
        strata_nn::ops::backward_roots(&roots.iter().map(|(r, g)| (r, g)).collect::<Vec<_>>())?;
        drop(roots);
        let ChunkGraph { x_leaf, h0_leaf, leaves, parts, .. } = graph;
        self.send_neighbour_grads(c, leaves, parts.as_ref());
        self.after_backward(c)?;
        // The chunk's autograd graph is gone: hand its freed pages back, so that freed
        // chunk-sized blocks (below glibc's mmap threshold) do not pile up in the heap from chunk
        // to chunk (`--trim-heap`: less memory, slower epochs).
        if self.core.spec.config.trim_heap {
            strata_nn::memory::release_free_heap();
        }
        // A chunk whose outputs reach no loss (e.g. a classifier-only stage on a chunk without
        // training nodes) sends zeros, not an undefined gradient.
        Ok(x_leaf
            .map(|x| Boundary { x: grad_or_zeros(&x), side: h0_leaf.as_ref().map(|h| Side::H0(grad_or_zeros(h))) }))
    }

    /// Hands each slot's neighbour gradients to `grad` (see [`ConvSlot::send_grads`]) and
    /// notes which chunks are now due some: the fresh sources, or every source when stale
    /// gradients are carried over (`--no-trick2`).
    fn send_neighbour_grads(&mut self, c: usize, leaves: Vec<Leaf>, parts: Option<&InterParts>) {
        let carry = self.core.spec.config.carry_stale_grads;
        let ch = &self.graph.chunks[c];
        let sources = ch.inter.as_ref().map(|b| b.sources.iter().copied());
        let src_edges = ch.inter_edges.as_ref().map(|e| e.src_chunk.iter().map(|&q| q as usize));
        for q in sources.into_iter().flatten().chain(src_edges.into_iter().flatten()) {
            if carry || self.fresh(c, q) {
                self.received[q] = true;
            }
        }
        let ch = &self.graph.chunks[c];
        tch::no_grad(|| {
            if carry && parts.is_some() {
                // Attention's accumulator: consumed. What stays in these rows now comes from the
                // stale sources and is injected next epoch.
                for s in &self.convs {
                    let _ = s.grad.narrow(0, ch.start, ch.len()).zero_();
                }
            }
            let groups = parts.map(|p| if carry { &p[..] } else { &p[..1] });
            for (s, leaf) in self.convs.iter().zip(leaves) {
                s.send_grads(ch, leaf, groups, self.core.spec.config.grad_scale, self.core.spec.config.dropout);
            }
        });
    }

    /// After chunk `c`'s backward. When recomputing, the chunks whose backward has run are
    /// stale for every chunk still to come (those computed before them), so their rows of
    /// `live` and `snapshot` trade places: every recomputation reads `live` only, and after the
    /// last chunk the buffers trade names, `live` fresh again. After the last chunk, with
    /// `--no-trick2`, the gradients due to rows from readers that ran after them are carried.
    fn after_backward(&mut self, c: usize) -> Result<(), PipeError> {
        let ch = &self.graph.chunks[c];
        let recomputed = !self.activations.kept;
        tch::no_grad(|| {
            if recomputed {
                for s in &self.convs {
                    let (live, snap) = (s.live.narrow(0, ch.start, ch.len()), s.snapshot.narrow(0, ch.start, ch.len()));
                    let fresh = live.copy();
                    live.shallow_clone().copy_(&snap);
                    snap.shallow_clone().copy_(&fresh);
                }
            }
        });
        self.backwards_left = self.backwards_left.saturating_sub(1);
        if self.backwards_left > 0 {
            return Ok(());
        }
        for s in &mut self.convs {
            s.end_epoch()?;
        }
        if recomputed {
            for s in &mut self.convs {
                std::mem::swap(&mut s.live, &mut s.snapshot);
            }
        }
        tch::no_grad(|| {
            for s in &self.convs {
                let Some(carried) = &s.carried else { continue };
                // In forward order: `before` holds the aggregate gradients of the chunks computed
                // before chunk q, whose backward ran after q's.
                let before = s.grad.zeros_like();
                for &q in &self.order {
                    let ch = &self.graph.chunks[q];
                    let rows = |t: &Tensor| t.narrow(0, ch.start, ch.len());
                    match &ch.inter {
                        Some(b) => rows(carried).copy_(&b.gradient_from(&before)),
                        None => {
                            let _ = rows(carried).zero_();
                        }
                    }
                    rows(&before).copy_(&rows(&s.grad));
                }
            }
        });
        Ok(())
    }
}

/// Keep every chunk's activations when their estimated bytes fit the budget
/// ([`PipelineConfig::memory_budget`](crate::config::PipelineConfig), by default half of the
/// memory available when the stage is built; never more than half of what the process's own
/// limits leave), unless `--recompute` says otherwise. The
/// estimate is per conv slot and row: the dropped-out input, its mask, the fused layer's
/// support, the output and the neighbour aggregate (17 bytes per value), plus 4·d bytes per edge
/// an edge-list block or attention keeps; the input projection's output and h⁰; the logits.
fn choose_activations(spec: &StageSpec, graph: &ChunkedGraph, convs: &[ConvSlot]) -> Activations {
    let classes = spec.classes;
    let cfg = &spec.config;
    let own = spec.own_chunks();
    let chunks = || graph.chunks.iter().enumerate().filter(|(c, _)| own.contains(c)).map(|(_, ch)| ch);
    let rows: i64 = chunks().map(|ch| ch.len()).sum();
    // Edge-sized tensors: an edge-list block's messages, and attention's gathered neighbours.
    let edges: i64 = chunks()
        .map(|ch| {
            let intra = match &ch.intra {
                crate::chunks::Intra::Edges { row, .. } => row.size()[0],
                crate::chunks::Intra::Csr { .. } => 0,
            };
            intra + ch.inter_edges.as_ref().map_or(0, |e| e.row.size()[0])
        })
        .sum();
    let d = cfg.hidden;
    let mut bytes = convs.len() as i64 * (rows * d * 17 + edges * d * 4);
    if spec.first == 0 {
        bytes += rows * d * 8;
    }
    if spec.last == cfg.layers + 2 {
        bytes += rows * classes * 8;
    }
    let estimate = bytes.max(0) as u64;
    let budget = cfg.memory_budget.unwrap_or_else(|| strata_nn::memory::available_bytes().unwrap_or(0) / 2);
    // Never more than half of what this process's own limits (`ulimit -d`/`-v`) leave it.
    let budget = strata_nn::memory::process_headroom_bytes().map_or(budget, |h| budget.min(h / 2));
    let kept = match cfg.recompute {
        Recompute::Always => false,
        Recompute::Never => true,
        Recompute::Auto => estimate <= budget,
    };
    Activations { kept, estimate_bytes: estimate, budget_bytes: budget }
}

impl Engine for Stage {
    fn core(&self) -> &StageCore {
        &self.core
    }
    fn core_mut(&mut self) -> &mut StageCore {
        &mut self.core
    }
    fn activations(&self) -> Option<Activations> {
        Some(self.activations)
    }
    fn role(&self) -> String {
        let spec = &self.core.spec;
        format!("pipeline stage {} of way {}", spec.stage, spec.way)
    }
    fn begin_epoch(&mut self, epoch: u64, order: &[usize], train: bool) -> Result<(), PipeError> {
        if train {
            check_permutation(order, self.num_chunks())?;
            let own = self.core.spec.own_chunks();
            let order: Vec<usize> = order.iter().copied().filter(|c| own.contains(c)).collect();
            self.begin_training(epoch, &order);
        }
        Ok(())
    }
    fn forward(&mut self, part: Part, input: Option<Boundary>) -> Result<Option<Boundary>, PipeError> {
        let c = match part {
            Part::Chunk(c) if c < self.num_chunks() => Some(c),
            Part::Whole => None,
            _ => return Err(PipeError::Internal(format!("{} cannot compute part {part}", self.role()))),
        };
        Ok(Some(self.forward_chunk(c, input)))
    }
    fn backward(
        &mut self,
        part: Part,
        grad: Option<Boundary>,
        phases: &mut Breakdown,
    ) -> Result<Option<Boundary>, PipeError> {
        match part {
            Part::Chunk(c) if c < self.num_chunks() => self.backward_chunk(c, grad, phases),
            _ => Err(PipeError::Internal(format!("{} cannot back-propagate part {part}", self.role()))),
        }
    }
    /// A chunk's rows (or every vertex's) and, for GCNII, h⁰ beside them — activations from
    /// the stage below and gradients from the stage above alike.
    fn boundary_shape(&self, part: Part) -> BoundaryShape {
        let spec = &self.core.spec;
        let offs = &spec.chunk_offsets;
        let rows = match part {
            Part::Chunk(c) if c + 1 < offs.len() => (offs[c + 1] - offs[c]) as i64,
            _ => self.num_nodes(),
        };
        let x = vec![rows, spec.config.hidden];
        let side = (spec.tensors_per_boundary() == 2).then(|| (SideKind::H0, x.clone()));
        BoundaryShape { x, side }
    }
    fn after_step(&mut self) {
        let refresh = self.core.spec.config.refresh.max(1) as u64;
        if (self.core.epoch + 1).is_multiple_of(refresh) {
            tch::no_grad(|| self.convs.iter_mut().for_each(|s| s.snapshot.copy_(&s.live)));
        }
    }
    /// Hybrid mode: a conv slot's rows of this way's vertices that other ways read as
    /// neighbours go to them once per epoch, one direction only (gradients that would reach
    /// them are dropped, as for any historical row).
    fn halo_out(&mut self, halo: Halo, slot: usize) -> Result<Vec<(usize, Tensor)>, PipeError> {
        let s = self.conv_slot(halo, slot)?;
        Ok(self.history_send.iter().map(|(q, rows)| (*q, s.live.index_select(0, rows).to_kind(Kind::Float))).collect())
    }
    fn halo_sources(&self, _halo: Halo) -> Vec<(usize, Vec<i64>)> {
        let h = self.core.spec.config.hidden;
        self.history_recv.iter().map(|(q, rows)| (*q, vec![rows.size()[0], h])).collect()
    }
    /// Received rows are written into `live` and `snapshot`: the next epoch reads them as stale.
    fn halo_in(&mut self, halo: Halo, slot: usize, got: Vec<Tensor>) -> Result<(), PipeError> {
        let s = self.conv_slot(halo, slot)?;
        tch::no_grad(|| {
            for ((_, rows), t) in self.history_recv.iter().zip(got) {
                let t = t.to_device(s.live.device()).to_kind(s.live.kind());
                let _ = s.live.shallow_clone().index_copy_(0, rows, &t);
                let _ = s.snapshot.shallow_clone().index_copy_(0, rows, &t);
            }
        });
        Ok(())
    }
    fn evaluate(&self, out: &Boundary) -> Result<[u64; 3], PipeError> {
        self.core.correct(&out.x, 0)
    }
    fn buffers(&self) -> Vec<(String, &Tensor)> {
        self.history_buffers()
    }
}

impl Stage {
    fn conv_slot(&self, halo: Halo, slot: usize) -> Result<&ConvSlot, PipeError> {
        match halo {
            Halo::History => self
                .convs
                .iter()
                .find(|s| s.p.slot == slot)
                .ok_or_else(|| PipeError::Internal(format!("{} holds no conv slot {slot}", self.role()))),
            _ => Err(PipeError::Internal(format!("{} exchanges no {halo:?} rows", self.role()))),
        }
    }
}

/// A chunk order from the network must be a permutation of `0..k`.
pub(crate) fn check_permutation(order: &[usize], k: usize) -> Result<(), PipeError> {
    let mut seen = vec![false; k];
    if order.len() != k || order.iter().any(|&c| c >= k || std::mem::replace(&mut seen[c], true)) {
        return Err(PipeError::Peer(format!("chunk order {order:?} is not a permutation of 0..{k}")));
    }
    Ok(())
}
