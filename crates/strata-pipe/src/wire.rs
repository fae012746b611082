//! Tensors on the wire: splitting a row-major tensor (f32, or bf16/f16 activations) into
//! [`TensorChunk`] messages of bounded size, and reassembling them with every invariant checked
//! (a worker must never trust the network: wrong sizes, gaps, overlaps and mixed tensors are
//! errors, not panics).

use crate::proto::{TensorChunk, TensorKind, ValueType};

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
}

fn shape_bytes(shape: &[i64], value_type: ValueType) -> Option<u64> {
    shape.iter().try_fold(value_type.size(), |acc, &d| if d < 0 { None } else { acc.checked_mul(d as u64) })
}

/// The wire carries values little-endian, as they lie in memory here.
#[cfg(target_endian = "big")]
compile_error!("strata's tensor wire format is little-endian; big-endian hosts would need a byte swap");

/// The bytes of `values` as they go on the wire (no copy).
pub fn f32_bytes(values: &[f32]) -> &[u8] {
    bytemuck::cast_slice(values)
}

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

/// Field 8 of `TensorChunk`, the payload.
const DATA_TAG: u32 = 8;

impl<B: AsRef<[u8]>> Pieces<B> {
    /// `data`: the tensor's row-major bytes (`meta.shape`, `meta.value_type`), split into
    /// pieces of at most `max_bytes` (rounded down to whole values).
    pub fn new(meta: TensorMeta, data: B, max_bytes: usize) -> Pieces<B> {
        let size = meta.value_type.size() as usize;
        Pieces { meta, data, step: max_bytes.max(size) / size * size, offset: 0, done: false }
    }

    fn message(&self, offset: usize, data: Vec<u8>) -> TensorChunk {
        TensorChunk {
            name: self.meta.name.clone(),
            kind: self.meta.kind as i32,
            epoch: self.meta.epoch,
            chunk: self.meta.chunk,
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
    type Item = TensorChunk;
    fn next(&mut self) -> Option<TensorChunk> {
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
pub fn encode(meta: &TensorMeta, values: &[f32], max_bytes: usize) -> Vec<TensorChunk> {
    Pieces::new(meta.clone(), f32_bytes(values), max_bytes).collect()
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
                let meta = TensorMeta {
                    name: c.name.clone(),
                    kind,
                    epoch: c.epoch,
                    chunk: c.chunk,
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
                    || c.chunk != m.chunk
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

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn meta(shape: Vec<i64>) -> TensorMeta {
        TensorMeta {
            name: "h".into(),
            kind: TensorKind::Activation,
            epoch: 3,
            chunk: 1,
            shape,
            value_type: ValueType::F32,
        }
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
        assert_eq!(back, f32_bytes(&values));
    }

    #[test]
    fn sixteen_bit_activations_round_trip_at_half_the_bytes() {
        let values: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.37).sin() * 100.0).collect();
        let t = tch::Tensor::from_slice(&values).view([1000, 3]);
        for vt in [ValueType::Bf16, ValueType::F16] {
            let m = TensorMeta { value_type: vt, ..meta(vec![1000, 3]) };
            let pieces = Pieces::new(m, TensorBytes::new(&t, vt), 1001);
            assert_eq!(pieces.payload_bytes(), 6000);
            let mut a = Assembler::new(1 << 20);
            pieces.for_each(|x| a.push(x).unwrap());
            let (m, back) = a.finish_tensor().unwrap();
            assert_eq!(m.value_type, vt);
            assert_eq!(back.kind(), vt.kind());
            // Exactly the sender's rounding: nothing else changed on the way.
            assert!(back.equal(&t.to_kind(vt.kind())));
        }
        // A piece claiming another value type than the tensor's first is refused.
        let mut msgs = encode(&meta(vec![1000, 3]), &values, 4000);
        msgs[1].value_type = ValueType::Bf16 as i32;
        let mut a = Assembler::new(1 << 20);
        a.push(msgs[0].clone()).unwrap();
        assert!(matches!(a.push(msgs[1].clone()), Err(WireError::Mixed { .. })));
        msgs[0].value_type = 7;
        assert!(matches!(Assembler::new(1 << 20).push(msgs[0].clone()), Err(WireError::BadValueType { .. })));
    }

    #[test]
    fn wire_bytes_are_counted_before_the_messages_exist() {
        use prost::Message;
        for (len, piece) in
            [(0usize, 64usize), (1, 64), (16, 64), (17, 64), (300_000, 1 << 20), (1 << 20, 1 << 20), (5, 4)]
        {
            let values: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let m = meta(vec![len as i64]);
            let pieces = Pieces::new(m.clone(), f32_bytes(&values), piece);
            let predicted = pieces.wire_bytes();
            let msgs: Vec<TensorChunk> = pieces.collect();
            let actual: u64 = msgs.iter().map(|x| x.encoded_len() as u64 + 5).sum();
            assert_eq!(predicted, actual, "{len} values in pieces of {piece} bytes");
            assert_eq!(msgs.iter().map(|x| x.data.len()).sum::<usize>(), len * 4);
            let mut a = Assembler::new(1 << 30);
            msgs.into_iter().for_each(|x| a.push(x).unwrap());
            let (_, t) = a.finish_tensor().unwrap();
            assert_eq!(Vec::<f32>::try_from(t.view(-1)).unwrap(), values);
        }
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

    #[test]
    fn a_forged_header_reserves_nothing() {
        // Announces 512 MiB (under the limit) and sends 8 bytes: only those 8 are held.
        let header = TensorChunk {
            name: "h".into(),
            kind: TensorKind::Activation as i32,
            epoch: 0,
            chunk: 0,
            shape: vec![1 << 17, 1024],
            total_bytes: 512 << 20,
            offset: 0,
            data: vec![0; 8],
            value_type: 0,
        };
        let mut a = Assembler::new(1 << 30);
        a.push(header).unwrap();
        assert!(a.buf.capacity() < 1 << 10, "capacity {} after an 8-byte piece", a.buf.capacity());
    }

    fn cases() -> u32 {
        std::env::var("STRATA_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if std::env::var("STRATA_FULL").is_ok_and(|v| v == "1") { 500_000 } else { 20_000 })
    }

    /// One way a peer can lie: rewrite a field of one piece, or reorder the stream.
    #[derive(Clone, Debug)]
    enum Lie {
        Name(usize),
        Shape(usize, Vec<i64>),
        Total(usize, u64),
        Offset(usize, u64),
        Data(usize, usize),
        Drop(usize),
        Duplicate(usize),
        Swap(usize, usize),
        Epoch(usize, u64),
    }

    fn lie() -> impl proptest::strategy::Strategy<Value = Lie> {
        use proptest::prelude::*;
        let dim = prop_oneof![Just(-1i64), Just(0), Just(i64::MAX), Just(1 << 32), 0i64..64];
        prop_oneof![
            any::<usize>().prop_map(Lie::Name),
            (any::<usize>(), proptest::collection::vec(dim, 0..4)).prop_map(|(i, s)| Lie::Shape(i, s)),
            (any::<usize>(), prop_oneof![Just(u64::MAX), Just(0), any::<u64>(), 0u64..4096])
                .prop_map(|(i, t)| Lie::Total(i, t)),
            (any::<usize>(), prop_oneof![Just(u64::MAX), any::<u64>(), 0u64..4096])
                .prop_map(|(i, o)| Lie::Offset(i, o)),
            (any::<usize>(), 0usize..2048).prop_map(|(i, n)| Lie::Data(i, n)),
            any::<usize>().prop_map(Lie::Drop),
            any::<usize>().prop_map(Lie::Duplicate),
            (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Lie::Swap(i, j)),
            (any::<usize>(), any::<u64>()).prop_map(|(i, e)| Lie::Epoch(i, e)),
        ]
    }

    #[test]
    fn fuzzed_streams_never_panic_and_never_assemble_a_wrong_tensor() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let n = cases();
        let (ran, refused) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
        let mut runner = TestRunner::new(Config { cases: n, failure_persistence: None, ..Config::default() });
        let strategy =
            (1usize..40, 1usize..8, 1usize..200, proptest::collection::vec(lie(), 0..4), any::<u64>(), any::<bool>());
        let result = runner.run(&strategy, |(rows, cols, piece, lies, flip_at, raw)| {
            ran.set(ran.get() + 1);
            let values: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut msgs = encode(&meta(vec![rows as i64, cols as i64]), &values, piece);
            for l in &lies {
                let k = msgs.len().max(1);
                match l.clone() {
                    Lie::Name(i) if !msgs.is_empty() => msgs[i % k].name = "other".into(),
                    Lie::Shape(i, s) if !msgs.is_empty() => msgs[i % k].shape = s,
                    Lie::Total(i, t) if !msgs.is_empty() => msgs[i % k].total_bytes = t,
                    Lie::Offset(i, o) if !msgs.is_empty() => msgs[i % k].offset = o,
                    Lie::Data(i, len) if !msgs.is_empty() => msgs[i % k].data.resize(len, 0xff),
                    Lie::Drop(i) if !msgs.is_empty() => drop(msgs.remove(i % k)),
                    Lie::Duplicate(i) if !msgs.is_empty() => msgs.insert(i % k, msgs[i % k].clone()),
                    Lie::Swap(i, j) if !msgs.is_empty() => msgs.swap(i % k, j % k),
                    Lie::Epoch(i, e) if !msgs.is_empty() => msgs[i % k].epoch = e,
                    _ => {}
                }
            }
            // Half the cases also pass through protobuf bytes with one bit flipped.
            if raw {
                let mut decoded = Vec::new();
                for (i, m) in msgs.iter().enumerate() {
                    let mut bytes = m.encode_to_vec();
                    if i == 0 && !bytes.is_empty() {
                        let at = (flip_at % (bytes.len() as u64 * 8)) as usize;
                        bytes[at / 8] ^= 1 << (at % 8);
                    }
                    match TensorChunk::decode(bytes.as_slice()) {
                        Ok(m) => decoded.push(m),
                        Err(_) => break,
                    }
                }
                msgs = decoded;
            }
            let mut a = Assembler::new(1 << 16);
            let outcome = msgs.into_iter().try_for_each(|m| a.push(m)).and_then(|_| a.finish());
            match outcome {
                Ok((m, back)) => {
                    // Whatever was accepted is self-consistent: the shape holds exactly the bytes.
                    let expected = shape_bytes(&m.shape, m.value_type).unwrap();
                    prop_assert_eq!(back.len() as u64, expected);
                }
                Err(_) => refused.set(refused.get() + 1),
            }
            Ok(())
        });
        let (ran, refused) = (ran.get(), refused.get());
        println!(
            "fuzz wire decoder: {ran} cases ran, {refused} streams refused with an error, {} assembled, no panic",
            ran - refused
        );
        assert_eq!(ran, n, "every case ran");
        result.unwrap();
    }
}
