"""`make bench`: strata's weights in PyTorch Geometric. `strata train --save` on Cora for GCN and
GAT (one seed, the public split), then the file is loaded with `load_state_dict(strict=True)`
into the PyG model its metadata names, and PyG's test accuracy on the same split is compared with
the one strata reported. Exits 1 when they differ by more than 0.2 points (two test nodes: the two
libraries sum the same messages in a different order, which can flip a near-tie)."""
import json, os, subprocess, sys, tempfile
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch_geometric.nn import GATConv
from torch_geometric.nn.models import GCN
from pyg_baseline import load
import doc_table

STRATA = "target/release/strata"
PYG_NAMES = {"gcn": "torch_geometric.nn.models.GCN", "gat": "GATConv × 2 (8 heads, then 1)"}
DATA = os.environ.get("STRATA_DATA_DIR", "../shared/graphs")


class GAT(torch.nn.Module):
    """strata's GAT: hidden layers of `heads` concatenated heads, one averaged output head, ELU."""
    def __init__(self, i, hidden, heads, layers, classes):
        super().__init__()
        widths = [i] + [hidden * heads] * (layers - 1)
        self.convs = torch.nn.ModuleList(
            [GATConv(widths[l], hidden, heads=heads) for l in range(layers - 1)]
            + [GATConv(widths[-1], classes, heads=1, concat=False)])

    def forward(self, x, ei):
        for conv in self.convs[:-1]:
            x = F.elu(conv(x, ei))
        return self.convs[-1](x, ei)


def pyg_model(meta):
    i, h, c, layers = (int(meta[k]) for k in ("in_features", "hidden", "classes", "layers"))
    if meta["model"] == "gcn":
        return GCN(in_channels=i, hidden_channels=h, num_layers=layers, out_channels=c)
    if meta["model"] == "gat":
        return GAT(i, h, int(meta["heads"]), layers, c)
    raise SystemExit(f"no PyG model for {meta['model']} in this check")


torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
data = load(os.path.join(DATA, "planetoid", "cora.npz"))  # row-sum features, as strata's auto
print("\nstrata train --save loaded into PyTorch Geometric (Cora, public split, seed 0):")
table = ["| model | PyG model | strata test % | PyG test % with strata's weights |", "|---|---|---|---|"]
print("\n".join(table))
worst = 0.0
with tempfile.TemporaryDirectory() as d:
    for model in ("gcn", "gat"):
        st, js = os.path.join(d, f"{model}.safetensors"), os.path.join(d, f"{model}.json")
        r = subprocess.run([STRATA, "train", "--dataset", "cora", "--model", model, "--seeds", "1", "--save", st,
                            "--json", js], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SystemExit(f"strata train failed: {r.stderr[-400:]}")
        with safe_open(st, "pt") as f:
            meta = f.metadata()
        assert meta["feature_normalization"] == "row-sum", meta
        net = pyg_model(meta)
        net.load_state_dict(load_file(st), strict=True)
        net.eval()
        with torch.no_grad():
            pred = net(data.x, data.edge_index).argmax(1)
        pyg = (pred[data.test] == data.y[data.test]).float().mean().item()
        ours = json.load(open(js))["runs"][0]["test_accuracy"]
        worst = max(worst, abs(pyg - ours))
        table.append(f"| {model} | `{PYG_NAMES[model]}` | {100 * ours:.2f} | {100 * pyg:.2f} |")
        print(table[-1], flush=True)
doc_table.write("pyg-load", "\n".join(table), "python bench/pyg_load.py")
if worst > 0.002:
    sys.exit(f"PyG with strata's weights differs from strata by {100 * worst:.2f} points")
