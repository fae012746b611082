use crate::message_passing::Adjacency;
use tch::Tensor;

/// Approximate personalized-propagation, Gasteiger et al., "Predict then Propagate: Graph
/// Neural Networks meet Personalized PageRank" (ICLR 2019):
///
/// `Z⁽⁰⁾ = H`, `Z⁽ᵏ⁺¹⁾ = (1 − α) Â Z⁽ᵏ⁾ + α H`, output `Z⁽ᴷ⁾`, with `Â` the GCN operator.
/// Parameter-free: `H` comes from an MLP.
pub struct Appnp {
    pub k: usize,
    pub alpha: f64,
}

impl Appnp {
    pub fn new(k: usize, alpha: f64) -> Appnp {
        Appnp { k, alpha }
    }
    /// `adj` is the GCN operator.
    pub fn forward(&self, adj: &Adjacency, h: &Tensor) -> Tensor {
        let teleport = h * self.alpha;
        let mut z = h.shallow_clone();
        for _ in 0..self.k {
            z = adj.propagate(&z) * (1.0 - self.alpha) + &teleport;
        }
        z
    }
}
