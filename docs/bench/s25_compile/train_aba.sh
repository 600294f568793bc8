#!/bin/bash
# Session 25: training steps with eager vs compiled blocks (`compile: true`), run in the order eager, compiled,
# eager (200 steps each, two threads). The configs are configs/train_tiny_part2.yaml's model and data (the
# 8,000-object set, data/objects_pv8k) from scratch; each run folder gets that run's latent cache hard-linked:
#   for r in eager comp eager2; do mkdir -p runs/s25_speed/$r; ln -f runs/tiny_part2/latent_cache.safetensors runs/s25_speed/$r/; done
# Steps 100-200 are timed from each run's loss.csv (its time column): train_*_loss.csv here.
cd "$(dirname "$0")/../../.." && source .venv/bin/activate
for r in eager comp eager2; do
  echo "== $r $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -v mvgen train --config docs/bench/s25_compile/train_$r.yaml > runs/s25_speed/$r.out 2>&1
  tail -3 runs/s25_speed/$r.out
done
echo "== done $(date +%T)"
