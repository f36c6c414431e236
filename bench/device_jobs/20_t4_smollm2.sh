#!/usr/bin/env bash
# needs: models
# The series with the bundled SmolLM2-135M.
exec bash bench/device_jobs/series.sh smollm2-135m-offline
