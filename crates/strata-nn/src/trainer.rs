//! Full-batch node-classification training: Adam with (coupled) weight decay per parameter
//! group, dropout, early stopping on validation, seeded runs, per-epoch curves and timings.

use crate::config::ModelConfig;
use crate::error::{NnError, Result};
use crate::input::Input;
use crate::message_passing::{GraphTensors, Kernel};
use crate::metrics::accuracy;
use crate::model::Model;
use serde::Serialize;
use std::time::Instant;
use strata_graph::FeatureNorm;
use strata_graph::{Dataset, Split};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// A dataset moved to a device: graph operators, inputs and labels.
pub struct NodeTask {
    pub graph: GraphTensors,
    pub input: Input,
    pub labels: Vec<i64>,
    labels_t: Tensor,
    pub classes: i64,
    /// The feature normalisation applied (never `Auto`).
    pub feature_norm: FeatureNorm,
}

impl NodeTask {
    /// Prepares `dataset` on `device`. Directed graphs are symmetrised (the usual treatment of
    /// citation graphs), self loops are handled by the layers.
    pub fn new(dataset: &Dataset, device: Device, feature_norm: FeatureNorm, kernel: Kernel) -> NodeTask {
        let g = if dataset.graph.is_symmetric() { dataset.graph.clone() } else { dataset.graph.symmetrized() };
        let feature_norm = feature_norm.resolve(&dataset.features);
        NodeTask {
            graph: GraphTensors::new(&g, device, kernel),
            input: Input::from_features(&dataset.features, device, feature_norm),
            feature_norm,
            labels_t: Tensor::from_slice(&dataset.labels).to(device),
            labels: dataset.labels.clone(),
            classes: dataset.num_classes as i64,
        }
    }
}

/// One epoch's numbers.
#[derive(Clone, Debug, Serialize)]
pub struct EpochStats {
    /// 0-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
    pub test_accuracy: f64,
    /// Wall time of the training step (forward, backward, optimizer), milliseconds.
    pub step_ms: f64,
}

/// The result of one seeded run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub seed: u64,
    pub epochs_run: usize,
    /// The epoch whose weights were kept, 0-based.
    pub best_epoch: usize,
    pub val_accuracy: f64,
    /// Test accuracy of the weights with the best validation result.
    pub test_accuracy: f64,
    pub curve: Vec<EpochStats>,
}

/// Trains a fresh model on `split` and restores the weights of its best validation epoch
/// (highest accuracy; ties go to the lower validation loss); validates every `val_every`
/// epochs (and at the last) and stops after `patience` validations without a better
/// `stop_on` score (lower loss, or higher accuracy). Without validation nodes it
/// trains for all epochs and keeps the last weights. `on_epoch` sees every epoch.
// Long on purpose: one training loop whose step, validation, best-weights keeping and early stopping share the same state from epoch to epoch.
pub fn train_node_classifier(
    task: &NodeTask,
    config: &ModelConfig,
    split: &Split,
    seed: u64,
    mut on_epoch: impl FnMut(&EpochStats),
) -> Result<(Model, RunReport)> {
    tch::manual_seed(seed as i64);
    let model = Model::new(config, &task.graph, &task.input, task.classes)?;
    let mut opt = nn::Adam::default().build(&model.vs, config.lr)?;
    opt.set_weight_decay_group(0, config.weight_decay);
    if model.num_groups() > 1 {
        opt.set_weight_decay_group(1, config.weight_decay_secondary);
    }
    let device = task.graph.device;
    let idx = |v: &[usize]| Tensor::from_slice(&v.iter().map(|&i| i as i64).collect::<Vec<_>>()).to(device);
    // Unlabelled nodes never enter a loss.
    let labelled = |v: &[usize]| v.iter().copied().filter(|&i| task.labels[i] >= 0).collect::<Vec<_>>();
    let (train_ids, val_ids) = (labelled(&split.train), labelled(&split.val));
    let (train_idx, val_idx) = (idx(&train_ids), idx(&val_ids));
    let has_val = !val_ids.is_empty();
    let train_y = task.labels_t.index_select(0, &train_idx);
    let val_y = task.labels_t.index_select(0, &val_idx);

    let mut curve = Vec::with_capacity(config.epochs);
    let mut best: Option<(f64, f64, usize, Vec<Tensor>)> = None; // (val acc, val loss, epoch, weights)
    let mut stopper = match config.stop_on {
        crate::StopOn::ValLoss => Patience::minimising(config.patience),
        crate::StopOn::ValAccuracy => Patience::maximising(config.patience),
    };
    let vars = model.vs.trainable_variables();
    for epoch in 0..config.epochs {
        let t0 = Instant::now();
        let logits = model.forward(&task.input, true);
        let loss = logits.index_select(0, &train_idx).cross_entropy_for_logits(&train_y);
        crate::memory::sample();
        opt.zero_grad();
        loss.backward();
        opt.step();
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let step_ms = t0.elapsed().as_secs_f64() * 1e3;
        let train_loss = loss.double_value(&[]);
        if !train_loss.is_finite() {
            return Err(NnError::Diverged { epoch: epoch + 1, loss: train_loss });
        }
        if (epoch + 1) % config.val_every.max(1) != 0 && epoch + 1 != config.epochs {
            let nan = f64::NAN;
            let stats = EpochStats {
                epoch,
                train_loss,
                val_loss: nan,
                train_accuracy: nan,
                val_accuracy: nan,
                test_accuracy: nan,
                step_ms,
            };
            on_epoch(&stats);
            curve.push(stats);
            continue;
        }
        let (pred, val_loss) = tch::no_grad(|| {
            let logits = model.forward(&task.input, false);
            let vl = if has_val {
                logits.index_select(0, &val_idx).cross_entropy_for_logits(&val_y).double_value(&[])
            } else {
                f64::NAN
            };
            (Vec::<i64>::try_from(logits.argmax(-1, false).to(Device::Cpu).to_kind(Kind::Int64)).unwrap(), vl)
        });
        let stats = EpochStats {
            epoch,
            train_loss,
            val_loss,
            train_accuracy: accuracy(&pred, &task.labels, &train_ids),
            val_accuracy: if has_val { accuracy(&pred, &task.labels, &val_ids) } else { f64::NAN },
            test_accuracy: accuracy(&pred, &task.labels, &split.test),
            step_ms,
        };
        on_epoch(&stats);
        let improved = !has_val
            || best.as_ref().is_none_or(|(acc, vl, _, _)| {
                stats.val_accuracy > *acc || (stats.val_accuracy == *acc && val_loss < *vl)
            });
        if improved {
            let snapshot = tch::no_grad(|| vars.iter().map(|v| v.copy()).collect());
            best = Some((stats.val_accuracy, val_loss, epoch, snapshot));
        }
        // Patience counts validations without a better `stop_on` score; the weights kept are
        // still those of the best accuracy.
        let score = match config.stop_on {
            crate::StopOn::ValLoss => val_loss,
            crate::StopOn::ValAccuracy => stats.val_accuracy,
        };
        curve.push(stats);
        if has_val && config.patience > 0 && stopper.record(score) == Progress::Stop {
            break;
        }
    }
    let (val_accuracy, _, best_epoch, weights) = best.expect("at least one epoch");
    tch::no_grad(|| {
        for (mut v, w) in vars.into_iter().zip(weights) {
            v.copy_(&w);
        }
    });
    let pred = tch::no_grad(|| {
        Vec::<i64>::try_from(model.forward(&task.input, false).argmax(-1, false).to(Device::Cpu)).unwrap()
    });
    let report = RunReport {
        seed,
        epochs_run: curve.len(),
        best_epoch,
        val_accuracy,
        test_accuracy: accuracy(&pred, &task.labels, &split.test),
        curve,
    };
    Ok((model, report))
}

/// What [`Patience::record`] concluded about the latest score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A new best: keep these weights.
    Improved,
    /// Not better, keep going.
    Waiting,
    /// `patience` scores in a row without improvement: stop.
    Stop,
}

/// Early stopping on a score that should go up (accuracy, Hits@K) or down (a loss).
/// `patience` = 0 never stops.
#[derive(Clone, Debug)]
pub struct Patience {
    best: f64,
    since: usize,
    patience: usize,
    maximise: bool,
}

impl Patience {
    pub fn maximising(patience: usize) -> Patience {
        Patience { best: f64::NEG_INFINITY, since: 0, patience, maximise: true }
    }
    pub fn minimising(patience: usize) -> Patience {
        Patience { best: f64::INFINITY, since: 0, patience, maximise: false }
    }
    pub fn best(&self) -> f64 {
        self.best
    }
    pub fn record(&mut self, score: f64) -> Progress {
        if (self.maximise && score > self.best) || (!self.maximise && score < self.best) {
            self.best = score;
            self.since = 0;
            return Progress::Improved;
        }
        self.since += 1;
        if self.patience > 0 && self.since >= self.patience {
            Progress::Stop
        } else {
            Progress::Waiting
        }
    }
}

#[cfg(test)]
mod patience_tests {
    use super::*;

    #[test]
    fn stops_after_patience_scores_without_improvement() {
        let mut p = Patience::maximising(2);
        assert_eq!(p.record(0.5), Progress::Improved);
        assert_eq!(p.record(0.4), Progress::Waiting);
        assert_eq!(p.record(0.5), Progress::Stop);
        let mut q = Patience::minimising(0);
        assert_eq!(q.record(1.0), Progress::Improved);
        assert!((0..100).all(|_| q.record(2.0) == Progress::Waiting));
        assert_eq!(q.best(), 1.0);
    }
}

#[cfg(test)]
mod divergence_tests {
    use super::*;

    /// A loss that is not finite ends training with an error naming the epoch, not a report of
    /// chance accuracy.
    #[test]
    fn a_nonfinite_loss_is_an_error() {
        let mut d = strata_graph::load("karate", None).unwrap();
        let (n, f) = (d.num_nodes(), d.features.dim());
        d.features = strata_graph::Features::dense(n, f, vec![f32::INFINITY; n * f]);
        let cfg = ModelConfig { normalize_features: FeatureNorm::None, ..ModelConfig::defaults(crate::ModelKind::Gcn) };
        let task = NodeTask::new(&d, tch::Device::Cpu, FeatureNorm::None, Kernel::EdgeList);
        let e = train_node_classifier(&task, &cfg, &d.splits[0], 0, |_| {}).map(|_| ()).unwrap_err();
        assert!(matches!(e, NnError::Diverged { epoch: 1, .. }), "{e}");
        assert!(e.to_string().contains("training diverged") && e.to_string().contains("--lr"), "{e}");
    }
}
