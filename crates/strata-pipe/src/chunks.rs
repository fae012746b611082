//! The graph cut into K chunks (contiguous id ranges after renumbering), with each chunk's
//! normalised in-edges split into intra-chunk edges (both ends in the chunk) and inter-chunk
//! edges (source elsewhere: read from the historical embeddings).

use strata_graph::CsrGraph;
use strata_nn::Norm;
use tch::{Device, Kind, Tensor};

/// One chunk's rows of the model's normalised operator (`D̃^{-1/2}(A+I)D̃^{-1/2}` for GCN and
/// GCNII, `D^{-1}A` for GraphSAGE: [`strata_nn::Norm::apply`]).
pub struct Chunk {
    pub start: i64,
    pub end: i64,
    /// Intra edges, both ends as chunk-local ids: an edge list, or a CSR operator when there
    /// are enough of them that the list's E × d message tensors would dominate memory
    /// (`Kernel::for_edges`); never both.
    pub intra: Intra,
    /// Inter edges: target chunk-local, source global (32-bit ids below 2³¹ vertices).
    pub inter_row: Tensor,
    pub inter_col: Tensor,
    pub inter_w: Tensor,
    /// The chunk each inter edge's source lies in.
    pub inter_src_chunk: Vec<u32>,
}

/// A chunk's intra-chunk operator.
pub enum Intra {
    Edges {
        row: Tensor,
        col: Tensor,
        w: Tensor,
    },
    /// The block and its transpose (the block itself when the operator is symmetric to the
    /// bit, as the GCN operator is: the backward pass then needs no second copy).
    Csr {
        a: Tensor,
        a_t: Tensor,
    },
}

impl Chunk {
    pub fn len(&self) -> i64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Σ_{intra e} w_e · x[col_e]` into the chunk's rows (`x`: the chunk's own rows).
    pub fn aggregate_intra(&self, x: &Tensor) -> Tensor {
        match &self.intra {
            Intra::Csr { a, a_t } => strata_nn::ops::spmm(a, a_t, x),
            Intra::Edges { row, col, w } => crate::layers::gather_add(Tensor::zeros_like(x), row, x, col, w),
        }
    }

    /// A whole-operator block's rows of `A·x` (`x`: every vertex's rows), without autograd.
    pub fn aggregate_block(&self, x: &Tensor) -> Tensor {
        match &self.intra {
            // Inference only: the transpose the backward pass would need is never used.
            Intra::Csr { a, .. } => strata_nn::ops::spmm(a, a, x),
            Intra::Edges { row, col, w } => crate::layers::gather_add(
                x.new_zeros([self.len(), x.size()[1]], (x.kind(), x.device())),
                row,
                x,
                col,
                w,
            ),
        }
    }
}

/// All chunks plus the whole operator cut into the same row blocks (for exact full-graph
/// inference).
pub struct ChunkedGraph {
    pub n: i64,
    pub offsets: Vec<usize>,
    pub chunks: Vec<Chunk>,
    /// Chunk k's rows of the whole operator, every edge kept (columns global; no inter part):
    /// inference aggregates one block at a time, so a layer holds its input, its output and
    /// one block's aggregate, not a third whole-graph tensor.
    pub full_blocks: Vec<Chunk>,
}

impl ChunkedGraph {
    /// `graph` must already be renumbered so chunk `k` is `offsets[k]..offsets[k+1]`; `norm`
    /// is the operator the model's convolutions aggregate over.
    pub fn new(graph: &CsrGraph, norm: Norm, offsets: &[usize], device: Device) -> ChunkedGraph {
        let op = Operator::new(graph, norm);
        let k = offsets.len() - 1;
        let chunks = (0..k).map(|c| op.block(offsets, c, false, device)).collect();
        let full_blocks = (0..k).map(|c| op.block(offsets, c, true, device)).collect();
        ChunkedGraph { n: op.g.num_nodes() as i64, offsets: offsets.to_vec(), chunks, full_blocks }
    }

    /// Chunk `c` alone (a graph-parallel way keeps only its own partition).
    pub fn one_chunk(graph: &CsrGraph, norm: Norm, offsets: &[usize], c: usize, device: Device) -> Chunk {
        Operator::new(graph, norm).block(offsets, c, false, device)
    }
}

/// The normalised operator (a graph whose values are its weights), from which chunks are cut.
struct Operator {
    g: CsrGraph,
    symmetric: bool,
    /// Attention reads the edges themselves: no CSR block.
    edges_only: bool,
}

impl Operator {
    fn new(graph: &CsrGraph, norm: Norm) -> Operator {
        Operator {
            g: norm.apply(&graph.symmetrized()),
            symmetric: norm != Norm::Mean,
            edges_only: norm == Norm::SelfLoops,
        }
    }

    /// Chunk `c`'s rows: split into intra and inter edges, or (`whole`) every edge as one
    /// operator with global columns.
    fn block(&self, offsets: &[usize], c: usize, whole: bool, device: Device) -> Chunk {
        let g = &self.g;
        let (start, end) = (offsets[c], offsets[c + 1]);
        let chunk_of = |u: usize| (offsets.partition_point(|&o| o <= u) - 1) as u32;
        let (mut ir, mut ic, mut iw, mut er, mut ec, mut ew, mut es) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for u in start..end {
            let vals = g.adjacency().row_values(u);
            for (j, &v) in g.neighbors(u).iter().enumerate() {
                let w = vals.map_or(1.0, |x| x[j]);
                let local = (u - start) as i64;
                if whole {
                    ir.push(local);
                    ic.push(v);
                    iw.push(w);
                } else if v as usize >= start && (v as usize) < end {
                    ir.push(local);
                    ic.push(v - start as i64);
                    iw.push(w);
                } else {
                    er.push(local);
                    ec.push(v);
                    ew.push(w);
                    es.push(chunk_of(v as usize));
                }
            }
        }
        let t = |v: &[i64]| Tensor::from_slice(v).to(device);
        let f = |v: &[f32]| Tensor::from_slice(v).to(device);
        // Inter edges keep 32-bit ids, half the bytes of the largest structure a stage keeps;
        // they are widened per chunk where used (`Stage::split_inter`).
        let id_kind = if g.num_nodes() <= i32::MAX as usize { Kind::Int } else { Kind::Int64 };
        let ids = |v: &[i64]| Tensor::from_slice(v).to_kind(id_kind).to(device);
        let rows = (end - start) as i64;
        let cols = if whole { g.num_nodes() as i64 } else { rows };
        let transpose = !(self.symmetric || whole);
        let intra = if !self.edges_only && strata_nn::Kernel::for_edges(ir.len()) == strata_nn::Kernel::Csr {
            csr_block(&ir, ic, iw, rows, cols, transpose, device)
        } else {
            Intra::Edges { row: t(&ir), col: t(&ic), w: f(&iw) }
        };
        Chunk {
            start: start as i64,
            end: end as i64,
            intra,
            inter_row: ids(&er),
            inter_col: ids(&ec),
            inter_w: f(&ew),
            inter_src_chunk: es,
        }
    }
}

/// A block as CSR tensors from its entries in row order (`row` sorted), with its transpose when
/// asked (only a chunk's own block of a non-symmetric operator is differentiated through).
fn csr_block(row: &[i64], col: Vec<i64>, w: Vec<f32>, rows: i64, cols: i64, transpose: bool, device: Device) -> Intra {
    let mut crow = vec![0i64; rows as usize + 1];
    row.iter().for_each(|&r| crow[r as usize + 1] += 1);
    for i in 0..rows as usize {
        crow[i + 1] += crow[i];
    }
    let csr = |crow: &[i64], col: &[i64], w: &[f32]| {
        let t = |v: &[i64]| Tensor::from_slice(v).to(device);
        Tensor::sparse_csr_tensor_crow_col_value_size(
            &t(crow),
            &t(col),
            &Tensor::from_slice(w).to(device),
            [rows, cols],
            (Kind::Float, device),
        )
    };
    let a = csr(&crow, &col, &w);
    let a_t = if transpose {
        let m = strata_graph::CsrMatrix::from_parts("chunk block", rows as usize, cols as usize, crow, col, Some(w))
            .expect("rows visited in order")
            .transpose();
        csr(m.indptr(), m.indices(), &m.values_or_ones())
    } else {
        a.shallow_clone()
    };
    Intra::Csr { a, a_t }
}
