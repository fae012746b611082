// Dropout's masked scale `x ⊙ keep · s` in one pass over a boolean mask. libtorch's `x * keep`
// with a bool `keep` runs at about a third of the speed of a float product on the CPU (the mask
// is widened element by element) and `· s` is a second pass; this loop reads the mask's bytes
// directly. The bits are those of `(x * keep) * s`: a kept entry is `x · s`, a dropped one
// `x · 0` (a signed zero, or NaN for a non-finite `x`, as the product gives).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool direct(const at::Tensor& out, const at::Tensor& x, const at::Tensor& keep) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat && keep.scalar_type() == at::kBool &&
         out.scalar_type() == at::kFloat && x.is_contiguous() && keep.is_contiguous() && out.is_contiguous() &&
         x.sizes() == keep.sizes() && out.sizes() == x.sizes();
}

// `out = x ⊙ keep · s`; `out` may be `x` itself.
void masked_scale_into(at::Tensor& out, const at::Tensor& x, const at::Tensor& keep, double s) {
  if (!direct(out, x, keep)) {
    at::mul_out(out, x, keep);
    if (s != 1.0) {
      out.mul_(s);
    }
    return;
  }
  const float* xp = x.const_data_ptr<float>();
  // A bool is one byte holding 0 or 1: read as a number, the loop has no branch and vectorises.
  const uint8_t* kp = reinterpret_cast<const uint8_t*>(keep.const_data_ptr<bool>());
  float* op = out.mutable_data_ptr<float>();
  const float sf = static_cast<float>(s);
  at::parallel_for(0, x.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      op[i] = xp[i] * (sf * static_cast<float>(kp[i]));
    }
  });
}

at::Tensor masked_scale(const at::Tensor& x, const at::Tensor& keep, double s) {
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  masked_scale_into(out, x.contiguous(), keep.contiguous(), s);
  return out;
}

struct MaskedScale : public torch::autograd::Function<MaskedScale> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& keep, double s) {
    ctx->saved_data["keep"] = keep;
    ctx->saved_data["s"] = s;
    return masked_scale(x, keep, s);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor keep = ctx->saved_data["keep"].toTensor();
    double s = ctx->saved_data["s"].toDouble();
    return {masked_scale(grads[0], keep, s), at::Tensor(), at::Tensor()};
  }
};

void report(const std::exception& e, char* err, unsigned long len) {
  if (len > 0) {
    std::snprintf(err, len, "%s", e.what());
  }
}
}  // namespace

namespace strata {
// For the other shims: `x ⊙ keep` into `out` (which may be `x`), and as a new tensor.
void masked_into(at::Tensor& out, const at::Tensor& x, const at::Tensor& keep) {
  masked_scale_into(out, x, keep, 1.0);
}
at::Tensor masked(const at::Tensor& x, const at::Tensor& keep) {
  return masked_scale(x, keep, 1.0);
}
}  // namespace strata

extern "C" {
// `x ⊙ keep · s`, differentiable in `x` (its gradient is `g ⊙ keep · s`). Null on a libtorch
// error, whose message is copied into `err` (at most `len` bytes, NUL-terminated).
at::Tensor* strata_masked_scale(const at::Tensor* x, const at::Tensor* keep, double s, char* err, unsigned long len) {
  try {
    return new at::Tensor(MaskedScale::apply(*x, *keep, s));
  } catch (const std::exception& e) {
    report(e, err, len);
    return nullptr;
  }
}

// `out = x ⊙ keep · s` without autograd (`out` may be `x`). Returns 0, or 1 with libtorch's
// message in `err`.
int strata_masked_scale_out(const at::Tensor* out, const at::Tensor* x, const at::Tensor* keep, double s, char* err,
                            unsigned long len) {
  try {
    at::NoGradGuard no_grad;
    at::Tensor o = *out;
    masked_scale_into(o, *x, *keep, s);
    return 0;
  } catch (const std::exception& e) {
    report(e, err, len);
    return 1;
  }
}
}
