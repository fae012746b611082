//! The per-epoch schedule shared by every stage, and an in-process driver that runs it with
//! all stages in one process (the reference the distributed run must match).

use crate::boundary::Boundary;
use crate::collective::Alone;
use crate::stage::Stage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// This epoch's chunk order: a seeded shuffle (trick 1), identical on every stage because it
/// depends only on (seed, epoch); the identity when shuffling is off.
pub fn chunk_order(chunks: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..chunks).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    }
    order
}

/// One epoch's numbers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochReport {
    pub epoch: u64,
    pub loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
    pub test_accuracy: f64,
}

/// Runs one training epoch over all stages in this process: the forward wavefront in `order`,
/// the backward wavefront in reverse, one optimizer step per stage.
pub fn train_epoch_in_process(stages: &mut [Stage], epoch: u64, order: &[usize]) -> f64 {
    stages.iter_mut().for_each(|s| s.begin_epoch(epoch, order));
    for &c in order {
        let mut b: Option<Boundary> = None;
        for s in stages.iter_mut() {
            let dtype = s.spec.config.history_dtype;
            b = Some(s.forward(Some(c), b.map(|b| b.as_sent(dtype))));
        }
    }
    for &c in order.iter().rev() {
        let mut g: Option<Boundary> = None;
        for s in stages.iter_mut().rev() {
            g = s.backward(c, g);
        }
    }
    for s in stages.iter_mut() {
        s.end_epoch(&mut Alone).expect("a single process exchanges nothing");
    }
    stages.last().unwrap().last_loss
}

/// Exact full-graph inference through all stages: (train, val, test) accuracy.
pub fn evaluate_in_process(stages: &mut [Stage]) -> (f64, f64, f64) {
    let mut b: Option<Boundary> = None;
    for s in stages.iter_mut() {
        let dtype = s.spec.config.history_dtype;
        b = Some(s.forward(None, b.map(|b| b.as_sent(dtype))));
    }
    let last = stages.last().unwrap();
    let [tr, va, te] = last.evaluate(&b.unwrap().x);
    let spec = &last.spec;
    let frac = |c: u64, n: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
    (frac(tr, spec.train.len()), frac(va, spec.val.len()), frac(te, spec.test.len()))
}
