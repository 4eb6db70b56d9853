#!/usr/bin/env bash
# The main job on the embedded default, end to end, no downloads, no GPU:
# generate PointMaze UMaze data -> train a KDP generator -> closed-loop evaluation with plots.
# OUT (default out/main) holds the dataset, the run directory, the report and the figure.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/main}
STEPS=${STEPS:-6000}
DATA_STEPS=${DATA_STEPS:-300000}
mkdir -p "$OUT"
K=.venv/bin/kdp-edge
[ -f "$OUT/umaze.hdf5" ] || $K data pointmaze --maze umaze --steps "$DATA_STEPS" --noise 0.3 --seed 0 --out "$OUT/umaze.hdf5"
if [ -f "$OUT/run/checkpoint.pt" ]; then
    $K train --resume --out "$OUT/run" --steps "$STEPS"
else
    $K train --data "$OUT/umaze.hdf5" --out "$OUT/run" --steps "$STEPS"
fi
$K eval "$OUT/run" --env pointmaze-umaze --episodes 50 --protocol own-actions --plot "$OUT/rollouts.png" --out "$OUT/eval.json"
echo "main job done: $OUT/eval.json, $OUT/rollouts.png"
