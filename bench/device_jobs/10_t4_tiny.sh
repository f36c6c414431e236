#!/usr/bin/env bash
# The notebook series as on a T4 (Unsloth, fp16, 15 GiB cap): TinyLlama's shape, random weights, SentencePiece
# tokenizer (built here into .gpu/cache: the device has no sentencepiece). Executed notebooks come back as they
# appear, so a machine taken back mid-run still leaves what it did.
set -uo pipefail
export TITLEGEN_CACHE=$PWD/.gpu/cache
S=/tmp/titlegen-gpu-series/tinyllama-shaped-random
pack() { (cd $S && find . \( -name '*.ipynb' -o -name '*.json' -o -name report.md \) -size -4M -print0 |
          tar czf /tmp/tiny.tgz --null -T - 2>/dev/null) && mv /tmp/tiny.tgz "$JOB_OUT"/tiny-series.tgz; }
(while sleep 15; do [ -d $S ] && pack; done) &
copier=$!
python3 bench/gpu_series.py --model tinyllama-shaped-random "$@"; rc=$?
kill $copier; pack
cp outputs/bench/gpu_series-tinyllama-shaped-random.json "$JOB_OUT"/ 2>/dev/null
exit $rc
