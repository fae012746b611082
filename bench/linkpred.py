"""`make bench`, part 3: `strata linkpred` — training time per epoch and the latency of one
`predict --node` query (scoring every candidate and ranking with the embeddings saved at training
time, and with `--recompute` running the encoder too; process start and loading excluded, reported
separately as the command's wall time) on Cora and on a synthetic
graph with 1M undirected edges (100k nodes in 100 planted communities, one-hot features)."""
import argparse, json, os, subprocess, tempfile, time
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--strata", default="target/release/strata")
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--out", default=".bench/linkpred.json")
a = p.parse_args()


def synthetic(path, nodes=100_000, edges=1_000_000, blocks=100, p_in=0.9, seed=0):
    rng = np.random.default_rng(seed)
    size = nodes // blocks
    u = rng.integers(0, nodes, size=int(edges * 1.1))
    same = rng.random(u.shape[0]) < p_in
    v = np.where(same, (u // size) * size + rng.integers(0, size, size=u.shape[0]), rng.integers(0, nodes, size=u.shape[0]))
    keep = u != v
    pairs = np.unique(np.stack([np.minimum(u, v), np.maximum(u, v)], 1)[keep], axis=0)[:edges]
    np.savetxt(path, pairs, fmt="%d")
    return len(pairs)


rows = []
with tempfile.TemporaryDirectory() as tmp:
    synth = os.path.join(tmp, "synthetic-1m.txt")
    m = synthetic(synth)
    for name, graph in [("cora", ["--dataset", "cora"]), (f"synthetic ({m} edges)", ["--edges", synth])]:
        model, rep, pred = (os.path.join(tmp, f) for f in ("m", "train.json", "pred.json"))
        subprocess.run([a.strata, "linkpred", "train", *graph, "--epochs", str(a.epochs), "--patience", "0", "--out", model,
                        "--json", rep], check=True, stdout=subprocess.DEVNULL)
        r = json.load(open(rep))
        lat = {}
        for how, extra in [("cached", []), ("recompute", ["--recompute"])]:
            t0 = time.perf_counter()
            subprocess.run([a.strata, "linkpred", "predict", model, "--node", "0", "--top", "10", "--json", pred, *extra],
                           check=True, stdout=subprocess.DEVNULL)
            lat[how] = (json.load(open(pred))["latency_ms"], (time.perf_counter() - t0) * 1e3)
        rows.append(dict(graph=name, epoch_ms=r["epoch_ms_median"], predict_ms=lat["cached"][0], predict_wall_ms=lat["cached"][1],
                         predict_recompute_ms=lat["recompute"][0], test_auc=r["test"]["roc_auc"]))
        x = rows[-1]
        print(f"{name:28} {x['epoch_ms']:9.1f} ms/epoch  predict {x['predict_ms']:8.1f} ms (re-embedding {x['predict_recompute_ms']:.1f} ms; "
              f"command {x['predict_wall_ms']:.0f} ms)", flush=True)

print(f"\nstrata linkpred, GCN 128→64 + dot, {a.epochs} epochs (median step incl. negative sampling):")
print("| graph | ms/epoch | predict --node, saved embeddings (ms) | with --recompute (ms) | predict command wall (ms) |")
print("|---|---|---|---|---|")
for x in rows:
    print(f"| {x['graph']} | {x['epoch_ms']:.1f} | {x['predict_ms']:.1f} | {x['predict_recompute_ms']:.1f} | {x['predict_wall_ms']:.0f} |")
os.makedirs(os.path.dirname(a.out), exist_ok=True)
json.dump(rows, open(a.out, "w"), indent=1)
