#!/bin/bash
# Issue 20: one fit setting at several values on lego, interleaved in alternating processes (the VM's speed drifts
# by up to a third within minutes, so only runs back to back compare). Usage:
#   FIELD=prune_opacity VALUES="0.005 0.01" [STEPS=2000] [ROUNDS=3] OUT=docs/bench/... NAME=ab_prune docs/bench/ab_fit_set.sh
# writes $OUT/${NAME}_${STEPS}_${value}_${round}.json per run.
export NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2
L=/work/shared/data/nerf_synthetic_lego_100px
STEPS=${STEPS:-2000}
for round in $(seq ${ROUNDS:-3}); do
  for v in $VALUES; do
    echo "== $FIELD $v round $round $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    /work/main/.venv/bin/python -m mvgen.cli bench fit-real $L --steps $STEPS --no-lpips --set $FIELD=$v \
      --json $OUT/${NAME}_${STEPS}_${v}_$round.json 2>&1 | grep -E "^\| *$STEPS"
  done
done
