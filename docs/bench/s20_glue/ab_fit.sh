#!/bin/bash
# A/B of whole lego fits on both cores: the previous code (git worktree add /tmp/wt_old 3495920) and this code,
# interleaved old, new, old, new; --steps auto (the defaults), profile. Run with nothing else of ours running.
export NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2
L=/work/shared/data/nerf_synthetic_lego_100px
OUT=${OUT:-/work/main/docs/bench/s20_glue}
for tag in old new old2 new2; do
  case $tag in old*) dir=/tmp/wt_old;; new*) dir=/work/main;; esac
  echo "== $tag $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  (cd $dir && /work/main/.venv/bin/python -m mvgen.cli bench fit-real $L --steps auto --no-lpips --profile \
     --json $OUT/fit_real_lego_auto_$tag.json 2>&1 | grep -v "it/s\]" | tail -24)
done
