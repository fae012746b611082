//! SF with a top-down signal, §3.3 of the paper (reference
//! `forward_learning/nodeclass/gnn_top2loss_sf.py` and `gnn_top2input_sf.py`). All layers are
//! updated at every time step, each still by its own optimiser on its own loss; what flows down
//! is the previous step's states of the layers above, never a gradient.
//!
//! - Top-to-loss (Eq. 8, Alg. 3): layer j's loss is the SF loss of
//!   `e_j = mean(o_j, s_{j+2}, …, s_L)`, its output averaged with the (row-normalised) states
//!   above it; all layers step synchronously, gradients clipped to norm 1.
//! - Top-to-input (Eq. 7): layer j sees `[‖s_j‖ ‖ ‖s_{j+2}‖]`, the state below and the state
//!   above (above the last layer: the label context, one-hot for training and virtual nodes,
//!   uniform elsewhere); even layers step first, then odd layers on their fresh outputs. Inference
//!   runs the same schedule for `test_time_steps` steps and sums the class distributions of every
//!   layer at steps 2..T−1.
//!
//! Both start from one bottom-up pass and early-stop the whole stack on validation accuracy.

use crate::config::ForwardConfig;
use crate::layer::{l2_rows, sparse_if_worth, Block, Fit};
use crate::report::NodeRun;
use crate::sf::SfContext;
use strata_graph::{Dataset, Split};
use strata_nn::{Patience, Progress};
use tch::{Device, Tensor};

/// Runs `step` once per time step, validating every `val_every` steps; keeps the best weights
/// of all blocks.
fn fit_stack(
    blocks: &mut [Block],
    cfg: &ForwardConfig,
    mut step: impl FnMut(&mut [Block]),
    mut validate: impl FnMut(&[Block]) -> f64,
) -> Fit {
    let mut stopper = Patience::maximising(cfg.patience);
    let snapshot = |blocks: &[Block]| blocks.iter().map(|b| strata_nn::checkpoint::snapshot(&b.vs)).collect::<Vec<_>>();
    let mut saved = snapshot(blocks);
    let mut fit = Fit::default();
    for t in 1..=cfg.epochs {
        fit.epochs = t;
        let t0 = std::time::Instant::now();
        step(blocks);
        fit.step_seconds += t0.elapsed().as_secs_f64();
        if t % cfg.val_every == 0 {
            match stopper.record(tch::no_grad(|| validate(blocks))) {
                Progress::Improved => saved = snapshot(blocks),
                Progress::Stop => break,
                Progress::Waiting => {}
            }
        }
    }
    for (b, s) in blocks.iter().zip(&saved) {
        strata_nn::checkpoint::restore(&b.vs, s);
    }
    fit
}

/// Test accuracy of the summed distributions of layers 1..=ℓ, for each ℓ; and validation accuracy.
fn finish(ctx: &SfContext, per_layer: impl Fn(&Tensor) -> Vec<Tensor>, fit: Fit) -> NodeRun {
    let (val, test) = tch::no_grad(|| (per_layer(&ctx.val), per_layer(&ctx.test)));
    let mut run = NodeRun::default();
    let mut sum = ctx.zeros(&ctx.test);
    for p in &test {
        sum += p;
        run.per_layer_accuracy.push(ctx.accuracy(&sum, &ctx.test));
    }
    run.val_accuracy = ctx.accuracy(&val.iter().sum::<Tensor>(), &ctx.val);
    run.epochs = vec![fit.epochs];
    run.epoch_ms = fit.step_ms();
    run
}

fn blocks(cfg: &ForwardConfig, ctx: &SfContext, fan_in: impl Fn(usize) -> i64) -> strata_nn::Result<Vec<Block>> {
    (0..cfg.layers)
        .map(|j| {
            Block::new(cfg.conv, &ctx.graph, fan_in(j), cfg.hidden, cfg.lr, cfg.weight_decay, &format!("layer{j}"))
        })
        .collect()
}

pub(crate) fn train_top_to_loss(
    data: &Dataset,
    split: &Split,
    cfg: &ForwardConfig,
    device: Device,
) -> strata_nn::Result<NodeRun> {
    let ctx = SfContext::new(data, split, device)?;
    let (tau, layers) = (cfg.temperature, cfg.layers);
    let x = sparse_if_worth(l2_rows(&ctx.x), cfg.conv != strata_nn::ModelKind::Sage);
    let mut blocks = blocks(cfg, &ctx, |j| if j == 0 { ctx.x.size()[1] } else { cfg.hidden })?;
    // States s_0 = ‖x‖, s_{j+1} = ‖ReLU(conv_j(s_j))‖ from one bottom-up pass.
    let bottom_up = |blocks: &[Block]| {
        let mut s = vec![x.shallow_clone()];
        for b in blocks {
            let next = l2_rows(&b.forward(s.last().unwrap()));
            s.push(next);
        }
        s
    };
    // e_j = mean(o_j, s_{j+2}, …, s_L).
    let mix = |o: Tensor, s: &[Tensor], j: usize| {
        let mut parts = vec![o];
        parts.extend(s[j + 2..=layers].iter().map(|t| t.detach()));
        Tensor::stack(&parts, 0).mean_dim(0, false, None)
    };
    let mut states = tch::no_grad(|| bottom_up(&blocks));
    let fit = fit_stack(
        &mut blocks,
        cfg,
        |blocks| {
            let mut next = states.iter().map(Tensor::shallow_clone).collect::<Vec<_>>();
            for (j, b) in blocks.iter_mut().enumerate() {
                let o = b.forward(&states[j]);
                let out = o.detach();
                b.step(&ctx.loss(&mix(o, &states, j), tau), Some(cfg.grad_clip));
                next[j + 1] = l2_rows(&out);
            }
            states = next;
        },
        |blocks| {
            let s = bottom_up(blocks);
            let p: Tensor =
                blocks.iter().enumerate().map(|(j, b)| ctx.probs(&mix(b.forward(&s[j]), &s, j), &ctx.val, tau)).sum();
            ctx.accuracy(&p, &ctx.val)
        },
    );
    Ok(finish(
        &ctx,
        |nodes| {
            let s = bottom_up(&blocks);
            blocks.iter().enumerate().map(|(j, b)| ctx.probs(&mix(b.forward(&s[j]), &s, j), nodes, tau)).collect()
        },
        fit,
    ))
}

// Long on purpose: the reference's training loop for this variant (Eq. 7) kept whole, so it reads against the paper's algorithm.
pub(crate) fn train_top_to_input(
    data: &Dataset,
    split: &Split,
    cfg: &ForwardConfig,
    device: Device,
) -> strata_nn::Result<NodeRun> {
    let ctx = SfContext::new(data, split, device)?;
    let (tau, layers, c) = (cfg.temperature, cfg.layers, ctx.classes);
    let n_total = ctx.x.size()[0];
    // Label context above the last layer: one-hot for training and virtual nodes, 1/C elsewhere.
    let y_ctx = {
        let n = data.num_nodes();
        let mut onehot: Vec<(usize, usize)> = split.train.iter().map(|&i| (i, data.labels[i] as usize)).collect();
        onehot.extend((0..c as usize).map(|k| (n + k, k)));
        let mut rows = vec![1.0 / c as f32; n_total as usize * c as usize];
        for (i, k) in onehot {
            rows[i * c as usize..(i + 1) * c as usize].fill(0.0);
            rows[i * c as usize + k] = 1.0;
        }
        Tensor::from_slice(&rows).view([n_total, c]).to(device)
    };
    let x = sparse_if_worth(l2_rows(&ctx.x), cfg.conv != strata_nn::ModelKind::Sage);
    let mut blocks = blocks(cfg, &ctx, |j| {
        (if j == 0 { ctx.x.size()[1] } else { cfg.hidden }) + if j + 1 == layers { c } else { cfg.hidden }
    })?;
    // Layer j's input: its normalised state below and above (s_0 = x is normalised already).
    let forward = |b: &Block, below: &Tensor, above: &Tensor, j: usize| {
        let below = if j == 0 { below.shallow_clone() } else { l2_rows(below) };
        b.forward_parts(&[&below, &l2_rows(above).detach()])
    };
    // s = [x, s_1..s_L, Y]: one bottom-up pass with zeros from above.
    let bottom_up = |blocks: &[Block]| {
        let mut s = vec![x.shallow_clone()];
        for (j, b) in blocks.iter().enumerate() {
            let width = if j + 1 == layers { c } else { cfg.hidden };
            let zeros = Tensor::zeros([n_total, width], (tch::Kind::Float, device));
            let next = forward(b, s.last().unwrap(), &zeros, j);
            s.push(next);
        }
        s.push(y_ctx.shallow_clone());
        s
    };
    // One alternating sweep: even layers, then odd ones on the fresh even outputs. `layer(j,
    // below, above)` runs (and, in training, steps) layer j and returns its detached output.
    let sweep = |s: &[Tensor], layer: &mut dyn FnMut(usize, &Tensor, &Tensor) -> Tensor| {
        let mut next: Vec<Option<Tensor>> = (0..layers + 2).map(|_| None).collect();
        next[0] = Some(x.shallow_clone());
        for parity in [0, 1] {
            for j in (parity..layers).step_by(2) {
                let pick = |k: usize| next[k].as_ref().unwrap_or(&s[k]).detach();
                let o = layer(j, &pick(j), &pick(j + 2));
                next[j + 1] = Some(o);
            }
        }
        next[layers + 1] = Some(y_ctx.shallow_clone());
        next.into_iter().map(|t| t.expect("every state set")).collect::<Vec<_>>()
    };
    // Inference: `test_time_steps` sweeps, summing every layer's distribution at steps 2..T−1.
    let infer = |blocks: &[Block], nodes: &Tensor| -> Vec<Tensor> {
        let mut s = bottom_up(blocks);
        let mut per_layer: Vec<Tensor> = (0..layers).map(|_| ctx.zeros(nodes)).collect();
        for t in 0..cfg.test_time_steps {
            let keep = (2..cfg.test_time_steps).contains(&t);
            s = sweep(&s, &mut |j, below, above| {
                let o = forward(&blocks[j], below, above, j);
                if keep {
                    per_layer[j] += ctx.probs(&o, nodes, tau);
                }
                o
            });
        }
        per_layer
    };
    let mut states = tch::no_grad(|| bottom_up(&blocks));
    let fit = fit_stack(
        &mut blocks,
        cfg,
        |blocks| {
            states = sweep(&states, &mut |j, below, above| {
                let o = forward(&blocks[j], below, above, j);
                blocks[j].step(&ctx.loss(&o, tau), None);
                o.detach()
            })
        },
        |blocks| ctx.accuracy(&infer(blocks, &ctx.val).iter().sum::<Tensor>(), &ctx.val),
    );
    Ok(finish(&ctx, |nodes| infer(&blocks, nodes), fit))
}
