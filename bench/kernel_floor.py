"""The kernel-only floor of a training epoch: what libtorch's kernels take for the products a
model cannot avoid, with nothing else (no dropout, activations, sums, optimizer or framework).
Per layer: the sparse product forward and backward (one CSR product each, A being symmetric)
at the aggregated width, and the dense products (forward, weight gradient, and input gradient
after the first layer). GAT's attention-weighted sum is counted as one sparse product of its
heads × hidden width, its scores as free; SAGE counts its two weight matrices. Same threads
as the runs it is compared with."""
import time
import numpy as np
import torch


def operator(path):
    z = np.load(path, allow_pickle=False)
    n = int(z["adj_shape"][0])
    indptr, indices = z["adj_indptr"].astype(np.int64), z["adj_indices"].astype(np.int64)
    row = np.concatenate([np.repeat(np.arange(n), np.diff(indptr)), np.arange(n)])
    col = np.concatenate([indices, np.arange(n)])
    deg = np.bincount(row, minlength=n).astype(np.float32)
    d = deg ** -0.5
    a = torch.sparse_coo_tensor(torch.from_numpy(np.stack([row, col])), torch.from_numpy(d[row] * d[col]), (n, n)).coalesce().to_sparse_csr()
    return a, n, int(z["attr_matrix"].shape[1]) if "attr_matrix" in z else int(z["attr_shape"][1]), int(z["labels"].max()) + 1


def timed(f, reps=3):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3


def floor_ms(path, specs, threads):
    """`specs`: (name, layers, hidden) with name in gcn, gcnii, sage, gat; returns {name-layers: ms}."""
    torch.set_num_threads(threads)
    a, n, f, c = operator(path)
    spmm, gemm = {}, {}

    def s(w):
        if w not in spmm:
            x = torch.randn(n, w)
            spmm[w] = timed(lambda: a @ x)
        return spmm[w]

    def g(i, o):
        if (i, o) not in gemm:
            x, w = torch.randn(n, i), torch.randn(i, o)
            gemm[(i, o)] = timed(lambda: x @ w)
        return gemm[(i, o)]

    out = {}
    for name, layers, hidden in specs:
        if name == "gcnii":
            ms = 2 * g(f, hidden) + layers * (2 * s(hidden) + 3 * g(hidden, hidden)) + 3 * g(hidden, c)
        else:
            width = 64 if name == "gat" else hidden
            dims = [f] + [width] * (layers - 1) + [c]
            ms = 0.0
            for l in range(layers):
                i, o = dims[l], dims[l + 1]
                products = 2 if name == "sage" else 1
                ms += products * (2 if l == 0 else 3) * g(i, o) + 2 * s(min(i, o))
        out[f"{name}-{layers}"] = ms
    return out
