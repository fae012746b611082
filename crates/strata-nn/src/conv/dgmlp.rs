use crate::message_passing::Adjacency;
use tch::Tensor;

/// Node-adaptive multi-hop propagation of DGMLP, Zhang et al., "Evaluating Deep Graph Neural
/// Networks" (2021), as in the authors' `src/train.py`:
///
/// `X⁽ᵏ⁾ = Âᵏ X` for `k = 0..K` (parameter-free, precomputed once),
/// `α_ik = cos(X_i⁽⁰⁾, X_i⁽ᵏ⁾)` (still close to the node's own features),
/// `β_ik = cos(X_i⁽∞⁾, X_i⁽ᵏ⁾)` (already close to the over-smoothed stationary state),
/// `w_i = softmax_k(α_ik (1 − β_ik))`, `X̃_i = Σ_k w_ik X_i⁽ᵏ⁾`,
///
/// then an MLP on `X̃`. Each node thus picks its own smoothing depth: the stationary state
/// `X⁽∞⁾` of `Â = D̃^{-1/2}ÃD̃^{-1/2}` is, per connected component, proportional to
/// `Σ_j (d_j + 1) X_j` (the scale does not matter to a cosine). Two passes over the hops keep
/// memory at O(n·F) instead of O(K·n·F).
pub fn dgmlp_features(adj: &Adjacency, x: &Tensor, hops: usize, component: &Tensor, num_components: i64) -> Tensor {
    tch::no_grad(|| {
        let n = x.size()[0];
        let ones = Tensor::ones([adj.num_edges()], (x.kind(), x.device()));
        // Degrees with the self loop: the operator's non-zeros per row.
        let deg1 = Tensor::zeros([n], (x.kind(), x.device())).index_add(0, &adj.row, &ones);
        let weighted = x * deg1.unsqueeze(-1);
        let mut shape = x.size();
        shape[0] = num_components;
        let stationary =
            Tensor::zeros(&shape, (x.kind(), x.device())).index_add(0, component, &weighted).index_select(0, component);
        let cos = |a: &Tensor, b: &Tensor| {
            let dot = (a * b).sum_dim_intlist(-1, false, a.kind());
            dot / (a.norm_scalaropt_dim(2, [-1], false) * b.norm_scalaropt_dim(2, [-1], false) + 1e-12)
        };
        let mut scores = Vec::with_capacity(hops + 1);
        let mut h = x.shallow_clone();
        for k in 0..=hops {
            if k > 0 {
                h = adj.propagate(&h);
            }
            scores.push(cos(x, &h) * (1.0 - cos(&stationary, &h)));
        }
        let w = Tensor::stack(&scores, 1).softmax(1, x.kind()); // [n, K+1]
        let mut h = x.shallow_clone();
        let mut out = x * w.select(1, 0).unsqueeze(-1);
        for k in 1..=hops {
            h = adj.propagate(&h);
            out += &h * w.select(1, k as i64).unsqueeze(-1);
        }
        out
    })
}
