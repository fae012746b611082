//! Turning a dataset and a model into a plan for one of three modes:
//! - pipeline: K chunks from the multilevel partitioner (renumbered to contiguous ranges) and
//!   S stages from the min–max split of per-layer FLOP costs;
//! - graph: W partitions, each owning every layer (the graph-parallel baseline);
//! - hybrid: W ways × S stages — the vertices cut into W ways, each way cut into K/W chunks and
//!   pipelined over S stages, weights all-reduced across the ways.

use crate::config::{Balance, Mode, PipeModel, PipeTrainer, PipelineConfig, StageSpec};
use crate::costs::{flop_costs, memory_costs, min_max_split_with_entry, time_costs};
use strata_graph::{partition, ContiguousOrder, Dataset, Split};

/// The renumbered dataset every stage works on, and one spec per stage.
pub struct PipelinePlan {
    pub dataset: Dataset,
    pub specs: Vec<StageSpec>,
    pub offsets: Vec<usize>,
    /// Vertex range of each way.
    pub way_offsets: Vec<usize>,
    /// The renumbering: vertex `i` of [`PipelinePlan::dataset`] is vertex `order[i]` as given.
    pub order: Vec<usize>,
    /// Each stage's share as written by [`PipelinePlan::stage_to_disk`] (rank order), kept in
    /// a directory removed with the plan.
    pub staged: Option<(tempfile::TempDir, Vec<std::path::PathBuf>)>,
}

impl PipelinePlan {
    /// Writes every stage's share ([`crate::stage_data::StageData::write_stage_npz`]) into a temporary
    /// directory under `dir` (the system's when `None`) and then drops the feature matrix and
    /// labels from memory: the launcher streams the files to the workers (again after a restart)
    /// and keeps only the structure, which the volume model reads.
    pub fn stage_to_disk(&mut self, dir: Option<&std::path::Path>) -> Result<(), strata_graph::GraphError> {
        let tmp = match dir {
            Some(d) => {
                tempfile::tempdir_in(d).map_err(|e| strata_graph::GraphError::Io { path: d.into(), source: e })?
            }
            None => tempfile::tempdir()
                .map_err(|e| strata_graph::GraphError::Io { path: std::env::temp_dir(), source: e })?,
        };
        let mut paths = Vec::with_capacity(self.specs.len());
        for (rank, spec) in self.specs.iter().enumerate() {
            let path = tmp.path().join(format!("stage-{rank}.npz"));
            crate::stage_data::StageData::write_stage_npz(&self.dataset, spec, &path)?;
            paths.push(path);
        }
        // The width stays known (the volume model counts parameters from it).
        let cols = self.dataset.features.dim();
        self.dataset.features = strata_graph::Features::Dense { rows: 0, cols, data: Vec::new() };
        self.dataset.labels = Vec::new();
        self.staged = Some((tmp, paths));
        Ok(())
    }
}

impl PipelinePlan {
    /// Plans a run: renumbers the vertices so chunks (and ways) are contiguous id ranges and
    /// writes one spec per worker, in rank order (rank = way·S + stage).
    pub fn new(data: &Dataset, split: &Split, cfg: &PipelineConfig) -> PipelinePlan {
        PipelinePlan::from_owned(data.clone(), split, cfg)
    }

    /// [`PipelinePlan::new`], consuming `data` so that its renumbered copy is the only other
    /// one made (a launcher drops the graph as read anyway).
    pub fn from_owned(data: Dataset, split: &Split, cfg: &PipelineConfig) -> PipelinePlan {
        let k = cfg.num_chunks();
        let ways = cfg.ways.max(1);
        let sym = data.graph.symmetrized();
        let order = ContiguousOrder::new(&chunk_of_vertex(&sym, cfg), k);
        let mut d = data;
        d.graph = sym;
        d.splits = vec![split.clone()];
        // The graph as given is freed here, not at the end of the function.
        let d = { d }.permuted(&order.order);
        let renumbering = order.order.clone();
        let split = d.splits[0].clone();
        let ranges = stage_ranges(&d, cfg);
        let way_offsets: Vec<usize> = (0..=ways).map(|w| order.offsets[w * k / ways]).collect();
        let mut specs = Vec::new();
        for way in 0..ways {
            for (s, r) in ranges.iter().enumerate() {
                specs.push(StageSpec {
                    stage: s,
                    way,
                    ways,
                    way_offsets: way_offsets.clone(),
                    first: r.start,
                    last: r.end,
                    classes: d.num_classes as i64,
                    features: d.features.dim() as i64,
                    chunk_offsets: order.offsets.clone(),
                    train: split.train.clone(),
                    val: split.val.clone(),
                    test: split.test.clone(),
                    config: cfg.clone(),
                    checkpoint_root: None,
                });
            }
        }
        PipelinePlan { dataset: d, specs, offsets: order.offsets, way_offsets, order: renumbering, staged: None }
    }
}

/// Each vertex's chunk, chunk ids grouped by way: way w owns chunks w·K/W .. (w+1)·K/W.
fn chunk_of_vertex(sym: &strata_graph::CsrGraph, cfg: &PipelineConfig) -> Vec<usize> {
    let (k, ways) = (cfg.num_chunks(), cfg.ways.max(1));
    if ways == 1 || cfg.mode == Mode::Graph {
        return partition(sym, k, cfg.seed);
    }
    let way = partition(sym, ways, cfg.seed);
    let per = k / ways;
    let mut chunk = vec![0; sym.num_nodes()];
    for w in 0..ways {
        let nodes: Vec<usize> = (0..sym.num_nodes()).filter(|&u| way[u] == w).collect();
        let sub = partition(&sym.induced_subgraph(&nodes), per, cfg.seed);
        nodes.iter().zip(sub).for_each(|(&u, c)| chunk[u] = w * per + c);
    }
    chunk
}

/// The slots each stage owns: the min–max split of per-slot costs (FLOPs or bytes).
fn stage_ranges(d: &Dataset, cfg: &PipelineConfig) -> Vec<std::ops::Range<usize>> {
    if cfg.mode == Mode::Graph {
        return std::iter::once(0..cfg.layers + 2).collect();
    }
    let nnz_x = match &d.features {
        strata_graph::Features::Sparse(m) => m.nnz(),
        strata_graph::Features::Dense { rows, cols, .. } => rows * cols,
    };
    let edges = d.graph.num_entries() + d.num_nodes();
    let (costs, entry) = match cfg.balance {
        Balance::Time => (time_costs(d.num_nodes(), edges, nnz_x, cfg.hidden as usize, d.num_classes, cfg.layers), 0.0),
        Balance::Compute => {
            (flop_costs(d.num_nodes(), edges, nnz_x, cfg.hidden as usize, d.num_classes, cfg.layers), 0.0)
        }
        Balance::Memory => {
            let boundary = if cfg.model == PipeModel::Gcnii { 2 } else { 1 };
            memory_costs(d.num_nodes(), nnz_x, cfg.hidden as usize, cfg.layers, cfg.history_dtype.bytes(), boundary)
        }
    };
    if cfg.trainer != PipeTrainer::Sf {
        return min_max_split_with_entry(&costs, cfg.stages, entry);
    }
    // No classifier slot: split the layers, and let the last stage hold the unused slot.
    let mut r = min_max_split_with_entry(&costs[..cfg.layers + 1], cfg.stages, entry);
    if let Some(last) = r.last_mut() {
        last.end = cfg.layers + 2;
    }
    r
}
