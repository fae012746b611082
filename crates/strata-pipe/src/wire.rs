//! Tensors on the wire: splitting a row-major f32 tensor into [`TensorChunk`] messages of
//! bounded size, and reassembling them with every invariant checked (a worker must never
//! trust the network: wrong sizes, gaps, overlaps and mixed tensors are errors, not panics).

use crate::proto::{TensorChunk, TensorKind};

/// Default payload per message: well under tonic's 4 MiB decoding limit.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// Identifies a tensor in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMeta {
    pub name: String,
    pub kind: TensorKind,
    pub epoch: u64,
    pub chunk: u32,
    pub shape: Vec<i64>,
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
    #[error("tensor `{name}`: invalid shape {shape:?}")]
    BadShape { name: String, shape: Vec<i64> },
}

fn shape_bytes(shape: &[i64]) -> Option<u64> {
    shape.iter().try_fold(4u64, |acc, &d| if d < 0 { None } else { acc.checked_mul(d as u64) })
}

/// Splits `values` (row-major, `meta.shape`) into messages of at most `max_bytes` payload.
pub fn encode(meta: &TensorMeta, values: &[f32], max_bytes: usize) -> Vec<TensorChunk> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let total = bytes.len() as u64;
    let step = max_bytes.max(4) / 4 * 4;
    let pieces: Vec<&[u8]> = if bytes.is_empty() { vec![&[][..]] } else { bytes.chunks(step).collect() };
    let mut offset = 0u64;
    pieces
        .into_iter()
        .map(|piece| {
            let msg = TensorChunk {
                name: meta.name.clone(),
                kind: meta.kind as i32,
                epoch: meta.epoch,
                chunk: meta.chunk,
                shape: meta.shape.clone(),
                total_bytes: total,
                offset,
                data: piece.to_vec(),
            };
            offset += piece.len() as u64;
            msg
        })
        .collect()
}

/// Reassembles one tensor from its pieces, in order.
pub struct Assembler {
    limit: u64,
    meta: Option<(TensorMeta, u64)>,
    buf: Vec<u8>,
}

impl Assembler {
    /// `limit`: the largest tensor (bytes) this receiver accepts.
    pub fn new(limit: u64) -> Assembler {
        Assembler { limit, meta: None, buf: Vec::new() }
    }
    pub fn push(&mut self, c: TensorChunk) -> Result<(), WireError> {
        match &self.meta {
            None => {
                let expected = shape_bytes(&c.shape).ok_or_else(|| WireError::BadShape { name: c.name.clone(), shape: c.shape.clone() })?;
                if expected != c.total_bytes {
                    return Err(WireError::ShapeMismatch { name: c.name, shape: c.shape, expected, found: c.total_bytes });
                }
                if c.total_bytes > self.limit {
                    return Err(WireError::TooLarge { name: c.name, bytes: c.total_bytes, limit: self.limit });
                }
                let kind = TensorKind::try_from(c.kind).unwrap_or(TensorKind::Unspecified);
                let meta = TensorMeta { name: c.name.clone(), kind, epoch: c.epoch, chunk: c.chunk, shape: c.shape.clone() };
                // Grow with the data actually received: a forged header cannot make us allocate.
                self.buf.reserve_exact(c.total_bytes.min(64 << 20) as usize);
                self.meta = Some((meta, c.total_bytes));
            }
            Some((m, total)) => {
                if c.name != m.name || c.epoch != m.epoch || c.chunk != m.chunk || c.shape != m.shape || c.total_bytes != *total {
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
            return Err(WireError::Overflow { name: meta.name.clone(), received: received + c.data.len() as u64, total: *total });
        }
        self.buf.extend_from_slice(&c.data);
        Ok(())
    }
    /// The tensor, once every byte has arrived.
    pub fn finish(self) -> Result<(TensorMeta, Vec<f32>), WireError> {
        let (meta, total) = self.meta.ok_or(WireError::Empty)?;
        if self.buf.len() as u64 != total {
            return Err(WireError::Incomplete { name: meta.name, received: self.buf.len() as u64, total });
        }
        let values = self.buf.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        Ok((meta, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn meta(shape: Vec<i64>) -> TensorMeta {
        TensorMeta { name: "h".into(), kind: TensorKind::Activation, epoch: 3, chunk: 1, shape }
    }

    #[test]
    fn a_10_mib_tensor_round_trips_in_small_messages() {
        let rows = 10 * 1024 * 1024 / 4 / 64;
        let values: Vec<f32> = (0..rows * 64).map(|i| i as f32 * 0.5).collect();
        let msgs = encode(&meta(vec![rows as i64, 64]), &values, DEFAULT_CHUNK_BYTES);
        assert_eq!(msgs.len(), 10);
        assert!(msgs.iter().all(|m| m.encoded_len() < 4 << 20));
        let mut a = Assembler::new(1 << 30);
        for m in msgs {
            a.push(m).unwrap();
        }
        let (m, back) = a.finish().unwrap();
        assert_eq!(m.shape, vec![rows as i64, 64]);
        assert_eq!(back, values);
    }

    #[test]
    fn malformed_streams_are_rejected() {
        let values = vec![1.0f32; 1000];
        let msgs = encode(&meta(vec![1000]), &values, 1000);
        // Out of order.
        let mut a = Assembler::new(1 << 20);
        a.push(msgs[0].clone()).unwrap();
        assert!(matches!(a.push(msgs[2].clone()), Err(WireError::OutOfOrder { .. })));
        // Truncated.
        let mut a = Assembler::new(1 << 20);
        a.push(msgs[0].clone()).unwrap();
        assert!(matches!(a.finish(), Err(WireError::Incomplete { .. })));
        // Lying about the size.
        let mut bad = msgs[0].clone();
        bad.total_bytes = 12;
        assert!(matches!(Assembler::new(1 << 20).push(bad), Err(WireError::ShapeMismatch { .. })));
        // Over the receiver's limit.
        assert!(matches!(Assembler::new(100).push(msgs[0].clone()), Err(WireError::TooLarge { .. })));
        // Pieces of two tensors mixed.
        let mut a = Assembler::new(1 << 20);
        a.push(msgs[0].clone()).unwrap();
        let mut other = msgs[1].clone();
        other.name = "g".into();
        assert!(matches!(a.push(other), Err(WireError::Mixed { .. })));
        assert!(matches!(Assembler::new(1).finish(), Err(WireError::Empty)));
        let mut neg = msgs[0].clone();
        neg.shape = vec![-1];
        assert!(matches!(Assembler::new(1 << 20).push(neg), Err(WireError::BadShape { .. })));
    }
}
