//! Stage planning: split L layer slots (input projection and classifier count as layers) into
//! P contiguous stages so that the slowest stage is as fast as possible — GNNPipe's min–max
//! dynamic program over per-layer costs.

/// What one layer slot costs, in any consistent unit (FLOPs from [`flop_costs`] or measured ms).
pub type Cost = f64;

/// Per-layer FLOP estimates for a deep GCN-family model on a graph with `n` nodes, `e` directed
/// edges (self loops included), `nnz_x` non-zero input features, width `d` and `c` classes:
/// input projection `2·nnz_x·d`, each of the `layers` convolutions `2·e·d + 2·n·d²`, classifier
/// `2·n·d·c`. Forward only; backward scales every slot by the same factor.
pub fn flop_costs(n: usize, e: usize, nnz_x: usize, d: usize, c: usize, layers: usize) -> Vec<Cost> {
    let (n, e, nnz_x, d, c) = (n as f64, e as f64, nnz_x as f64, d as f64, c as f64);
    let mut v = vec![2.0 * nnz_x * d];
    v.extend(std::iter::repeat_n(2.0 * e * d + 2.0 * n * d * d, layers));
    v.push(2.0 * n * d * c);
    v
}

/// A CPU's balance: FLOPs it does in the time it moves one byte to or from memory (about 100
/// GFLOP/s against 10 GB/s per core; order of magnitude, as a roofline takes it).
pub const FLOPS_PER_BYTE: f64 = 10.0;

/// Values a convolution reads or writes in full, per row and width, forward: the dropout mask and
/// the masked input, the sparse product's output, the residual, the mixed output, the activation.
const CONV_PASSES: f64 = 8.0;

/// Per-layer time estimates in FLOP units: [`flop_costs`] plus [`FLOPS_PER_BYTE`] times the bytes
/// each slot moves. A convolution's sparse product reads a d-wide source row per edge (4·e·d
/// bytes, plus 8·e of indices and values) and the layer passes over its n × d values
/// `CONV_PASSES` times; the input projection reads its `nnz_x` feature values (12 bytes each: a
/// value and its column) and passes over its n × d output 4 times; the classifier reads n × d and
/// writes n × c. FLOPs alone make a dense 128-wide projection cost 1.5 GCNII convolutions at
/// d = 64, where it was measured at about half of one (pipeline P = 2 on a 50k-node graph: 7
/// convolutions and the projection on stage 0 took 1,406 ms, 9 on stage 1 1,686 ms); this
/// estimate puts it at 0.48, and the split at 8 | 8.
pub fn time_costs(n: usize, e: usize, nnz_x: usize, d: usize, c: usize, layers: usize) -> Vec<Cost> {
    let flops = flop_costs(n, e, nnz_x, d, c, layers);
    let (n, e, nnz_x, d, c) = (n as f64, e as f64, nnz_x as f64, d as f64, c as f64);
    let conv_bytes = 4.0 * e * d + 8.0 * e + 4.0 * n * d * CONV_PASSES;
    let bytes = std::iter::once(12.0 * nnz_x + 4.0 * n * d * 4.0)
        .chain(std::iter::repeat_n(conv_bytes, layers))
        .chain(std::iter::once(4.0 * n * (d + c)));
    flops.iter().zip(bytes).map(|(f, b)| f + FLOPS_PER_BYTE * b).collect()
}

/// Per-slot resident bytes of a pipeline worker, and what every stage after the first pays on
/// entry: the input projection holds its feature rows (`nnz_x` values, f32), a convolution its
/// live and snapshot rows (`history_bytes` each) and its f32 gradient accumulator, N × d each;
/// the classifier its labels; a stage that is not first keeps each chunk's received boundary
/// tensors (`boundary` of them, N × d f32) for the backward recomputation. Structure is on
/// every worker alike and does not move the split.
pub fn memory_costs(
    n: usize,
    nnz_x: usize,
    d: usize,
    layers: usize,
    history_bytes: usize,
    boundary: usize,
) -> (Vec<Cost>, Cost) {
    let (n, d) = (n as f64, d as f64);
    let mut v = vec![4.0 * nnz_x as f64];
    v.extend(std::iter::repeat_n(n * d * (2.0 * history_bytes as f64 + 4.0), layers));
    v.push(8.0 * n);
    (v, 4.0 * n * d * boundary as f64)
}

/// Splits `costs` into `stages` contiguous, non-empty ranges minimising the largest range sum.
/// Returns the ranges as `start..end` slot indices. Ties prefer earlier, shorter stages, so the
/// split is deterministic.
pub fn min_max_split(costs: &[Cost], stages: usize) -> Vec<std::ops::Range<usize>> {
    min_max_split_with_entry(costs, stages, 0.0)
}

/// [`min_max_split`] where every stage but the first also costs `entry` (a memory split: the
/// boundary tensors a later stage keeps).
pub fn min_max_split_with_entry(costs: &[Cost], stages: usize, entry: Cost) -> Vec<std::ops::Range<usize>> {
    let l = costs.len();
    assert!(stages >= 1 && stages <= l, "need 1 <= stages <= layer slots ({stages} stages, {l} slots)");
    let mut prefix = vec![0.0; l + 1];
    for i in 0..l {
        prefix[i + 1] = prefix[i] + costs[i];
    }
    // best[j][i]: the smallest bottleneck for slots [0, i) on j stages; cut[j][i]: where stage j starts.
    let inf = f64::INFINITY;
    let mut best = vec![vec![inf; l + 1]; stages + 1];
    let mut cut = vec![vec![0usize; l + 1]; stages + 1];
    best[0][0] = 0.0;
    for j in 1..=stages {
        for i in j..=l {
            for k in (j - 1)..i {
                let v = best[j - 1][k].max(prefix[i] - prefix[k] + if k > 0 { entry } else { 0.0 });
                if v < best[j][i] {
                    best[j][i] = v;
                    cut[j][i] = k;
                }
            }
        }
    }
    let mut ranges = Vec::with_capacity(stages);
    let mut end = l;
    for j in (1..=stages).rev() {
        let start = cut[j][end];
        ranges.push(start..end);
        end = start;
    }
    ranges.reverse();
    ranges
}

/// The bottleneck (largest stage cost) of a split.
pub fn bottleneck(costs: &[Cost], ranges: &[std::ops::Range<usize>]) -> Cost {
    ranges.iter().map(|r| costs[r.clone()].iter().sum::<f64>()).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exhaustive search over all cut positions, for checking the DP.
    fn brute(costs: &[Cost], stages: usize) -> Cost {
        fn go(costs: &[Cost], stages: usize) -> Cost {
            if stages == 1 {
                return costs.iter().sum();
            }
            (1..=costs.len() - (stages - 1))
                .map(|k| costs[..k].iter().sum::<f64>().max(go(&costs[k..], stages - 1)))
                .fold(f64::INFINITY, f64::min)
        }
        go(costs, stages)
    }

    #[test]
    fn dp_is_optimal_and_covers_every_slot() {
        let costs = [9.0, 1.0, 1.0, 1.0, 5.0, 2.0, 2.0, 7.0, 1.0, 3.0];
        for p in 1..=costs.len() {
            let r = min_max_split(&costs, p);
            assert_eq!(r.len(), p);
            assert_eq!(r[0].start, 0);
            assert_eq!(r.last().unwrap().end, costs.len());
            assert!(r.windows(2).all(|w| w[0].end == w[1].start && !w[0].is_empty()));
            assert_eq!(bottleneck(&costs, &r), brute(&costs, p), "p={p}");
        }
    }

    #[test]
    fn heavy_input_layer_gets_a_stage_of_its_own() {
        // 34 slots like GCNII-32 on Coauthor-Physics (8,415 dense features): the projection
        // costs more than all 32 convolutions together, so it is a stage of its own and sets
        // the bottleneck (the paper's Physics slowdown).
        let c = flop_costs(34_493, 530_417, 34_493 * 8_415, 100, 5, 32);
        let r = min_max_split(&c, 4);
        assert_eq!(r[0], 0..1, "{r:?}");
        assert_eq!(bottleneck(&c, &r), c[0]);
        // On Cora the projection is cheap and the 32 convolutions spread evenly.
        let c = flop_costs(2708, 13_264, 49_216, 64, 7, 32);
        let r = min_max_split(&c, 4);
        let sizes: Vec<usize> = r.iter().map(|x| x.len()).collect();
        assert!(sizes.iter().all(|&s| (8..=9).contains(&s)), "{r:?}");
    }

    /// GCNII-16 at P = 2 on a 50k-node graph with 128 dense features: FLOPs count the
    /// projection as 1.5 convolutions and split 7 | 9; the time estimate, which also counts
    /// the bytes each slot moves, puts it near 0.5 (measured: about half) and splits 8 | 8.
    #[test]
    fn time_split_levels_a_dense_projection_against_the_convolutions() {
        // The 50k-node graph of the distributed bench: 999,322 directed edges plus self loops,
        // 128 dense features, GCNII-16, d = 64, 10 classes.
        let (n, e, layers) = (50_000, 999_322 + 50_000, 16);
        let convs = |r: &[std::ops::Range<usize>]| {
            r.iter().map(|x| x.clone().filter(|&s| (1..=layers).contains(&s)).count()).collect::<Vec<_>>()
        };
        let flops = flop_costs(n, e, n * 128, 64, 10, layers);
        assert_eq!(convs(&min_max_split(&flops, 2)), vec![7, 9]);
        let time = time_costs(n, e, n * 128, 64, 10, layers);
        let projection = time[0] / time[1];
        assert!((0.35..0.6).contains(&projection), "projection = {projection} convolutions");
        assert_eq!(convs(&min_max_split(&time, 2)), vec![8, 8]);
    }

    /// GCNII-16 on a 1M-node graph with 128 dense features, P = 4: the FLOP split must give
    /// one stage five convolutions; the memory split gives every stage four (the input stage's
    /// features weigh as much as a later stage's saved boundary tensors), and is optimal for
    /// its own costs.
    #[test]
    fn memory_split_levels_the_convolutions() {
        let (n, layers) = (1_000_000, 16);
        let flops = flop_costs(n, 21_000_000, n * 128, 64, 10, layers);
        let convs = |r: &[std::ops::Range<usize>]| {
            r.iter().map(|x| x.clone().filter(|&s| (1..=layers).contains(&s)).count()).collect::<Vec<_>>()
        };
        assert!(convs(&min_max_split(&flops, 4)).contains(&5));
        let (mem, entry) = memory_costs(n, n * 128, 64, layers, 2, 2);
        let r = min_max_split_with_entry(&mem, 4, entry);
        assert_eq!(convs(&r), vec![4, 4, 4, 4], "{r:?}");
        let worst = |r: &[std::ops::Range<usize>]| {
            r.iter()
                .map(|x| mem[x.clone()].iter().sum::<f64>() + if x.start > 0 { entry } else { 0.0 })
                .fold(0.0, f64::max)
        };
        for a in 1..16 {
            for b in a + 1..17 {
                for c in b + 1..18 {
                    assert!(worst(&r) <= worst(&[0..a, a..b, b..c, c..18]) + 1e-6);
                }
            }
        }
    }
}
