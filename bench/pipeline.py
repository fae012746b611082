"""`make bench`, part 2: pipelined training across worker processes on loopback. For P = 2 and
4 stages on Cora and CiteSeer with a 32-layer GCNII, prints the measured per-epoch time and bytes
beside the volume model's prediction. (Graph-parallel and hybrid execution are not implemented
yet, so they have no rows here.)"""
import argparse, json, subprocess, tempfile

p = argparse.ArgumentParser()
p.add_argument("--strata", default="target/release/strata")
p.add_argument("--epochs", type=int, default=30)
p.add_argument("--out", default=".bench/pipeline.json")
a = p.parse_args()

rows = []
for ds in ["cora", "citeseer"]:
    for stages in [2, 4]:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([a.strata, "launch", "--dataset", ds, "--layers", "32", "--stages", str(stages),
                            "--epochs", str(a.epochs), "--eval-every", str(a.epochs), "--json", f.name],
                           check=True, stdout=subprocess.DEVNULL)
            r = json.load(open(f.name))
        rows.append(dict(dataset=ds, stages=stages, chunks=r["chunks"], epoch_ms=r["epoch_ms_median"],
                         measured=r["bytes_per_epoch"]["measured"], predicted=r["bytes_per_epoch"]["predicted"]))
        x = rows[-1]
        print(f"{ds:9} P={stages} K={x['chunks']:<3} {x['epoch_ms']:8.1f} ms/epoch  {x['measured']/2**20:7.3f} MiB measured  "
              f"{x['predicted']/2**20:7.3f} MiB predicted", flush=True)

print(f"\npipeline, GCNII 32 layers, hidden 64, loopback workers ({a.epochs} epochs, median):")
print("| dataset | stages | chunks | ms/epoch | MiB/epoch measured | MiB/epoch predicted |")
print("|---|---|---|---|---|---|")
for x in rows:
    print(f"| {x['dataset']} | {x['stages']} | {x['chunks']} | {x['epoch_ms']:.1f} | {x['measured']/2**20:.3f} | {x['predicted']/2**20:.3f} |")
import os
os.makedirs(os.path.dirname(a.out), exist_ok=True)
json.dump(rows, open(a.out, "w"), indent=1)
