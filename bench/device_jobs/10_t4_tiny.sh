#!/usr/bin/env bash
# The series with TinyLlama's shape, random weights and the SentencePiece tokenizer (built here into .gpu/cache:
# the device has no sentencepiece).
exec bash bench/device_jobs/series.sh tinyllama-shaped-random
