//! What one worker receives of the graph: the structure for every vertex (each stage aggregates
//! over all chunks), the input features only for the rows its role projects (none on a stage
//! without the input projection, the partition's rows on a graph-parallel way), and labels
//! only where a loss is computed. Features arrive normalised: `auto` is resolved on the whole
//! matrix by the launcher, so every worker's rows are scaled alike.

use crate::config::StageSpec;
use crate::config::{Mode, PipeTrainer};
use crate::error::PipeError;
use std::ops::Range;
use std::path::Path;
use strata_graph::npz::{Npz, NpzFileWriter, NpzWriter};
use strata_graph::{CsrGraph, Dataset, FeatureNorm, Features, GraphError};

const SPLIT_KEYS: [&str; 3] = ["idx_train", "idx_val", "idx_test"];

/// One stage's share of a dataset.
#[derive(Clone, Debug)]
pub struct StageData {
    pub graph: CsrGraph,
    /// Normalised feature rows `feature_rows` (row i here is vertex `feature_rows.start + i`).
    pub features: Features,
    pub feature_rows: Range<usize>,
    /// One per vertex; −1 where this stage was not sent the label.
    pub labels: Vec<i64>,
    /// The split's node ids (train, val, test): they travel here rather than in the stage
    /// spec, whose JSON must fit one gRPC message.
    pub split: [Vec<usize>; 3],
}

impl StageData {
    /// Everything, normalised (in-process training and tests).
    pub fn whole(data: &Dataset) -> StageData {
        let (features, _) = data.features.normalized(FeatureNorm::Auto);
        let split =
            data.splits.first().map_or_else(Default::default, |s| [s.train.clone(), s.val.clone(), s.test.clone()]);
        StageData {
            graph: data.graph.clone(),
            features,
            feature_rows: 0..data.num_nodes(),
            labels: data.labels.clone(),
            split,
        }
    }

    /// The feature rows and the labelled rows `spec`'s role uses, on a graph of `n` vertices.
    pub fn needed(spec: &StageSpec, n: usize) -> (Range<usize>, Range<usize>) {
        let cfg = &spec.config;
        if cfg.trainer != PipeTrainer::Sf && cfg.mode == Mode::Graph {
            let (lo, hi) = (
                spec.chunk_offsets.get(spec.way).copied().unwrap_or(0),
                spec.chunk_offsets.get(spec.way + 1).copied().unwrap_or(0),
            );
            return (lo..hi.max(lo), lo..hi.max(lo));
        }
        let rows = if spec.first == 0 { 0..n } else { 0..0 };
        // Forward-only layers each train on the labels; backprop only at the classifier.
        let labels = if cfg.trainer == PipeTrainer::Sf || spec.last == cfg.layers + 2 { 0..n } else { 0..0 };
        (rows, labels)
    }

    /// What `spec`'s role needs of `data` (already renumbered by the plan).
    pub fn for_stage(data: &Dataset, spec: &StageSpec) -> StageData {
        let n = data.num_nodes();
        let (rows, labels_needed) = Self::needed(spec, n);
        // `auto` is decided on the whole matrix; rows are then normalised one by one.
        let norm = FeatureNorm::Auto.resolve(&data.features);
        // The input stage takes every row: no copy before normalising.
        let (features, _) = if rows == (0..n) {
            data.features.normalized(norm)
        } else {
            data.features.select_rows(&rows.clone().collect::<Vec<_>>()).normalized(norm)
        };
        let mut labels = vec![-1; n];
        labels[labels_needed.clone()].copy_from_slice(&data.labels[labels_needed]);
        StageData {
            graph: data.graph.clone(),
            features,
            feature_rows: rows,
            labels,
            split: [spec.train.clone(), spec.val.clone(), spec.test.clone()],
        }
    }

    /// [`StageData::for_stage`]`.to_npz()` written to `path` piece by piece: the structure,
    /// labels and split straight from `data`, dense feature rows normalised one at a time, so
    /// the launcher never holds a second copy of the graph (sparse features, small by nature,
    /// are selected and normalised as a whole). Returns the file's size.
    pub fn write_stage_npz(data: &Dataset, spec: &StageSpec, path: &Path) -> Result<u64, GraphError> {
        let n = data.num_nodes();
        let (rows, labels_needed) = Self::needed(spec, n);
        let norm = FeatureNorm::Auto.resolve(&data.features);
        let mut w = NpzFileWriter::create(path)?;
        w.csr("adj_", data.graph.adjacency())?;
        match &data.features {
            Features::Dense { cols, data: x, .. } => {
                let cols = *cols;
                let rows = rows.clone();
                let mut row = vec![0f32; cols];
                w.array_from("attr_matrix", "<f4", &[rows.len(), cols], rows.len(), |i, out| {
                    let u = rows.start + i;
                    row.copy_from_slice(&x[u * cols..(u + 1) * cols]);
                    match norm {
                        FeatureNorm::RowSum => strata_graph::row_sum_normalize(&mut row),
                        FeatureNorm::None | FeatureNorm::Auto => {}
                        FeatureNorm::Standardize => unreachable!("auto never resolves to standardize"),
                    }
                    row.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
                })?;
            }
            Features::Sparse(_) => {
                let picked = if rows == (0..n) {
                    data.features.normalized(norm).0
                } else {
                    data.features.select_rows(&rows.clone().collect::<Vec<_>>()).normalized(norm).0
                };
                let Features::Sparse(m) = &picked else { unreachable!("row-sum and none keep sparse features sparse") };
                w.csr("attr_", m)?;
            }
        }
        w.i64s("attr_rows", &[rows.start as i64, rows.end as i64])?;
        let labels = &data.labels;
        w.array_from("labels", "<i8", &[n], n, |i, out| {
            out.extend_from_slice(&(if labels_needed.contains(&i) { labels[i] } else { -1 }).to_le_bytes())
        })?;
        for (key, ids) in SPLIT_KEYS.iter().zip([&spec.train, &spec.val, &spec.test]) {
            w.i64s(key, &ids.iter().map(|&i| i as i64).collect::<Vec<_>>())?;
        }
        w.finish()
    }

    pub fn num_nodes(&self) -> usize {
        self.graph.num_nodes()
    }

    /// Feature rows `r` (which must lie within what this stage was sent).
    pub fn rows(&self, r: Range<usize>) -> std::borrow::Cow<'_, Features> {
        assert!(
            r.start >= self.feature_rows.start && r.end <= self.feature_rows.end,
            "rows {r:?} outside the {:?} this stage holds",
            self.feature_rows
        );
        let off = self.feature_rows.start;
        if r == self.feature_rows {
            return std::borrow::Cow::Borrowed(&self.features);
        }
        std::borrow::Cow::Owned(self.features.select_rows(&(r.start - off..r.end - off).collect::<Vec<_>>()))
    }

    /// The npz a launcher streams to a worker.
    pub fn to_npz(&self) -> NpzWriter {
        let mut w = NpzWriter::new();
        w.csr("adj_", self.graph.adjacency());
        w.features(&self.features);
        w.i64s("attr_rows", &[2], &[self.feature_rows.start as i64, self.feature_rows.end as i64]);
        w.i64s("labels", &[self.labels.len()], &self.labels);
        for (key, ids) in SPLIT_KEYS.iter().zip(&self.split) {
            w.i64s(key, &[ids.len()], &ids.iter().map(|&i| i as i64).collect::<Vec<_>>());
        }
        w
    }

    /// Reads [`StageData::to_npz`]'s layout, checking every size against the graph.
    pub fn from_npz(path: &Path) -> Result<StageData, GraphError> {
        let ctx = path.display().to_string();
        let mut npz = Npz::open(path)?;
        let adj = strata_graph::formats::read_csr(&mut npz, "adj_", &format!("{ctx}: adjacency"))?;
        let graph = CsrGraph::from_adjacency(&ctx, adj)?;
        let n = graph.num_nodes();
        let r = npz.i64s("attr_rows", "the feature row range, int64[2]")?;
        let bad = |msg: String| GraphError::Npy { path: path.into(), key: "attr_rows".into(), msg };
        if r.len() != 2 || r[0] < 0 || r[0] > r[1] || r[1] as u64 > n as u64 {
            return Err(bad(format!("expected a row range within 0..{n}, found {r:?}")));
        }
        let rows = r[0] as usize..r[1] as usize;
        let features = if npz.contains("attr_data") {
            Features::Sparse(strata_graph::formats::read_csr(&mut npz, "attr_", &format!("{ctx}: features"))?)
        } else {
            let a = npz.array("attr_matrix", "dense features, float32[rows, features]")?;
            let cols = if a.shape.len() == 2 { a.shape[1] } else { usize::MAX };
            if a.shape.len() != 2 || a.shape[0] != rows.len() {
                return Err(bad(format!("attr_matrix has shape {:?}, expected {} rows", a.shape, rows.len())));
            }
            let data = a.f32_values().ok_or_else(|| bad("attr_matrix must be float".into()))?;
            Features::dense(rows.len(), cols, data)
        };
        if features.num_nodes() != rows.len() {
            return Err(bad(format!("{} feature rows for the range {rows:?}", features.num_nodes())));
        }
        features.check_finite(&ctx)?;
        let labels = npz.i64s("labels", "integer class labels")?;
        if labels.len() != n {
            return Err(GraphError::invalid(&ctx, format!("{} labels for {n} nodes", labels.len())));
        }
        if let Some(&l) = labels.iter().find(|&&l| l < -1 || l >= strata_graph::limits::MAX_CLASSES as i64) {
            return Err(GraphError::invalid(&ctx, strata_graph::limits::label(l).unwrap_err()));
        }
        let mut split: [Vec<usize>; 3] = Default::default();
        for (key, ids) in SPLIT_KEYS.iter().zip(&mut split) {
            let v = npz.i64s(key, "node ids")?;
            if let Some(&bad) = v.iter().find(|&&i| i < 0 || i as u64 >= n as u64) {
                return Err(GraphError::Npy {
                    path: path.into(),
                    key: key.to_string(),
                    msg: format!("node id {bad} outside 0..{n}"),
                });
            }
            *ids = v.into_iter().map(|i| i as usize).collect();
        }
        Ok(StageData { graph, features, feature_rows: rows, labels, split })
    }
}

impl StageSpec {
    /// Checks every field against itself and against the graph received with it (its vertices,
    /// the feature rows and columns this stage's role needs, labels below `classes`) and the
    /// `peers` listed, so a bad spec is refused by name instead of panicking a stage later.
    pub fn validate(&self, data: &StageData, peers: usize) -> Result<(), PipeError> {
        let nodes = data.num_nodes();
        let c = &self.config;
        c.validate()?;
        c.validate_for(nodes)?;
        if ![c.dropout, c.alpha, c.theta, c.lr, c.weight_decay, c.weight_decay_conv, c.grad_scale]
            .iter()
            .all(|v| v.is_finite())
            || !(0.0..1.0).contains(&c.dropout)
        {
            return Err(PipeError::Config("hyper-parameters must be finite, and dropout in [0, 1)".into()));
        }
        if peers != c.workers() {
            return Err(PipeError::Config(format!(
                "{peers} peers listed but the configuration has {} workers",
                c.workers()
            )));
        }
        if self.ways != c.ways.max(1) || self.way >= self.ways || self.stage >= c.stages.max(1) {
            return Err(PipeError::Config(format!(
                "way {} of {} and stage {} do not fit {} ways × {} stages",
                self.way, self.ways, self.stage, c.ways, c.stages
            )));
        }
        if self.first >= self.last || self.last > c.layers + 2 {
            return Err(PipeError::Config(format!(
                "slots {}..{} are not a range within 0..{}",
                self.first,
                self.last,
                c.layers + 2
            )));
        }
        let offsets_ok = |o: &[usize], parts: usize| {
            o.len() == parts + 1 && o[0] == 0 && o[parts] == nodes && o.windows(2).all(|w| w[0] <= w[1])
        };
        if !offsets_ok(&self.chunk_offsets, c.num_chunks()) {
            return Err(PipeError::Config(format!(
                "chunk offsets must rise from 0 to {nodes} in {} chunks",
                c.num_chunks()
            )));
        }
        if !self.way_offsets.is_empty() && !offsets_ok(&self.way_offsets, self.ways) {
            return Err(PipeError::Config(format!("way offsets must rise from 0 to {nodes} in {} ways", self.ways)));
        }
        for (name, ids) in [("train", &self.train), ("val", &self.val), ("test", &self.test)] {
            if let Some(&bad) = ids.iter().find(|&&i| i >= nodes) {
                return Err(PipeError::Config(format!(
                    "{name} node {bad} is out of range (the graph has {nodes} nodes)"
                )));
            }
        }
        let (rows, _) = StageData::needed(self, nodes);
        if data.feature_rows != rows {
            return Err(PipeError::Config(format!(
                "this stage needs feature rows {rows:?}, the launcher sent {:?}",
                data.feature_rows
            )));
        }
        let max_label = data.labels.iter().copied().max().unwrap_or(-1);
        if self.classes < 1
            || max_label >= self.classes
            || (!rows.is_empty() && data.features.dim() as i64 != self.features)
        {
            return Err(PipeError::Config(format!(
                "the spec says {} features and {} classes, the graph has {} features and labels up to {max_label}",
                self.features,
                self.classes,
                data.features.dim()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, PipelineConfig};
    use crate::plan::PipelinePlan;

    fn graph() -> Dataset {
        strata_graph::planted::planted_partition(&strata_graph::planted::PlantedSpec {
            nodes: 400,
            degree: 6.0,
            features: 5,
            classes: 3,
            ..Default::default()
        })
        .unwrap()
    }

    /// Each role gets only what it uses, and the share survives the npz round trip.
    #[test]
    fn each_stage_receives_only_its_share() {
        let d = graph();
        let split = d.splits[0].clone();
        let cfg = PipelineConfig { epochs: 1, ..PipelineConfig::gcnii(4, 3) };
        let p = PipelinePlan::new(&d, &split, &cfg);
        let dir = tempfile::tempdir().unwrap();
        for (s, spec) in p.specs.iter().enumerate() {
            let share = StageData::for_stage(&p.dataset, spec);
            let path = dir.path().join(format!("s{s}.npz"));
            share.to_npz().write(&path).unwrap();
            let back = StageData::from_npz(&path).unwrap();
            // What the launcher streams from disk reads back as the same share.
            let streamed = dir.path().join(format!("streamed{s}.npz"));
            let size = StageData::write_stage_npz(&p.dataset, spec, &streamed).unwrap();
            assert_eq!(size, std::fs::metadata(&streamed).unwrap().len());
            same_share(&StageData::from_npz(&streamed).unwrap(), &back);
            let input = spec.first == 0;
            let head = spec.last == cfg.layers + 2;
            assert_eq!(back.feature_rows, if input { 0..400 } else { 0..0 }, "stage {s}");
            assert_eq!(back.features.num_nodes(), back.feature_rows.len());
            assert_eq!(back.labels.iter().any(|&l| l >= 0), head, "stage {s}");
            assert_eq!(back.graph.fingerprint(), p.dataset.graph.fingerprint());
            assert_eq!(back.split, [spec.train.clone(), spec.val.clone(), spec.test.clone()]);
            spec.validate(&back, cfg.workers()).unwrap();
        }
        // A graph-parallel way: its partition's rows and labels only.
        let cfg = PipelineConfig { mode: Mode::Graph, ways: 2, stages: 1, ..PipelineConfig::gcnii(2, 1) };
        let p = PipelinePlan::new(&d, &split, &cfg);
        let spec = &p.specs[1];
        let share = StageData::for_stage(&p.dataset, spec);
        let rows = spec.chunk_offsets[1]..spec.chunk_offsets[2];
        assert_eq!(share.feature_rows, rows);
        assert!(share.labels.iter().enumerate().all(|(i, &l)| (l >= 0) == rows.contains(&i)));
        assert_eq!(
            share.rows(rows.clone()).to_dense(),
            p.dataset.features.select_rows(&rows.collect::<Vec<_>>()).normalized(FeatureNorm::Auto).0.to_dense()
        );
        let streamed = dir.path().join("way1.npz");
        StageData::write_stage_npz(&p.dataset, spec, &streamed).unwrap();
        let in_memory = dir.path().join("way1-in-memory.npz");
        share.to_npz().write(&in_memory).unwrap();
        same_share(&StageData::from_npz(&streamed).unwrap(), &StageData::from_npz(&in_memory).unwrap());
    }

    fn same_share(a: &StageData, b: &StageData) {
        assert_eq!(a.graph.adjacency(), b.graph.adjacency());
        assert_eq!(a.features, b.features);
        assert_eq!((&a.feature_rows, &a.labels, &a.split), (&b.feature_rows, &b.labels, &b.split));
    }

    /// Non-negative dense rows are divided by their sums on the way to disk, as in memory;
    /// sparse features take the in-memory path.
    #[test]
    fn streamed_shares_normalise_like_in_memory_ones() {
        let mut d = graph();
        let strata_graph::Features::Dense { data, .. } = &mut d.features else { panic!("planted features are dense") };
        data.iter_mut().for_each(|v| *v = v.abs());
        let cfg = PipelineConfig { epochs: 1, ..PipelineConfig::gcnii(4, 3) };
        let split = d.splits[0].clone();
        let dir = tempfile::tempdir().unwrap();
        for features in [d.features.clone(), strata_graph::Features::identity(d.num_nodes())] {
            let mut d = d.clone();
            d.features = features;
            let p = PipelinePlan::new(&d, &split, &cfg);
            let spec = &p.specs[0];
            let path = dir.path().join("s0.npz");
            StageData::write_stage_npz(&p.dataset, spec, &path).unwrap();
            let back = StageData::from_npz(&path).unwrap();
            let in_memory = dir.path().join("in-memory.npz");
            StageData::for_stage(&p.dataset, spec).to_npz().write(&in_memory).unwrap();
            same_share(&back, &StageData::from_npz(&in_memory).unwrap());
            assert_eq!(back.features.to_dense(), p.dataset.features.row_normalized().to_dense());
        }
    }
}
