#!/usr/bin/env bash
# GPU device check (one short run; see README "GPU device check"): the 4-stage GCNII-32 pipeline
# with CUDA workers, then the same run with CPU workers, and the forward-learning trainers' peak
# CUDA memory. Prints epoch times and the speed-up. Needs a built binary (carried to the GPU
# machine) and that machine's torch 2.11 (for libtorch_cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${STRATA_BIN:-target/release/strata}
PY=${PYTHON:-python3}
TORCH_LIB=$("$PY" -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
OUT=${OUT:-${OUT_DIR:-target/device-check}}
mkdir -p "$OUT"
EPOCHS=${EPOCHS:-40}
# Cora when the datasets are reachable, else the embedded karate club.
DATASET=cora
"$BIN" data path cora >/dev/null 2>&1 || DATASET=karate
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for dev in cuda cpu; do
  echo "== $DATASET, GCNII-32, 4 stages, $EPOCHS epochs, $dev workers"
  "$BIN" launch --dataset "$DATASET" --layers 32 --stages 4 --epochs "$EPOCHS" --device "$dev" --json "$OUT/launch-$dev.json" 2>&1 | tail -n 3
done
for t in bp sf; do
  "$BIN" train --dataset "$DATASET" --trainer "$t" --layers 8 --device cuda --json "$OUT/train-$t-cuda.json" >/dev/null 2>&1 || echo "train --trainer $t on cuda failed"
done
"$PY" - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
r = {d: json.load(open(f"{out}/launch-{d}.json")) for d in ["cuda", "cpu"]}
print(f"epoch time: cuda {r['cuda']['epoch_ms_median']:.1f} ms, cpu {r['cpu']['epoch_ms_median']:.1f} ms "
      f"(x{r['cpu']['epoch_ms_median'] / r['cuda']['epoch_ms_median']:.2f}); test accuracy cuda {r['cuda']['test_accuracy']:.4f}, cpu {r['cpu']['test_accuracy']:.4f}")
for t in ["bp", "sf"]:
    p = f"{out}/train-{t}-cuda.json"
    if os.path.exists(p):
        j = json.load(open(p))
        print(f"train --trainer {t} (8 layers, cuda): test {j['test_accuracy']['mean']:.4f}, peak {j['peak_memory_bytes'] / 2**20:.1f} MiB ({j.get('memory_method', 'cuda caching allocator peak')})")
PY
