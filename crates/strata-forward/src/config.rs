//! What a ForwardGNN run is told: the trainer variant and its settings.

use serde::Serialize;
use strata_nn::{ModelKind, NnError};

/// A node-classification trainer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Trainer {
    Bp,
    Sf,
    FfLa,
    FfVn,
    SfTopdownLoss,
    SfTopdownInput,
}

impl Trainer {
    pub const ALL: [Trainer; 6] =
        [Trainer::Bp, Trainer::Sf, Trainer::FfLa, Trainer::FfVn, Trainer::SfTopdownLoss, Trainer::SfTopdownInput];
    pub fn name(self) -> &'static str {
        match self {
            Trainer::Bp => "bp",
            Trainer::Sf => "sf",
            Trainer::FfLa => "ff-la",
            Trainer::FfVn => "ff-vn",
            Trainer::SfTopdownLoss => "sf-topdown-loss",
            Trainer::SfTopdownInput => "sf-topdown-input",
        }
    }
}

impl std::str::FromStr for Trainer {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Trainer, NnError> {
        Trainer::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            NnError::Config(format!(
                "unknown trainer `{s}`: expected one of {}",
                Trainer::ALL.map(Trainer::name).join(", ")
            ))
        })
    }
}

/// Settings shared by the ForwardGNN trainers (the reference scripts' values by default).
#[derive(Clone, Debug, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ForwardConfig {
    /// gcn, sage or gat.
    pub conv: ModelKind,
    pub layers: usize,
    pub hidden: i64,
    pub lr: f64,
    pub weight_decay: f64,
    /// Per layer for the greedy trainers; time steps for the top-down ones.
    pub epochs: usize,
    pub val_every: usize,
    /// In validations.
    pub patience: usize,
    /// τ of the SF logits.
    pub temperature: f64,
    /// θ of the FF goodness `Σ y² − θ`.
    pub theta: f64,
    /// Inference iterations of `sf-topdown-input` (its predictions average steps 2..T−1).
    pub test_time_steps: usize,
    /// Gradient-norm clip of `sf-topdown-loss`.
    pub grad_clip: f64,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            conv: ModelKind::Gcn,
            layers: 4,
            hidden: 128,
            lr: 1e-3,
            weight_decay: 5e-4,
            epochs: 1000,
            val_every: 2,
            patience: 100,
            temperature: 1.0,
            theta: 2.0,
            test_time_steps: 10,
            grad_clip: 1.0,
        }
    }
}

impl ForwardConfig {
    pub fn validate(&self) -> strata_nn::Result<()> {
        if !matches!(self.conv, ModelKind::Gcn | ModelKind::Sage | ModelKind::Gat) {
            return Err(NnError::Config(format!("ForwardGNN layers are gcn, sage or gat, not {}", self.conv.name())));
        }
        if self.layers == 0 || self.hidden <= 0 || self.epochs == 0 || self.val_every == 0 {
            return Err(NnError::Config("layers, hidden, epochs and val_every must be positive".into()));
        }
        if self.test_time_steps < 3 {
            return Err(NnError::Config(format!(
                "test_time_steps {}: at least 3 (predictions average steps 2..T−1)",
                self.test_time_steps
            )));
        }
        Ok(())
    }
}
