#!/usr/bin/env bash
# A/B timing of `strata launch` for two builds on one host: the same runs, alternating between
# the builds so that drift on the host hits both alike; prints each run's median epoch time and
# the median of each build's runs. Used to check that a change to strata-pipe is not slower.
#   scripts/ab-launch.sh OLD_BIN NEW_BIN [ROUNDS]
# The cases: `make bench`'s Cora GCNII-32 pipeline P = 4 row (30 epochs), and GCNII-16 on a
# generated 50k-node graph (degree 20, 128 features, 10 classes), pipeline P = 2 (10 epochs).
set -euo pipefail
OLD=${1:?old binary}; NEW=${2:?new binary}; ROUNDS=${3:-2}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
"$NEW" data synth --nodes 50000 --degree 20 --features 128 --classes 10 --homophily 0.5 --signal 0.1 --seed 0 \
  --out "$TMP/synth-50k.npz" >/dev/null
median() { python3 -c 'import sys,statistics;print(f"{statistics.median(map(float,sys.argv[1:])):.1f}")' "$@"; }
run() { # bin case json
  local bin=$1 name=$2 out=$3
  case $name in
    cora) "$bin" launch --dataset cora --model gcnii --layers 32 --stages 4 --epochs 30 --eval-every 30 --json "$out" &>/dev/null ;;
    synth50k) "$bin" launch --npz "$TMP/synth-50k.npz" --model gcnii --layers 16 --stages 2 --epochs 10 --eval-every 10 \
      --json "$out" &>/dev/null ;;
  esac
  python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["epoch_ms_median"])' "$out"
}
for name in cora synth50k; do
  old=(); new=()
  for r in $(seq "$ROUNDS"); do
    old+=("$(run "$OLD" $name "$TMP/old.json")"); new+=("$(run "$NEW" $name "$TMP/new.json")")
    echo "$name round $r: old ${old[-1]} ms/epoch, new ${new[-1]} ms/epoch"
  done
  echo "$name: old median $(median "${old[@]}") ms/epoch, new median $(median "${new[@]}") ms/epoch"
  python3 - "$TMP/new.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for rank, b in enumerate(r.get("phases_median_per_worker", [])):
    print(f"  worker {rank}: " + ", ".join(f"{k} {v*1e3:.0f} ms" for k, v in b.items() if v > 0))
EOF
done
