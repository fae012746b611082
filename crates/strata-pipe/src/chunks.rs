//! The graph cut into K chunks (contiguous id ranges after renumbering), with each chunk's
//! normalised in-edges split into intra-chunk edges (both ends in the chunk) and inter-chunk
//! edges (source elsewhere: read from the historical embeddings).

use strata_graph::CsrGraph;
use tch::{Device, Tensor};

/// One chunk's rows of the normalised operator `D̃^{-1/2}(A+I)D̃^{-1/2}`.
pub struct Chunk {
    pub start: i64,
    pub end: i64,
    /// Intra edges, both ends as chunk-local ids: an edge list, or a CSR operator when there
    /// are enough of them that the list's E × d message tensors would dominate memory
    /// (`Kernel::for_edges`); never both.
    pub intra: Intra,
    /// Inter edges: target chunk-local, source global.
    pub inter_row: Tensor,
    pub inter_col: Tensor,
    pub inter_w: Tensor,
    /// The chunk each inter edge's source lies in.
    pub inter_src_chunk: Vec<usize>,
}

/// A chunk's intra-chunk operator.
pub enum Intra {
    Edges { row: Tensor, col: Tensor, w: Tensor },
    Csr(Tensor),
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
            // The block of a symmetric operator on the chunk's own rows is symmetric (the
            // weights are built bit-symmetric below): it is its own transpose in backward.
            Intra::Csr(a) => strata_nn::ops::spmm(a, a, x),
            Intra::Edges { row, col, w } => crate::layers::gather_add(Tensor::zeros_like(x), row, x, col, w),
        }
    }
}

/// All chunks plus the whole graph as one chunk (for exact full-graph inference).
pub struct ChunkedGraph {
    pub n: i64,
    pub offsets: Vec<usize>,
    pub chunks: Vec<Chunk>,
    pub full: Chunk,
}

impl ChunkedGraph {
    /// `graph` must already be renumbered so chunk `k` is `offsets[k]..offsets[k+1]`.
    pub fn new(graph: &CsrGraph, offsets: &[usize], device: Device) -> ChunkedGraph {
        let g = graph.symmetrized().without_self_loops().with_self_loops(1.0);
        let deg = g.weighted_degrees();
        let dinv: Vec<f32> = deg.iter().map(|&d| if d > 0.0 { d.powf(-0.5) } else { 0.0 }).collect();
        let k = offsets.len() - 1;
        let chunk_of = |u: usize| offsets.partition_point(|&o| o <= u) - 1;
        let build = |start: usize, end: usize, whole: bool| {
            let (mut ir, mut ic, mut iw, mut er, mut ec, mut ew, mut es) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
            for u in start..end {
                let vals = g.adjacency().row_values(u);
                for (j, &v) in g.neighbors(u).iter().enumerate() {
                    let w = vals.map_or(1.0, |x| x[j]) * (dinv[u] * dinv[v as usize]);
                    let local = (u - start) as i64;
                    if whole || (v as usize >= start && (v as usize) < end) {
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
            let intra = if strata_nn::Kernel::for_edges(ir.len()) == strata_nn::Kernel::Csr {
                // `ir` is sorted (rows are visited in order): row pointers from the counts.
                let mut crow = vec![0i64; end - start + 1];
                ir.iter().for_each(|&r| crow[r as usize + 1] += 1);
                for i in 0..end - start {
                    crow[i + 1] += crow[i];
                }
                drop(ir);
                Intra::Csr(Tensor::sparse_csr_tensor_crow_col_value_size(&t(&crow), &t(&ic), &f(&iw), [rows, rows], (tch::Kind::Float, device)))
            } else {
                Intra::Edges { row: t(&ir), col: t(&ic), w: f(&iw) }
            };
            Chunk {
                start: start as i64,
                end: end as i64,
                intra,
                inter_row: t(&er),
                inter_col: t(&ec),
                inter_w: f(&ew),
                inter_src_chunk: es,
            }
        };
        let chunks = (0..k).map(|c| build(offsets[c], offsets[c + 1], false)).collect();
        ChunkedGraph { n: g.num_nodes() as i64, offsets: offsets.to_vec(), chunks, full: build(0, g.num_nodes(), true) }
    }
}
