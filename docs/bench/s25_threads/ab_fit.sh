#!/bin/bash
# Issue 20, session 25: this code (the small stages on one numba thread) vs the previous code (a worktree at
# $OLD, default /tmp/s25/wt_old = git worktree of b6d0c82), the same 2,000-step lego fit in alternating processes.
export NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2
L=/work/shared/data/nerf_synthetic_lego_100px
OLD=${OLD:-/tmp/s25/wt_old}
OUT=docs/bench/s25_threads
for round in $(seq ${ROUNDS:-4}); do
  for side in old new; do
    dir=/work/main; [ $side = old ] && dir=$OLD
    echo "== $side round $round $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    (cd $dir && PYTHONPATH=$dir /work/main/.venv/bin/python -m mvgen.cli bench fit-real $L --steps 2000 --no-lpips \
      --json /work/main/$OUT/ab_fit_${side}_$round.json 2>&1 | grep -E "^\| *2000")
  done
done
