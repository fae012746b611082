use super::linear::{Init, Linear};
use crate::message_passing::{edge_softmax, scatter_sum, Adjacency};
use crate::ops::FastDropout;
use tch::{nn, Tensor};

/// Multi-head graph attention, Veličković et al., "Graph Attention Networks" (ICLR 2018):
///
/// `α_ij = softmax_j(LeakyReLU(aᵀ[W x_i ‖ W x_j]))` over `j ∈ N(i) ∪ {i}`,
/// `x'_i = ‖_{k=1..K} Σ_j α^k_ij W^k x_j` (concatenated heads), or the mean over heads for the
/// output layer. Attention coefficients get their own dropout, as in the paper.
///
/// The attention is the aggregation here, so the layer is handed the edges per call: an
/// [`Adjacency`] of `A + I` ([`crate::Norm::SelfLoops`]; its weights are not read).
pub struct GatConv {
    pub lin: Linear,
    att_src: Tensor,
    att_dst: Tensor,
    bias: Tensor,
    heads: i64,
    out: i64,
    concat: bool,
}

impl GatConv {
    pub fn new(vs: &nn::Path, fan_in: i64, out: i64, heads: i64, concat: bool) -> GatConv {
        let a = (6.0 / (out + 1) as f64).sqrt();
        GatConv {
            lin: Linear::new(vs, fan_in, heads * out, false, Init::Glorot),
            att_src: vs.var("att_src", &[1, heads, out], nn::Init::Uniform { lo: -a, up: a }),
            att_dst: vs.var("att_dst", &[1, heads, out], nn::Init::Uniform { lo: -a, up: a }),
            bias: vs.var("bias", &[if concat { heads * out } else { out }], nn::Init::Const(0.0)),
            heads,
            out,
            concat,
        }
    }
    /// Attends over already-projected features `xw = X·W` (`[n, heads·out]`).
    pub fn attend(&self, adj: &Adjacency, xw: &Tensor, att_dropout: f64, train: bool) -> Tensor {
        self.attend_sources(xw, xw, &adj.row, &adj.col, att_dropout, train)
    }
    /// The attention with sources and targets in separate row spaces: edge `e` carries
    /// `src_w[col_e]` to target `row_e` of `dst_w` (both projected, `[·, heads·out]`). A pipeline
    /// chunk passes its own rows as targets and its rows plus the neighbours read from the
    /// historical embeddings as sources.
    pub fn attend_sources(
        &self,
        src_w: &Tensor,
        dst_w: &Tensor,
        row: &Tensor,
        col: &Tensor,
        att_dropout: f64,
        train: bool,
    ) -> Tensor {
        let n = dst_w.size()[0];
        let hs = src_w.view([-1, self.heads, self.out]);
        let hd = dst_w.view([n, self.heads, self.out]);
        let a_src = (&hs * &self.att_src).sum_dim_intlist(-1, false, None); // [n_src, heads]
        let a_dst = (&hd * &self.att_dst).sum_dim_intlist(-1, false, None); // [n, heads]
        let e = a_src.index_select(0, col) + a_dst.index_select(0, row);
        let e = e.maximum(&(&e * 0.2)); // LeakyReLU(0.2)
        let alpha = edge_softmax(&e, row, n).fast_dropout(att_dropout, train);
        let msg = hs.index_select(0, col) * alpha.unsqueeze(-1);
        let out = scatter_sum(&msg, row, n);
        let out = if self.concat { out.view([n, self.heads * self.out]) } else { out.mean_dim(1, false, None) };
        out + &self.bias
    }
    pub fn forward(&self, adj: &Adjacency, x: &Tensor, att_dropout: f64, train: bool) -> Tensor {
        self.attend(adj, &x.matmul(&self.lin.w), att_dropout, train)
    }
}
