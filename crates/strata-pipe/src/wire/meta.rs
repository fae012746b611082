//! What describes a tensor on the wire, the errors of reassembly, and the byte views.

use crate::proto::{TensorKind, ValueType};

/// Default payload per message: well under tonic's 4 MiB decoding limit.
pub const DEFAULT_PIECE_BYTES: usize = 1 << 20;

/// Where in an epoch a tensor belongs (its own proto field each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A vertex chunk's activations or gradients ([`WHOLE_GRAPH`]: every vertex).
    Chunk(u32),
    /// A layer slot's halo rows.
    Slot(u32),
    /// A pipeline stage's all-reduce segments.
    Stage(u32),
}

/// The chunk id of a whole-graph pass (exact inference).
pub const WHOLE_GRAPH: u32 = u32::MAX;

impl Address {
    pub(crate) fn to_proto(self) -> crate::proto::tensor_piece::Address {
        use crate::proto::tensor_piece::Address as A;
        match self {
            Address::Chunk(c) => A::Chunk(c),
            Address::Slot(s) => A::Slot(s),
            Address::Stage(s) => A::Stage(s),
        }
    }
    pub(crate) fn from_proto(a: crate::proto::tensor_piece::Address) -> Address {
        use crate::proto::tensor_piece::Address as A;
        match a {
            A::Chunk(c) => Address::Chunk(c),
            A::Slot(s) => Address::Slot(s),
            A::Stage(s) => Address::Stage(s),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Chunk(WHOLE_GRAPH) => write!(f, "the whole graph"),
            Address::Chunk(c) => write!(f, "chunk {c}"),
            Address::Slot(s) => write!(f, "slot {s}"),
            Address::Stage(s) => write!(f, "stage {s}"),
        }
    }
}

/// Identifies a tensor in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMeta {
    pub name: String,
    pub kind: TensorKind,
    pub epoch: u64,
    pub address: Address,
    pub shape: Vec<i64>,
    pub value_type: ValueType,
}

impl ValueType {
    /// Bytes per value.
    pub fn size(self) -> u64 {
        match self {
            ValueType::F32 => 4,
            ValueType::Bf16 | ValueType::F16 => 2,
        }
    }
    /// The libtorch element type.
    pub fn kind(self) -> tch::Kind {
        match self {
            ValueType::F32 => tch::Kind::Float,
            ValueType::Bf16 => tch::Kind::BFloat16,
            ValueType::F16 => tch::Kind::Half,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("tensor `{name}`: shape {shape:?} holds {expected} bytes but total_bytes says {found}")]
    ShapeMismatch { name: String, shape: Vec<i64>, expected: u64, found: u64 },
    #[error("tensor `{name}`: piece at offset {offset} does not continue the {received} bytes received so far")]
    OutOfOrder { name: String, offset: u64, received: u64 },
    #[error("tensor `{name}`: {received} bytes would exceed total_bytes {total}")]
    Overflow { name: String, received: u64, total: u64 },
    #[error("tensor `{name}`: piece belongs to another tensor (`{other}`)")]
    Mixed { name: String, other: String },
    #[error("tensor `{name}`: stream ended after {received} of {total} bytes")]
    Incomplete { name: String, received: u64, total: u64 },
    #[error("empty stream: no tensor received")]
    Empty,
    #[error("tensor `{name}`: {bytes} bytes exceeds this worker's limit of {limit}")]
    TooLarge { name: String, bytes: u64, limit: u64 },
    #[error("tensor `{name}`: unknown value type {value_type}")]
    BadValueType { name: String, value_type: i32 },
    #[error("tensor `{name}`: invalid shape {shape:?}")]
    BadShape { name: String, shape: Vec<i64> },
    #[error("tensor `{name}`: no address (chunk, slot or stage)")]
    NoAddress { name: String },
}

pub(super) fn shape_bytes(shape: &[i64], value_type: ValueType) -> Option<u64> {
    shape.iter().try_fold(value_type.size(), |acc, &d| if d < 0 { None } else { acc.checked_mul(d as u64) })
}

/// The wire carries values little-endian, as they lie in memory here.
#[cfg(target_endian = "big")]
compile_error!("strata's tensor wire format is little-endian; big-endian hosts would need a byte swap");

/// The bytes of `values` as they go on the wire (no copy).
pub fn f32_bytes(values: &[f32]) -> &[u8] {
    bytemuck::cast_slice(values)
}
