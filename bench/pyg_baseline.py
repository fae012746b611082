"""PyTorch Geometric side of `make bench`: the same models, data and thread count as strata.

Prints one JSON line per (dataset, model): median epoch time (forward + backward + Adam step,
full batch) and test accuracy at the best validation epoch. Reads the same npz files strata reads.
"""
import argparse, json, os, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.nn import GATConv, GCNConv, GCN2Conv, SAGEConv
from torch_geometric.data import Data


def load(path):
    z = np.load(path, allow_pickle=False)
    n = int(z["adj_shape"][0])
    indptr, indices = z["adj_indptr"].astype(np.int64), z["adj_indices"].astype(np.int64)
    row = np.repeat(np.arange(n), np.diff(indptr))
    ei = torch.tensor(np.stack([row, indices]))
    ei = torch.cat([ei, ei.flip(0)], 1)
    ei = torch.unique(ei, dim=1)
    ei = ei[:, ei[0] != ei[1]]
    if "attr_matrix" in z:  # dense real-valued features (strata data synth): used as they are
        x = torch.tensor(z["attr_matrix"], dtype=torch.float32)
    else:
        fs = tuple(int(s) for s in z["attr_shape"])
        fptr, fidx, fdat = z["attr_indptr"], z["attr_indices"], z["attr_data"]
        x = torch.zeros(fs)
        x[torch.tensor(np.repeat(np.arange(fs[0]), np.diff(fptr))), torch.tensor(fidx.astype(np.int64))] = torch.tensor(fdat, dtype=torch.float32)
        x = x / x.sum(1, keepdim=True).clamp(min=1e-12)  # NormalizeFeatures
    y = torch.tensor(z["labels"].astype(np.int64))
    return Data(x=x, edge_index=ei, y=y, train=torch.tensor(z["idx_train"]), val=torch.tensor(z["idx_val"]), test=torch.tensor(z["idx_test"]))


class GCN(torch.nn.Module):
    def __init__(self, i, h, o, cached):
        super().__init__()
        self.c1, self.c2 = GCNConv(i, h, cached=cached), GCNConv(h, o, cached=cached)

    def forward(self, x, ei):
        x = F.dropout(x, 0.5, self.training)
        x = F.relu(self.c1(x, ei))
        x = F.dropout(x, 0.5, self.training)
        return self.c2(x, ei)


class SAGE(torch.nn.Module):
    """Mean aggregation with a root weight (PyG's default), as strata's SageConv."""
    def __init__(self, i, h, o):
        super().__init__()
        self.c1, self.c2 = SAGEConv(i, h), SAGEConv(h, o)

    def forward(self, x, ei):
        x = F.dropout(x, 0.5, self.training)
        x = F.relu(self.c1(x, ei))
        x = F.dropout(x, 0.5, self.training)
        return self.c2(x, ei)


class GAT(torch.nn.Module):
    """The GAT paper's Cora model: 8 heads of 8, ELU, one averaged output head, dropout 0.6."""
    def __init__(self, i, o, hidden=8, heads=8):
        super().__init__()
        self.c1 = GATConv(i, hidden, heads=heads, dropout=0.6)
        self.c2 = GATConv(hidden * heads, o, heads=1, concat=False, dropout=0.6)

    def forward(self, x, ei):
        x = F.dropout(x, 0.6, self.training)
        x = F.elu(self.c1(x, ei))
        x = F.dropout(x, 0.6, self.training)
        return self.c2(x, ei)


class GCNII(torch.nn.Module):
    def __init__(self, i, h, o, layers, cached, alpha=0.1, theta=0.5, dropout=0.6):
        super().__init__()
        self.lins = torch.nn.ModuleList([torch.nn.Linear(i, h), torch.nn.Linear(h, o)])
        self.convs = torch.nn.ModuleList([GCN2Conv(h, alpha, theta, l + 1, cached=cached, normalize=True) for l in range(layers)])
        self.dropout = dropout

    def forward(self, x, ei):
        x = F.dropout(x, self.dropout, self.training)
        x = x0 = F.relu(self.lins[0](x))
        for conv in self.convs:
            x = F.dropout(x, self.dropout, self.training)
            x = F.relu(conv(x, x0, ei))
        x = F.dropout(x, self.dropout, self.training)
        return self.lins[1](x)


def run(data, model_name, layers, epochs, cached, seed, warmup=5):
    torch.manual_seed(seed)
    c = int(data.y.max()) + 1
    if model_name == "gcn":
        model = GCN(data.num_features, 16, c, cached)
        opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    elif model_name == "sage":
        model = SAGE(data.num_features, 64, c)
        opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    elif model_name == "gat":
        model = GAT(data.num_features, c)
        opt = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=5e-4)
    else:
        model = GCNII(data.num_features, 64, c, layers, cached)
        opt = torch.optim.Adam([
            dict(params=model.convs.parameters(), weight_decay=0.01),
            dict(params=model.lins.parameters(), weight_decay=5e-4)], lr=0.01)
    times, best_val, test_at_best = [], -1.0, 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        opt.zero_grad()
        out = model(data.x, data.edge_index)
        loss = F.cross_entropy(out[data.train], data.y[data.train])
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            pred = model(data.x, data.edge_index).argmax(1)
        val = (pred[data.val] == data.y[data.val]).float().mean().item()
        if val >= best_val:
            best_val, test_at_best = val, (pred[data.test] == data.y[data.test]).float().mean().item()
    return float(np.median(times[warmup:]) * 1e3), test_at_best


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir")
    p.add_argument("--npz", help="one graph npz instead of the Planetoid datasets")
    p.add_argument("--datasets", default="cora,citeseer")
    p.add_argument("--models", default="gcn:2,gcnii:64")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cached", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5, help="epochs left out of the median")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    paths = [(os.path.basename(a.npz), a.npz)] if a.npz else [(ds, os.path.join(a.data_dir, "planetoid", f"{ds}.npz")) for ds in a.datasets.split(",")]
    for ds, path in paths:
        data = load(path)
        for spec in a.models.split(","):
            m, layers = spec.split(":")
            ms, acc = run(data, m, int(layers), a.epochs, bool(a.cached), 0, a.warmup)
            import resource
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            print(json.dumps({"impl": "pyg", "dataset": ds, "model": m, "layers": int(layers), "epoch_ms_median": ms, "test_accuracy": acc, "cached": bool(a.cached), "threads": a.threads, "peak_rss_bytes": peak}), flush=True)
