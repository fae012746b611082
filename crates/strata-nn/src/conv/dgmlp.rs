use super::linear::{Init, Linear};
use tch::{nn, Tensor};

/// Node-adaptive combination of multi-hop features, after DGMLP (Zhang et al., "Evaluating
/// Deep Graph Neural Networks", 2021) and the hop attention of GAMLP (Zhang et al., KDD 2022):
/// each node weighs its own propagation depths instead of sharing one fixed depth,
///
/// `w_{ik} = softmax_k( tanh([h_i^{(k)} ‖ r_i] · a) )`, `z_i = Σ_k w_{ik} h_i^{(k)}`,
///
/// with `h^{(k)} = Â^k H` and the reference `r_i` the mean of node i's hop features. Nodes in
/// dense, well-mixed regions can lean on shallow hops (avoiding over-smoothing) while sparse
/// regions reach further.
pub struct HopAttention {
    att: Linear,
}

impl HopAttention {
    pub fn new(vs: &nn::Path, channels: i64) -> HopAttention {
        HopAttention { att: Linear::new(vs, 2 * channels, 1, true, Init::Glorot) }
    }
    /// Combines hop features (each `[n, d]`); returns `[n, d]` and the weights `[n, K+1]`.
    pub fn forward(&self, hops: &[Tensor]) -> (Tensor, Tensor) {
        let stacked = Tensor::stack(hops, 1); // [n, K+1, d]
        let reference = stacked.mean_dim(1, true, None).expand_as(&stacked);
        let scores = self.att.forward(&Tensor::cat(&[&stacked, &reference], 2)).tanh().squeeze_dim(-1);
        let w = scores.softmax(-1, scores.kind());
        ((&stacked * w.unsqueeze(-1)).sum_dim_intlist(1, false, None), w)
    }
}
