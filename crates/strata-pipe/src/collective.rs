//! The flat gradient layout the all-reduce sums (every trainable gradient in creation order).

use tch::{nn, Device, Kind, Tensor};

/// All trainable gradients as one flat vector (zeros for unused parameters), in creation order.
pub fn flat_grads(vs: &nn::VarStore) -> Tensor {
    let parts: Vec<Tensor> = vs
        .trainable_variables()
        .iter()
        .map(|v| {
            let g = v.grad();
            if g.defined() {
                g.reshape([-1])
            } else {
                Tensor::zeros([v.numel() as i64], (Kind::Float, v.device()))
            }
        })
        .collect();
    if parts.is_empty() {
        Tensor::zeros([0], (Kind::Float, Device::Cpu))
    } else {
        Tensor::cat(&parts, 0)
    }
}

/// Gives every trainable parameter a defined (zero) gradient, so [`flat_grads`] and
/// [`set_flat_grads`] see the same layout on every worker even where a parameter got no
/// gradient this epoch (e.g. a partition without training nodes).
pub fn define_grads(vs: &nn::VarStore) {
    let vars = vs.trainable_variables();
    if let Some(first) = vars.first() {
        let zero =
            vars.iter().fold(Tensor::zeros([], (Kind::Float, first.device())), |acc, v| acc + v.sum(Kind::Float) * 0.0);
        zero.backward();
    }
}

/// Writes a flat vector from [`flat_grads`] back into the gradients (defined by [`define_grads`]).
pub fn set_flat_grads(vs: &nn::VarStore, flat: &Tensor) {
    let mut off = 0;
    tch::no_grad(|| {
        for v in vs.trainable_variables() {
            let n = v.numel() as i64;
            let mut g = v.grad();
            g.copy_(&flat.narrow(0, off, n).view_as(&v).to_device(v.device()));
            off += n;
        }
    });
}
