//! Node features on the device. Bag-of-words features are >98 % zeros, so sparse inputs stay
//! sparse: the first layer's `X·W` becomes a gather of `W`'s rows per non-zero, and input
//! dropout acts on the stored values only (identical in distribution to dropout on the dense
//! matrix, since dropped zeros stay zero).

use crate::ops::FastDropout;
use crate::message_passing::scatter_sum;
use strata_graph::Features;
use tch::{Device, Kind, Tensor};

pub enum Input {
    Dense(Tensor),
    Sparse { n: i64, dim: i64, row: Tensor, col: Tensor, val: Tensor },
}

impl Input {
    /// Moves features to `device`; `row_normalize` divides each row by its sum (PyG's
    /// `NormalizeFeatures`).
    pub fn from_features(f: &Features, device: Device, row_normalize: bool) -> Input {
        let f = if row_normalize { f.row_normalized() } else { f.clone() };
        match &f {
            Features::Dense { rows, cols, data } => {
                Input::Dense(Tensor::from_slice(data).view([*rows as i64, *cols as i64]).to(device))
            }
            Features::Sparse(m) => Input::Sparse {
                n: m.rows() as i64,
                dim: m.cols() as i64,
                row: Tensor::from_slice(&m.row_ids()).to(device),
                col: Tensor::from_slice(m.indices()).to(device),
                val: Tensor::from_slice(&m.values_or_ones()).to(device),
            },
        }
    }
    pub fn num_nodes(&self) -> i64 {
        match self {
            Input::Dense(x) => x.size()[0],
            Input::Sparse { n, .. } => *n,
        }
    }
    pub fn dim(&self) -> i64 {
        match self {
            Input::Dense(x) => x.size()[1],
            Input::Sparse { dim, .. } => *dim,
        }
    }
    /// `dropout(X) · W` with `W` of shape `[in, out]`.
    pub fn matmul(&self, w: &Tensor, dropout: f64, train: bool) -> Tensor {
        match self {
            Input::Dense(x) => x.fast_dropout(dropout, train).matmul(w),
            Input::Sparse { n, row, col, val, .. } => {
                let v = val.fast_dropout(dropout, train);
                scatter_sum(&(w.index_select(0, col) * v.unsqueeze(-1)), row, *n)
            }
        }
    }
    /// A dense copy (for models that transform raw features without a first linear map).
    pub fn to_dense(&self) -> Tensor {
        match self {
            Input::Dense(x) => x.shallow_clone(),
            Input::Sparse { n, dim, row, col, val } => {
                let idx = row * *dim + col;
                Tensor::zeros([n * dim], (Kind::Float, val.device())).index_add(0, &idx, val).view([*n, *dim])
            }
        }
    }
}
