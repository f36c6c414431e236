#!/usr/bin/env bash
# needs: models
# [4/5]'s GPU study, second part: levers decoded with the repetition guard.
exec bash bench/device_jobs/recipe_guard.sh attn_es lr_2e-4_es cut_long_r32 drop_long
