#!/bin/bash
# A/B of whole lego fits: the previous code (git worktree add /tmp/wt_old 5b5d170) then this code, 1 thread each, 1000 steps, profile.
export NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1
L=/work/shared/data/nerf_synthetic_lego_100px
for tag in old new old2 new2; do
  case $tag in old*) dir=/tmp/wt_old;; new*) dir=/work/main;; esac
  echo "== $tag $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  (cd $dir && /work/main/.venv/bin/python -m mvgen.cli bench fit-real $L --steps 1000 --no-lpips --profile --json /tmp/abfit_$tag.json 2>&1 | grep -v "it/s\]" | tail -32)
done
