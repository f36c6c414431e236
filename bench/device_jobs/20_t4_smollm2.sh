#!/usr/bin/env bash
# needs: models
# The notebook series as on a T4 (Unsloth, fp16, 15 GiB cap) with the bundled SmolLM2-135M.
set -uo pipefail
export TITLEGEN_CACHE=$PWD/.gpu/cache
S=/tmp/titlegen-gpu-series/smollm2-135m-offline
pack() { (cd $S && find . \( -name '*.ipynb' -o -name '*.json' -o -name report.md \) -size -4M -print0 |
          tar czf /tmp/smol.tgz --null -T - 2>/dev/null) && mv /tmp/smol.tgz "$JOB_OUT"/smollm2-series.tgz; }
(while sleep 15; do [ -d $S ] && pack; done) &
copier=$!
python3 bench/gpu_series.py --model smollm2-135m-offline; rc=$?
kill $copier; pack
cp outputs/bench/gpu_series-smollm2-135m-offline.json "$JOB_OUT"/ 2>/dev/null
exit $rc
