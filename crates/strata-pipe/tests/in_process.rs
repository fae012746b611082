//! Pipeline semantics with every stage in one process: a deep GCNII trains on Cora to the
//! accuracy of ordinary single-process training.

use strata_graph::registry::locate_or_skip;
use strata_pipe::{InProcess, PipelineConfig, PipelinePlan};

/// libtorch's generator is process-wide and the stages reseed it per chunk: tests in this file
/// run one at a time, or they would draw each other's dropout masks.
static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pipeline_accuracy(cfg: &PipelineConfig) -> (f64, f64) {
    let _g = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let d = strata_graph::load("cora", None).unwrap();
    let p = PipelinePlan::new(&d, &d.splits[0], cfg);
    let mut run = InProcess::new(&p, tch::Device::Cpu).unwrap();
    let (mut best_val, mut test_at_best) = (-1.0, 0.0);
    for epoch in 0..cfg.epochs as u64 {
        let loss = run.train_epoch(epoch).unwrap().loss;
        let [_, val, test] = run.evaluate(epoch).unwrap();
        if val > best_val {
            best_val = val;
            test_at_best = test;
        }
        if epoch % 50 == 0 {
            eprintln!("epoch {epoch}: loss {loss:.3} val {val:.3} test {test:.3}");
        }
    }
    (best_val, test_at_best)
}

#[test]
fn gcnii_pipeline_learns_cora() {
    if locate_or_skip("planetoid/cora.npz").is_none() {
        return;
    }
    let mut cfg = PipelineConfig::gcnii(8, 4);
    cfg.epochs = 120;
    let (val, test) = pipeline_accuracy(&cfg);
    eprintln!("in-process pipeline GCNII-8, P=4, K=16: val {val:.3} test {test:.3}");
    assert!(test > 0.75, "test accuracy {test}");
}

/// An in-process run of `cfg` on a generated graph (1,200 nodes, 4 planted classes).
fn on_planted_graph(cfg: &PipelineConfig) -> InProcess {
    let d = strata_graph::planted::planted_partition(&strata_graph::planted::PlantedSpec {
        nodes: 1200,
        degree: 8.0,
        features: 16,
        classes: 4,
        ..Default::default()
    })
    .unwrap();
    let p = PipelinePlan::new(&d, &d.splits[0], cfg);
    InProcess::new(&p, tch::Device::Cpu).unwrap()
}

/// Losses of the first epochs of an in-process GCNII-4 pipeline (P = 2, K = 8) on a generated
/// graph, and the checkpoint keys of its first stage.
fn first_losses(cfg: &PipelineConfig, epochs: u64) -> (Vec<f64>, Vec<String>) {
    let _g = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = on_planted_graph(cfg);
    let losses = (0..epochs).map(|epoch| run.train_epoch(epoch).unwrap().loss).collect();
    let keys = run.engines()[0].state().into_iter().map(|(k, _)| k).filter(|k| k.starts_with("history.")).collect();
    (losses, keys)
}

#[test]
fn trick_2_off_carries_stale_gradients_into_the_next_epoch() {
    let mut base = PipelineConfig::gcnii(4, 2);
    base.chunks = 8;
    base.hidden = 16;
    base.grad_scale = 1.0;
    base.refresh = 1;
    let mut carry = base.clone();
    carry.carry_stale_grads = true;
    let (dropped, dropped_keys) = first_losses(&base, 6);
    let (carried, carried_keys) = first_losses(&carry, 6);
    eprintln!("grad scale 1, stale gradients dropped: {dropped:?}\ntrick 2 off as GNNPipe ran it: {carried:?}");
    // Epoch 0's step and epoch 1's forward see the same gradients: what reaches stale rows is
    // injected only when their chunk's backward runs again, in epoch 1.
    assert_eq!(dropped[..2], carried[..2], "the first two losses must agree bit for bit");
    assert!(
        carried[2..].iter().zip(&dropped[2..]).any(|(a, b)| a != b),
        "carried gradients changed nothing: {carried:?}"
    );
    assert!(carried[5] < carried[0], "trick-2-off training does not descend: {carried:?}");
    // An exact resume needs the carried gradients: they are checkpointed, and only then.
    assert!(
        carried_keys.iter().any(|k| k.ends_with(".grad")) && !dropped_keys.iter().any(|k| k.ends_with(".grad")),
        "{carried_keys:?} / {dropped_keys:?}"
    );
}

/// Each epoch's loss and train/val/test accuracies, and every stage's historical rows at the end.
type Summary = (Vec<f64>, Vec<[f64; 3]>, Vec<(String, tch::Tensor)>);

/// [`Summary`] of `epochs` epochs of an in-process pipeline on a generated graph.
fn run_summary(cfg: &PipelineConfig, epochs: u64) -> Summary {
    let _g = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = on_planted_graph(cfg);
    let (mut losses, mut accs) = (Vec::new(), Vec::new());
    for epoch in 0..epochs {
        losses.push(run.train_epoch(epoch).unwrap().loss);
        accs.push(run.evaluate(epoch).unwrap());
    }
    let rows = run.engines().iter().flat_map(|e| e.state()).filter(|(k, _)| k.starts_with("history.")).collect();
    (losses, accs, rows)
}

/// Keeping each chunk's activations and recomputing them compute the same training: the same
/// losses and accuracies (to f32 rounding) and the same historical rows after the epochs, on
/// pipelines of 2 and 4 stages, for every model (GraphSAGE's operator is not symmetric, GAT
/// reads its neighbours edge by edge), with trick 2 on and off, and with the snapshot
/// refreshed every epoch and every third.
#[test]
fn recompute_never_and_always_train_alike() {
    use strata_pipe::{PipeModel, Recompute};
    for (model, stages, carry, refresh) in [
        (PipeModel::Gcnii, 2, false, 1),
        (PipeModel::Gcnii, 4, false, 3),
        (PipeModel::Gcnii, 2, true, 1),
        (PipeModel::Gcn, 4, false, 1),
        (PipeModel::Sage, 2, false, 3),
        (PipeModel::Sage, 2, true, 1),
        (PipeModel::Gat, 2, false, 1),
    ] {
        let mut cfg = PipelineConfig::gcnii(6, stages);
        cfg.model = model;
        cfg.hidden = 16;
        cfg.refresh = refresh;
        cfg.carry_stale_grads = carry;
        if carry {
            cfg.grad_scale = 1.0;
        }
        let what = format!("{model:?}, {stages} stages, carry {carry}, refresh {refresh}");
        cfg.recompute = Recompute::Never;
        let (kept_loss, kept_acc, kept_rows) = run_summary(&cfg, 4);
        cfg.recompute = Recompute::Always;
        let (re_loss, re_acc, re_rows) = run_summary(&cfg, 4);
        eprintln!("{what}: kept {kept_loss:?}, recomputed {re_loss:?}");
        for (a, b) in kept_loss.iter().zip(&re_loss) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{what}: losses {kept_loss:?} vs {re_loss:?}");
        }
        assert_eq!(kept_acc, re_acc, "{what}: accuracies");
        assert_eq!(kept_rows.len(), re_rows.len());
        for ((k, a), (_, b)) in kept_rows.iter().zip(&re_rows) {
            let diff = (a - b).abs().max().double_value(&[]);
            let scale = a.abs().max().double_value(&[]).max(1.0);
            assert!(diff <= 1e-4 * scale, "{what}: {k} differs by {diff}");
        }
    }
}
