//! A graph-parallel way's rows of the normalised operator as CSR tensors, split by where the
//! source vertex lives (this way, or a halo row received from another).

use crate::chunks::{Chunk, Intra};
use crate::error::PipeError;
use strata_graph::CsrMatrix;
use strata_nn::ops::{host_vec, spmm};
use tch::{Device, Kind, Tensor};

/// A partition's rows of `Â` as CSR tensors: `intra` (n × n, its own columns) with its
/// transpose (itself for the bit-symmetric GCN operator) and `halo` (n × h, the received halo
/// rows' columns) with its cached transpose, and the same halo block with its values scaled by
/// the training factor (the dropout scale, and GCNII's 1 − α), so the rows on the wire need no
/// scaling pass and the residual no multiply. Both halves are sparse products whose backward
/// needs only the operator, so a layer's forward keeps neither its input rows nor an
/// edge-sized message tensor for the backward pass (libtorch's `index_add` would keep its
/// E × d source).
pub(super) struct PartitionOperator {
    pub(super) intra: (Tensor, Tensor),
    halo: Option<(Tensor, Tensor)>,
    halo_train: Option<(Tensor, Tensor)>,
}

impl PartitionOperator {
    /// `train_scale`: the factor training folds into the halo block.
    pub(super) fn new(part: &Chunk, train_scale: f64, device: Device) -> Result<PartitionOperator, PipeError> {
        let n = part.len() as usize;
        let cpu_i64 = host_vec::<i64>;
        let cpu_f32 = host_vec::<f32>;
        let intra = match &part.intra {
            Intra::Csr { a, a_t } => (a.shallow_clone(), a_t.shallow_clone()),
            Intra::Edges { row, col, w } => {
                let m = sorted_rows_csr("partition operator", n, n, &cpu_i64(row), cpu_i64(col), cpu_f32(w))?;
                let t = m.transpose();
                let a = to_tensor(&m, device);
                (a.shallow_clone(), if t == m { a } else { to_tensor(&t, device) })
            }
        };
        let halo = part.inter.as_ref().and_then(|b| Some((b.a.shallow_clone(), b.a_t.as_ref()?.shallow_clone())));
        let halo_train = halo.as_ref().map(|(a, a_t)| (scaled(a, train_scale), scaled(a_t, train_scale)));
        Ok(PartitionOperator { intra, halo, halo_train })
    }

    /// `Â_halo · halo`, or `None` for a partition that receives no halo rows.
    pub(super) fn halo_part(&self, halo: &Tensor) -> Option<Tensor> {
        self.halo.as_ref().map(|(a, a_t)| spmm(a, a_t, halo))
    }

    /// `c·Â_halo · halo` with the training factor `c` given to [`PartitionOperator::new`].
    pub(super) fn halo_part_train(&self, halo: &Tensor) -> Option<Tensor> {
        self.halo_train.as_ref().map(|(a, a_t)| spmm(a, a_t, halo))
    }
}

/// `c·a` for a CSR tensor `a` (its index arrays shared).
fn scaled(a: &Tensor, c: f64) -> Tensor {
    if c == 1.0 {
        return a.shallow_clone();
    }
    Tensor::sparse_csr_tensor_crow_col_value_size(
        &a.crow_indices(),
        &a.col_indices(),
        &(a.values() * c),
        a.size(),
        (a.kind(), a.device()),
    )
}

/// A CSR matrix from COO arrays whose rows are already in ascending order.
fn sorted_rows_csr(
    ctx: &str,
    rows: usize,
    cols: usize,
    row: &[i64],
    col: Vec<i64>,
    w: Vec<f32>,
) -> Result<CsrMatrix, PipeError> {
    let mut indptr = vec![0i64; rows + 1];
    row.iter().for_each(|&r| indptr[r as usize + 1] += 1);
    for i in 0..rows {
        indptr[i + 1] += indptr[i];
    }
    CsrMatrix::from_parts(ctx, rows, cols, indptr, col, Some(w)).map_err(|e| PipeError::Config(e.to_string()))
}

fn to_tensor(m: &CsrMatrix, device: Device) -> Tensor {
    let t = |v: &[i64]| Tensor::from_slice(v).to(device);
    let values = Tensor::from_slice(&m.values_or_ones()).to(device);
    Tensor::sparse_csr_tensor_crow_col_value_size(
        &t(m.indptr()),
        &t(m.indices()),
        &values,
        [m.rows() as i64, m.cols() as i64],
        (Kind::Float, device),
    )
}
