"""`make bench`, part 2b: distributed training against one process on the same cores. On a
generated graph (`strata data synth --nodes 50000 --degree 20 --features 128 --classes 10 --homophily 0.5
--signal 0.1 --seed 0`), GCNII-16, hidden 64:

* one worker with the threads `strata train` has (`strata launch --stages 1`, 1 chunk; 8 chunks with
  activations kept; 8 chunks recomputing them) against `strata train`;
* two workers, each pinned to its own core (`taskset`) with one thread, on loopback (links
  unlimited): pipeline P = 2 and graph-parallel P = 2, against `strata train` pinned to one core
  with one thread (measured on each of the two cores; the reference is their mean);
* the same pinned rows on Cora, GCNII-32;
* beside the pinned rows, two `strata train` runs at once, one per core: what running on both cores
  costs each of them on this host (shared caches, memory bandwidth, a virtual machine's neighbours).
  Two pinned workers pay the same, so a pinned P = 2 run cannot beat 0.5 × that factor (× the
  pipeline's bubble).

Rows alternate within a round and rounds repeat (BENCH_DIST_ROUNDS, default 3): each cell is the
median over rounds of a run's median epoch, and each ratio the median over rounds of that round's
ratio, so a slow spell of a shared host hits both sides of a ratio. Beside every row: each
worker's threads and its per-phase breakdown (median ms per epoch, from the last round)."""
import json, os, statistics, subprocess, sys, tempfile, time

STRATA = os.path.abspath("target/release/strata")
ROUNDS = int(os.environ.get("BENCH_DIST_ROUNDS", "3"))
EPOCHS = int(os.environ.get("BENCH_DIST_EPOCHS", "5"))
CORES = os.cpu_count() or 1
GRAPH = ".bench/graphs/h05-50k.npz"
PHASES = ["forward", "recompute", "backward", "recv_wait", "send", "all_reduce", "step"]


def synth():
    os.makedirs(os.path.dirname(GRAPH), exist_ok=True)
    if not os.path.exists(GRAPH):
        subprocess.run([STRATA, "data", "synth", "--nodes", "50000", "--degree", "20", "--features", "128", "--classes", "10",
                        "--homophily", "0.5", "--signal", "0.1", "--seed", "0", "--out", GRAPH], check=True, stdout=subprocess.DEVNULL)


def run_json(cmd, env=None):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        r = subprocess.run(cmd + ["--json", f.name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
        return json.load(open(f.name))


def train(data, model, core=None):
    pin = ["taskset", "-c", str(core)] if core is not None else []
    threads = "1" if core is not None else str(CORES)
    r = run_json(pin + [STRATA, "train", *data, *model, "--seeds", "1", "--threads", threads])
    return dict(ms=r["epoch_ms_median"], threads=[int(threads)], phases=None, activations=None)


def train_pair(data, model):
    """Two `strata train` at once, pinned to cores 0 and 1: each one's epoch (the mean of the two)."""
    outs = [tempfile.NamedTemporaryFile(suffix=".json") for _ in range(2)]
    procs = [subprocess.Popen(["taskset", "-c", str(core), STRATA, "train", *data, *model, "--seeds", "1", "--threads", "1",
                               "--json", outs[core].name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for core in range(2)]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("two concurrent strata train runs failed")
    ms = [json.load(open(f.name))["epoch_ms_median"] for f in outs]
    return dict(ms=sum(ms) / 2, threads=[1, 1], phases=None, activations=None, note=f"(each alone: see the rows above; these: {ms[0]:.0f} / {ms[1]:.0f})")


def launch(data, model, shape, pinned):
    """`strata launch` with local workers (threads = cores / workers), or with `pinned` workers
    started here, each on its own core with one thread."""
    base = [STRATA, "launch", *data, *model, *shape, "--eval-every", "1000"]
    if not pinned:
        r = run_json(base)
        threads = [max(1, CORES // r["workers"])] * r["workers"]
    else:
        workers, addrs = [], []
        try:
            for rank, port in enumerate([47180, 47181]):
                workers.append(subprocess.Popen(["taskset", "-c", str(rank), STRATA, "worker", "--threads", "1", "--listen",
                                                 f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                addrs.append(f"127.0.0.1:{port}")
            time.sleep(1.0)
            r = run_json(base + ["--workers", ",".join(addrs)])
        finally:
            for w in workers:
                w.terminate()
                w.wait()
        threads = [1] * len(addrs)
    return dict(ms=r["epoch_ms_median"], threads=threads, phases=r["phases_median_per_worker"],
                activations=r.get("activations_per_worker"), loss=r["curve"][-1]["loss"])


def breakdown(x):
    if not x["phases"]:
        return x.get("note", "(one process)")
    out = []
    for w, p in enumerate(x["phases"]):
        parts = " ".join(f"{k} {p[k] * 1e3:.0f}" for k in PHASES if p[k] * 1e3 >= 0.5)
        act = (x["activations"] or [None] * len(x["phases"]))[w]
        kept = "" if act is None else (" · kept" if act["kept"] else " · recomputed")
        out.append(f"w{w}: {parts}{kept}")
    return "; ".join(out)


def table(title, rows, results, refs):
    print(f"\n{title}")
    print("| run | threads per worker | ms/epoch (median of rounds) | × reference (median of rounds) | breakdown, ms per epoch (last round) |")
    print("|---|---|---|---|---|")
    for name, _ in rows:
        ms = [r[name]["ms"] for r in results]
        ratio = [r[name]["ms"] / refs[i] for i, r in enumerate(results)]
        last = results[-1][name]
        print(f"| {name} | {','.join(map(str, last['threads']))} | {statistics.median(ms):.0f} | {statistics.median(ratio):.2f} | {breakdown(last)} |")


synth()
big = ["--npz", GRAPH]
gcnii16 = ["--model", "gcnii", "--layers", "16", "--hidden", "64", "--epochs", str(EPOCHS)]
cora = ["--dataset", "cora"]
gcnii32 = ["--model", "gcnii", "--layers", "32", "--epochs", str(6 * EPOCHS)]
same_threads = [
    (f"strata train, {CORES} threads", lambda: train(big, gcnii16)),
    ("launch --stages 1 --chunks 1", lambda: launch(big, gcnii16, ["--stages", "1", "--chunks", "1"], False)),
    ("launch --stages 1 --chunks 8", lambda: launch(big, gcnii16, ["--stages", "1", "--chunks", "8"], False)),
    ("launch --stages 1 --chunks 8 --recompute always",
     lambda: launch(big, gcnii16, ["--stages", "1", "--chunks", "8", "--recompute", "always"], False)),
]


def pinned_rows(data, model):
    return [
        ("strata train, pinned to core 0, 1 thread", lambda: train(data, model, 0)),
        ("strata train, pinned to core 1, 1 thread", lambda: train(data, model, 1)),
        ("two strata train at once, cores 0 and 1 (each one's epoch)", lambda: train_pair(data, model)),
        ("pipeline P = 2 (--stages 2), workers pinned", lambda: launch(data, model, ["--stages", "2"], True)),
        ("graph-parallel P = 2 (--mode graph --ways 2), workers pinned",
         lambda: launch(data, model, ["--mode", "graph", "--ways", "2"], True)),
    ]


groups = [("50k nodes (homophily 0.5), GCNII-16, hidden 64: one worker, the threads of `strata train`", same_threads,
           lambda r: r[same_threads[0][0]]["ms"])]
if CORES >= 2:
    for title, data, model in [("50k nodes, GCNII-16: two workers, one core and one thread each", big, gcnii16),
                               ("Cora, GCNII-32: two workers, one core and one thread each", cora, gcnii32)]:
        rows = pinned_rows(data, model)
        groups.append((title, rows, lambda r, rows=rows: (r[rows[0][0]]["ms"] + r[rows[1][0]]["ms"]) / 2))
else:
    print("one core: the pinned two-worker rows need two", file=sys.stderr)

report = []
for title, rows, ref in groups:
    results = []
    for round_ in range(ROUNDS):
        res = {}
        for name, f in rows:
            res[name] = f()
            print(f"round {round_}: {name}: {res[name]['ms']:.0f} ms", file=sys.stderr, flush=True)
        results.append(res)
    refs = [ref(r) for r in results]
    table(f"{title} ({EPOCHS if rows is same_threads or 'GCNII-16' in title else 6 * EPOCHS} epochs, {ROUNDS} rounds; "
          f"reference: {'the first row' if rows is same_threads else 'the mean of the two pinned strata train rows'})",
          rows, results, refs)
    report.append(dict(title=title, rounds=results, references=refs))
os.makedirs(".bench", exist_ok=True)
json.dump(report, open(".bench/distributed.json", "w"), indent=1)
