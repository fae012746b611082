//! # strata-pipe
//!
//! Layer-level pipeline parallelism for strata, after GNNPipe (Chen et al., 2023): the gRPC
//! wire format of the workers (`proto/strata/v1/worker.proto`) with chunked tensor streams,
//! the min–max stage planner, and the per-epoch communication-volume model that the launcher
//! prints beside its measurements.
//!
//! The worker service, coordinator and launcher are being built on these pieces (see the
//! pipeline issue); what is here is complete and tested on its own.

pub mod checkpoint;
pub mod chunks;
pub mod forward_stage;
pub mod layers;
pub mod launcher;
pub mod partition_stage;
pub mod pipeline;
pub mod plan;
pub mod schedule;
pub mod security;
pub mod stage;
pub mod volume;
pub mod wire;
pub mod worker;

/// Generated gRPC messages and service stubs.
pub mod proto {
    tonic::include_proto!("strata.v1");
}

pub use pipeline::{plan, PipeTrainer, PipelineConfig, PipelinePlan};
pub use plan::{bottleneck, flop_costs, min_max_split};
pub use schedule::{chunk_order, evaluate_in_process, train_epoch_in_process, EpochReport};
pub use stage::{Boundary, PipeModel, Stage, StageSpec};
pub use volume::{boundary_count, VolumeModel};
pub use wire::{encode, Assembler, TensorMeta, WireError, DEFAULT_CHUNK_BYTES};
