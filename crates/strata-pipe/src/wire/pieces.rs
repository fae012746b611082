//! The sending side: a tensor's bytes cut into [`TensorPiece`] messages as the stream is
//! polled, each piece's payload a slice of the tensor's own memory (no copy before the
//! encoder's own into the HTTP/2 frame).

use super::meta::{f32_bytes, TensorMeta};
use crate::proto::{TensorPiece, ValueType};

/// A tensor's bytes for [`Pieces`]: a contiguous CPU tensor of the value type sent (a shallow
/// alias of the caller's when it already is one) read in place.
pub struct TensorBytes(tch::Tensor);

impl TensorBytes {
    pub fn new(t: &tch::Tensor, value_type: ValueType) -> TensorBytes {
        TensorBytes(t.to(tch::Device::Cpu).to_kind(value_type.kind()).contiguous())
    }
}

impl AsRef<[u8]> for TensorBytes {
    fn as_ref(&self) -> &[u8] {
        let n = self.0.numel();
        if n == 0 {
            return &[];
        }
        // SAFETY: the tensor is contiguous and on the CPU (`new`), so its n values are
        // n·element-size initialised bytes from data_ptr; the Tensor we hold keeps the storage
        // alive for as long as the slice is borrowed from us.
        unsafe { std::slice::from_raw_parts(self.0.data_ptr() as *const u8, n * self.0.kind().elt_size_in_bytes()) }
    }
}

/// The messages of one tensor, made one at a time as the stream is polled: each message's
/// payload is a slice of the tensor's bytes, so a tensor of any size goes out without a copy of
/// it (a whole-graph activation at 1M nodes is 256 MiB; collecting copies of its messages first
/// would double that).
pub struct Pieces {
    meta: TensorMeta,
    data: bytes::Bytes,
    step: usize,
    offset: usize,
    done: bool,
}

/// Field 8 of `TensorPiece`, the payload.
const DATA_TAG: u32 = 8;

impl Pieces {
    /// `data`: the tensor's row-major bytes (`meta.shape`, `meta.value_type`), split into
    /// pieces of at most `max_bytes` (rounded down to whole values).
    pub fn new(meta: TensorMeta, data: impl AsRef<[u8]> + Send + 'static, max_bytes: usize) -> Pieces {
        let size = meta.value_type.size() as usize;
        let data = bytes::Bytes::from_owner(data);
        Pieces { meta, data, step: max_bytes.max(size) / size * size, offset: 0, done: false }
    }

    fn message(&self, offset: usize, data: bytes::Bytes) -> TensorPiece {
        TensorPiece {
            name: self.meta.name.clone(),
            kind: self.meta.kind as i32,
            epoch: self.meta.epoch,
            address: Some(self.meta.address.to_proto()),
            shape: self.meta.shape.clone(),
            total_bytes: self.data.as_ref().len() as u64,
            offset: offset as u64,
            data,
            value_type: self.meta.value_type as i32,
        }
    }

    /// The tensor's bytes (the payload the volume model counts).
    pub fn payload_bytes(&self) -> u64 {
        self.data.as_ref().len() as u64
    }

    /// Bytes every message will take on the wire (protobuf encoding plus gRPC's 1 flag byte and
    /// 4 length bytes), computed without building them.
    pub fn wire_bytes(&self) -> u64 {
        use prost::Message;
        let total = self.data.as_ref().len();
        let (mut sum, mut offset) = (0usize, 0usize);
        loop {
            let len = self.step.min(total - offset);
            let header = self.message(offset, bytes::Bytes::new()).encoded_len();
            let payload = if len > 0 {
                prost::encoding::key_len(DATA_TAG) + prost::encoding::encoded_len_varint(len as u64) + len
            } else {
                0
            };
            sum += header + payload + 5;
            offset += len;
            if offset >= total {
                return sum as u64;
            }
        }
    }
}

impl Iterator for Pieces {
    type Item = TensorPiece;
    fn next(&mut self) -> Option<TensorPiece> {
        if self.done {
            return None;
        }
        let total = self.data.len();
        let len = self.step.min(total - self.offset);
        let msg = self.message(self.offset, self.data.slice(self.offset..self.offset + len));
        self.offset += len;
        // An empty tensor still sends one message: its header.
        self.done = self.offset >= total;
        Some(msg)
    }
}

/// Splits `values` (row-major, `meta.shape`) into messages of at most `max_bytes` payload.
pub fn encode(meta: &TensorMeta, values: &[f32], max_bytes: usize) -> Vec<TensorPiece> {
    Pieces::new(meta.clone(), f32_bytes(values).to_vec(), max_bytes).collect()
}

/// Named f32 tensors (parameters, outputs) as the pieces of one tensor after another, each of
/// `kind` and addressed by `stage`, cut as the iterator is advanced.
pub fn named_pieces(
    named: Vec<(String, tch::Tensor)>,
    kind: crate::proto::TensorKind,
    stage: u32,
) -> impl Iterator<Item = TensorPiece> + Send {
    named.into_iter().flat_map(move |(name, t)| {
        let meta = TensorMeta {
            name,
            kind,
            epoch: 0,
            address: super::meta::Address::Stage(stage),
            shape: t.size(),
            value_type: ValueType::F32,
        };
        Pieces::new(meta, TensorBytes::new(&t, ValueType::F32), super::meta::DEFAULT_PIECE_BYTES)
    })
}
