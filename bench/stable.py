"""`make bench`, part 5: STABLE on the Pro-GNN graphs (fixed Pro-GNN split, Metattack 0-20 %),
beside plain GCN and Jaccard-GCN (threshold 0.01) on the same poisoned graph; 10 runs each.
PolBlogs has no features (one-hot placeholders), so Jaccard-GCN does not apply there and STABLE
skips its Jaccard step."""
import argparse, json, os, subprocess, tempfile

p = argparse.ArgumentParser()
p.add_argument("--strata", default="target/release/strata")
p.add_argument("--runs", type=int, default=10)
p.add_argument("--out", default=".bench/stable.json")
a = p.parse_args()

rows = []
for ds in ["cora-lcc", "citeseer-lcc", "polblogs-lcc"]:
    for rate in [0.0, 0.05, 0.10, 0.15, 0.20]:
        attack = [] if rate == 0 else ["--attack", f"meta:{rate}"]
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([a.strata, "refine", "--dataset", ds, *attack, "--runs", str(a.runs), "--baselines", "--json", f.name],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            r = json.load(open(f.name))
        x = dict(dataset=ds, rate=rate, stable=r["test_accuracy"]["mean"] * 100, stable_std=r["test_accuracy"]["std"] * 100,
                 gcn=r["baselines"]["gcn"]["mean"] * 100,
                 jaccard=None if r["baselines"]["jaccard_gcn"] is None else r["baselines"]["jaccard_gcn"]["mean"] * 100,
                 removed=r["edges_removed"], adversarial=r["adversarial_removed"], seconds=r["refine_seconds"])
        rows.append(x)
        jac = "n/a" if x["jaccard"] is None else f"{x['jaccard']:.2f}"
        print(f"{ds:13} {int(rate*100):>2}%  GCN {x['gcn']:.2f}  Jaccard-GCN {jac}  STABLE {x['stable']:.2f} ± {x['stable_std']:.2f}"
              f"  (removed {x['removed']}, adversarial {x['adversarial']}, {x['seconds']:.1f} s)", flush=True)

print(f"\nMetattack, Pro-GNN split, test accuracy % (mean of {a.runs} runs):")
print("| dataset | ptb | GCN | Jaccard-GCN | STABLE | removed edges (adversarial) | refine s |")
print("|---|---|---|---|---|---|---|")
for x in rows:
    adv = "-" if x["adversarial"] is None else x["adversarial"]
    jac = "n/a" if x["jaccard"] is None else f"{x['jaccard']:.2f}"
    print(f"| {x['dataset']} | {int(x['rate']*100)}% | {x['gcn']:.2f} | {jac} | {x['stable']:.2f} ± {x['stable_std']:.2f} | {x['removed']} ({adv}) | {x['seconds']:.1f} |")
os.makedirs(os.path.dirname(a.out), exist_ok=True)
json.dump(rows, open(a.out, "w"), indent=1)
