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

/// How a chunk's inter-chunk columns are indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Columns {
    /// Global vertex ids: products read an N-row buffer in place (f32 buffers).
    Global,
    /// Positions in the chunk's halo: the halo's rows are gathered first (16-bit buffers, which
    /// libtorch's sparse products do not take).
    Halo,
}

/// A chunk's rows of the operator restricted to other chunks' columns, as CSR with 32-bit
/// indices where they fit ([`Columns`] says what a column is).
pub struct InterBlock {
    /// The halo's global ids, ascending, when columns are halo positions.
    pub halo: Option<Tensor>,
    pub a: Tensor,
    /// The same rows and columns of the transposed operator (`None`: the operator is
    /// symmetric, and this is `a`).
    back: Option<Tensor>,
    /// A graph-parallel partition's `aᵀ` (halo × rows), for the halo rows' gradients.
    pub a_t: Option<Tensor>,
    /// The chunks the columns' vertices lie in, ascending.
    pub sources: Vec<usize>,
}

impl InterBlock {
    /// The rows of `buf` (N rows) the columns name, as f32.
    fn columns_of(&self, buf: &Tensor) -> Tensor {
        match &self.halo {
            Some(h) => buf.index_select(0, h).to_kind(Kind::Float),
            None => buf.shallow_clone(),
        }
    }

    /// `a · buf` for a buffer of every vertex's rows, without autograd: the chunk's aggregate
    /// over its neighbours in other chunks.
    pub fn aggregate(&self, buf: &Tensor) -> Tensor {
        tch::no_grad(|| strata_nn::ops::spmm(&self.a, &self.a, &self.columns_of(buf)))
    }

    /// For each row v of the chunk, `Σ_r A[r, v] · g[r]` over the other chunks' rows r: what
    /// the chunk's rows get back from the aggregates that read them, given those aggregates'
    /// gradients `g` (f32, every vertex's rows; zero where nothing is due). The transposed
    /// product of the readers' blocks, computed as the reading chunk's own row block of `Aᵀ`.
    pub fn gradient_from(&self, g: &Tensor) -> Tensor {
        let m = self.back.as_ref().unwrap_or(&self.a);
        tch::no_grad(|| strata_nn::ops::spmm(m, m, &self.columns_of(g)))
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
    /// is the operator the model's convolutions aggregate over; `columns` how the chunks'
    /// inter-chunk blocks index their columns.
    pub fn new(graph: &CsrGraph, norm: Norm, offsets: &[usize], columns: Columns, device: Device) -> ChunkedGraph {
        let op = Operator::new(graph, norm);
        let k = offsets.len() - 1;
        let chunks = (0..k).map(|c| op.block(offsets, c, Block::Chunk(columns), device)).collect();
        let full_blocks = (0..k).map(|c| op.block(offsets, c, Block::Whole, device)).collect();
        ChunkedGraph { n: op.g.num_nodes() as i64, offsets: offsets.to_vec(), chunks, full_blocks }
    }

    /// Chunk `c` alone, its inter block over its halo with the transpose (a graph-parallel
    /// way keeps only its own partition).
    pub fn one_chunk(graph: &CsrGraph, norm: Norm, offsets: &[usize], c: usize, device: Device) -> Chunk {
        Operator::new(graph, norm).block(offsets, c, Block::Partition, device)
    }
}

/// What [`Operator::block`] cuts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    /// Every edge of the rows, global columns, no inter part (exact inference).
    Whole,
    /// A pipeline chunk: intra edges, and inter edges by `Columns`.
    Chunk(Columns),
    /// A graph-parallel partition: intra edges, inter edges over the halo with their transpose.
    Partition,
}

/// The normalised operator (a graph whose values are its weights), from which chunks are cut.
struct Operator {
    g: CsrGraph,
    /// The transposed operator, where it differs (GraphSAGE's mean).
    gt: Option<strata_graph::CsrMatrix>,
    symmetric: bool,
    /// Attention reads the edges themselves: no CSR block.
    edges_only: bool,
}

impl Operator {
    fn new(graph: &CsrGraph, norm: Norm) -> Operator {
        let g = norm.apply(&graph.symmetrized());
        let symmetric = norm != Norm::Mean;
        let gt = (!symmetric).then(|| g.adjacency().transpose());
        Operator { g, gt, symmetric, edges_only: norm == Norm::SelfLoops }
    }

    /// Chunk `c`'s rows: split into intra and inter edges, or every edge as one operator with
    /// global columns ([`Block::Whole`]).
    fn block(&self, offsets: &[usize], c: usize, kind: Block, device: Device) -> Chunk {
        let g = &self.g;
        let whole = kind == Block::Whole;
        let (start, end) = (offsets[c], offsets[c + 1]);
        let chunk_of = |u: usize| (offsets.partition_point(|&o| o <= u) - 1) as u32;
        let inside = |v: i64| v as usize >= start && (v as usize) < end;
        let (mut ir, mut ic, mut iw, mut inter) = (vec![], vec![], vec![], Entries::default());
        for u in start..end {
            let vals = g.adjacency().row_values(u);
            let local = (u - start) as i64;
            for (j, &v) in g.neighbors(u).iter().enumerate() {
                let w = vals.map_or(1.0, |x| x[j]);
                if whole || inside(v) {
                    ir.push(local);
                    ic.push(if whole { v } else { v - start as i64 });
                    iw.push(w);
                } else {
                    inter.push(local, v, w);
                }
            }
        }
        // The transposed operator's inter entries, where it differs (same pattern: the graph
        // is symmetrised).
        let back = self.gt.as_ref().filter(|_| !whole).map(|gt| {
            let mut e = Entries::default();
            for u in start..end {
                let vals = gt.row_values(u);
                for (j, &v) in gt.row(u).iter().enumerate().filter(|(_, &v)| !inside(v)) {
                    e.push((u - start) as i64, v, vals.map_or(1.0, |x| x[j]));
                }
            }
            e
        });
        let t = |v: &[i64]| Tensor::from_slice(v).to(device);
        let f = |v: &[f32]| Tensor::from_slice(v).to(device);
        let rows = (end - start) as i64;
        let cols = if whole { g.num_nodes() as i64 } else { rows };
        let transpose = !(self.symmetric || whole);
        // A chunk's own block is CSR whatever its size: GCNII then runs strata-nn's fused layer,
        // a few operators per chunk where the edge list takes a dozen (on Cora, 340-row chunks,
        // the pipeline's epoch was 1.2-1.3x the single process with edge lists, 1.05-1.1x with
        // CSR blocks; P = 2, one core each, two runs). Whole-graph inference keeps the kernel
        // the graph's size calls for.
        let csr = !whole || strata_nn::Kernel::for_edges(ir.len()) == strata_nn::Kernel::Csr;
        let intra = if !self.edges_only && csr {
            csr_block(&ir, ic, iw, rows, cols, transpose, device)
        } else {
            Intra::Edges { row: t(&ir), col: t(&ic), w: f(&iw) }
        };
        // Attention keeps the list, in 32-bit ids (half the bytes of the largest structure a
        // stage keeps); they are widened per chunk where used (`Stage::split_inter`).
        let inter_edges = (self.edges_only && !whole).then(|| {
            let id_kind = if g.num_nodes() <= i32::MAX as usize { Kind::Int } else { Kind::Int64 };
            let ids = |v: &[i64]| Tensor::from_slice(v).to_kind(id_kind).to(device);
            let src_chunk = inter.col.iter().map(|&v| chunk_of(v as usize)).collect();
            InterEdges { row: ids(&inter.row), col: ids(&inter.col), w: f(&inter.w), src_chunk }
        });
        let inter_block = match kind {
            _ if inter.row.is_empty() => None,
            Block::Whole => None,
            Block::Chunk(columns) => Some(inter.block(back, rows, g.num_nodes(), columns, false, &chunk_of, device)),
            Block::Partition => Some(inter.block(back, rows, g.num_nodes(), Columns::Halo, true, &chunk_of, device)),
        };
        Chunk { start: start as i64, end: end as i64, intra, inter: inter_block, inter_edges }
    }
}

/// A chunk's inter entries `(row, global column, weight)`, rows ascending.
#[derive(Default)]
struct Entries {
    row: Vec<i64>,
    col: Vec<i64>,
    w: Vec<f32>,
}

impl Entries {
    fn push(&mut self, row: i64, col: i64, w: f32) {
        self.row.push(row);
        self.col.push(col);
        self.w.push(w);
    }

    /// The entries as an [`InterBlock`] of `rows` rows over `n` vertices; `back` the
    /// transposed operator's entries (same pattern); `transpose`: also `aᵀ`.
    #[allow(clippy::too_many_arguments)]
    fn block(
        self,
        back: Option<Entries>,
        rows: i64,
        n: usize,
        columns: Columns,
        transpose: bool,
        chunk_of: &dyn Fn(usize) -> u32,
        device: Device,
    ) -> InterBlock {
        let mut halo = self.col.clone();
        halo.sort_unstable();
        halo.dedup();
        let mut sources: Vec<usize> = halo.iter().map(|&v| chunk_of(v as usize) as usize).collect();
        sources.dedup();
        let cols = match columns {
            Columns::Global => n as i64,
            Columns::Halo => halo.len() as i64,
        };
        let place = |c: &[i64]| -> Vec<i64> {
            match columns {
                Columns::Global => c.to_vec(),
                Columns::Halo => c.iter().map(|v| halo.partition_point(|x| x < v) as i64).collect(),
            }
        };
        let csr = |e: Entries, transpose: bool| {
            let Intra::Csr { a, a_t } = csr_block(&e.row, place(&e.col), e.w, rows, cols, transpose, device) else {
                unreachable!("csr_block builds CSR")
            };
            (a, a_t)
        };
        let (a, a_t) = csr(self, transpose);
        InterBlock {
            halo: (columns == Columns::Halo).then(|| Tensor::from_slice(&halo).to(device)),
            a,
            back: back.map(|e| csr(e, false).0),
            a_t: transpose.then_some(a_t),
            sources,
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
