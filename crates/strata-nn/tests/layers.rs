//! Every layer, through every model: the CSR and edge-list kernels agree, and autograd
//! gradients match central finite differences (in f64) on a small graph.

use strata_graph::{CsrGraph, Dataset, Features};
use strata_nn::{GraphTensors, Input, Kernel, Model, ModelConfig, ModelKind, Norm};
use tch::{Device, Kind, Tensor};

/// libtorch's generator is process-wide and the tests of this file run on parallel threads:
/// each test that seeds it holds this lock, so no other test draws between its seed and its
/// draws.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn small_graph() -> CsrGraph {
    // A ring plus chords and one isolated node: irregular degrees, a zero-degree row.
    let mut edges = Vec::new();
    for i in 0..11i64 {
        edges.push((i, (i + 1) % 11));
        if i % 3 == 0 {
            edges.push((i, (i + 4) % 11));
        }
    }
    CsrGraph::from_edges("t", 12, &edges, None).unwrap().symmetrized()
}

#[test]
fn csr_and_edge_list_kernels_agree() {
    let _rng = rng();
    tch::manual_seed(0);
    let g = GraphTensors::new(&small_graph(), Device::Cpu, Kernel::Csr);
    let x = Tensor::randn([12, 5], (Kind::Double, Device::Cpu));
    for norm in [Norm::SymWithSelfLoops, Norm::Mean, Norm::Sum] {
        let a = g.adjacency(norm);
        let d =
            (a.propagate_with(&x, Kernel::Csr) - a.propagate_with(&x, Kernel::EdgeList)).abs().max().double_value(&[]);
        assert!(d < 1e-12, "{norm:?}: kernels differ by {d}");
    }
    // Symmetric normalisation of a symmetric graph is a symmetric operator.
    let a = g.adjacency(Norm::SymWithSelfLoops);
    let eye = Tensor::eye(12, (Kind::Double, Device::Cpu));
    let dense = a.propagate_with(&eye, Kernel::EdgeList);
    assert!((&dense - dense.tr()).abs().max().double_value(&[]) < 1e-12);
}

#[test]
fn propagation_gradients_match_finite_differences() {
    let _rng = rng();
    tch::manual_seed(1);
    let g = GraphTensors::new(&small_graph(), Device::Cpu, Kernel::Csr);
    for kernel in [Kernel::Csr, Kernel::EdgeList] {
        let a = g.adjacency(Norm::SymWithSelfLoops);
        let r = Tensor::randn([12, 3], (Kind::Double, Device::Cpu));
        let x = Tensor::randn([12, 3], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let f = |x: &Tensor| (a.propagate_with(x, kernel) * &r).sum(Kind::Double);
        f(&x).backward();
        let grad = x.grad();
        check_fd(&x, &grad, |x| f(x).double_value(&[]), &format!("propagate {kernel:?}"));
    }
}

/// The CSR kernel's backward multiplies by a transpose cached per graph: on a directed graph
/// (every norm a non-symmetric operator) its gradient equals the edge list's autograd gradient.
#[test]
fn csr_backward_uses_the_true_transpose() {
    let _rng = rng();
    tch::manual_seed(2);
    let directed = CsrGraph::from_edges(
        "d",
        6,
        &[(0, 1), (1, 2), (2, 0), (3, 1), (4, 3), (5, 4), (0, 5)],
        Some(&[1.0, 2.0, 0.5, 1.5, 1.0, 3.0, 0.25]),
    )
    .unwrap();
    for graph in [directed, small_graph()] {
        let g = GraphTensors::new(&graph, Device::Cpu, Kernel::Csr);
        for norm in [Norm::SymWithSelfLoops, Norm::Mean, Norm::Sum] {
            let a = g.adjacency(norm);
            let n = graph.num_nodes() as i64;
            let r = Tensor::randn([n, 4], (Kind::Double, Device::Cpu));
            let grad = |kernel| {
                let x = Tensor::ones([n, 4], (Kind::Double, Device::Cpu)).set_requires_grad(true);
                (a.propagate_with(&x, kernel) * &r).sum(Kind::Double).backward();
                x.grad()
            };
            let d = (grad(Kernel::Csr) - grad(Kernel::EdgeList)).abs().max().double_value(&[]);
            assert!(d < 1e-12, "{norm:?}: CSR and edge-list gradients differ by {d}");
        }
    }
}

/// Central differences on up to 12 entries of `param`, compared with `grad`.
fn check_fd(param: &Tensor, grad: &Tensor, f: impl Fn(&Tensor) -> f64, what: &str) {
    let h = 1e-6;
    let n = param.numel() as i64;
    let flat_grad = grad.reshape([-1]);
    for k in (0..n).step_by(((n / 12).max(1)) as usize).take(12) {
        let base = tch::no_grad(|| param.detach().copy());
        let plus = {
            let p = base.copy();
            let _ = p.reshape([-1]).get(k).fill_(base.reshape([-1]).double_value(&[k]) + h);
            tch::no_grad(|| f(&p))
        };
        let minus = {
            let p = base.copy();
            let _ = p.reshape([-1]).get(k).fill_(base.reshape([-1]).double_value(&[k]) - h);
            tch::no_grad(|| f(&p))
        };
        let fd = (plus - minus) / (2.0 * h);
        let ad = flat_grad.double_value(&[k]);
        assert!(
            (fd - ad).abs() <= 1e-5 * (1.0 + fd.abs()),
            "{what}: entry {k}: autograd {ad} vs finite difference {fd}"
        );
    }
}

fn small_dataset() -> Dataset {
    let g = small_graph();
    let labels = (0..12).map(|i| (i % 3) as i64).collect();
    let feats: Vec<f32> = (0..12 * 6).map(|i| ((i * 7 % 11) as f32) / 11.0).collect();
    Dataset::new("small", g, Features::dense(12, 6, feats), labels, vec![]).unwrap()
}

#[test]
fn every_model_kernels_agree_and_gradients_match() {
    let _rng = rng();
    let d = small_dataset();
    for kind in ModelKind::ALL {
        let mut cfg = ModelConfig::defaults(kind);
        cfg.hidden = 4;
        cfg.heads = 2;
        cfg.layers = match kind {
            ModelKind::Gcnii => 4,
            ModelKind::Appnp | ModelKind::Dgmlp => 3,
            _ => 2,
        };
        let mut outs = Vec::new();
        let mut first: Option<Model> = None;
        for kernel in [Kernel::Csr, Kernel::EdgeList] {
            let g = GraphTensors::new(&d.graph, Device::Cpu, kernel);
            let x = Input::Dense(Tensor::from_slice(&d.features.to_dense()).view([12, 6]).to_kind(Kind::Double));
            // Built from the f64 input: SGC and DGMLP precompute their propagated features here,
            // and an f32 precomputation would round differently under each kernel (~1e-8).
            let mut model = Model::new(&cfg, &g, &x, 3).unwrap();
            model.vs.double();
            // Same weights for both kernels (the RNG is global and tests run in parallel).
            if let Some(m) = &first {
                model.vs.copy(&m.vs).unwrap();
            }
            let out = model.forward(&x, false);
            assert_eq!(out.size(), vec![12, 3], "{kind:?}");
            outs.push(out.detach());
            if kernel == Kernel::EdgeList {
                continue;
            }
            let model = first.insert(model);
            let r = Tensor::randn([12, 3], (Kind::Double, Device::Cpu));
            for (name, p) in model.vs.variables() {
                let loss = (model.forward(&x, false) * &r).sum(Kind::Double);
                model.vs.trainable_variables().iter().for_each(|v| {
                    let mut g = v.grad();
                    if g.defined() {
                        let _ = g.zero_();
                    }
                });
                loss.backward();
                let grad = p.grad();
                assert!(grad.defined(), "{kind:?} {name}: no gradient");
                check_fd(
                    &p,
                    &grad,
                    |v| {
                        let mut target = p.shallow_clone();
                        let saved = tch::no_grad(|| p.copy());
                        tch::no_grad(|| target.copy_(v));
                        let y = (model.forward(&x, false) * &r).sum(Kind::Double).double_value(&[]);
                        tch::no_grad(|| target.copy_(&saved));
                        y
                    },
                    &format!("{kind:?} {name}"),
                );
            }
        }
        let diff = (&outs[0] - &outs[1]).abs().max().double_value(&[]);
        assert!(diff < 1e-10, "{kind:?}: kernels disagree by {diff}");
    }
}

/// The fused GCNII layer of the CSR kernel (one autograd node; with `recompute`, the support
/// rebuilt in backward) against the edge-list kernel's libtorch composition, in training mode
/// with dropout (the same mask: the generator is reseeded): outputs and the gradients of the
/// weight, the input and H⁰ agree to f32 rounding.
#[test]
fn fused_gcnii_layer_matches_the_composition() {
    let _rng = rng();
    let n = 40i64;
    let edges: Vec<(i64, i64)> = (0..n).flat_map(|i| [(i, (i + 1) % n), (i, (i * 7 + 3) % n)]).collect();
    let graph = CsrGraph::from_edges("g", n as usize, &edges, None).unwrap().symmetrized();
    let run = |kernel: Kernel, recompute: bool, train: bool| {
        let g = GraphTensors::new(&graph, Device::Cpu, kernel);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        tch::manual_seed(3);
        let adj = g.adjacency(Norm::SymWithSelfLoops);
        let conv = strata_nn::conv::Gcn2Conv::new(&vs.root(), 8, 0.1, 0.5, 2);
        let h = Tensor::randn([n, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let h0 = Tensor::randn([n, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let r = Tensor::randn([n, 8], (Kind::Float, Device::Cpu));
        tch::manual_seed(4);
        let out = conv.forward(&adj, &h, &conv.scaled_initial(&h0), 0.5, train, recompute);
        (out.relu() * &r).sum(Kind::Float).backward();
        [out.detach(), conv.weight.grad(), h.grad(), h0.grad()]
    };
    for train in [false, true] {
        let reference = run(Kernel::EdgeList, false, train);
        for recompute in [false, true] {
            let fused = run(Kernel::Csr, recompute, train);
            for (what, (a, b)) in
                ["output", "weight gradient", "input gradient", "H0 gradient"].iter().zip(fused.iter().zip(&reference))
            {
                let scale = b.abs().max().double_value(&[]).max(1e-3);
                let d = (a - b).abs().max().double_value(&[]);
                assert!(
                    d <= 1e-5 * scale,
                    "train {train}, recompute {recompute}: {what} differs by {d} (scale {scale})"
                );
            }
        }
    }
}
