//! The receiving side: messages reassembled into one tensor, every invariant checked.

use super::meta::{shape_bytes, Address, TensorMeta, WireError};
use crate::proto::{TensorKind, TensorPiece, ValueType};

/// Reassembles one tensor from its pieces, in order.
pub struct Assembler {
    limit: u64,
    meta: Option<(TensorMeta, u64)>,
    pub(super) buf: Vec<u8>,
}

impl Assembler {
    /// `limit`: the largest tensor (bytes) this receiver accepts.
    pub fn new(limit: u64) -> Assembler {
        Assembler { limit, meta: None, buf: Vec::new() }
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
                // No reservation from the header: the buffer grows with the bytes that arrive, so a
                // forged total_bytes cannot make the worker allocate.
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
        let received = self.buf.len() as u64;
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
        self.buf.extend_from_slice(&c.data);
        Ok(())
    }
    /// The tensor's bytes (row-major little-endian `meta.value_type`, `meta.shape`), once every
    /// byte has arrived.
    pub fn finish(self) -> Result<(TensorMeta, Vec<u8>), WireError> {
        let (meta, total) = self.meta.ok_or(WireError::Empty)?;
        if self.buf.len() as u64 != total {
            return Err(WireError::Incomplete { name: meta.name, received: self.buf.len() as u64, total });
        }
        Ok((meta, self.buf))
    }

    /// [`Assembler::finish`] as a CPU tensor of the value type sent: one copy, the bytes freed
    /// right after.
    pub fn finish_tensor(self) -> Result<(TensorMeta, tch::Tensor), WireError> {
        let (meta, bytes) = self.finish()?;
        let tensor = tch::Tensor::from_data_size(&bytes, &meta.shape, meta.value_type.kind());
        Ok((meta, tensor))
    }
}
