#!/usr/bin/env bash
# needs: models
# [4/5]'s GPU study, fourth part: attention only at the lower rate, with the guard.
exec bash bench/device_jobs/recipe_guard.sh attn_lr2e-4_es
