//! Forward-forward node classification, §3.1 of the paper (reference
//! `forward_learning/nodeclass/gnn_ff_with_label_appending.py` and
//! `gnn_ff_with_virtual_nodes.py`).
//!
//! Each layer `y = ReLU(conv(‖x‖₂-normalised rows))` is trained alone to give high goodness
//! `Σ_d y_d² − θ` (θ = 2) on positive inputs and low goodness on negative ones, with
//! `BCEWithLogits`; the C−1 negatives per training node are its wrong classes in a random order,
//! drawn once. Prediction tries every class c and picks the one with the largest goodness summed
//! over layers (`mean_d y_d² − θ` at evaluation, as the reference).
//!
//! - Label appending (FF+LA, Eq. 4): the input is `[X ‖ L]`, `L` one-hot for training nodes
//!   (their class, or a wrong class for a negative) and uniform `1/C` elsewhere; each stream
//!   is propagated through the layers on its own.
//! - Virtual nodes (FF+VN, Eq. 5): a positive graph links each training node to its class's
//!   virtual node, negative graphs to a wrong class's; all share the node features, and the
//!   next layer's input is the positive graph's output. At evaluation the evaluated nodes are
//!   linked to the candidate class's virtual node.

use crate::config::ForwardConfig;
use crate::layer::{
    accuracy, dense_features, fit_block, index_tensor, l2_rows, sparse_if_worth, with_virtual_nodes,
    wrong_class_permutations, Block, Conv,
};
use crate::report::NodeRun;
use strata_graph::{Dataset, Split};
use strata_nn::{GraphTensors, Kernel};
use tch::{Device, Kind, Reduction, Tensor};

/// Training goodness `Σ_d y_d² − θ` of the rows `nodes`.
fn goodness_sum(y: &Tensor, nodes: &Tensor, theta: f64) -> Tensor {
    y.index_select(0, nodes).square().sum_dim_intlist(1, false, Kind::Float) - theta
}

/// Evaluation goodness `mean_d y_d² − θ` of the rows `nodes`.
fn goodness_mean(y: &Tensor, nodes: &Tensor, theta: f64) -> Tensor {
    y.index_select(0, nodes).square().mean_dim(1, false, Kind::Float) - theta
}

/// `BCE(g⁺, 1) + mean_k BCE(g⁻_k, 0)`.
fn ff_loss(pos: &Tensor, negs: &[Tensor]) -> Tensor {
    let bce = |g: &Tensor, target: f64| {
        g.binary_cross_entropy_with_logits::<Tensor>(&g.full_like(target), None, None, Reduction::Mean)
    };
    let neg: Tensor =
        negs.iter().map(|g| bce(g, 0.0)).fold(Tensor::zeros([], (Kind::Float, pos.device())), |a, b| a + b);
    bce(pos, 1.0) + neg / negs.len().max(1) as f64
}

/// Node sets of one evaluation: the nodes whose labels are shown, and the nodes evaluated
/// (validation: train / val; test: train ∪ val / test, as the reference).
struct EvalSet {
    known: Vec<(usize, usize)>,
    nodes: Vec<usize>,
    idx: Tensor,
    labels: Tensor,
}

impl EvalSet {
    fn new(data: &Dataset, known: &[&[usize]], nodes: &[usize], device: Device) -> EvalSet {
        EvalSet {
            known: known.iter().flat_map(|s| s.iter().map(|&i| (i, data.labels[i] as usize))).collect(),
            nodes: nodes.to_vec(),
            idx: index_tensor(nodes, device),
            labels: Tensor::from_slice(&nodes.iter().map(|&i| data.labels[i]).collect::<Vec<_>>()).to(device),
        }
    }
    /// Accuracy of the argmax over candidates of the goodness `g[c]` (one `[nodes]` each).
    fn accuracy(&self, g: &[Tensor]) -> f64 {
        accuracy(&Tensor::stack(g, 1).argmax(1, false), &self.labels)
    }
}

/// `[n, C]` label rows: uniform `1/C`, one-hot for the `(node, class)` pairs given.
fn label_rows(n: usize, classes: usize, onehot: &[(usize, usize)], device: Device) -> Tensor {
    let mut rows = vec![1.0 / classes as f32; n * classes];
    for &(i, c) in onehot {
        rows[i * classes..(i + 1) * classes].fill(0.0);
        rows[i * classes + c] = 1.0;
    }
    Tensor::from_slice(&rows).view([n as i64, classes as i64]).to(device)
}

/// Evaluation streams, one per candidate class, with the goodness summed over frozen layers.
struct Candidates {
    streams: Vec<Tensor>,
    goodness: Vec<Tensor>,
}

impl Candidates {
    fn new(streams: Vec<Tensor>, nodes: &Tensor) -> Candidates {
        let goodness =
            streams.iter().map(|_| Tensor::zeros([nodes.size()[0]], (Kind::Float, nodes.device()))).collect();
        Candidates { streams, goodness }
    }
    /// Goodness with the block being trained added (one conv per candidate: FF+VN's graphs differ).
    fn score(&self, convs: &[&Conv], block: &Block, nodes: &Tensor, theta: f64, layer: usize) -> Vec<Tensor> {
        self.streams
            .iter()
            .zip(&self.goodness)
            .zip(convs)
            .map(|((s, g), conv)| g + goodness_mean(&conv.forward(&input_of(block, s, layer)).relu(), nodes, theta))
            .collect()
    }
    /// Freezes the block: streams advance, goodness accumulates.
    fn advance(&mut self, convs: &[&Conv], block: &Block, nodes: &Tensor, theta: f64, layer: usize) {
        for ((s, g), conv) in self.streams.iter_mut().zip(self.goodness.iter_mut()).zip(convs) {
            let y = tch::no_grad(|| conv.forward(&input_of(block, s, layer)).relu());
            *g += goodness_mean(&y, nodes, theta);
            *s = y;
        }
    }
}

/// A stream as layer `layer` consumes it: label-appended first-layer streams are normalised
/// when built (and kept sparse), hidden ones are normalised here.
fn input_of(block: &Block, stream: &Tensor, layer: usize) -> Tensor {
    if layer == 0 {
        stream.shallow_clone()
    } else {
        block.prepare(stream)
    }
}

pub(crate) fn train_label_appending(
    data: &Dataset,
    split: &Split,
    cfg: &ForwardConfig,
    device: Device,
) -> strata_nn::Result<NodeRun> {
    let (n, c) = (data.num_nodes(), data.num_classes);
    let graph = GraphTensors::new(&data.graph.symmetrized(), device, Kernel::EdgeList);
    let x = dense_features(data, device);
    let train = index_tensor(&split.train, device);
    let y_train: Vec<i64> = split.train.iter().map(|&i| data.labels[i]).collect();
    let perms = Vec::<Vec<i64>>::try_from(
        wrong_class_permutations(&Tensor::from_slice(&y_train).to(device), c as i64).to(Device::Cpu),
    )?;
    // First-layer streams are built normalised and sparse (21 dense copies of [X ‖ L] would
    // dominate memory); `input_of` passes them through.
    let sparse_ok = cfg.conv != strata_nn::ModelKind::Sage;
    let with_labels = |onehot: &[(usize, usize)]| {
        sparse_if_worth(l2_rows(&Tensor::cat(&[&x, &label_rows(n, c, onehot, device)], 1)), sparse_ok)
    };
    let truth: Vec<(usize, usize)> = split.train.iter().map(|&i| (i, data.labels[i] as usize)).collect();
    let mut pos = with_labels(&truth);
    let mut negs: Vec<Tensor> = (0..c - 1)
        .map(|k| with_labels(&split.train.iter().zip(&perms).map(|(&i, p)| (i, p[k] as usize)).collect::<Vec<_>>()))
        .collect();
    let eval_sets = [
        EvalSet::new(data, &[&split.train], &split.val, device),
        EvalSet::new(data, &[&split.train, &split.val], &split.test, device),
    ];
    let mut cands: Vec<Candidates> = eval_sets
        .iter()
        .map(|e| {
            let streams = (0..c)
                .map(|cls| with_labels(&[e.known.clone(), e.nodes.iter().map(|&i| (i, cls)).collect()].concat()))
                .collect();
            Candidates::new(streams, &e.idx)
        })
        .collect();
    let mut run = NodeRun::default();
    for layer in 0..cfg.layers {
        let mut block = Block::new(
            cfg.conv,
            &graph,
            pos.size()[1],
            cfg.hidden,
            cfg.lr,
            cfg.weight_decay,
            &format!("layer{layer}"),
        )?;
        let pos_in = input_of(&block, &pos, layer);
        let neg_in: Vec<Tensor> = negs.iter().map(|t| input_of(&block, t, layer)).collect();
        let fit = fit_block(
            &mut block,
            cfg,
            |b| {
                let gp = goodness_sum(&b.forward(&pos_in), &train, cfg.theta);
                let gn: Vec<Tensor> = neg_in.iter().map(|t| goodness_sum(&b.forward(t), &train, cfg.theta)).collect();
                ff_loss(&gp, &gn)
            },
            |b| eval_sets[0].accuracy(&cands[0].score(&vec![&b.conv; c], b, &eval_sets[0].idx, cfg.theta, layer)),
        );
        pos = tch::no_grad(|| block.forward(&pos_in));
        negs = tch::no_grad(|| neg_in.iter().map(|t| block.forward(t)).collect());
        for (cand, e) in cands.iter_mut().zip(&eval_sets) {
            cand.advance(&vec![&block.conv; c], &block, &e.idx, cfg.theta, layer);
        }
        run.layer_done(fit, eval_sets[0].accuracy(&cands[0].goodness), eval_sets[1].accuracy(&cands[1].goodness));
    }
    Ok(run)
}

// Long on purpose: the reference's FF+VN training loop (Eq. 5) kept whole, so it reads against the paper's algorithm.
pub(crate) fn train_virtual_nodes(
    data: &Dataset,
    split: &Split,
    cfg: &ForwardConfig,
    device: Device,
) -> strata_nn::Result<NodeRun> {
    let c = data.num_classes;
    let x = dense_features(data, device);
    // Normalised (and sparse) once: `input_of` passes first-layer streams through.
    let mut h = sparse_if_worth(
        l2_rows(&Tensor::cat(&[&x, &Tensor::randn([c as i64, x.size()[1]], (Kind::Float, device))], 0)),
        cfg.conv != strata_nn::ModelKind::Sage,
    );
    let train = index_tensor(&split.train, device);
    let y_train: Vec<i64> = split.train.iter().map(|&i| data.labels[i]).collect();
    let perms = Vec::<Vec<i64>>::try_from(
        wrong_class_permutations(&Tensor::from_slice(&y_train).to(device), c as i64).to(Device::Cpu),
    )?;
    let pos_graph = with_virtual_nodes(data, split.train.iter().map(|&i| (i, data.labels[i] as usize)), device)?;
    let neg_graphs = (0..c - 1)
        .map(|k| with_virtual_nodes(data, split.train.iter().zip(&perms).map(|(&i, p)| (i, p[k] as usize)), device))
        .collect::<strata_nn::Result<Vec<_>>>()?;
    let eval_sets = [
        EvalSet::new(data, &[&split.train], &split.val, device),
        EvalSet::new(data, &[&split.train, &split.val], &split.test, device),
    ];
    // Per evaluation and candidate class: the graph with the evaluated nodes linked to that class.
    let eval_graphs = eval_sets
        .iter()
        .map(|e| {
            (0..c)
                .map(|cls| {
                    with_virtual_nodes(data, e.known.iter().copied().chain(e.nodes.iter().map(|&i| (i, cls))), device)
                })
                .collect::<strata_nn::Result<Vec<_>>>()
        })
        .collect::<strata_nn::Result<Vec<_>>>()?;
    let mut cands: Vec<Candidates> =
        eval_sets.iter().map(|e| Candidates::new((0..c).map(|_| h.shallow_clone()).collect(), &e.idx)).collect();
    let mut run = NodeRun::default();
    for layer in 0..cfg.layers {
        let mut block = Block::new(
            cfg.conv,
            &pos_graph,
            h.size()[1],
            cfg.hidden,
            cfg.lr,
            cfg.weight_decay,
            &format!("layer{layer}"),
        )?;
        let neg_convs: Vec<Conv> = neg_graphs.iter().map(|g| block.conv.on(g)).collect();
        let eval_convs: Vec<Vec<Conv>> =
            eval_graphs.iter().map(|gs| gs.iter().map(|g| block.conv.on(g)).collect()).collect();
        let input = input_of(&block, &h, layer);
        let fit = fit_block(
            &mut block,
            cfg,
            |b| {
                let gp = goodness_sum(&b.forward(&input), &train, cfg.theta);
                let gn: Vec<Tensor> = neg_convs
                    .iter()
                    .map(|conv| goodness_sum(&conv.forward(&input).relu(), &train, cfg.theta))
                    .collect();
                ff_loss(&gp, &gn)
            },
            |b| {
                eval_sets[0].accuracy(&cands[0].score(
                    &eval_convs[0].iter().collect::<Vec<_>>(),
                    b,
                    &eval_sets[0].idx,
                    cfg.theta,
                    layer,
                ))
            },
        );
        h = tch::no_grad(|| block.forward(&input));
        for ((cand, e), convs) in cands.iter_mut().zip(&eval_sets).zip(&eval_convs) {
            cand.advance(&convs.iter().collect::<Vec<_>>(), &block, &e.idx, cfg.theta, layer);
        }
        run.layer_done(fit, eval_sets[0].accuracy(&cands[0].goodness), eval_sets[1].accuracy(&cands[1].goodness));
    }
    Ok(run)
}
