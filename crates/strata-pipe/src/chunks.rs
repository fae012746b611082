//! The graph cut into K chunks (contiguous id ranges after renumbering), with each chunk's
//! normalised in-edges split into intra-chunk edges (both ends in the chunk) and inter-chunk
//! edges (source elsewhere: read from the historical embeddings). The inter-chunk edges are a
//! CSR block over the chunk's halo (the sorted sources it reads) with its cached transpose: a
//! chunk's neighbour aggregate is one sparse product over its gathered halo rows, and the
//! gradient its neighbours get one transposed product, as `strata train`'s kernels.

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
    /// The inter edges as a sparse block over the chunk's halo (`None`: no inter edges).
    pub inter: Option<InterBlock>,
    /// The inter edges as a list, kept only for attention (not linear in its neighbours).
    pub inter_edges: Option<InterEdges>,
}

/// Inter edges one by one: target chunk-local, source global (32-bit ids below 2³¹ vertices).
pub struct InterEdges {
    pub row: Tensor,
    pub col: Tensor,
    pub w: Tensor,
    /// The chunk each edge's source lies in.
    pub src_chunk: Vec<u32>,
}

/// A chunk's rows of the operator restricted to the columns of other chunks, compressed to the
/// chunk's halo: `a` is rows × |halo| (column j = vertex `halo[j]`), `a_t` its transpose, both
/// CSR with 32-bit indices where they fit.
pub struct InterBlock {
    /// The halo's global vertex ids, ascending.
    pub halo: Tensor,
    pub a: Tensor,
    pub a_t: Tensor,
    /// The halo's columns by the chunk their vertices lie in: `(chunk, first, end)`, ascending
    /// (chunks are contiguous id ranges, so each chunk's columns are one run).
    pub sources: Vec<(usize, i64, i64)>,
}

impl InterBlock {
    /// The halo's rows of `buf` (a historical buffer, any float type) as f32.
    pub fn gather(&self, buf: &Tensor) -> Tensor {
        buf.index_select(0, &self.halo).to_kind(Kind::Float)
    }

    /// The halo's rows, from `fresh_buf` for the source chunks where `fresh` holds and from
    /// `stale_buf` elsewhere, one narrow copy per run of fresh chunks.
    pub fn gather_mixed(&self, fresh_buf: &Tensor, stale_buf: &Tensor, fresh: impl Fn(usize) -> bool) -> Tensor {
        let out = self.gather(stale_buf);
        for (lo, hi) in self.runs(fresh) {
            let ids = self.halo.narrow(0, lo, hi - lo);
            out.narrow(0, lo, hi - lo).copy_(&fresh_buf.index_select(0, &ids));
        }
        out
    }

    /// `a · rows` for the gathered halo `rows`, without autograd.
    pub fn aggregate(&self, rows: &Tensor) -> Tensor {
        tch::no_grad(|| strata_nn::ops::spmm(&self.a, &self.a, rows))
    }

    /// Adds `scale · aᵀ · g` (what the halo rows' gradient is, given the aggregate's gradient
    /// `g`) into `acc` at the rows of the source chunks where `include` holds.
    pub fn spread(&self, g: &Tensor, acc: &Tensor, scale: f64, include: impl Fn(usize) -> bool) {
        tch::no_grad(|| {
            let runs = self.runs(include);
            if runs.is_empty() {
                return;
            }
            let mut gs = strata_nn::ops::spmm(&self.a_t, &self.a_t, g);
            if scale != 1.0 {
                let _ = gs.g_mul_scalar_(scale);
            }
            for (lo, hi) in runs {
                let _ =
                    acc.shallow_clone().index_add_(0, &self.halo.narrow(0, lo, hi - lo), &gs.narrow(0, lo, hi - lo));
            }
        })
    }

    /// The column runs of the source chunks where `pick` holds, adjacent runs merged.
    fn runs(&self, pick: impl Fn(usize) -> bool) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = Vec::new();
        for &(_, lo, hi) in self.sources.iter().filter(|(q, _, _)| pick(*q)) {
            match out.last_mut() {
                Some(last) if last.1 == lo => last.1 = hi,
                _ => out.push((lo, hi)),
            }
        }
        out
    }
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
    /// The kernel of the whole operator (`strata train`'s choice for this graph): every chunk's
    /// own block uses it, however small the chunk.
    kernel: strata_nn::Kernel,
}

impl Operator {
    fn new(graph: &CsrGraph, norm: Norm) -> Operator {
        let g = norm.apply(&graph.symmetrized());
        let kernel = strata_nn::Kernel::for_edges(g.num_entries());
        Operator { g, symmetric: norm != Norm::Mean, edges_only: norm == Norm::SelfLoops, kernel }
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
        let rows = (end - start) as i64;
        let cols = if whole { g.num_nodes() as i64 } else { rows };
        let transpose = !(self.symmetric || whole);
        let kernel = if whole { strata_nn::Kernel::for_edges(ir.len()) } else { self.kernel };
        let intra = if !self.edges_only && kernel == strata_nn::Kernel::Csr {
            csr_block(&ir, ic, iw, rows, cols, transpose, device)
        } else {
            Intra::Edges { row: t(&ir), col: t(&ic), w: f(&iw) }
        };
        let inter = (!er.is_empty()).then(|| inter_block(&er, &ec, &ew, rows, &chunk_of, device));
        // Attention keeps the list, in 32-bit ids (half the bytes of the largest structure a
        // stage keeps); they are widened per chunk where used (`Stage::split_inter`).
        let inter_edges = self.edges_only.then(|| {
            let id_kind = if g.num_nodes() <= i32::MAX as usize { Kind::Int } else { Kind::Int64 };
            let ids = |v: &[i64]| Tensor::from_slice(v).to_kind(id_kind).to(device);
            InterEdges { row: ids(&er), col: ids(&ec), w: f(&ew), src_chunk: es }
        });
        Chunk { start: start as i64, end: end as i64, intra, inter, inter_edges }
    }
}

/// The inter edges `(row, source, weight)` (rows ascending) as a block over their sorted sources.
fn inter_block(
    row: &[i64],
    src: &[i64],
    w: &[f32],
    rows: i64,
    chunk_of: &dyn Fn(usize) -> u32,
    device: Device,
) -> InterBlock {
    let mut halo = src.to_vec();
    halo.sort_unstable();
    halo.dedup();
    let col: Vec<i64> = src.iter().map(|s| halo.partition_point(|h| h < s) as i64).collect();
    let mut sources: Vec<(usize, i64, i64)> = Vec::new();
    for (j, &v) in halo.iter().enumerate() {
        let q = chunk_of(v as usize) as usize;
        match sources.last_mut() {
            Some(last) if last.0 == q => last.2 = j as i64 + 1,
            _ => sources.push((q, j as i64, j as i64 + 1)),
        }
    }
    let Intra::Csr { a, a_t } = csr_block(row, col, w.to_vec(), rows, halo.len() as i64, true, device) else {
        unreachable!("csr_block builds CSR")
    };
    InterBlock { halo: Tensor::from_slice(&halo).to(device), a, a_t, sources }
}

/// A block as CSR tensors from its entries in row order (`row` sorted), with its transpose when
/// asked (only a chunk's own block of a non-symmetric operator is differentiated through).
fn csr_block(row: &[i64], col: Vec<i64>, w: Vec<f32>, rows: i64, cols: i64, transpose: bool, device: Device) -> Intra {
    let mut crow = vec![0i64; rows as usize + 1];
    row.iter().for_each(|&r| crow[r as usize + 1] += 1);
    for i in 0..rows as usize {
        crow[i + 1] += crow[i];
    }
    // 32-bit indices where every index fits: the same products, two thirds of the bytes.
    let small = row.len() < i32::MAX as usize && rows.max(cols) < i32::MAX as i64;
    let csr = |crow: &[i64], col: &[i64], w: &[f32], size: [i64; 2]| {
        let t = |v: &[i64]| {
            let t = Tensor::from_slice(v);
            (if small { t.to_kind(Kind::Int) } else { t }).to(device)
        };
        Tensor::sparse_csr_tensor_crow_col_value_size(
            &t(crow),
            &t(col),
            &Tensor::from_slice(w).to(device),
            size,
            (Kind::Float, device),
        )
    };
    let a = csr(&crow, &col, &w, [rows, cols]);
    let a_t = if transpose {
        let m = strata_graph::CsrMatrix::from_parts("chunk block", rows as usize, cols as usize, crow, col, Some(w))
            .expect("rows visited in order")
            .transpose();
        csr(m.indptr(), m.indices(), &m.values_or_ones(), [cols, rows])
    } else {
        a.shallow_clone()
    };
    Intra::Csr { a, a_t }
}
