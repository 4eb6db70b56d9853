#!/usr/bin/env bash
# The main job on the embedded default, end to end, no robot, no GPU, no downloads:
# PointMaze UMaze data -> train KDP -> closed-loop evaluation -> int8 export (ONNX + TFLite) ->
# diffusion baseline -> on-device latency benchmark -> closed loop over a pty against the virtual
# motor controller -> OUT/report.md with plots. On 2 cores from a fresh clone: 4.5 min with a one-thread
# benchmark beside it (3 min idle, 9.7 min with another 2-thread job); QUICK=1: tiny sizes, a smoke test.
# Re-running resumes: finished stages are reused (FRESH=1 starts over).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/demo}
ARGS=(--out "$OUT")
[ "${QUICK:-0}" = "1" ] && ARGS+=(--quick)
[ "${FRESH:-0}" = "1" ] && ARGS+=(--fresh)
.venv/bin/kdp-edge demo "${ARGS[@]}"
echo "main job done: $OUT/report.md"
