#!/usr/bin/env bash
# Installs torch 2.11.0 (the PyPI wheel: CUDA 13, also runs on CPU) once into a cache outside the
# repository, so every clone and CI run reuses it. Prints the venv path on success.
# A stamp file written last marks a complete install; a half-finished one is rebuilt.
set -euo pipefail
TORCH_VERSION=2.11.0
CACHE="${STRATA_TORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/torch-$TORCH_VERSION}"
VENV="$CACHE/venv"
STAMP="$CACHE/complete"
if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ]; then echo "$VENV"; exit 0; fi
echo "strata: installing torch $TORCH_VERSION into $CACHE (once per machine)" >&2
mkdir -p "$CACHE"
rm -rf "$VENV" "$STAMP"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION" numpy >&2
"$VENV/bin/python" -c "import torch; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__" >&2
touch "$STAMP"
echo "$VENV"
