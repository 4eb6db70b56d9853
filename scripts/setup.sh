#!/usr/bin/env bash
# Create .venv and install kdp-edge with everything needed to train, simulate, plot and test.
# torch==2.13.0 goes first: that exact version is served as a CPU build (any other spec pulls CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
# torch is repeated here so that no extra (tflite: litert-torch, torchao) can move it off 2.13.0
.venv/bin/python -m pip install -q -e ".[train,sim,pusht,lerobot,plot,dev,tflite,servo-sdk]" "torch==2.13.0"
echo "kdp-edge installed in .venv ($(.venv/bin/kdp-edge --version))"
