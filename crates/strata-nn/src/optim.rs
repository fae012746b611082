//! Adam whose state strata owns. libtorch's Adam keeps its moments where tch cannot read or
//! write them, so a run resumed from a checkpoint would restart them at zero; this one saves
//! and restores them, and resumes bit for bit.
//!
//! The update is `torch.optim.Adam`'s (Kingma & Ba, 2015, with coupled L2 weight decay):
//! `g ← ∇ + λ·θ; m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
//!  θ ← θ − (lr / (1−β₁ᵗ))·m / (√v / √(1−β₂ᵗ) + ε)`.

use crate::error::{NnError, Result};
use std::collections::HashMap;
use tch::{nn::VarStore, Kind, Tensor};

struct Param {
    name: String,
    tensor: Tensor,
    weight_decay: f64,
    m: Tensor,
    v: Tensor,
}

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    step: i64,
    params: Vec<Param>,
}

impl Adam {
    /// Over `vs`'s trainable variables; a variable in optimiser group `g` decays with
    /// `weight_decay[g]` (0 when the slice is shorter).
    pub fn new(vs: &VarStore, lr: f64, weight_decay: &[f64]) -> Adam {
        let vars = vs.variables_.lock().unwrap_or_else(|e| e.into_inner());
        let mut params: Vec<Param> = vars
            .trainable_variables
            .iter()
            .map(|var| {
                let name = vars
                    .named_variables
                    .iter()
                    .find(|(_, t)| t.data_ptr() == var.tensor.data_ptr())
                    .map_or_else(String::new, |(k, _)| k.clone());
                Param {
                    name,
                    tensor: var.tensor.shallow_clone(),
                    weight_decay: weight_decay.get(var.group).copied().unwrap_or(0.0),
                    m: Tensor::zeros_like(&var.tensor),
                    v: Tensor::zeros_like(&var.tensor),
                }
            })
            .collect();
        // A stable order, so state files line up whatever the store's insertion order.
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 0, params }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.tensor.grad();
                if !grad.defined() {
                    continue;
                }
                let g = if p.weight_decay != 0.0 { &grad + &p.tensor * p.weight_decay } else { grad };
                let _ = p.m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = p.v.g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                let denom = p.v.sqrt() / bc2.sqrt() + self.eps;
                let _ = p.tensor.g_sub_(&(&p.m / denom * (self.lr / bc1)));
            }
        });
    }

    pub fn steps(&self) -> i64 {
        self.step
    }

    /// A copy of the state as named tensors (`adam.step`, `adam.m.<param>`, `adam.v.<param>`), on
    /// the CPU.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("adam.step".to_string(), Tensor::from_slice(&[self.step]))];
        for p in &self.params {
            out.push((format!("adam.m.{}", p.name), p.m.to(tch::Device::Cpu).copy()));
            out.push((format!("adam.v.{}", p.name), p.v.to(tch::Device::Cpu).copy()));
        }
        out
    }

    /// Restores [`Adam::state`]; every moment must be present with its parameter's shape.
    pub fn load_state(&mut self, named: &HashMap<String, Tensor>) -> Result<()> {
        let get = |k: &str| named.get(k).ok_or_else(|| NnError::Config(format!("optimizer state lacks `{k}`")));
        self.step = get("adam.step")?.to_kind(Kind::Int64).int64_value(&[0]);
        for p in &mut self.params {
            for (which, dst) in [("m", &mut p.m), ("v", &mut p.v)] {
                let key = format!("adam.{which}.{}", p.name);
                let t = get(&key)?;
                if t.size() != dst.size() {
                    return Err(NnError::Config(format!(
                        "optimizer state `{key}` has shape {:?}, the parameter {:?}",
                        t.size(),
                        dst.size()
                    )));
                }
                tch::no_grad(|| dst.copy_(t));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, OptimizerConfig};
    use tch::Device;

    fn problem(vs: &VarStore) -> (Tensor, Tensor, Tensor) {
        let root = vs.root();
        let w = root.set_group(0).var("w", &[4, 3], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let b = root.set_group(1).var("b", &[3], nn::Init::Const(0.1));
        let x = Tensor::randn([16, 4], (Kind::Float, Device::Cpu));
        (w, b, x)
    }

    /// Ten steps of ours and of libtorch's Adam (two weight-decay groups) give the same weights.
    #[test]
    fn matches_libtorch_adam() {
        tch::manual_seed(0);
        let (vs_a, vs_b) = (VarStore::new(Device::Cpu), VarStore::new(Device::Cpu));
        let (wa, ba, x) = problem(&vs_a);
        let (wb, bb, _) = problem(&vs_b);
        tch::no_grad(|| {
            wb.shallow_clone().copy_(&wa);
            bb.shallow_clone().copy_(&ba);
        });
        let mut ours = Adam::new(&vs_a, 0.01, &[5e-4, 1e-2]);
        let mut theirs = nn::Adam::default().build(&vs_b, 0.01).unwrap();
        theirs.set_weight_decay_group(0, 5e-4);
        theirs.set_weight_decay_group(1, 1e-2);
        for _ in 0..10 {
            ours.zero_grad();
            (x.matmul(&wa) + &ba).square().sum(Kind::Float).backward();
            ours.step();
            theirs.zero_grad();
            (x.matmul(&wb) + &bb).square().sum(Kind::Float).backward();
            theirs.step();
        }
        assert!(wa.allclose(&wb, 1e-5, 1e-6, false), "{wa} vs {wb}");
        assert!(ba.allclose(&bb, 1e-5, 1e-6, false));
    }

    /// Saving after 5 steps and loading into a fresh optimiser continues exactly.
    #[test]
    fn state_round_trip_resumes_exactly() {
        tch::manual_seed(1);
        let vs = VarStore::new(Device::Cpu);
        let (w, b, x) = problem(&vs);
        let mut opt = Adam::new(&vs, 0.01, &[0.0, 0.0]);
        let run = |opt: &mut Adam, steps: usize| {
            for _ in 0..steps {
                opt.zero_grad();
                (x.matmul(&w) + &b).square().sum(Kind::Float).backward();
                opt.step();
            }
        };
        run(&mut opt, 5);
        let state: HashMap<String, Tensor> = opt.state().into_iter().collect();
        let (w5, b5) = (w.copy(), b.copy());
        run(&mut opt, 5);
        let (w10, b10) = (w.copy(), b.copy());
        tch::no_grad(|| {
            w.shallow_clone().copy_(&w5);
            b.shallow_clone().copy_(&b5);
        });
        let mut fresh = Adam::new(&vs, 0.01, &[0.0, 0.0]);
        fresh.load_state(&state).unwrap();
        assert_eq!(fresh.steps(), 5);
        run(&mut fresh, 5);
        assert!(w.equal(&w10) && b.equal(&b10));
        let mut broken: HashMap<String, Tensor> = state.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
        broken.remove("adam.m.b");
        assert!(Adam::new(&vs, 0.01, &[]).load_state(&broken).unwrap_err().to_string().contains("adam.m.b"));
    }
}
