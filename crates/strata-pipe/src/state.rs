//! A worker's checkpointable state: parameters, optimizer moments and named buffers, and
//! their restore with every missing or misshapen tensor named.

use crate::error::PipeError;
use strata_nn::optim::Adam;
use tch::{nn, Device, Tensor};

/// A worker's checkpointable state: its parameters (`param.<name>`), the optimizer's moments,
/// and `extra` (historical buffers).
pub fn state(vs: &nn::VarStore, opt: &Adam, extra: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(k, v)| (format!("param.{k}"), v.to(Device::Cpu).copy())).collect();
    out.extend(opt.state());
    out.extend(extra);
    out
}

/// Restores [`state`] into `vs` and `opt`; a missing or misshapen tensor is named.
pub fn load_state(
    vs: &nn::VarStore,
    opt: &mut Adam,
    named: &std::collections::HashMap<String, Tensor>,
) -> Result<(), PipeError> {
    for (k, mut v) in vs.variables() {
        let key = format!("param.{k}");
        let t = named.get(&key).ok_or_else(|| PipeError::State(format!("checkpoint lacks `{key}`")))?;
        if t.size() != v.size() {
            return Err(PipeError::State(format!(
                "checkpoint `{key}` has shape {:?}, this stage's parameter {:?}: a different model or split",
                t.size(),
                v.size()
            )));
        }
        tch::no_grad(|| v.copy_(t));
    }
    opt.load_state(named).map_err(|e| PipeError::State(e.to_string()))
}

/// Copies `named[key]` into `dst`, checking the shape.
pub fn load_buffer(
    named: &std::collections::HashMap<String, Tensor>,
    key: &str,
    dst: &Tensor,
) -> Result<(), PipeError> {
    let t = named.get(key).ok_or_else(|| PipeError::State(format!("checkpoint lacks `{key}`")))?;
    if t.size() != dst.size() {
        return Err(PipeError::State(format!(
            "checkpoint `{key}` has shape {:?}, expected {:?}",
            t.size(),
            dst.size()
        )));
    }
    tch::no_grad(|| dst.shallow_clone().copy_(t));
    Ok(())
}
