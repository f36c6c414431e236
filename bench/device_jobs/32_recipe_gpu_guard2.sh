#!/usr/bin/env bash
# needs: models
# [4/5]'s GPU study, third part: the preset as it is, and a second seed of attn_es, with the guard.
exec bash bench/device_jobs/recipe_guard.sh baseline attn_es:2
