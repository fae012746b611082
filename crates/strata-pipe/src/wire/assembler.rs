//! The receiving side: messages reassembled into one tensor, every invariant checked.

use super::meta::{shape_bytes, Address, TensorMeta, WireError};
use crate::proto::{TensorKind, TensorPiece, ValueType};

/// Reassembles one tensor from its pieces, in order. The pieces' payloads are kept as they
/// arrived (slices of the decoder's buffer, no copy) and copied once, into the finished tensor.
pub struct Assembler {
    limit: u64,
    meta: Option<(TensorMeta, u64)>,
    pub(super) pieces: Vec<bytes::Bytes>,
    received: u64,
}

impl Assembler {
    /// `limit`: the largest tensor (bytes) this receiver accepts.
    pub fn new(limit: u64) -> Assembler {
        Assembler { limit, meta: None, pieces: Vec::new(), received: 0 }
    }
    pub fn push(&mut self, c: TensorPiece) -> Result<(), WireError> {
        match &self.meta {
            None => {
                let value_type = ValueType::try_from(c.value_type)
                    .map_err(|_| WireError::BadValueType { name: c.name.clone(), value_type: c.value_type })?;
                let expected = shape_bytes(&c.shape, value_type)
                    .ok_or_else(|| WireError::BadShape { name: c.name.clone(), shape: c.shape.clone() })?;
                if expected != c.total_bytes {
                    return Err(WireError::ShapeMismatch {
                        name: c.name,
                        shape: c.shape,
                        expected,
                        found: c.total_bytes,
                    });
                }
                if c.total_bytes > self.limit {
                    return Err(WireError::TooLarge { name: c.name, bytes: c.total_bytes, limit: self.limit });
                }
                let kind = TensorKind::try_from(c.kind).unwrap_or(TensorKind::Unspecified);
                let address =
                    c.address.map(Address::from_proto).ok_or_else(|| WireError::NoAddress { name: c.name.clone() })?;
                let meta = TensorMeta {
                    name: c.name.clone(),
                    kind,
                    epoch: c.epoch,
                    address,
                    shape: c.shape.clone(),
                    value_type,
                };
                // No reservation from the header: only the bytes that arrive are held, so a forged
                // total_bytes cannot make the worker allocate.
                self.meta = Some((meta, c.total_bytes));
            }
            Some((m, total)) => {
                if c.name != m.name
                    || c.epoch != m.epoch
                    || c.address.map(Address::from_proto) != Some(m.address)
                    || c.shape != m.shape
                    || c.total_bytes != *total
                    || c.value_type != m.value_type as i32
                {
                    return Err(WireError::Mixed { name: m.name.clone(), other: c.name });
                }
            }
        }
        let (meta, total) = self.meta.as_ref().unwrap();
        let received = self.received;
        if c.offset != received {
            return Err(WireError::OutOfOrder { name: meta.name.clone(), offset: c.offset, received });
        }
        if received + c.data.len() as u64 > *total {
            return Err(WireError::Overflow {
                name: meta.name.clone(),
                received: received + c.data.len() as u64,
                total: *total,
            });
        }
        self.received += c.data.len() as u64;
        if !c.data.is_empty() {
            self.pieces.push(c.data);
        }
        Ok(())
    }
    /// The tensor's bytes (row-major little-endian `meta.value_type`, `meta.shape`), once every
    /// byte has arrived.
    pub fn finish(self) -> Result<(TensorMeta, Vec<u8>), WireError> {
        let (meta, pieces) = self.complete()?;
        Ok((meta, pieces.concat()))
    }

    /// [`Assembler::finish`] as a CPU tensor of the value type sent: the pieces copied once,
    /// straight into the tensor's memory, and freed right after.
    pub fn finish_tensor(self) -> Result<(TensorMeta, tch::Tensor), WireError> {
        let (meta, pieces) = self.complete()?;
        let tensor = tch::Tensor::empty(meta.shape.as_slice(), (meta.value_type.kind(), tch::Device::Cpu));
        let mut off = 0;
        let base = tensor.data_ptr() as *mut u8;
        for p in &pieces {
            // SAFETY: `tensor` is a fresh contiguous CPU tensor of `total` bytes (the shape and
            // value type were checked against `total` on the first piece) and `complete`
            // checked that the pieces hold exactly `total` bytes, so every copy stays inside it.
            unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), base.add(off), p.len()) };
            off += p.len();
        }
        Ok((meta, tensor))
    }

    fn complete(self) -> Result<(TensorMeta, Vec<bytes::Bytes>), WireError> {
        let (meta, total) = self.meta.ok_or(WireError::Empty)?;
        if self.received != total {
            return Err(WireError::Incomplete { name: meta.name, received: self.received, total });
        }
        Ok((meta, self.pieces))
    }
}
