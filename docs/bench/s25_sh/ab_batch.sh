#!/bin/bash
# Issue 20, session 25: two views per step for half the steps (batch_views=2) vs the default one view per step, on
# lego at the same number of rendered views, interleaved in alternating processes.
export NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2
L=/work/shared/data/nerf_synthetic_lego_100px
OUT=docs/bench/s25_sh
STEPS=${STEPS:-2000}
for round in $(seq ${ROUNDS:-2}); do
  echo "== batch 1, $STEPS steps, round $round $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  /work/main/.venv/bin/python -m mvgen.cli bench fit-real $L --steps $STEPS --no-lpips \
    --json $OUT/ab_batch_${STEPS}_b1_$round.json 2>&1 | grep -E "^\| *[0-9]"
  echo "== batch 2, $((STEPS / 2)) steps, round $round $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  /work/main/.venv/bin/python -m mvgen.cli bench fit-real $L --steps $((STEPS / 2)) --no-lpips --set batch_views=2 $EXTRA \
    --json $OUT/ab_batch_${STEPS}_b2_$round.json 2>&1 | grep -E "^\| *[0-9]"
done
