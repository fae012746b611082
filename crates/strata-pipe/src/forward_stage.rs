//! A forward-only pipeline stage: ForwardGNN's single-forward (SF) layers split over workers.
//! Every layer is trained by its own loss, so the pipeline has a forward wavefront only — no
//! gradient crosses a stage (or a layer), and the backward wavefront and its bytes disappear.
//!
//! The graph gets one virtual node per class (ids `N..N+C`, random N(0,1) features), linked both
//! ways to the training nodes of its class. Layer slot ℓ computes
//! `h_ℓ = ReLU(Â·(h_{ℓ−1}/‖h_{ℓ−1}‖)·W_ℓ + b_ℓ)` over that graph; slot 0 reads the raw
//! features, the convolution slots 1..=L the previous slot (no classifier slot: predictions sum
//! the layers' class distributions `softmax(h[v]·h[VN]ᵀ)`, as in SF). Chunk by chunk, a layer
//! aggregates its input rows from a per-layer buffer holding this epoch's rows for chunks already
//! seen and last epoch's for the others (historical embeddings; being detached, they need none of
//! the backprop pipeline's tricks), and adds `CE(h[train ∩ chunk]·h[VN]ᵀ, y)` to its gradient;
//! one Adam step per epoch. The virtual nodes' rows travel with every chunk's activations.
//!
//! All layers learn at once (each on the current output of the one below), unlike the greedy
//! single-process trainer, which freezes a layer before training the next.

use crate::boundary::{Boundary, BoundaryShape, Side, SideKind};
use crate::config::StageSpec;
use crate::error::PipeError;
use crate::schedule::Part;
use crate::stage_core::{Breakdown, Engine, StageCore};
use crate::stage_data::StageData;
use strata_nn::conv::GcnConv;
use strata_nn::ops::l2_rows;
use strata_nn::optim::Adam;
use strata_nn::MessagePassing;
use tch::{nn, Device, Kind, Tensor};

struct SfLayer {
    slot: usize,
    /// The library's GCN layer (ForwardGNN's SF blocks are `ReLU(GCN(x))`).
    conv: GcnConv,
    /// This layer's normalised input rows, `[N + C, d_in]` (slot 0: the features, sparse).
    input: Tensor,
    /// Slot 0 only: `X·W` for the epoch (W moves once per epoch), a leaf whose gradient the
    /// chunks accumulate and `end_epoch` pushes into `W` — so the wide sparse product runs
    /// twice per epoch, not twice per chunk. Propagating after projecting is what keeps it
    /// cheap: `Â_c·X` would be a dense `rows × F` matrix.
    projected: Option<Tensor>,
}

/// Which rows of the graph a layer computes.
#[derive(Clone, Copy)]
enum Rows {
    Chunk(usize),
    VirtualNodes,
    All,
}

pub struct ForwardStage {
    core: StageCore,
    n: i64,
    classes: i64,
    layers: Vec<SfLayer>,
    /// Normalised operator rows of each chunk, of the virtual nodes, and of every node (sparse,
    /// columns over all `N + C` nodes).
    chunk_ops: Vec<Tensor>,
    vn_op: Tensor,
    full_op: Tensor,
    chunk_offsets: Vec<usize>,
    /// Per chunk: training rows (chunk-local) and their labels.
    chunk_train: Vec<(Tensor, Tensor)>,
}

/// Rows `lo..hi` of the operator given as (row, col, w) triples, as a sparse `[hi−lo, n]` matrix.
fn rows_op(entries: &[(i64, i64, f32)], lo: i64, hi: i64, n: i64, device: Device) -> Tensor {
    let picked: Vec<&(i64, i64, f32)> = entries.iter().filter(|e| e.0 >= lo && e.0 < hi).collect();
    let idx: Vec<i64> = picked.iter().map(|e| e.0 - lo).chain(picked.iter().map(|e| e.1)).collect();
    let val: Vec<f32> = picked.iter().map(|e| e.2).collect();
    let indices = Tensor::from_slice(&idx).view([2, picked.len() as i64]);
    Tensor::sparse_coo_tensor_indices_size(
        &indices,
        &Tensor::from_slice(&val),
        [hi - lo, n],
        (Kind::Float, Device::Cpu),
        false,
    )
    .coalesce()
    .to(device)
}

impl ForwardStage {
    pub fn new(spec: StageSpec, data: &StageData, device: Device) -> Result<ForwardStage, PipeError> {
        let cfg = spec.config.clone();
        let (n, c) = (data.num_nodes() as i64, spec.classes);
        // The augmented graph and its D̃^{-1/2}(A+I)D̃^{-1/2}, self loops on every node.
        let links = spec.train.iter().map(|&i| (i, data.labels[i] as usize));
        let g = data.graph.with_virtual_nodes(c as usize, links).map_err(|e| PipeError::Config(e.to_string()))?;
        let g = strata_nn::gcn_norm(&g, 1.0);
        let entries: Vec<(i64, i64, f32)> = g.adjacency().iter().map(|(u, v, w)| (u as i64, v as i64, w)).collect();
        let total = n + c;
        let offs = &spec.chunk_offsets;
        let chunk_ops: Vec<Tensor> =
            (0..offs.len() - 1).map(|k| rows_op(&entries, offs[k] as i64, offs[k + 1] as i64, total, device)).collect();
        let vn_op = rows_op(&entries, n, total, total, device);
        let full_op = rows_op(&entries, 0, total, total, device);
        let mut in_train = vec![false; n as usize];
        spec.train.iter().for_each(|&i| in_train[i] = true);
        let chunk_train = (0..offs.len() - 1)
            .map(|k| {
                let rows: Vec<i64> =
                    (offs[k]..offs[k + 1]).filter(|&u| in_train[u]).map(|u| (u - offs[k]) as i64).collect();
                let y: Vec<i64> = (offs[k]..offs[k + 1]).filter(|&u| in_train[u]).map(|u| data.labels[u]).collect();
                (Tensor::from_slice(&rows).to(device), Tensor::from_slice(&y).to(device))
            })
            .collect();
        // Slots: 0 = features → hidden, 1..=L = hidden → hidden; the classifier slot is unused.
        let vs = nn::VarStore::new(device);
        let mut sf_layers = Vec::new();
        for slot in spec.first..spec.last.min(cfg.layers + 1) {
            // Seeded per slot, so a layer's initial weights do not depend on the split.
            tch::manual_seed(cfg.seed as i64 * 7919 + slot as i64);
            let fan_in = if slot == 0 { spec.features } else { cfg.hidden };
            let conv = GcnConv::new(&(vs.root() / format!("slot{slot}")), fan_in, cfg.hidden);
            let input = if slot == 0 {
                let x = strata_nn::Input::from_features(
                    &data.rows(0..data.num_nodes()),
                    device,
                    strata_graph::FeatureNorm::None,
                )
                .to_dense();
                tch::manual_seed(cfg.seed as i64 * 7919 - 1);
                let vn = Tensor::randn([c, spec.features], (Kind::Float, device));
                l2_rows(&Tensor::cat(&[x, vn], 0)).to_sparse_sparse_dim(2).coalesce()
            } else {
                Tensor::zeros([total, cfg.hidden], (Kind::Float, device))
            };
            sf_layers.push(SfLayer { slot, conv, input, projected: None });
        }
        if sf_layers.is_empty() {
            return Err(PipeError::Config(format!(
                "stage {} owns only the classifier slot, which a forward-only pipeline does not have: use fewer stages",
                spec.stage
            )));
        }
        let opt = Adam::new(&vs, cfg.lr, &[cfg.weight_decay]);
        Ok(ForwardStage {
            n,
            classes: c,
            layers: sf_layers,
            chunk_ops,
            vn_op,
            full_op,
            chunk_offsets: offs.clone(),
            chunk_train,
            core: StageCore::new(spec, vs, opt, data.labels.clone(), false),
        })
    }

    pub fn num_chunks(&self) -> usize {
        self.chunk_ops.len()
    }
    fn project_for_epoch(&mut self) {
        if let Some(l) = self.layers.first_mut().filter(|l| l.slot == 0) {
            l.projected = Some(tch::no_grad(|| l.input.mm(&l.conv.lin.w)).set_requires_grad(true));
        }
    }
    /// Pushes the epoch's gradient of `X·W` into slot 0's `W`.
    fn push_projected_grad(&mut self) {
        if let Some(l) = self.layers.first_mut().filter(|l| l.slot == 0) {
            if let Some(p) = l.projected.take() {
                let g = p.grad();
                if g.defined() {
                    (l.input.mm(&l.conv.lin.w) * g).sum(Kind::Float).backward();
                }
            }
        }
    }

    /// Writes a layer's input rows: chunk `c`'s rows (or every real node's) and the virtual nodes'.
    fn write_input(&self, i: usize, c: Option<usize>, x: &Tensor, vn: &Tensor) {
        let buf = &self.layers[i].input;
        tch::no_grad(|| {
            let (lo, len) = match c {
                Some(c) => (self.chunk_offsets[c] as i64, (self.chunk_offsets[c + 1] - self.chunk_offsets[c]) as i64),
                None => (0, self.n),
            };
            buf.narrow(0, lo, len).copy_(&l2_rows(x));
            buf.narrow(0, self.n, self.classes).copy_(&l2_rows(vn));
        });
    }

    fn layer_out(&self, i: usize, rows: Rows) -> Tensor {
        let l = &self.layers[i];
        let op = match rows {
            Rows::Chunk(c) => &self.chunk_ops[c],
            Rows::VirtualNodes => &self.vn_op,
            Rows::All => &self.full_op,
        };
        let y = if l.slot == 0 {
            // Project, then propagate (inference projects afresh, without autograd).
            l.conv.add_bias(match (&l.projected, rows) {
                (Some(p), Rows::Chunk(_) | Rows::VirtualNodes) => op.mm(p),
                _ => op.mm(&l.input.mm(&l.conv.lin.w)),
            })
        } else {
            l.conv.update(op.mm(&l.input), &l.input, None)
        };
        y.relu()
    }

    /// Trains on chunk `c`: `input` holds the chunk's rows and the virtual nodes' rows from
    /// the stage below (none on stage 0). Returns the same for the stage above.
    fn train_chunk(&mut self, c: usize, input: Option<Boundary>) -> Result<Boundary, PipeError> {
        if let Some(b) = &input {
            let vn = match &b.side {
                Some(Side::VirtualNodes(vn)) => vn,
                _ => return Err(PipeError::Internal("virtual-node rows travel with the chunk".into())),
            };
            self.write_input(0, Some(c), &b.x, vn);
        }
        let total_train = self.core.spec.train.len().max(1) as f64;
        let (rows, y) = (&self.chunk_train[c].0, &self.chunk_train[c].1);
        let (mut x, mut vn) = (Tensor::new(), Tensor::new());
        for i in 0..self.layers.len() {
            let out = self.layer_out(i, Rows::Chunk(c));
            let out_vn = self.layer_out(i, Rows::VirtualNodes);
            if rows.size()[0] > 0 {
                let logits = out.index_select(0, rows).matmul(&out_vn.tr());
                let loss = logits.cross_entropy_loss::<Tensor>(y, None, tch::Reduction::Sum, -100, 0.0) / total_train;
                self.core.last_loss += loss.double_value(&[]);
                strata_nn::memory::sample();
                loss.backward();
            }
            (x, vn) = (out.detach(), out_vn.detach());
            if i + 1 < self.layers.len() {
                self.write_input(i + 1, Some(c), &x, &vn);
            }
        }
        Ok(Boundary { x, side: Some(Side::VirtualNodes(vn)) })
    }

    /// Exact full-graph inference: `input` holds every node's rows (real then virtual) and, as
    /// its side, the class distributions summed over the layers below. Returns the same.
    fn infer(&mut self, input: Option<Boundary>) -> Result<Boundary, PipeError> {
        tch::no_grad(|| {
            let mut probs = match &input {
                Some(b) => {
                    let (x, vn) = (b.x.narrow(0, 0, self.n), b.x.narrow(0, self.n, self.classes));
                    self.write_input(0, None, &x, &vn);
                    match &b.side {
                        Some(Side::ClassScores(p)) => p.shallow_clone(),
                        _ => return Err(PipeError::Internal("class distributions travel with the rows".into())),
                    }
                }
                None => Tensor::zeros([self.n, self.classes], (Kind::Float, self.full_op.device())),
            };
            let mut h = Tensor::new();
            for i in 0..self.layers.len() {
                h = self.layer_out(i, Rows::All);
                let (real, vn) = (h.narrow(0, 0, self.n), h.narrow(0, self.n, self.classes));
                probs += real.matmul(&vn.tr()).softmax(-1, Kind::Float);
                if i + 1 < self.layers.len() {
                    self.write_input(i + 1, None, &real, &vn);
                }
            }
            Ok(Boundary { x: h, side: Some(Side::ClassScores(probs)) })
        })
    }
}

impl Engine for ForwardStage {
    fn core(&self) -> &StageCore {
        &self.core
    }
    fn core_mut(&mut self) -> &mut StageCore {
        &mut self.core
    }
    fn role(&self) -> String {
        format!("forward-only stage {}", self.core.spec.stage)
    }
    fn begin_epoch(&mut self, _epoch: u64, order: &[usize], train: bool) -> Result<(), PipeError> {
        if train {
            crate::stage::check_permutation(order, self.num_chunks())?;
            self.project_for_epoch();
        }
        Ok(())
    }
    fn forward(&mut self, part: Part, input: Option<Boundary>) -> Result<Option<Boundary>, PipeError> {
        match part {
            Part::Chunk(c) if c < self.num_chunks() => self.train_chunk(c, input).map(Some),
            Part::Whole => self.infer(input).map(Some),
            _ => Err(PipeError::Internal(format!("{} cannot compute part {part}", self.role()))),
        }
    }
    fn backward(&mut self, part: Part, _: Option<Boundary>, _: &mut Breakdown) -> Result<Option<Boundary>, PipeError> {
        Err(PipeError::Internal(format!("{} has no backward pass (part {part})", self.role())))
    }
    /// The shapes received from the stage below: a chunk's rows and the virtual nodes' rows in
    /// training; every node's and virtual node's rows and the summed class distributions in
    /// full-graph inference.
    fn boundary_shape(&self, part: Part) -> BoundaryShape {
        let h = self.core.spec.config.hidden;
        match part {
            Part::Chunk(c) => BoundaryShape {
                x: vec![(self.chunk_offsets[c + 1] - self.chunk_offsets[c]) as i64, h],
                side: Some((SideKind::VirtualNodes, vec![self.classes, h])),
            },
            _ => BoundaryShape {
                x: vec![self.n + self.classes, h],
                side: Some((SideKind::ClassScores, vec![self.n, self.classes])),
            },
        }
    }
    fn before_step(&mut self) {
        self.push_projected_grad();
    }
    /// Correct predictions (summed class distributions) on the train, val and test nodes.
    fn evaluate(&self, out: &Boundary) -> Result<[u64; 3], PipeError> {
        let Some(Side::ClassScores(probs)) = &out.side else {
            return Err(PipeError::Internal("inference without class distributions".into()));
        };
        self.core.correct(probs, 0)
    }
    /// The layers' input buffers (slot 0's are the features).
    fn buffers(&self) -> Vec<(String, &Tensor)> {
        self.layers.iter().filter(|l| l.slot != 0).map(|l| (format!("history.{}.input", l.slot), &l.input)).collect()
    }
}
