//! What a ForwardGNN node-classification run measured.

use crate::config::Trainer;
use crate::layer;
use serde::Serialize;

/// What a trainer measured, layer by layer (greedy trainers) or for the whole stack.
#[derive(Default)]
pub(crate) struct NodeRun {
    pub(crate) per_layer_accuracy: Vec<f64>,
    pub(crate) val_accuracy: f64,
    pub(crate) epochs: Vec<usize>,
    /// Σ over layers of one training step of that layer.
    pub(crate) epoch_ms: f64,
}

impl NodeRun {
    /// Layer done: its fit, and the validation/test accuracy of the layers so far.
    pub(crate) fn layer_done(&mut self, fit: layer::Fit, val: f64, test: f64) {
        self.epochs.push(fit.epochs);
        self.epoch_ms += fit.step_ms();
        self.val_accuracy = val;
        self.per_layer_accuracy.push(test);
    }
}

/// One node-classification run.
#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    pub trainer: Trainer,
    pub seed: u64,
    /// Test accuracy of the prediction from layers 1..=ℓ, for each ℓ (backprop has one readout:
    /// the last layer's).
    pub per_layer_accuracy: Vec<f64>,
    pub val_accuracy: f64,
    pub test_accuracy: f64,
    /// Epochs each layer trained (greedy trainers), or of the whole model.
    pub epochs: Vec<usize>,
    /// Time of one training step of every layer: for the greedy trainers the sum of each
    /// layer's mean step time, for backprop and the top-down trainers one step of the stack.
    pub epoch_ms: f64,
    pub train_seconds: f64,
    /// Peak memory above what was live at the start (see [`strata_nn::memory`]).
    pub peak_memory_bytes: u64,
    pub memory_method: &'static str,
}
