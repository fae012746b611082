//! A graph-parallel way's rows of the normalised operator as CSR tensors, split by where the
//! source vertex lives (this way, or a halo row received from another).

use crate::chunks::{Chunk, Intra};
use crate::error::PipeError;
use strata_graph::CsrMatrix;
use strata_nn::ops::{host_vec, spmm};
use tch::{Device, Kind, Tensor};

/// A partition's rows of `Â` as CSR tensors: `intra` (n × n, its own columns) with its
/// transpose (itself for the bit-symmetric GCN operator) and `halo` (n × h, the received halo rows' columns) with its
/// cached transpose. Both halves are sparse products whose backward needs only the operator,
/// so a layer's forward keeps neither its input rows nor an edge-sized message tensor for the
/// backward pass (libtorch's `index_add` would keep its E × d source).
pub(super) struct PartitionOperator {
    pub(super) intra: (Tensor, Tensor),
    halo: Option<(Tensor, Tensor)>,
}

impl PartitionOperator {
    pub(super) fn new(part: &Chunk, device: Device) -> Result<PartitionOperator, PipeError> {
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
        Ok(PartitionOperator { intra, halo })
    }

    /// `Â_halo · halo`, or `None` for a partition that receives no halo rows.
    pub(super) fn halo_part(&self, halo: &Tensor) -> Option<Tensor> {
        self.halo.as_ref().map(|(a, a_t)| spmm(a, a_t, halo))
    }
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
