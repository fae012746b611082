//! # strata-pipe
//!
//! Distributed training for strata: layer-level pipeline parallelism after GNNPipe (Chen et al.,
//! 2023), the graph-parallel baseline and their hybrid, and forward-only pipelines of ForwardGNN
//! layers.
//!
//! - Settings: [`config`] (`PipelineConfig`, `StageSpec` and their enumerations), turned into a
//!   per-worker plan by [`plan`] (partitioner + the min–max split of [`costs`]).
//! - Engines, one per worker role: [`stage`] (a pipeline stage over chunks with historical
//!   embeddings, [`history`], [`chunks`]), [`partition_stage`] (a graph-parallel way),
//!   [`forward_stage`] (forward-only ForwardGNN layers); the slots they hold ([`layers`]), their
//!   checkpointable [`state`] and the [`collective`] operations between workers.
//! - Network: the gRPC wire format (`proto/strata/v1/worker.proto`) with chunked tensor streams
//!   ([`wire`]), the [`worker`] service, the [`launcher`] and [`run`] that drive a run, checkpoints with
//!   exact resume ([`checkpoint`]) and the cluster's credentials (token, mutual TLS:
//!   [`security`]); the per-epoch communication-volume model ([`volume`]).
//! - [`schedule`]: the same epochs in one process (tests compare the two).

pub mod boundary;
pub mod checkpoint;
pub mod chunk_conv;
pub mod chunks;
pub mod collective;
pub mod config;
pub mod costs;
pub mod error;
pub mod forward_stage;
pub mod history;
pub mod launcher;
pub mod layers;
pub mod partition_stage;
pub mod plan;
pub mod run;
pub mod schedule;
pub mod security;
pub mod stage;
pub mod stage_data;
pub mod state;
pub mod volume;
pub mod wire;
pub mod worker;

/// Generated gRPC messages and service stubs.
pub mod proto {
    tonic::include_proto!("strata.v1");
}

pub use boundary::Boundary;
pub use config::{Balance, HistoryDtype, Mode, PipeModel, PipeTrainer, PipelineConfig, StageSpec};
pub use costs::{bottleneck, flop_costs, memory_costs, min_max_split, min_max_split_with_entry};
pub use error::{PipeError, Result};
pub use plan::PipelinePlan;
pub use schedule::{chunk_order, evaluate_in_process, train_epoch_in_process, EpochReport};
pub use stage::Stage;
pub use stage_data::StageData;
pub use volume::{boundary_count, VolumeModel};
pub use wire::{encode, f32_bytes, Assembler, Pieces, TensorMeta, WireError, DEFAULT_CHUNK_BYTES};
