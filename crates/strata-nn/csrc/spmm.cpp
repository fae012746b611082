// A sparse × dense product whose backward uses a transposed operator built once per graph.
// libtorch's own backward of `csr.matmul(x)` forms `csr.t()` (a CSC view) and multiplies with
// it on every call, which on CPU costs about twice the forward product; GCN-family operators
// are symmetric, so the cached "transpose" is usually the operator itself.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct CachedTransposeSpmm : public torch::autograd::Function<CachedTransposeSpmm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& a, const at::Tensor& a_t) {
    ctx->saved_data["a_t"] = a_t;
    return a.matmul(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor a_t = ctx->saved_data["a_t"].toTensor();
    return {a_t.matmul(grads[0]), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

extern "C" {
// `a · x`, differentiable in `x` (gradient `a_t · g`); null on a libtorch error, whose message
// is copied into `err` (at most `len` bytes, NUL-terminated).
at::Tensor* strata_spmm_cached_t(const at::Tensor* a, const at::Tensor* a_t, const at::Tensor* x, char* err, unsigned long len) {
  try {
    return new at::Tensor(CachedTransposeSpmm::apply(*x, *a, *a_t));
  } catch (const std::exception& e) {
    if (len > 0) {
      std::snprintf(err, len, "%s", e.what());
    }
    return nullptr;
  }
}
}

#include <torch/csrc/autograd/autograd.h>

extern "C" {
// Back-propagates from several roots at once, each with its own output gradient (libtorch's
// `torch::autograd::backward(roots, grads)`): gradients accumulate into the leaves' `.grad`
// without a scalar surrogate `Σ (root ⊙ grad)` and its own backward. Returns 0, or 1 with
// libtorch's message copied into `err` (at most `len` bytes, NUL-terminated).
int strata_backward(const at::Tensor* const* roots, const at::Tensor* const* grads, unsigned long n, char* err,
                    unsigned long len) {
  try {
    std::vector<at::Tensor> r, g;
    for (unsigned long i = 0; i < n; ++i) {
      r.push_back(*roots[i]);
      g.push_back(*grads[i]);
    }
    torch::autograd::backward(r, g);
    return 0;
  } catch (const std::exception& e) {
    if (len > 0) {
      std::snprintf(err, len, "%s", e.what());
    }
    return 1;
  }
}
}
