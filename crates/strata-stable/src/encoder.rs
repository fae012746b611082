//! STABLE's contrastive encoder: a DGI variant (Veličković et al., 2019) whose summaries come
//! from two augmented views instead of the anchor graph.
//!
//! `f(X, Â) = PReLU(Â·X·W + b)` (W: F×512, Xavier), negatives `f(X[π], Â)` with row-shuffled
//! features, summaries `s_t = σ(mean f(X, Â_t))`, discriminator `D(h, s) = hᵀ·W_D·s + b_D`, and
//! BCE on `D(h, s₁) + D(h, s₂)` (1 for real rows, 0 for shuffled). The anchor graph carries
//! self-loop weight β, the views β + 1, each symmetrically normalised with those loops counted
//! in the degree.

use serde::Serialize;
use strata_graph::{CsrGraph, Features};
use strata_nn::{Patience, Progress};
use tch::nn::OptimizerConfig;
use tch::{nn, Device, Kind, Tensor};

/// A sparse propagation matrix, as a libtorch sparse COO tensor: its product (and the product's
/// backward, `Aᵀ·G`) beat an index gather/scatter several times at 512 columns, because the
/// gather's backward serialises on repeated indices.
pub(crate) struct Propagator {
    adj: Tensor,
}

impl Propagator {
    /// `D̃^{-1/2}(A + β·I)D̃^{-1/2}` with `β = loop_weight` ([`strata_nn::gcn_norm`]).
    pub(crate) fn sym_with_loops(g: &CsrGraph, loop_weight: f64, device: Device) -> Propagator {
        let op = strata_nn::gcn_norm(g, loop_weight as f32);
        let a = op.adjacency();
        Propagator::new(g.num_nodes(), a.row_ids(), a.indices().to_vec(), a.values_or_ones(), device)
    }

    pub(crate) fn new(n: usize, r: Vec<i64>, c: Vec<i64>, w: Vec<f32>, device: Device) -> Propagator {
        let idx = Tensor::stack(&[Tensor::from_slice(&r), Tensor::from_slice(&c)], 0).to(device);
        let vals = Tensor::from_slice(&w).to(device);
        Propagator {
            adj: Tensor::sparse_coo_tensor_indices_size(
                &idx,
                &vals,
                [n as i64, n as i64],
                (Kind::Float, device),
                false,
            )
            .coalesce(),
        }
    }

    pub(crate) fn apply(&self, x: &Tensor) -> Tensor {
        self.adj.mm(x)
    }
}

/// The raw features as libtorch's sparse COO matrix (or dense): for `X·W` with W 512 wide,
/// libtorch's sparse product is several times faster than gathering W's rows per non-zero
/// (whose backward serialises on repeated indices) and than a dense product.
enum FeatureMatrix {
    Dense(Tensor),
    Sparse(Tensor),
}

impl FeatureMatrix {
    fn new(features: &Features, device: Device) -> FeatureMatrix {
        match features {
            Features::Dense { rows, cols, data } => {
                FeatureMatrix::Dense(Tensor::from_slice(data).view([*rows as i64, *cols as i64]).to(device))
            }
            Features::Sparse(m) => {
                let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
                for (i, j, x) in m.iter() {
                    r.push(i as i64);
                    c.push(j as i64);
                    v.push(x);
                }
                let idx = Tensor::stack(&[Tensor::from_slice(&r), Tensor::from_slice(&c)], 0).to(device);
                let vals = Tensor::from_slice(&v).to(device);
                FeatureMatrix::Sparse(
                    Tensor::sparse_coo_tensor_indices_size(
                        &idx,
                        &vals,
                        [m.rows() as i64, m.cols() as i64],
                        (Kind::Float, device),
                        false,
                    )
                    .coalesce(),
                )
            }
        }
    }
    fn mm(&self, w: &Tensor) -> Tensor {
        match self {
            FeatureMatrix::Dense(x) => x.matmul(w),
            FeatureMatrix::Sparse(x) => x.mm(w),
        }
    }
}

/// How the encoder's training went.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct EncoderReport {
    pub epochs: usize,
    pub best_epoch: usize,
    pub best_loss: f64,
}

/// Trains the encoder on the pruned graph and its two views; returns the embeddings of the best
/// (lowest training loss) weights, `[n, cfg.hidden_dim]`, detached.
pub fn train_encoder(
    pre: &CsrGraph,
    views: &[CsrGraph; 2],
    features: &Features,
    cfg: &crate::StableConfig,
    seed: u64,
    device: Device,
) -> (Tensor, EncoderReport) {
    tch::manual_seed(seed as i64);
    let n = pre.num_nodes() as i64;
    let f = features.dim() as i64;
    let d = cfg.hidden_dim;
    let vs = nn::VarStore::new(device);
    let root = vs.root();
    let bound = (6.0 / (f + d) as f64).sqrt();
    let w = root.var("w", &[f, d], nn::Init::Uniform { lo: -bound, up: bound });
    let b = root.var("b", &[d], nn::Init::Const(0.0));
    let a = root.var("prelu", &[1], nn::Init::Const(0.25));
    // nn.Bilinear(d, d, 1)'s weight is [1, d, d]: Xavier fans d·d and d.
    let bd = (6.0 / (d * d + d) as f64).sqrt();
    let wd = root.var("w_d", &[d, d], nn::Init::Uniform { lo: -bd, up: bd });
    let b_d = root.var("b_d", &[1], nn::Init::Const(0.0));
    let x = FeatureMatrix::new(features, device);
    let anchor = Propagator::sym_with_loops(pre, cfg.beta, device);
    let aug = [
        Propagator::sym_with_loops(&views[0], cfg.beta + 1.0, device),
        Propagator::sym_with_loops(&views[1], cfg.beta + 1.0, device),
    ];
    let mut opt = nn::Adam::default().build(&vs, 1e-3).expect("optimizer");
    let encode = |adj: &Propagator, xw: &Tensor| (adj.apply(xw) + &b).prelu(&a);
    let labels = Tensor::cat(&[Tensor::ones([n], (Kind::Float, device)), Tensor::zeros([n], (Kind::Float, device))], 0);
    let (mut stopper, mut best_epoch) = (Patience::minimising(cfg.patience), 0);
    let mut saved: Vec<Tensor> = Vec::new();
    let mut epochs = 0;
    for epoch in 0..cfg.max_encoder_epochs {
        epochs = epoch + 1;
        let xw = x.mm(&w);
        let h = encode(&anchor, &xw);
        let perm = Tensor::randperm(n, (Kind::Int64, device));
        let h_neg = encode(&anchor, &xw.index_select(0, &perm));
        let v: Tensor = aug
            .iter()
            .map(|adj| wd.mv(&encode(adj, &xw).mean_dim(0, false, Kind::Float).sigmoid()))
            .fold(Tensor::zeros([d], (Kind::Float, device)), |acc, v| acc + v);
        let logits = Tensor::cat(&[h.mv(&v), h_neg.mv(&v)], 0) + &b_d * 2.0;
        let loss = logits.binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, tch::Reduction::Mean);
        // As in the reference: the weights are kept before the step that this loss drives.
        match stopper.record(loss.double_value(&[])) {
            Progress::Improved => {
                best_epoch = epoch;
                saved = strata_nn::checkpoint::snapshot(&vs);
            }
            Progress::Stop => break,
            Progress::Waiting => {}
        }
        opt.backward_step(&loss);
    }
    strata_nn::checkpoint::restore(&vs, &saved);
    let z = tch::no_grad(|| encode(&anchor, &x.mm(&w)));
    (z, EncoderReport { epochs, best_epoch, best_loss: stopper.best() })
}
