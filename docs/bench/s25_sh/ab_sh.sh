#!/bin/bash
# Issue 20, session 25: the dense scenes' SH degree (sh_degree_dense, default 3) vs 2 (or DEGREES="...") on lego,
# interleaved in alternating processes (the VM's speed drifts within minutes, so only pairs run back to back compare).
export NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2
L=/work/shared/data/nerf_synthetic_lego_100px
OUT=docs/bench/s25_sh
STEPS=${STEPS:-2000}
for round in $(seq ${ROUNDS:-2}); do
  for d in ${DEGREES:-3 2}; do
    echo "== sh_degree_dense $d round $round $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    /work/main/.venv/bin/python -m mvgen.cli bench fit-real $L --steps $STEPS --no-lpips --set sh_degree_dense=$d \
      --json $OUT/ab_sh_${STEPS}_${d}_$round.json 2>&1 | grep -E "^\| *$STEPS"
  done
done
