//! The sending side: a tensor's bytes cut into [`TensorPiece`] messages as the stream is
//! polled, without copying the tensor.

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

/// The messages of one tensor, made one at a time as the stream is polled: a tensor of any size
/// goes out holding at most one message's payload beside its own memory (a whole-graph
/// activation at 1M nodes is 256 MiB; collecting its messages first would double that, and the
/// byte conversion before it would triple it).
pub struct Pieces<B> {
    meta: TensorMeta,
    data: B,
    step: usize,
    offset: usize,
    done: bool,
}

/// Field 8 of `TensorPiece`, the payload.
const DATA_TAG: u32 = 8;

impl<B: AsRef<[u8]>> Pieces<B> {
    /// `data`: the tensor's row-major bytes (`meta.shape`, `meta.value_type`), split into
    /// pieces of at most `max_bytes` (rounded down to whole values).
    pub fn new(meta: TensorMeta, data: B, max_bytes: usize) -> Pieces<B> {
        let size = meta.value_type.size() as usize;
        Pieces { meta, data, step: max_bytes.max(size) / size * size, offset: 0, done: false }
    }

    fn message(&self, offset: usize, data: Vec<u8>) -> TensorPiece {
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
            let header = self.message(offset, Vec::new()).encoded_len();
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

impl<B: AsRef<[u8]>> Iterator for Pieces<B> {
    type Item = TensorPiece;
    fn next(&mut self) -> Option<TensorPiece> {
        if self.done {
            return None;
        }
        let bytes = self.data.as_ref();
        let len = self.step.min(bytes.len() - self.offset);
        let msg = self.message(self.offset, bytes[self.offset..self.offset + len].to_vec());
        self.offset += len;
        // An empty tensor still sends one message: its header.
        self.done = self.offset >= bytes.len();
        Some(msg)
    }
}

/// Splits `values` (row-major, `meta.shape`) into messages of at most `max_bytes` payload.
pub fn encode(meta: &TensorMeta, values: &[f32], max_bytes: usize) -> Vec<TensorPiece> {
    Pieces::new(meta.clone(), f32_bytes(values), max_bytes).collect()
}
