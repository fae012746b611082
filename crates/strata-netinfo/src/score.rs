//! The NetInfoF score (§3.3): how predictable labels are from a discretised signal, as
//! `2^(−H(Y|B))`. For links, `B` is one of 8 quantile bins of the adjusted similarity (bin edges
//! fitted on training pairs) and `Y` says whether a validation pair is an edge; the score lies in
//! [0.5, 1] for balanced validation pairs (0.5 = no usable information). For nodes, `B` is the
//! class a closed-form ridge classifier on the embedding predicts and `Y` the true class.

use tch::{Kind, Tensor};

/// Bin edges of `n_bins` quantile bins of `values` (sklearn's `KBinsDiscretizer(strategy=
/// "quantile")`: inner edges at the k/n quantiles, duplicate edges removed).
pub fn quantile_edges(values: &[f64], n_bins: usize) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return Vec::new();
    }
    let q = |p: f64| {
        let pos = p * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    let mut edges: Vec<f64> = (1..n_bins).map(|k| q(k as f64 / n_bins as f64)).collect();
    edges.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    edges
}

/// The bin of `x` given inner edges.
pub fn bin_of(x: f64, edges: &[f64]) -> usize {
    edges.partition_point(|&e| e <= x)
}

/// `2^(−H(Y|B))` from (bin, label) observations.
pub fn score_from_pairs(obs: &[(usize, usize)]) -> f64 {
    if obs.is_empty() {
        return f64::NAN;
    }
    let nb = obs.iter().map(|o| o.0).max().unwrap_or(0) + 1;
    let ny = obs.iter().map(|o| o.1).max().unwrap_or(0) + 1;
    let mut table = vec![vec![0f64; ny]; nb];
    obs.iter().for_each(|&(b, y)| table[b][y] += 1.0);
    let total = obs.len() as f64;
    let mut h = 0.0;
    for row in &table {
        let pb: f64 = row.iter().sum::<f64>() / total;
        for &c in row {
            if c > 0.0 {
                let pby = c / total;
                h -= pby * (pby / pb).log2();
            }
        }
    }
    2f64.powf(-h)
}

/// Link form: bins fitted on the training similarities, applied to validation pairs.
pub fn link_score(train_sims: &[f64], val_pos: &[f64], val_neg: &[f64]) -> f64 {
    let edges = quantile_edges(train_sims, 8);
    let obs: Vec<(usize, usize)> = val_pos
        .iter()
        .map(|&s| (bin_of(s, &edges), 1))
        .chain(val_neg.iter().map(|&s| (bin_of(s, &edges), 0)))
        .collect();
    score_from_pairs(&obs)
}

/// Node form: a ridge classifier (α = 1, one-hot targets) fitted on the training nodes of
/// embedding `x`; the score of the validation nodes' true labels given its predictions.
pub fn node_score(x: &Tensor, labels: &[i64], train: &[usize], val: &[usize]) -> f64 {
    if train.is_empty() || val.is_empty() {
        return f64::NAN;
    }
    let dev = x.device();
    let x = x.to_kind(Kind::Double);
    let classes = labels.iter().copied().max().unwrap_or(0) + 1;
    let idx = |ids: &[usize]| Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>()).to(dev);
    let xt = x.index_select(0, &idx(train));
    let y = Tensor::from_slice(&train.iter().map(|&i| labels[i]).collect::<Vec<_>>())
        .to(dev)
        .one_hot(classes)
        .to_kind(Kind::Double);
    let d = xt.size()[1];
    let w =
        Tensor::linalg_solve(&(xt.tr().matmul(&xt) + Tensor::eye(d, (Kind::Double, dev))), &xt.tr().matmul(&y), true);
    let pred = Vec::<i64>::try_from(x.index_select(0, &idx(val)).matmul(&w).argmax(1, false).to(tch::Device::Cpu))
        .unwrap_or_default();
    let obs: Vec<(usize, usize)> = val.iter().zip(pred).map(|(&i, p)| (p as usize, labels[i] as usize)).collect();
    score_from_pairs(&obs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_useless_signals() {
        // Bins separate the labels perfectly: H = 0, score 1.
        assert_eq!(score_from_pairs(&[(0, 0), (0, 0), (1, 1), (1, 1)]), 1.0);
        // One bin, balanced labels: H = 1 bit, score 0.5.
        assert_eq!(score_from_pairs(&[(0, 0), (0, 1), (0, 0), (0, 1)]), 0.5);
        let train: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let e = quantile_edges(&train, 8);
        assert_eq!(e.len(), 7);
        assert_eq!(bin_of(-1.0, &e), 0);
        assert_eq!(bin_of(1000.0, &e), 7);
        // Positives high, negatives low: informative.
        let s = link_score(&train, &[90.0, 95.0, 99.0], &[1.0, 5.0, 9.0]);
        assert_eq!(s, 1.0);
    }
}
