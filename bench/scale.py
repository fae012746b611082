"""`make bench`, part 7: graphs that do not fit one worker. Generated planted-partition graphs
(`strata data synth`: average degree 20, 128 features, 10 classes, homophily 0.8) of 100k and
300k nodes (add 1M with BENCH_SCALE_SIZES=100000,300000,1000000 on a machine with the memory
for it), GCNII with 16 layers and hidden 64: epoch time, peak resident memory of the largest
worker and MiB/epoch (payload and wire) for `strata train` (one process) and `strata launch` at
P = 2 and 4 in the pipeline, graph-parallel and hybrid modes; then the log-log slope of epoch
time and per-worker memory against the number of edges, and PyG 2.8 side by side with
`strata train` on the largest graph of at least 200k nodes (GCN-2, GCNII-16). A run that fails (out of memory on this
host) is printed as failed with its reason; nothing is estimated."""
import json, math, os, subprocess, sys, tempfile

STRATA = "target/release/strata"
SIZES = [int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "100000,300000").split(",")]
EPOCHS = int(os.environ.get("BENCH_SCALE_EPOCHS", "6"))
THREADS = os.environ.get("BENCH_THREADS", "2")
GRAPHS = ".bench/graphs"
MiB = 2 ** 20
MODEL = ["--model", "gcnii", "--layers", "16", "--hidden", "64", "--epochs", str(EPOCHS)]


def graph(n):
    os.makedirs(GRAPHS, exist_ok=True)
    path = f"{GRAPHS}/planted-{n}.npz"
    if not os.path.exists(path):
        subprocess.run([STRATA, "data", "synth", "--nodes", str(n), "--out", path], check=True, stdout=subprocess.DEVNULL)
    z = __import__("numpy").load(path)
    return path, int(len(z["adj_indices"]) // 2)


def strata(args):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        r = subprocess.run([STRATA, *args, "--json", f.name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            return None, (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1][:160]
        return json.load(open(f.name)), None


rows = []
for n in SIZES:
    path, edges = graph(n)
    r, err = strata(["train", "--npz", path, *MODEL, "--seeds", "1", "--threads", THREADS])
    row = dict(nodes=n, edges=edges, run="train (1 process)", workers=1)
    if r:
        row.update(epoch_ms=r["epoch_ms_median"], memory=r["peak_rss_bytes"], payload=0, wire=0, acc=r["test_accuracy"]["mean"])
    rows.append(row | dict(error=err))
    for mode, shape in [("pipeline", ["--stages", "2"]), ("pipeline", ["--stages", "4"]), ("pipeline", ["--stages", "4", "--balance", "memory", "--history-dtype", "bf16"]),
                        ("graph", ["--ways", "2"]), ("graph", ["--ways", "4"]), ("hybrid", ["--ways", "2", "--stages", "2"])]:
        r, err = strata(["launch", "--npz", path, *MODEL, "--mode", mode, *shape, "--eval-every", str(EPOCHS)])
        p = math.prod(int(shape[i + 1]) for i in range(0, len(shape), 2) if shape[i] in ("--stages", "--ways"))
        row = dict(nodes=n, edges=edges, run=f"launch {mode} {' '.join(shape)}", workers=p, error=err)
        if r:
            b = r["bytes_per_epoch"]
            row.update(epoch_ms=r["epoch_ms_median"], memory=max(r["memory_bytes_per_worker"]), payload=b["measured"], wire=b["wire"], acc=r["test_accuracy"] * 100)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)

print(f"\nGCNII-16, hidden 64, planted partition (degree 20, 128 features), {EPOCHS} epochs, all processes on this host:")
print("| nodes | edges | run | P | ms/epoch | peak RSS, largest process (MiB) | MiB/epoch payload | MiB/epoch wire |")
print("|---|---|---|---|---|---|---|---|")
for x in rows:
    if x.get("error"):
        print(f"| {x['nodes']:,} | {x['edges']:,} | {x['run']} | {x['workers']} | failed: {x['error']} | | | |")
    else:
        print(f"| {x['nodes']:,} | {x['edges']:,} | {x['run']} | {x['workers']} | {x['epoch_ms']:.0f} | {x['memory']/MiB:.0f} | {x['payload']/MiB:.1f} | {x['wire']/MiB:.1f} |")

print("\nLog-log slope against edges (1 = linear):")
for run in dict.fromkeys(x["run"] for x in rows):
    pts = [x for x in rows if x["run"] == run and not x.get("error")]
    if len(pts) >= 2:
        a, b = pts[0], pts[-1]
        lx = math.log(b["edges"] / a["edges"])
        print(f"  {run:28} epoch time {math.log(b['epoch_ms']/a['epoch_ms'])/lx:5.2f}   memory {math.log(b['memory']/a['memory'])/lx:5.2f}")

# PyG side by side on one size (BENCH_PYG_NODES, default the largest above 200k): PyG's
# GCNII-16 takes about a minute per epoch at 200k nodes on 2 cores, so BENCH_PYG_EPOCHS
# (default 8) epochs, the median over those after the first two.
PYG_EPOCHS = os.environ.get("BENCH_PYG_EPOCHS", "8")
big = [int(os.environ["BENCH_PYG_NODES"])] if os.environ.get("BENCH_PYG_NODES") else [n for n in SIZES if n >= 200000][-1:]
if big:
    path, _ = graph(big[0])
    py = os.environ.get("STRATA_PYTHON", sys.executable)
    print(f"\nSingle process on {big[0]:,} nodes, strata vs PyG 2.8 (same torch, {THREADS} threads, {PYG_EPOCHS} epochs):")
    print("| model | strata ms/epoch | PyG ms/epoch | ratio | strata test % | PyG test % | strata peak MiB | PyG peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for model, layers, hidden in [("gcn", 2, 16), ("gcnii", 16, 64)]:
        r, err = strata(["train", "--npz", path, "--model", model, "--layers", str(layers), "--hidden", str(hidden), "--epochs", PYG_EPOCHS, "--patience", PYG_EPOCHS, "--seeds", "1", "--threads", THREADS])
        out = subprocess.run([py, "bench/pyg_baseline.py", "--npz", path, "--models", f"{model}:{layers}", "--epochs", PYG_EPOCHS, "--warmup", "2", "--threads", THREADS], capture_output=True, text=True)
        q = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
        if r and q:
            print(f"| {model}-{layers} | {r['epoch_ms_median']:.0f} | {q['epoch_ms_median']:.0f} | {r['epoch_ms_median']/q['epoch_ms_median']:.2f} | "
                  f"{r['test_accuracy']['mean']:.1f} | {q['test_accuracy']*100:.1f} | {r['peak_rss_bytes']/MiB:.0f} | {q['peak_rss_bytes']/MiB:.0f} |")
        else:
            print(f"| {model}-{layers} | failed: {err or out.stderr.strip().splitlines()[-1:]} | | | | | | |")
os.makedirs(".bench", exist_ok=True)
json.dump(rows, open(".bench/scale.json", "w"), indent=1)
