#!/bin/bash
# Issue 20, session 24: prune_opacity 0.005 (the default) vs 0.01 (or PRUNES="...") on lego, interleaved in alternating processes
# (the VM's speed drifts by up to a third within minutes, so only pairs run back to back compare).
export NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2
L=/work/shared/data/nerf_synthetic_lego_100px
OUT=docs/bench/s24_levers
STEPS=${STEPS:-2000}
for round in $(seq ${ROUNDS:-3}); do
  for p in ${PRUNES:-0.005 0.01}; do
    echo "== prune $p round $round $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    /work/main/.venv/bin/python -m mvgen.cli bench fit-real $L --steps $STEPS --no-lpips --set prune_opacity=$p \
      --json $OUT/ab_prune_${STEPS}_${p}_$round.json 2>&1 | grep -E "^\| *$STEPS"
  done
done
