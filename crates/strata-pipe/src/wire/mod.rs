//! Tensors on the wire: splitting a row-major tensor (f32, or bf16/f16 activations) into
//! [`TensorPiece`] messages of bounded size, and reassembling them with every invariant checked
//! (a worker must never trust the network: wrong sizes, gaps, overlaps and mixed tensors are
//! errors, not panics).

mod assembler;
mod meta;
mod pieces;

pub use assembler::Assembler;
pub use meta::{f32_bytes, Address, TensorMeta, WireError, DEFAULT_PIECE_BYTES, WHOLE_GRAPH};
pub use pieces::{encode, named_pieces, Pieces, TensorBytes};

#[cfg(test)]
mod tests {
    use super::meta::shape_bytes;
    use super::*;
    use crate::proto::{TensorKind, TensorPiece, ValueType};
    use prost::Message;

    fn meta(shape: Vec<i64>) -> TensorMeta {
        TensorMeta {
            name: "h".into(),
            kind: TensorKind::Activation,
            epoch: 3,
            address: Address::Chunk(1),
            shape,
            value_type: ValueType::F32,
        }
    }

    #[test]
    fn a_10_mib_tensor_round_trips_in_small_messages() {
        let rows = 10 * 1024 * 1024 / 4 / 64;
        let values: Vec<f32> = (0..rows * 64).map(|i| i as f32 * 0.5).collect();
        let msgs = encode(&meta(vec![rows as i64, 64]), &values, DEFAULT_PIECE_BYTES);
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
            let pieces = Pieces::new(m.clone(), f32_bytes(&values).to_vec(), piece);
            let predicted = pieces.wire_bytes();
            let msgs: Vec<TensorPiece> = pieces.collect();
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
        let header = TensorPiece {
            name: "h".into(),
            kind: TensorKind::Activation as i32,
            epoch: 0,
            address: Some(Address::Chunk(0).to_proto()),
            shape: vec![1 << 17, 1024],
            total_bytes: 512 << 20,
            offset: 0,
            data: vec![0; 8].into(),
            value_type: 0,
        };
        let mut a = Assembler::new(1 << 30);
        a.push(header).unwrap();
        let held: usize = a.pieces.iter().map(|p| p.len()).sum();
        assert_eq!(held, 8, "{held} bytes held after an 8-byte piece");
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
                    Lie::Data(i, len) if !msgs.is_empty() => {
                        let mut data = msgs[i % k].data.to_vec();
                        data.resize(len, 0xff);
                        msgs[i % k].data = data.into();
                    }
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
                    match TensorPiece::decode(bytes.as_slice()) {
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
