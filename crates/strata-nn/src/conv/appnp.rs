use crate::message_passing::Adjacency;
use std::rc::Rc;
use tch::Tensor;

/// Approximate personalized-propagation, Gasteiger et al., "Predict then Propagate: Graph
/// Neural Networks meet Personalized PageRank" (ICLR 2019):
///
/// `Z⁽⁰⁾ = H`, `Z⁽ᵏ⁺¹⁾ = (1 − α) Â Z⁽ᵏ⁾ + α H`, output `Z⁽ᴷ⁾`, with `Â` the GCN operator.
/// Parameter-free: `H` comes from an MLP.
pub struct Appnp {
    adj: Rc<Adjacency>,
    pub k: usize,
    pub alpha: f64,
}

impl Appnp {
    pub fn new(adj: Rc<Adjacency>, k: usize, alpha: f64) -> Appnp {
        Appnp { adj, k, alpha }
    }
    pub fn forward(&self, h: &Tensor) -> Tensor {
        let teleport = h * self.alpha;
        let mut z = h.shallow_clone();
        for _ in 0..self.k {
            z = self.adj.propagate(&z) * (1.0 - self.alpha) + &teleport;
        }
        z
    }
}
