"""`make bench`, part 4: NetInfoF.
1. Does the score predict performance? For each of Cora, CiteSeer, Cora-ML, PolBlogs, Cornell,
   Texas, Wisconsin and film (70/10/20 link split, seed 0), every component's NetInfoF score and
   the test Hits@K of that component's adjusted similarity used alone as a link predictor; the
   Spearman correlation over all (graph, component) points. K = 100, except on the WebKB graphs,
   whose 55-90 test negatives make Hits@100 trivially 1: there K is a tenth of the negatives.
2. Does it scale? `strata probe` wall time on generated graphs (both-homophilous, average degree
   20) from 125k to 2M edges, with the log-log slope (1 = linear)."""
import argparse, json, math, os, subprocess, tempfile, time

p = argparse.ArgumentParser()
p.add_argument("--strata", default="target/release/strata")
p.add_argument("--out", default=".bench/netinfo.json")
p.add_argument("--threads", default="2")
a = p.parse_args()


def probe(args):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        t0 = time.perf_counter()
        subprocess.run([a.strata, "probe", *args, "--threads", a.threads, "--json", f.name], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        return json.load(open(f.name)), wall


def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(x, y):
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((u - mx) * (v - my) for u, v in zip(rx, ry))
    return cov / math.sqrt(sum((u - mx) ** 2 for u in rx) * sum((v - my) ** 2 for v in ry))


points, table = [], []
SIZES = {"cornell": 277, "texas": 279, "wisconsin": 450}
for ds in ["cora", "citeseer", "cora-ml", "polblogs-lcc", "cornell", "texas", "wisconsin", "film"]:
    k = 100 if ds not in SIZES else max(1, int(0.2 * SIZES[ds]) // 10)
    r, wall = probe(["--dataset", ds, "--hits-k", str(k)])
    comps = {c["name"]: c for c in r["components"]}
    assert ds not in SIZES or SIZES[ds] == r["edges"], (ds, r["edges"])
    row = [ds, r["edges"], k, f"{wall:.1f}"]
    for name in "URFPS":
        c = comps[name]
        points.append((c["score"], c["test_hits"]))
        row.append(f"{c['score']:.3f} / {c['test_hits']:.3f}")
    table.append(row)
    print(" ".join(str(x) for x in row), flush=True)
rho = spearman([p[0] for p in points], [p[1] for p in points])
print("\nNetInfoF score / test Hits@K of the component alone (70/10/20 link split, seed 0):")
print("| graph | edges | K | probe s | U | R | F | P | S |")
print("|---|---|---|---|---|---|---|---|---|")
for row in table:
    print("| " + " | ".join(str(x) for x in row) + " |")
print(f"\nSpearman correlation between score and Hits@K over {len(points)} (graph, component) points: {rho:.3f}")

scaling = []
for nodes in [12_500, 25_000, 50_000, 100_000, 200_000]:
    r, wall = probe(["--synthetic", "both-homophilous", "--nodes", str(nodes), "--degree", "20"])
    scaling.append(dict(nodes=nodes, edges=r["edges"], seconds=r["seconds"], wall=wall))
    print(f"synthetic {nodes:>7} nodes {r['edges']:>9} edges: probe {r['seconds']:.1f} s (command {wall:.1f} s)", flush=True)
xs = [math.log(s["edges"]) for s in scaling]
ys = [math.log(s["seconds"]) for s in scaling]
mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
print("\n| edges | probe seconds |")
print("|---|---|")
for s in scaling:
    print(f"| {s['edges']} | {s['seconds']:.1f} |")
print(f"log-log slope of time vs edges: {slope:.2f} (1 = linear)")
os.makedirs(os.path.dirname(a.out), exist_ok=True)
json.dump(dict(table=table, spearman=rho, scaling=scaling, slope=slope), open(a.out, "w"), indent=1)
