#!/usr/bin/env bash
# The emulated cluster at P = 4 and 8, prepared for a machine with 16 cores (the GPU machine
# `device` lends; CPU workers, one core and one thread each): Cora GCNII-32, pipeline,
# graph-parallel and hybrid (2 ways × P/2 stages), links unlimited / 1 Gbit/s / 100 Mbit/s, 20
# epochs each (about 5 minutes). Needs root (network namespaces, tc) and a built binary; prints
# one line per run and leaves the reports under $OUT (default target/device-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
export STRATA=${STRATA_BIN:-target/release/strata}
OUT=${OUT:-target/device-cluster}
EPOCHS=${EPOCHS:-20}
mkdir -p "$OUT"
[[ $(nproc) -ge 8 ]] || { echo "device-cluster-check: $(nproc) cores; P = 8 needs 8" >&2; exit 2; }
DATA=(--dataset cora)
"$STRATA" data path cora >/dev/null 2>&1 || DATA=(--dataset karate --chunks 16)
for p in 4 8; do
  for rate in unlimited 1gbit 100mbit; do
    for mode in pipeline graph hybrid; do
      case $mode in
        pipeline) shape=(--stages "$p") ;;
        graph) shape=(--mode graph --ways "$p") ;;
        hybrid) shape=(--mode hybrid --ways 2 --stages $((p / 2))) ;;
      esac
      f="$OUT/p$p-$rate-$mode.json"
      scripts/emulated-cluster.sh --workers "$p" --rate "$rate" -- "${DATA[@]}" --model gcnii --layers 32 \
        "${shape[@]}" --epochs "$EPOCHS" --eval-every "$EPOCHS" --json "$f" >/dev/null
      python3 -c "import json,sys; r=json.load(open(sys.argv[1])); b=r['bytes_per_epoch']; \
print(f'P={sys.argv[2]} {sys.argv[3]:>9} {sys.argv[4]:>8}: {r[\"epoch_ms_median\"]:8.1f} ms/epoch, {b[\"measured\"]/2**20:7.2f} MiB/epoch, test {100*r[\"test_accuracy\"]:.1f} %')" \
        "$f" "$p" "$rate" "$mode"
    done
  done
done
