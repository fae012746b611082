//! Evaluation metrics, implemented once: accuracy, ROC-AUC, average precision, Hits@K, MRR.
//! Ranking metrics follow scikit-learn (AUC, AP) and OGB (Hits@K, MRR) exactly, ties included.

/// Fraction of `idx` whose prediction equals the label; unlabelled (−1) nodes are skipped.
pub fn accuracy(pred: &[i64], labels: &[i64], idx: &[usize]) -> f64 {
    let (mut hit, mut total) = (0usize, 0usize);
    for &i in idx {
        if labels[i] >= 0 {
            total += 1;
            hit += (pred[i] == labels[i]) as usize;
        }
    }
    if total == 0 {
        0.0
    } else {
        hit as f64 / total as f64
    }
}

/// Area under the ROC curve: the probability that a random positive outscores a random
/// negative, ties counting one half (Mann–Whitney U).
pub fn roc_auc(pos: &[f32], neg: &[f32]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> = pos.iter().map(|&s| (s, true)).chain(neg.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let avg_rank = (i + j + 1) as f64 / 2.0; // ranks are 1-based: (i+1 + j) / 2
        rank_sum_pos += avg_rank * all[i..j].iter().filter(|e| e.1).count() as f64;
        i = j;
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    (rank_sum_pos - np * (np + 1.0) / 2.0) / (np * nn)
}

/// Average precision as scikit-learn computes it: Σ_n (R_n − R_{n−1}) P_n over distinct
/// score thresholds, from the highest.
pub fn average_precision(pos: &[f32], neg: &[f32]) -> f64 {
    if pos.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> = pos.iter().map(|&s| (s, true)).chain(neg.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            if all[j].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        let recall = tp as f64 / pos.len() as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
        i = j;
    }
    ap
}

/// OGB's Hits@K: the fraction of positives scoring strictly above the K-th best negative
/// (1.0 when there are fewer than K negatives).
pub fn hits_at_k(pos: &[f32], neg: &[f32], k: usize) -> f64 {
    if pos.is_empty() {
        return f64::NAN;
    }
    if neg.len() < k {
        return 1.0;
    }
    let mut sorted = neg.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let kth = sorted[k - 1];
    pos.iter().filter(|&&p| p > kth).count() as f64 / pos.len() as f64
}

/// Mean reciprocal rank of each positive among all negatives, OGB-style: the rank is the mean
/// of the optimistic and pessimistic ranks, so ties cost half.
pub fn mrr(pos: &[f32], neg: &[f32]) -> f64 {
    if pos.is_empty() {
        return f64::NAN;
    }
    let mut sorted = neg.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let total: f64 = pos
        .iter()
        .map(|&p| {
            let greater = sorted.len() - sorted.partition_point(|&x| x <= p);
            let greater_eq = sorted.len() - sorted.partition_point(|&x| x < p);
            1.0 / (0.5 * (greater + greater_eq) as f64 + 1.0)
        })
        .sum();
    total / pos.len() as f64
}

/// Mean and (population) standard deviation.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
    (m, v.sqrt())
}

/// Median (of a copy).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_skips_unlabelled() {
        assert_eq!(accuracy(&[0, 1, 1, 0], &[0, 1, 0, -1], &[0, 1, 2, 3]), 2.0 / 3.0);
    }

    #[test]
    fn auc_matches_sklearn() {
        // sklearn.metrics.roc_auc_score([1,1,1,0,0,0], [.9,.4,.4,.4,.2,.1]) == 0.888...
        let auc = roc_auc(&[0.9, 0.4, 0.4], &[0.4, 0.2, 0.1]);
        assert!((auc - 8.0 / 9.0).abs() < 1e-12, "{auc}");
        assert_eq!(roc_auc(&[1.0], &[0.0]), 1.0);
        assert_eq!(roc_auc(&[0.0], &[1.0]), 0.0);
    }

    #[test]
    fn ap_matches_sklearn() {
        // sklearn.metrics.average_precision_score([1,0,1,1,0], [.9,.8,.7,.3,.2]) == 0.8055...
        let ap = average_precision(&[0.9, 0.7, 0.3], &[0.8, 0.2]);
        assert!((ap - (1.0 / 3.0 * 1.0 + 1.0 / 3.0 * 2.0 / 3.0 + 1.0 / 3.0 * 3.0 / 4.0)).abs() < 1e-12, "{ap}");
        // all tied: precision 3/5 at recall 1
        assert!((average_precision(&[0.5; 3], &[0.5; 2]) - 0.6).abs() < 1e-12);
    }

    #[test]
    fn hits_is_strict() {
        let neg = [0.9, 0.5, 0.1];
        assert_eq!(hits_at_k(&[0.95, 0.5, 0.6], &neg, 2), 2.0 / 3.0); // 0.5 ties the 2nd negative: a miss
        assert_eq!(hits_at_k(&[0.0], &neg, 5), 1.0);
    }

    #[test]
    fn mrr_counts_ties_half() {
        assert_eq!(mrr(&[1.0], &[0.0, 0.5]), 1.0);
        assert_eq!(mrr(&[0.5], &[0.0, 0.5]), 1.0 / 1.5);
        assert_eq!(mrr(&[0.1], &[0.2, 0.3]), 1.0 / 3.0);
    }

    #[test]
    fn stats() {
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 1.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
