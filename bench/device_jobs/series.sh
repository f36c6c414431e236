#!/usr/bin/env bash
# bench/gpu_series.py for one model as a device job (bash bench/device_jobs/series.sh MODEL [-p NAME=VALUE ...]):
# the notebook series as on a T4 (Unsloth, fp16, 15 GiB cap). Executed notebooks come back every 15 s while it
# runs, so a machine taken back mid-run still leaves what it did.
set -uo pipefail
model=${1:?series.sh needs a model name}
shift
export TITLEGEN_CACHE=$PWD/.gpu/cache
S=/tmp/titlegen-gpu-series/$model
pack() { (cd "$S" && find . \( -name '*.ipynb' -o -name '*.json' -o -name report.md \) -size -4M -print0 |
          tar czf "/tmp/$model.tgz" --null -T - 2>/dev/null) && mv "/tmp/$model.tgz" "$JOB_OUT/$model-series.tgz"; }
(while sleep 15; do [ -d "$S" ] && pack; done) &
copier=$!
python3 bench/gpu_series.py --model "$model" "$@"; rc=$?
kill $copier; pack
cp "outputs/bench/gpu_series-$model.json" "$JOB_OUT"/ 2>/dev/null
exit $rc
