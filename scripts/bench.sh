#!/usr/bin/env bash
# `make bench`: measured numbers only, printed as tables. Needs the torch venv (bootstrapped by
# make) and installs PyTorch Geometric 2.8 into it once for the side-by-side comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${STRATA_PYTHON:?run through make bench}"
"$PY" -c "import torch_geometric, safetensors" 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check "torch_geometric==2.8.0" "safetensors==0.8.0"
"$PY" bench/node_classification.py --threads "${BENCH_THREADS:-2}"
"$PY" bench/pyg_load.py
"$PY" bench/pipeline.py
"$PY" bench/distributed.py
"$PY" bench/cluster.py
"$PY" bench/linkpred.py
"$PY" bench/netinfo.py
"$PY" bench/stable.py
"$PY" bench/forward.py
"$PY" bench/scale.py
"$PY" bench/predict.py
