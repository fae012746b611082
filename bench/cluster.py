"""`make bench`, part 2c: an emulated cluster, where the network is the bottleneck.

Every run goes through `scripts/emulated-cluster.sh`: each worker in its own network namespace with
its own address, pinned to its own core with one thread, every link shaped both ways with `tc tbf`,
mutual TLS, the launcher in the host namespace.

1. Epoch time by link rate (unlimited, 1 Gbit/s, 100 Mbit/s): Cora and CiteSeer GCNII-32, the 50k
   generated graph (homophily 0.5, signal 0.1) GCNII-16 hidden 64; pipeline P = 2 and
   graph-parallel P = 2 (a hybrid needs 2 ways × 2 stages, P = 4: more cores than this host has;
   pass BENCH_CLUSTER_P4=1 on a machine with 4 free cores), with one process on one core beside
   them (`strata train` pinned, one thread). Per row: median epoch, each worker's breakdown, MiB per
   epoch (payload and wire) and test accuracy after the row's epochs; per rate the pipeline's
   speed-up over graph-parallel next to GNNPipe's.
2. Time to accuracy on the emulated 1 Gbit/s cluster: for each mode, the epochs and seconds of
   training until validation accuracy comes within 1 point of the best that one process (one worker,
   one chunk: no historical rows) reaches in the same epoch budget, per seed; and a plot per graph
   (`strata launch --plot`, the modes overlaid).

BENCH_CLUSTER_SEEDS (default 2, to keep this part under 30 minutes here; the README's 3-seed
table is `BENCH_CLUSTER_SEEDS=3 BENCH_CLUSTER_WARM=1`) seeds for part 2; BENCH_CLUSTER_PARTS (default "1,2");
BENCH_CLUSTER_GRAPHS (default "cora,citeseer,50k") the graphs; BENCH_CLUSTER_WARM=1 adds the
pipeline with `--warm-start true` to part 2 (measured once: no sooner on either graph, so not a
default, and left out to keep this part under 30 minutes)."""
import json, os, statistics, subprocess, sys, tempfile, time

STRATA = os.path.abspath("target/release/strata")
HARNESS = os.path.abspath("scripts/emulated-cluster.sh")
GRAPH = ".bench/graphs/h05-50k.npz"
SEEDS = int(os.environ.get("BENCH_CLUSTER_SEEDS", "2"))
PARTS = os.environ.get("BENCH_CLUSTER_PARTS", "1,2").split(",")
RATES = ["unlimited", "1gbit", "100mbit"]
RATE_NAME = {"unlimited": "unlimited", "1gbit": "1 Gbit/s", "100mbit": "100 Mbit/s"}
OUT = ".bench/cluster"
# GNNPipe's GCNII epoch speed-ups over graph parallelism, 32 layers, 8 GPUs (reference notes §1.5).
PAPER = "GCNII: squirrel 1.83, flickr 1.75, reddit 2.17, Coauthor-physics 0.55 (mean of all 16 runs 1.58)"

GCNII32 = ["--model", "gcnii", "--layers", "32"]
GCNII16 = ["--model", "gcnii", "--layers", "16", "--hidden", "64"]
# (name, data, model, epochs of the timing rows, epoch budget of the time-to-accuracy runs and
# how often they evaluate: every second epoch on the 50k graph, where an exact pass costs a third
# of an epoch, to keep this part under 30 minutes)
GRAPHS = [
    ("Cora", ["--dataset", "cora"], GCNII32, 20, (150, 1)),
    ("CiteSeer", ["--dataset", "citeseer"], GCNII32, 20, None),
    ("50k generated", ["--npz", GRAPH], GCNII16, 5, (40, 2)),
]
WANTED = os.environ.get("BENCH_CLUSTER_GRAPHS", "cora,citeseer,50k").split(",")
GRAPHS = [g for g in GRAPHS if g[0].split()[0].lower() in WANTED]


def synth():
    os.makedirs(os.path.dirname(GRAPH), exist_ok=True)
    if not os.path.exists(GRAPH):
        subprocess.run([STRATA, "data", "synth", "--nodes", "50000", "--degree", "20", "--features", "128", "--classes", "10",
                        "--homophily", "0.5", "--signal", "0.1", "--seed", "0", "--out", GRAPH], check=True, stdout=subprocess.DEVNULL)


def cluster(workers, rate, args, report=None):
    """`strata launch ARGS` on the emulated cluster: the launch report (kept at `report` if given)."""
    with tempfile.TemporaryDirectory() as d:
        path = report or os.path.join(d, "r.json")
        cmd = ["bash", HARNESS, "--workers", str(workers), "--rate", rate, "--", *args, "--json", path]
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-600:]}")
        return json.load(open(path))


def one_core(data, model, epochs):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = ["taskset", "-c", "0", STRATA, "train", *data, *model, "--epochs", str(epochs), "--seeds", "1", "--threads",
               "1", "--patience", str(epochs), "--json", f.name]
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
        return json.load(open(f.name))


def breakdown(r):
    out = []
    for w, p in enumerate(r["phases_median_per_worker"]):
        parts = " ".join(f"{k} {p[k] * 1e3:.0f}" for k in ["forward", "recompute", "backward", "recv_wait", "send", "all_reduce"]
                         if p[k] * 1e3 >= 0.5)
        out.append(f"w{w}: {parts}")
    return "; ".join(out)


def mib(b):
    return b / (1 << 20)


def part_epochs():
    print("\nEmulated cluster: two workers, each in its own network namespace on its own core (one thread), links "
          "shaped both ways with tc tbf, mutual TLS (`scripts/emulated-cluster.sh`); median epoch after two warm-up epochs")
    print("| graph, model | mode | link | ms/epoch | × one core | breakdown, ms per epoch | MiB/epoch payload / wire | test % (after the row's epochs) |")
    print("|---|---|---|---|---|---|---|---|")
    speedups = []
    for name, data, model, epochs, _ in GRAPHS:
        base = [*data, *model, "--epochs", str(epochs), "--eval-every", str(epochs)]
        ref = one_core(data, model, epochs)
        print(f"| {name}, {model[1].upper()}-{model[3]} | one process (`strata train`, core 0, 1 thread) | — | "
              f"{ref['epoch_ms_median']:.0f} | 1 | | — | {100 * ref['test_accuracy']['mean']:.1f} |", flush=True)
        for rate in RATES:
            ms = {}
            for mode, shape in [("pipeline P = 2", ["--stages", "2"]), ("graph-parallel P = 2", ["--mode", "graph", "--ways", "2"])]:
                r = cluster(2, rate, base + shape)
                ms[mode] = r["epoch_ms_median"]
                b = r["bytes_per_epoch"]
                print(f"| | {mode} | {RATE_NAME[rate]} | {r['epoch_ms_median']:.0f} | {r['epoch_ms_median'] / ref['epoch_ms_median']:.2f} | "
                      f"{breakdown(r)} | {mib(b['measured']):.2f} / {mib(b['wire']):.2f} | {100 * r['test_accuracy']:.1f} |", flush=True)
            speedups.append((name, rate, ms["graph-parallel P = 2"] / ms["pipeline P = 2"]))
    print("\nPipeline speed-up over graph-parallel (graph-parallel ms / pipeline ms), P = 2, by link:")
    print("| graph | " + " | ".join(RATE_NAME[r] for r in RATES) + " |")
    print("|---|" + "---|" * len(RATES))
    for name, *_ in GRAPHS:
        print(f"| {name} | " + " | ".join(f"{s:.2f}" for g, _, s in speedups if g == name) + " |")
    print(f"GNNPipe (8 GPUs on 2 nodes, 56.5 Gbit/s per GPU measured P2P): {PAPER}.")


def reached(curve, target, warm_ms):
    """(epochs, seconds of training) until validation accuracy ≥ target; None when never."""
    s = (warm_ms or 0.0) / 1e3
    for e in curve:
        s += e["epoch_ms"] / 1e3
        if e.get("val_accuracy") is not None and e["val_accuracy"] >= target:
            return e["epoch"] + 1, s
    return None


def part_time_to_accuracy():
    os.makedirs(OUT, exist_ok=True)
    modes = [("one worker, one chunk (one process)", 1, ["--stages", "1", "--chunks", "1"]),
             ("pipeline P = 2", 2, ["--stages", "2"]),
             ("pipeline P = 2, warm start", 2, ["--stages", "2", "--warm-start", "true"]),
             ("graph-parallel P = 2", 2, ["--mode", "graph", "--ways", "2"])]
    if os.environ.get("BENCH_CLUSTER_WARM") != "1":
        modes = [m for m in modes if "warm" not in m[0]]
    print(f"\nTime to accuracy on the emulated 1 Gbit/s cluster ({SEEDS} seeds): epochs and seconds of training "
          "(warm start included, evaluations not) until validation accuracy is within 1 point of the best the one-process "
          "run of the same seed reaches in the budget; mean over seeds (per seed in brackets)")
    print("| graph, model (budget) | mode | epochs to target | × one process | seconds to target | best val % | test % at best val |")
    print("|---|---|---|---|---|---|---|")
    for name, data, model, _, tta in GRAPHS:
        if tta is None:
            continue
        budget, every = tta
        tag = name.split()[0].lower()
        runs = {m: [] for m, _, _ in modes}
        for seed in range(SEEDS):
            reports = []
            for i, (m, workers, shape) in enumerate(modes):
                path = os.path.join(OUT, f"{tag}-{i}-seed{seed}.json")
                args = [*data, *model, "--epochs", str(budget), "--eval-every", str(every), "--seed", str(seed), *shape]
                if seed == 0 and i == len(modes) - 1:
                    args += ["--plot", os.path.join(OUT, f"{tag}-time-to-accuracy.svg")]
                    for p in reports:
                        args += ["--plot-with", p]
                runs[m].append(cluster(workers, "1gbit", args, report=path))
                reports.append(path)
                print(f"  {name} seed {seed} {m}: best val {runs[m][-1]['best_val_accuracy']:.3f}", file=sys.stderr, flush=True)
        refs = runs[modes[0][0]]
        ref_epochs = None
        for m, _, _ in modes:
            hits = [reached(r["curve"], ref["best_val_accuracy"] - 0.01, r.get("warm_start_ms")) for r, ref in zip(runs[m], refs)]
            ep = [h[0] if h else None for h in hits]
            sec = [h[1] if h else None for h in hits]
            fmt = lambda xs, f: " / ".join("never" if x is None else f.format(x) for x in xs)
            mean = lambda xs: statistics.mean(xs) if all(x is not None for x in xs) else None
            me, ms_ = mean(ep), mean(sec)
            if ref_epochs is None:
                ref_epochs = me
            ratio = f"{me / ref_epochs:.2f}" if me is not None and ref_epochs else "—"
            print(f"| {name}, {model[1].upper()}-{model[3]} ({budget} epochs{f', evaluated every {every}' if every > 1 else ''}) | {m} | "
                  f"{'—' if me is None else f'{me:.1f}'} ({fmt(ep, '{}')}) | {ratio} | "
                  f"{'—' if ms_ is None else f'{ms_:.1f}'} ({fmt(sec, '{:.1f}')}) | "
                  f"{100 * statistics.mean(r['best_val_accuracy'] for r in runs[m]):.1f} | "
                  f"{100 * statistics.mean(r['test_accuracy'] for r in runs[m]):.1f} |", flush=True)
        print(f"plot: {OUT}/{tag}-time-to-accuracy.svg")


synth()
started = time.time()
if "1" in PARTS:
    part_epochs()
if "2" in PARTS:
    part_time_to_accuracy()
print(f"\n(bench/cluster.py took {(time.time() - started) / 60:.1f} min)")
