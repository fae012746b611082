//! # strata-pipe
//!
//! Distributed training for strata: layer-level pipeline parallelism after GNNPipe (Chen et al.,
//! 2023), the graph-parallel baseline and their hybrid, and forward-only pipelines of ForwardGNN
//! layers.
//!
//! - Settings: [`config`] (`PipelineConfig`, `StageSpec` and their enumerations), turned into a
//!   per-worker plan by [`plan`] (partitioner + the min–max split of [`costs`]).
//! - The epoch as data: [`schedule`] turns a worker's spec, the chunk order and train-or-infer
//!   into a list of actions; [`interpreter`] runs such a list over an engine and a
//!   [`transport`] (the network, or in-process queues) and measures the per-phase breakdown;
//!   [`in_process`] runs every worker of a run in one thread (the tests' reference).
//! - Engines, one per worker role, on one core ([`stage_core`]: parameters, optimizer, loss,
//!   scoring, seeding, state, and the `Engine` trait for what differs): [`stage`] (a pipeline
//!   stage over chunks with historical embeddings, [`history`], [`chunks`]), [`graph_way`] (a
//!   graph-parallel way), [`forward_stage`] (forward-only ForwardGNN layers); the slots they
//!   hold ([`layers`]), their checkpointable [`state`] and the flat gradients the all-reduce
//!   sums ([`collective`]).
//! - Network: the gRPC wire format (`proto/strata/v1/worker.proto`) with chunked tensor streams
//!   ([`wire`]), the [`worker`] service, the [`launcher`] and [`run`] that drive a run, checkpoints with
//!   exact resume ([`checkpoint`]) and the cluster's credentials (token, mutual TLS:
//!   [`security`]); the per-epoch communication-volume model ([`volume`]).

pub mod boundary;
pub mod checkpoint;
pub mod chunk_conv;
pub mod chunks;
pub mod collective;
pub mod config;
pub mod costs;
pub mod error;
pub mod forward_stage;
pub mod graph_way;
pub mod history;
pub mod in_process;
pub mod interpreter;
pub mod launcher;
pub mod layers;
pub mod metrics;
pub mod plan;
pub mod run;
pub mod schedule;
pub mod security;
pub mod stage;
pub mod stage_core;
pub mod stage_data;
pub mod state;
pub mod transport;
pub mod volume;
pub mod wire;
pub mod worker;

/// Generated gRPC messages and service stubs.
pub mod proto {
    tonic::include_proto!("strata.v1");
    /// The encoded `FileDescriptorSet` of `strata.v1`, which the worker's reflection service serves.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("strata_v1");
}

pub use boundary::{Boundary, BoundaryShape, Side, SideKind};
pub use config::{Balance, HistoryDtype, Mode, PipeModel, PipeTrainer, PipelineConfig, Recompute, StageSpec};
pub use costs::{bottleneck, flop_costs, memory_costs, min_max_split, min_max_split_with_entry};
pub use error::{PipeError, Result};
pub use graph_way::GraphWay;
pub use in_process::{build_engine, InProcess, LocalEpoch};
pub use interpreter::{Interpreter, Outcome, Progress};
pub use plan::PipelinePlan;
pub use schedule::{chunk_order, Action, EpochReport, Halo, Part};
pub use stage::Stage;
pub use stage_core::{Activations, Breakdown, Engine, StageCore};
pub use stage_data::StageData;
pub use transport::{LocalNet, Transport};
pub use volume::{boundary_count, VolumeModel};
pub use wire::{encode, f32_bytes, Assembler, Pieces, TensorMeta, WireError, DEFAULT_PIECE_BYTES};
