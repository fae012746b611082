"""`make bench`, part 8: from a trained model to answers at scale. On the generated 1M-node graph
(`strata data synth --nodes 1000000`: degree 20, 128 features, 10 classes; BENCH_PREDICT_NODES
to change it), GCNII with 16 layers and hidden 64 trained by `strata train --out` for
BENCH_PREDICT_EPOCHS (default 2) epochs; then `strata predict DIR --out predictions.npy
--embeddings embeddings.npy`, one process, the threads of `strata train`. Printed: the median
training epoch and the training run's peak resident memory next to the inference pass and
predict's peak resident memory (the whole command: graph, model, outputs)."""
import json, os, subprocess, sys, tempfile, time

STRATA = "target/release/strata"
NODES = int(os.environ.get("BENCH_PREDICT_NODES", "1000000"))
EPOCHS = os.environ.get("BENCH_PREDICT_EPOCHS", "2")
THREADS = os.environ.get("BENCH_THREADS", "2")
GRAPHS = ".bench/graphs"
MiB = 2 ** 20


def run(args):
    t = time.time()
    r = subprocess.run([STRATA, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"strata {' '.join(args)} failed: {r.stderr.strip()[-400:]}")
    return time.time() - t


os.makedirs(GRAPHS, exist_ok=True)
graph = f"{GRAPHS}/planted-{NODES}.npz"
if not os.path.exists(graph):
    run(["data", "synth", "--nodes", str(NODES), "--out", graph])
with tempfile.TemporaryDirectory(dir=".bench") as d:
    model = os.path.join(d, "model")
    train_s = run(["train", "--npz", graph, "--model", "gcnii", "--layers", "16", "--hidden", "64", "--epochs", EPOCHS,
                   "--seeds", "1", "--threads", THREADS, "--out", model, "--json", os.path.join(d, "train.json")])
    t = json.load(open(os.path.join(d, "train.json")))
    predict_s = run(["predict", model, "--threads", THREADS, "--out", os.path.join(d, "p.npy"),
                     "--embeddings", os.path.join(d, "e.npy"), "--json", os.path.join(d, "predict.json")])
    p = json.load(open(os.path.join(d, "predict.json")))
print(f"\n`strata predict` next to training, GCNII-16 hidden 64, {NODES} nodes, {THREADS} threads, one process:")
print("| step | ms | peak RSS MiB | command wall s |")
print("|---|---|---|---|")
print(f"| train: one epoch (median of {EPOCHS}) | {t['epoch_ms_median']:.0f} | {t['peak_rss_bytes'] / MiB:.0f} | {train_s:.1f} |")
print(f"| predict: the inference pass | {p['inference_ms']:.0f} | {p['peak_rss_bytes'] / MiB:.0f} | {predict_s:.1f} |")
print(f"test accuracy: train {100 * t['test_accuracy']['mean']:.2f} %, predict {100 * p['test_accuracy']:.2f} %", file=sys.stderr)
