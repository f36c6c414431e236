#!/usr/bin/env bash
# The series with TinyLlama's shape, random weights and the SentencePiece tokenizer (built here into .gpu/cache:
# the device has no sentencepiece). Random weights never stop early, so 48 test titles, not 200: this run checks
# the path, its scores mean nothing.
exec bash bench/device_jobs/series.sh tinyllama-shaped-random -p test_samples=48
