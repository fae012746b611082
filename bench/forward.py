"""`make bench`, part 6: ForwardGNN. Backprop vs single-forward (SF) GCN at 2, 4, 8, 16 layers on
Cora-ML (official split 0 of the paper): test accuracy, epoch time (one training step of every
layer: BP one step of the stack, SF the sum of each layer's mean step) and peak memory above the
loaded dataset (CPU: heap high-water mark sampled after each forward pass). Both with the paper's
settings: hidden 128, Adam 1e-3, weight decay 5e-4, no dropout, up to 1000 epochs, patience 200
epochs (BP) / 100 validations every 2 epochs (SF, per layer)."""
import argparse, json, os, subprocess, tempfile
import doc_table

p = argparse.ArgumentParser()
p.add_argument("--strata", default="target/release/strata")
p.add_argument("--depths", default="2,4,8,16")
p.add_argument("--out", default=".bench/forward.json")
a = p.parse_args()

BP = ["--hidden", "128", "--dropout", "0", "--lr", "0.001", "--weight-decay", "5e-4", "--epochs", "1000", "--patience", "200"]
rows = []
for layers in map(int, a.depths.split(",")):
    for trainer in ["bp", "sf"]:
        extra = BP if trainer == "bp" else []
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([a.strata, "train", "--dataset", "cora-ml", "--model", "gcn", "--trainer", trainer, "--layers", str(layers),
                            *extra, "--seeds", "1", "--json", f.name], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            r = json.load(open(f.name))
        x = dict(trainer=trainer, layers=layers, accuracy=100 * r["test_accuracy"]["mean"], epoch_ms=r["epoch_ms_median"],
                 peak_mib=r["peak_memory_bytes"] / 2**20)
        rows.append(x)
        print(f"{trainer:3} {layers:>2} layers: test {x['accuracy']:.2f} %  epoch {x['epoch_ms']:.1f} ms  peak {x['peak_mib']:.1f} MiB", flush=True)

table = ["| layers | BP test % | BP epoch ms | BP peak MiB | SF test % | SF epoch ms | SF peak MiB |", "|---|---|---|---|---|---|---|"]
for layers in sorted({x["layers"] for x in rows}):
    b, s = (next(x for x in rows if x["layers"] == layers and x["trainer"] == t) for t in ["bp", "sf"])
    table.append(f"| {layers} | {b['accuracy']:.2f} | {b['epoch_ms']:.1f} | {b['peak_mib']:.1f} | {s['accuracy']:.2f} | {s['epoch_ms']:.1f} | {s['peak_mib']:.1f} |")
growth = []
for t in ["bp", "sf"]:
    m = [x["peak_mib"] for x in rows if x["trainer"] == t]
    growth.append(f"{t.upper()} peak {m[0]:.1f} → {m[-1]:.1f} MiB from {rows[0]['layers']} to {rows[-1]['layers']} layers "
                  f"({(m[-1] / m[0] - 1) * 100:+.1f} %)")
print("\nCora-ML (split 0), GCN: backprop vs single-forward")
print("\n".join(table + growth))
if a.depths == "2,4,8,16":
    doc_table.write("forward-depth", "\n".join(table) + "\n\n" + "; ".join(growth) + ".", "python bench/forward.py")
# Forward-only vs backprop pipelining, 4 stages, same layers (GCN 3 conv slots + input slot), hidden 128.
pipe = {}
for trainer, epochs in [("bp", 30), ("sf", 30)]:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([a.strata, "launch", "--dataset", "cora-ml", "--model", "gcn", "--layers", "3", "--stages", "4", "--hidden", "128",
                        "--trainer", trainer, "--epochs", str(epochs), "--json", f.name], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pipe[trainer] = json.load(open(f.name))
print("\nCora-ML, 4 pipeline stages on one host, 30 epochs: backprop vs forward-only (sf)")
print("| trainer | MiB/epoch measured | MiB/epoch predicted | epoch ms (median) |")
print("|---|---|---|---|")
for t, r in pipe.items():
    b = r["bytes_per_epoch"]
    print(f"| {t} | {b['measured'] / 2**20:.3f} | {b['predicted'] / 2**20:.3f} | {r['epoch_ms_median']:.1f} |")
print(f"bytes ratio sf/bp {pipe['sf']['bytes_per_epoch']['measured'] / pipe['bp']['bytes_per_epoch']['measured']:.3f}, "
      f"epoch time ratio {pipe['sf']['epoch_ms_median'] / pipe['bp']['epoch_ms_median']:.3f}")
os.makedirs(os.path.dirname(a.out), exist_ok=True)
json.dump({"depth": rows, "pipeline": {t: {"bytes": r["bytes_per_epoch"], "epoch_ms": r["epoch_ms_median"]} for t, r in pipe.items()}}, open(a.out, "w"), indent=1)
