// One GCNII layer before its activation, `((c·A·(x ⊙ keep)) + h0a) · m`, as a single autograd
// node: `c` folds the initial-residual weight (1 − α) and the dropout scale 1/(1 − p) into the
// sparse product's own scalar, and `h0a` (α·H⁰, formed once per forward) is the product's
// accumulator, so the layer makes one pass over N×d for dropout and none for scaling or the
// residual sum (libtorch's composition makes four forward and four backward). With
// `recompute`, the layer keeps only its input (which the previous activation keeps anyway) and
// rebuilds the support `c·A·x + h0a` in backward: one sparse product more, N×d×4 bytes less
// per layer.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace strata {
void masked_into(at::Tensor& out, const at::Tensor& x, const at::Tensor& keep);
at::Tensor masked(const at::Tensor& x, const at::Tensor& keep);
}  // namespace strata (mask.cpp)

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor masked(const at::Tensor& x, const at::Tensor& keep) {
  return keep.defined() ? strata::masked(x, keep) : x;
}

// `c · a · x + base`, with the accumulation done by the sparse kernel itself.
at::Tensor support(const at::Tensor& a, const at::Tensor& x, const at::Tensor& base, double c) {
  return at::addmm(base, a, x, 1.0, c);
}

struct Gcn2Layer : public torch::autograd::Function<Gcn2Layer> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& h0a, const at::Tensor& m,
                            const std::optional<at::Tensor>& keep_opt, const at::Tensor& a, const at::Tensor& a_t, double c, bool recompute) {
    at::Tensor keep = keep_opt.has_value() ? *keep_opt : at::Tensor();
    at::Tensor sup = support(a, masked(x, keep), h0a, c);
    at::Tensor out = sup.mm(m);
    ctx->saved_data["a"] = a;
    ctx->saved_data["a_t"] = a_t;
    ctx->saved_data["c"] = c;
    ctx->saved_data["recompute"] = recompute;
    ctx->saved_data["has_keep"] = keep.defined();
    if (keep.defined()) {
      ctx->saved_data["keep"] = keep;
    }
    if (recompute) {
      ctx->save_for_backward({x, h0a, m});
    } else {
      ctx->save_for_backward({sup, m});
    }
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& g = grads[0];
    auto saved = ctx->get_saved_variables();
    double c = ctx->saved_data["c"].toDouble();
    bool recompute = ctx->saved_data["recompute"].toBool();
    at::Tensor keep = ctx->saved_data["has_keep"].toBool() ? ctx->saved_data["keep"].toTensor() : at::Tensor();
    at::Tensor sup, m;
    if (recompute) {
      sup = support(ctx->saved_data["a"].toTensor(), masked(saved[0], keep), saved[1], c);
      m = saved[2];
    } else {
      sup = saved[0];
      m = saved[1];
    }
    at::Tensor gm = sup.t().mm(g);
    sup.reset();
    at::Tensor gsup = g.mm(m.t());
    at::Tensor gx = ctx->saved_data["a_t"].toTensor().matmul(gsup).mul_(c);
    if (keep.defined()) {
      strata::masked_into(gx, gx, keep);
    }
    return {gx, gsup, gm, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

extern "C" {
// See the file comment; `keep` may be null (no dropout). Null on a libtorch error, whose message
// is copied into `err` (at most `len` bytes, NUL-terminated).
at::Tensor* strata_gcn2_layer(const at::Tensor* x, const at::Tensor* h0a, const at::Tensor* m, const at::Tensor* keep,
                              const at::Tensor* a, const at::Tensor* a_t, double c, int recompute, char* err, unsigned long len) {
  try {
    std::optional<at::Tensor> k = keep ? std::optional<at::Tensor>(*keep) : std::nullopt;
    return new at::Tensor(Gcn2Layer::apply(*x, *h0a, *m, k, *a, *a_t, c, recompute != 0));
  } catch (const std::exception& e) {
    if (len > 0) {
      std::snprintf(err, len, "%s", e.what());
    }
    return nullptr;
  }
}
}
