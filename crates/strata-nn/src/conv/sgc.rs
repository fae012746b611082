use crate::message_passing::Adjacency;
use tch::Tensor;

/// Simplified graph convolution, Wu et al., "Simplifying Graph Convolutional Networks"
/// (ICML 2019): `Ŷ = softmax(Â^K X Θ)`.
///
/// `Â^K X` has no parameters, so it is computed once before training (this function), and
/// the model is a linear classifier on the result.
pub fn sgc_propagate(adj: &Adjacency, x: &Tensor, k: usize) -> Tensor {
    tch::no_grad(|| (0..k).fold(x.shallow_clone(), |h, _| adj.propagate(&h)))
}
