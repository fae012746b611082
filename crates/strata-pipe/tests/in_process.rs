//! Pipeline semantics with every stage in one process: a deep GCNII trains on Cora to the
//! accuracy of ordinary single-process training.

use strata_graph::registry::locate_or_skip;
use strata_pipe::{chunk_order, evaluate_in_process, plan, train_epoch_in_process, PipelineConfig, Stage};

fn pipeline_accuracy(cfg: &PipelineConfig) -> (f64, f64) {
    let d = strata_graph::load("cora", None).unwrap();
    let p = plan(&d, &d.splits[0], cfg);
    let mut stages: Vec<Stage> = p.specs.iter().map(|s| Stage::new(s.clone(), &strata_pipe::StageData::whole(&p.dataset), tch::Device::Cpu).unwrap()).collect();
    let (mut best_val, mut test_at_best) = (-1.0, 0.0);
    for epoch in 0..cfg.epochs as u64 {
        let order = chunk_order(stages[0].num_chunks(), cfg.seed, epoch, cfg.shuffle);
        let loss = train_epoch_in_process(&mut stages, epoch, &order);
        let (_, val, test) = evaluate_in_process(&mut stages);
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
