"""`make bench`, part 1: strata vs PyTorch Geometric, same machine, same thread count, same
graphs, models and epochs. Prints per-epoch training-step time (median) and test accuracy at
the best validation epoch for both, and the ratio strata / PyG.

Run through `make bench` (it builds strata and points at the shared torch venv)."""
import argparse, json, os, subprocess, sys, tempfile
import doc_table

p = argparse.ArgumentParser()
p.add_argument("--strata", default="target/release/strata")
p.add_argument("--data-dir", default=os.environ.get("STRATA_DATA_DIR", "../shared/graphs"))
p.add_argument("--threads", type=int, default=2)
p.add_argument("--out", default=".bench/node_classification.json")
a = p.parse_args()

# (dataset, model, layers, epochs): epochs fixed (no early stopping) so both sides do equal work.
CASES = [("cora", "gcn", 2, 200), ("citeseer", "gcn", 2, 200), ("cora", "gcnii", 64, 100), ("citeseer", "gcnii", 64, 100), ("cora", "gat", 2, 200)]
here = os.path.dirname(os.path.abspath(__file__))
rows = []
for ds, model, layers, epochs in CASES:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([a.strata, "train", "--dataset", ds, "--model", model, "--layers", str(layers), "--epochs", str(epochs),
                        "--patience", "0", "--threads", str(a.threads), "--device", "cpu", "--json", f.name],
                       check=True, stdout=subprocess.DEVNULL)
        ours = json.load(open(f.name))
    out = subprocess.run([sys.executable, os.path.join(here, "pyg_baseline.py"), "--data-dir", a.data_dir, "--datasets", ds,
                          "--models", f"{model}:{layers}", "--epochs", str(epochs), "--threads", str(a.threads)],
                         check=True, capture_output=True, text=True).stdout
    theirs = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    rows.append(dict(dataset=ds, model=model, layers=layers, epochs=epochs,
                     strata_ms=ours["epoch_ms_median"], pyg_ms=theirs["epoch_ms_median"],
                     ratio=ours["epoch_ms_median"] / theirs["epoch_ms_median"],
                     strata_acc=100 * ours["test_accuracy"]["mean"], pyg_acc=theirs["test_accuracy"] * 100))
    r = rows[-1]
    print(f"{ds:9} {model:6} L={layers:<3} strata {r['strata_ms']:8.2f} ms  PyG {r['pyg_ms']:8.2f} ms  "
          f"ratio {r['ratio']:.2f}  acc {r['strata_acc']:.1f} vs {r['pyg_acc']:.1f}", flush=True)

table = ["| dataset | model | layers | epochs | strata ms/epoch | PyG ms/epoch | ratio strata/PyG | strata test % | PyG test % |",
         "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    table.append(f"| {r['dataset']} | {r['model']} | {r['layers']} | {r['epochs']} | {r['strata_ms']:.2f} | {r['pyg_ms']:.2f} | "
                 f"{r['ratio']:.2f} | {r['strata_acc']:.1f} | {r['pyg_acc']:.1f} |")
print(f"\nper-epoch time, strata / PyG 2.8 (CPU, {a.threads} threads, training step = forward + backward + Adam):")
print("\n".join(table))
os.makedirs(os.path.dirname(a.out), exist_ok=True)
json.dump(rows, open(a.out, "w"), indent=1)
doc_table.write("node-classification", "\n".join(table), f"python bench/node_classification.py --threads {a.threads}")
