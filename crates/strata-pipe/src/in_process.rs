//! Every worker of a run in one process and one thread: the same engines, schedules and
//! interpreter as the distributed run, over in-process queues ([`LocalNet`]). The workers take
//! turns — each runs until it must wait for a tensor another has not sent yet — so libtorch's
//! process-wide generator sees the same seeds in the same order as in separate processes, and
//! every mode (pipeline, hybrid, graph-parallel, forward-only) runs in a test without a network.

use crate::config::{Mode, PipeTrainer, StageSpec};
use crate::error::PipeError;
use crate::forward_stage::ForwardStage;
use crate::graph_way::GraphWay;
use crate::interpreter::{Interpreter, Outcome, Progress};
use crate::plan::PipelinePlan;
use crate::schedule::chunk_order;
use crate::stage::Stage;
use crate::stage_core::Engine;
use crate::stage_data::StageData;
use crate::transport::{LocalLink, LocalNet};
use tch::Device;

/// The engine a worker with `spec` runs: a forward-only stage (`--trainer sf`), a
/// graph-parallel way (graph mode) or a pipeline stage (pipeline and hybrid modes).
pub fn build_engine(spec: StageSpec, data: &StageData, device: Device) -> Result<Box<dyn Engine>, PipeError> {
    Ok(if spec.config.trainer == PipeTrainer::Sf {
        Box::new(ForwardStage::new(spec, data, device)?)
    } else if spec.config.mode == Mode::Graph {
        Box::new(GraphWay::new(spec, data, device)?)
    } else {
        Box::new(Stage::new(spec, data, device)?)
    })
}

/// One epoch of every worker, as the launcher adds it up.
#[derive(Clone, Debug)]
pub struct LocalEpoch {
    /// The mean training loss (the workers' shares summed).
    pub loss: f64,
    /// Train / val / test accuracy (an inference pass).
    pub accuracy: [f64; 3],
    /// Each worker's numbers, in rank order.
    pub workers: Vec<Outcome>,
}

/// A run's workers in this process.
pub struct InProcess {
    engines: Vec<Box<dyn Engine>>,
    net: LocalNet,
    links: Vec<LocalLink>,
}

impl InProcess {
    /// One engine per spec of `plan`, in rank order, over the whole graph.
    pub fn new(plan: &PipelinePlan, device: Device) -> Result<InProcess, PipeError> {
        let data = StageData::whole(&plan.dataset);
        let engines = plan.specs.iter().map(|s| build_engine(s.clone(), &data, device)).collect::<Result<_, _>>()?;
        Ok(InProcess::from_engines(engines, device))
    }

    /// Workers built by the caller, in rank order.
    pub fn from_engines(engines: Vec<Box<dyn Engine>>, device: Device) -> InProcess {
        let net = LocalNet::new();
        let links = (0..engines.len()).map(|r| net.link(r, device)).collect();
        InProcess { engines, net, links }
    }

    pub fn engines(&self) -> &[Box<dyn Engine>] {
        &self.engines
    }
    pub fn engines_mut(&mut self) -> &mut [Box<dyn Engine>] {
        &mut self.engines
    }

    /// One training epoch in the order the launcher would send: [`chunk_order`] of the run's
    /// seed and this epoch.
    pub fn train_epoch(&mut self, epoch: u64) -> Result<LocalEpoch, PipeError> {
        let cfg = &self.engines[0].core().spec.config;
        let k = self.engines[0].core().spec.chunk_offsets.len() - 1;
        let order = chunk_order(k, cfg.seed, epoch, cfg.shuffle);
        self.train_epoch_in(epoch, &order)
    }

    /// One training epoch over the chunks in `order`.
    pub fn train_epoch_in(&mut self, epoch: u64, order: &[usize]) -> Result<LocalEpoch, PipeError> {
        self.epoch(epoch, order, true)
    }

    /// Exact inference: (train, val, test) accuracy.
    pub fn evaluate(&mut self, epoch: u64) -> Result<[f64; 3], PipeError> {
        Ok(self.epoch(epoch, &[], false)?.accuracy)
    }

    /// The warm start: an exact inference pass that fills every stage's historical embeddings
    /// (`--warm-start`); (train, val, test) accuracy of the initial weights.
    pub fn warm_start(&mut self) -> Result<[f64; 3], PipeError> {
        self.engines.iter_mut().for_each(|e| e.core_mut().warm = true);
        let r = self.epoch(0, &[], false);
        self.engines.iter_mut().for_each(|e| e.core_mut().warm = false);
        Ok(r?.accuracy)
    }

    fn epoch(&mut self, epoch: u64, order: &[usize], train: bool) -> Result<LocalEpoch, PipeError> {
        let mut running: Vec<Option<Interpreter>> = self
            .engines
            .iter_mut()
            .map(|e| Interpreter::new(e.as_mut(), epoch, order, train).map(Some))
            .collect::<Result<_, _>>()?;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; self.engines.len()];
        while outcomes.iter().any(Option::is_none) {
            let before = (self.net.undelivered(), marks(&running));
            for (i, slot) in running.iter_mut().enumerate() {
                let Some(it) = slot.as_mut() else { continue };
                if it.run(self.engines[i].as_mut(), &mut self.links[i])? == Progress::Done {
                    outcomes[i] = slot.take().map(|it| it.finish(self.engines[i].as_ref()));
                }
            }
            if outcomes.iter().any(Option::is_none) && before == (self.net.undelivered(), marks(&running)) {
                let waiting: Vec<String> = running
                    .iter()
                    .enumerate()
                    .filter_map(|(i, it)| it.as_ref().map(|it| format!("worker {i} at {}", it.current())))
                    .collect();
                return Err(PipeError::Internal(format!("the schedules deadlock: {}", waiting.join(", "))));
            }
        }
        if self.net.undelivered() > 0 {
            return Err(PipeError::Internal(format!("{} tensors sent and never received", self.net.undelivered())));
        }
        let workers: Vec<Outcome> = outcomes.into_iter().flatten().collect();
        let spec = &self.engines[0].core().spec;
        let frac = |i: usize, n: usize| {
            let c: u64 = workers.iter().map(|w| w.correct[i]).sum();
            if n == 0 {
                0.0
            } else {
                c as f64 / n as f64
            }
        };
        let accuracy = [frac(0, spec.train.len()), frac(1, spec.val.len()), frac(2, spec.test.len())];
        Ok(LocalEpoch { loss: workers.iter().map(|w| w.loss).sum(), accuracy, workers })
    }
}

fn marks(running: &[Option<Interpreter>]) -> Vec<Option<(usize, usize)>> {
    running.iter().map(|it| it.as_ref().map(Interpreter::mark)).collect()
}
