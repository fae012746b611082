//! Operations where libtorch's CPU default is the bottleneck: dropout, and the sparse product
//! whose backward would otherwise transpose the operator on every call.

use tch::{Device, Kind, Tensor};

extern "C" {
    fn strata_spmm_cached_t(
        a: *const torch_sys::C_tensor,
        a_t: *const torch_sys::C_tensor,
        x: *const torch_sys::C_tensor,
        err: *mut std::ffi::c_char,
        len: std::ffi::c_ulong,
    ) -> *mut torch_sys::C_tensor;
    fn strata_backward(
        roots: *const *const torch_sys::C_tensor,
        grads: *const *const torch_sys::C_tensor,
        n: std::ffi::c_ulong,
        err: *mut std::ffi::c_char,
        len: std::ffi::c_ulong,
    ) -> std::ffi::c_int;
    #[allow(clippy::too_many_arguments)]
    fn strata_gcn2_layer(
        x: *const torch_sys::C_tensor,
        h0a: *const torch_sys::C_tensor,
        m: *const torch_sys::C_tensor,
        keep: *const torch_sys::C_tensor,
        a: *const torch_sys::C_tensor,
        a_t: *const torch_sys::C_tensor,
        c: f64,
        recompute: std::ffi::c_int,
        err: *mut std::ffi::c_char,
        len: std::ffi::c_ulong,
    ) -> *mut torch_sys::C_tensor;
    fn strata_masked_scale(
        x: *const torch_sys::C_tensor,
        keep: *const torch_sys::C_tensor,
        s: f64,
        err: *mut std::ffi::c_char,
        len: std::ffi::c_ulong,
    ) -> *mut torch_sys::C_tensor;
    fn strata_masked_scale_out(
        out: *const torch_sys::C_tensor,
        x: *const torch_sys::C_tensor,
        keep: *const torch_sys::C_tensor,
        s: f64,
        err: *mut std::ffi::c_char,
        len: std::ffi::c_ulong,
    ) -> std::ffi::c_int;
}

/// Turns a shim's result (a new tensor, or null with a message in `err`) into a `Result`.
fn from_shim(out: *mut torch_sys::C_tensor, err: &[std::ffi::c_char]) -> Result<Tensor, tch::TchError> {
    if out.is_null() {
        // SAFETY: `err` is NUL-terminated by the shim (zero-initialised otherwise).
        let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        return Err(tch::TchError::Torch(msg));
    }
    // SAFETY: a fresh heap tensor whose ownership passes to the returned value.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// `a · x` for a sparse CSR `a`, differentiable in `x` with the gradient `a_t · g`: `a_t` is
/// `aᵀ` built once per graph (the same tensor for a symmetric operator). libtorch's autograd
/// would form `aᵀ` as a CSC view and multiply with it on every backward, which on the CPU
/// costs about twice the forward product. Errors (out of memory, mismatched shapes) carry
/// libtorch's message.
pub fn f_spmm(a: &Tensor, a_t: &Tensor, x: &Tensor) -> Result<Tensor, tch::TchError> {
    let mut err = [0 as std::ffi::c_char; 1024];
    // SAFETY: the three pointers are live tensors borrowed for the call; the shim copies at most
    // `err.len()` bytes (NUL-terminated) into `err` and returns a new owned tensor or null.
    let out = unsafe {
        strata_spmm_cached_t(a.as_ptr(), a_t.as_ptr(), x.as_ptr(), err.as_mut_ptr(), err.len() as std::ffi::c_ulong)
    };
    from_shim(out, &err)
}

/// Back-propagates from every `(root, gradient)` pair at once (a root's gradient has the root's
/// shape): the leaves' gradients are what `Σ_i ⟨root_i, gradient_i⟩.backward()` would give,
/// without forming that sum or differentiating it. Roots that do not require a gradient are
/// skipped; with none left nothing runs.
pub fn backward_roots(pairs: &[(&Tensor, &Tensor)]) -> Result<(), tch::TchError> {
    let pairs: Vec<_> = pairs.iter().filter(|(r, _)| r.requires_grad()).collect();
    if pairs.is_empty() {
        return Ok(());
    }
    let roots: Vec<_> = pairs.iter().map(|(r, _)| r.as_ptr()).collect();
    let grads: Vec<_> = pairs.iter().map(|(_, g)| g.as_ptr()).collect();
    let mut err = [0 as std::ffi::c_char; 1024];
    // SAFETY: both arrays hold `n` live tensors borrowed for the call; the shim copies at most
    // `err.len()` bytes (NUL-terminated) into `err`.
    let failed = unsafe {
        strata_backward(
            roots.as_ptr(),
            grads.as_ptr(),
            roots.len() as std::ffi::c_ulong,
            err.as_mut_ptr(),
            err.len() as std::ffi::c_ulong,
        )
    };
    if failed != 0 {
        // SAFETY: NUL-terminated by the shim.
        let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        return Err(tch::TchError::Torch(msg));
    }
    Ok(())
}

/// [`f_spmm`], panicking on a libtorch error as tch's own operators do.
pub fn spmm(a: &Tensor, a_t: &Tensor, x: &Tensor) -> Tensor {
    f_spmm(a, a_t, x).unwrap_or_else(|e| panic!("{e}"))
}

/// One GCNII layer before its activation, as a single autograd node (`csrc/gcnii.cpp`):
/// `(c·A·(x ⊙ keep) + h0a) · m` for a CSR `a` (float32) with cached transpose `a_t`, where the
/// caller folds (1 − α) and the dropout scale into `c` and passes `h0a = α·H⁰` (formed once per
/// forward). Differentiable in `x`, `h0a` and `m`. With `recompute` only `x` is kept for the
/// backward pass, which rebuilds the support (one more sparse product, N×d×4 bytes less).
#[allow(clippy::too_many_arguments)]
pub fn f_gcn2_layer(
    x: &Tensor,
    h0a: &Tensor,
    m: &Tensor,
    keep: Option<&Tensor>,
    a: &Tensor,
    a_t: &Tensor,
    c: f64,
    recompute: bool,
) -> Result<Tensor, tch::TchError> {
    let mut err = [0 as std::ffi::c_char; 1024];
    let keep = keep.map_or(std::ptr::null(), |k| k.as_ptr());
    // SAFETY: every pointer is a live tensor borrowed for the call (or null for `keep`); the
    // shim writes at most `err.len()` bytes into `err` and returns a new tensor or null.
    let out = unsafe {
        strata_gcn2_layer(
            x.as_ptr(),
            h0a.as_ptr(),
            m.as_ptr(),
            keep,
            a.as_ptr(),
            a_t.as_ptr(),
            c,
            recompute as std::ffi::c_int,
            err.as_mut_ptr(),
            err.len() as std::ffi::c_ulong,
        )
    };
    from_shim(out, &err)
}

/// The keep mask of [`dropout`] (true = kept), drawn from the same generator with the same bits:
/// `x ⊙ keep / (1 − p)` is `dropout(x, p, true)`.
pub fn dropout_mask(x: &Tensor, p: f64) -> Tensor {
    if x.device() != Device::Cpu {
        return x.rand_like().ge(p);
    }
    let n = x.numel() as i64;
    let bits = Tensor::randint_low(i32::MIN as i64, i32::MAX as i64, [(n + 1) / 2], (Kind::Int, Device::Cpu))
        .view_dtype(Kind::Int16)
        .narrow(0, 0, n)
        .view(x.size().as_slice());
    let threshold = (-32768.0 + (p * 65536.0).round()) as i64;
    bits.ge(threshold)
}

/// `x ⊙ keep · s` for a boolean mask `keep` of `x`'s shape, differentiable in `x` (gradient
/// `g ⊙ keep · s`): one pass reading the mask's bytes, where libtorch's `(x * keep) * s` widens
/// the mask element by element and makes a second pass (about 3× the time on the CPU). Same
/// bits as `(x * keep) * s`.
pub fn masked_scale(x: &Tensor, keep: &Tensor, s: f64) -> Tensor {
    let mut err = [0 as std::ffi::c_char; 1024];
    // SAFETY: both pointers are live tensors borrowed for the call; the shim writes at most
    // `err.len()` bytes into `err` and returns a new owned tensor or null.
    let out =
        unsafe { strata_masked_scale(x.as_ptr(), keep.as_ptr(), s, err.as_mut_ptr(), err.len() as std::ffi::c_ulong) };
    // A mask of another shape is a caller's bug, as for libtorch's own operators.
    from_shim(out, &err).unwrap_or_else(|e| panic!("masked_scale: {e}"))
}

/// [`masked_scale`] into `out` (which may be `x`), without autograd: e.g. a chunk's rows of a
/// historical buffer written straight from the layer input.
pub fn masked_scale_out(out: &Tensor, x: &Tensor, keep: &Tensor, s: f64) {
    let mut err = [0 as std::ffi::c_char; 1024];
    // SAFETY: the three pointers are live tensors borrowed for the call; the shim writes into
    // `out`'s storage and at most `err.len()` bytes into `err`.
    let rc = unsafe {
        strata_masked_scale_out(
            out.as_ptr(),
            x.as_ptr(),
            keep.as_ptr(),
            s,
            err.as_mut_ptr(),
            err.len() as std::ffi::c_ulong,
        )
    };
    if rc != 0 {
        // SAFETY: NUL-terminated by the shim.
        let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        panic!("masked_scale_out: {msg}");
    }
}

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
    // The mask stays boolean: autograd keeps it for the backward pass, one byte per entry
    // instead of four (3 × N × d bytes less per layer of a deep model). `(x · keep) · s` has the
    // same bits as `x · (keep · s)`: the kept entries are `x · s` either way.
    let keep = dropout_mask(x, p);
    masked_scale(x, &keep, 1.0 / (1.0 - p))
}

/// ForwardGNN's "LayerNormalization": `x / (‖x‖₂ + 1e-8)` per row, no parameters.
pub fn l2_rows(x: &Tensor) -> Tensor {
    x / (x.norm_scalaropt_dim(2.0, [1], true) + 1e-8)
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

/// `t`'s values in host memory as a flat `Vec<T>`. The tensor is converted to `T`'s kind, moved
/// to the CPU and flattened first, so the copy cannot fail on a type, device or shape mismatch;
/// unlike `Vec::try_from(..).unwrap_or_default()`, nothing turns a failure into an empty vector.
pub fn host_vec<T: tch::kind::Element>(t: &Tensor) -> Vec<T> {
    let flat = t.to_device(Device::Cpu).to_kind(T::KIND).contiguous().reshape([-1]);
    let n = flat.numel();
    let mut out = vec![T::ZERO; n];
    flat.copy_data(&mut out, n);
    out
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

    #[test]
    fn masked_scale_has_the_bits_of_the_product_and_its_gradient() {
        tch::manual_seed(1);
        let x = Tensor::randn([300, 70], (Kind::Float, Device::Cpu));
        let _ = x.get(3).get(5).fill_(f64::NAN);
        let _ = x.get(4).get(6).fill_(f64::NEG_INFINITY);
        let keep = dropout_mask(&x, 0.4);
        let s = 1.0 / 0.6;
        let reference = (&x * &keep) * s;
        // `equal` is false for NaN entries: compare the bits.
        let bits = |t: &Tensor| host_vec::<f32>(t).into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(bits(&masked_scale(&x, &keep, s)), bits(&reference));
        // Strided inputs take libtorch's path, with the same result.
        let xt = x.tr();
        assert!(!xt.is_contiguous());
        assert_eq!(bits(&masked_scale(&xt, &keep.tr(), s)), bits(&((&xt * keep.tr()) * s)));
        // In place, and into a row block of a larger buffer.
        let buf = Tensor::zeros([400, 70], (Kind::Float, Device::Cpu));
        masked_scale_out(&buf.narrow(0, 100, 300), &x, &keep, s);
        assert_eq!(bits(&buf.narrow(0, 100, 300)), bits(&reference));
        assert_eq!(buf.narrow(0, 0, 100).abs().sum(Kind::Float).double_value(&[]), 0.0);
        // The gradient is the mask's scale of the output gradient.
        let leaf = Tensor::randn([50, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let k = dropout_mask(&leaf, 0.5);
        let g = Tensor::randn([50, 8], (Kind::Float, Device::Cpu));
        backward_roots(&[(&masked_scale(&leaf, &k, 2.0), &g)]).unwrap();
        assert!(leaf.grad().equal(&((&g * &k) * 2.0)));
    }
}
