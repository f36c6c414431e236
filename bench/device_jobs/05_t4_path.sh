#!/usr/bin/env bash
# The T4 path in one process (bench/t4_path.py): a few minutes of device time, for when the series does not fit.
set -uo pipefail
export TITLEGEN_CACHE=$PWD/.gpu/cache TITLEGEN_GPU_MEMORY_GIB=15
export PYTHONPATH=$PWD/bench/gpu_cap:$PYTHONPATH
python3 bench/t4_path.py --model tinyllama-shaped-random; rc=$?
cp outputs/bench/t4_path-tinyllama-shaped-random.json "$JOB_OUT"/ 2>/dev/null
exit $rc
