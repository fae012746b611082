//! # strata-pipe
//!
//! Distributed training for strata: layer-level pipeline parallelism after GNNPipe (Chen et al.,
//! 2023), the graph-parallel baseline and their hybrid, and forward-only pipelines of ForwardGNN
//! layers. The gRPC wire format (`proto/strata/v1/worker.proto`) with chunked tensor streams,
//! the min–max stage planner, the per-epoch communication-volume model, the worker service and
//! the launcher; checkpoints with exact resume ([`checkpoint`]), and the cluster's credentials
//! (token, mutual TLS: [`security`]).

pub mod checkpoint;
pub mod chunks;
pub mod forward_stage;
pub mod launcher;
pub mod layers;
pub mod partition_stage;
pub mod pipeline;
pub mod plan;
pub mod schedule;
pub mod security;
pub mod stage;
pub mod stage_data;
pub mod volume;
pub mod wire;
pub mod worker;

/// Generated gRPC messages and service stubs.
pub mod proto {
    tonic::include_proto!("strata.v1");
}

pub use pipeline::{plan, plan_owned, Balance, HistoryDtype, PipeTrainer, PipelineConfig, PipelinePlan};
pub use plan::{bottleneck, flop_costs, memory_costs, min_max_split, min_max_split_with_entry};
pub use schedule::{chunk_order, evaluate_in_process, train_epoch_in_process, EpochReport};
pub use stage::{Boundary, PipeModel, Stage, StageSpec};
pub use stage_data::StageData;
pub use volume::{boundary_count, VolumeModel};
pub use wire::{encode, f32_bytes, Assembler, Pieces, TensorMeta, WireError, DEFAULT_CHUNK_BYTES};
