#!/bin/bash
# A/B of whole lego fits on both cores (session 24): the previous code (git worktree add /tmp/s24/wt_old a2a6cba)
# and this code (rows outside the ellipse skipped), interleaved old, new, old, new; --steps auto (the defaults).
# A 20-step run of each first loads or compiles its kernels. Run with nothing else of ours running.
export NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2
L=/work/shared/data/nerf_synthetic_lego_100px
OUT=${OUT:-/work/main/docs/bench/s24_rows}
OLD=${OLD:-/tmp/s24/wt_old}
[ -n "${NO_WARMUP:-}" ] || for dir in $OLD /work/main; do
  (cd $dir && /work/main/.venv/bin/python -m mvgen.cli bench fit-real $L --steps 20 --no-lpips >/dev/null 2>&1)
done
for tag in ${TAGS:-old_1 new_1 old_2 new_2}; do
  case $tag in old*) dir=$OLD;; new*) dir=/work/main;; esac
  echo "== $tag $(date +%T) load $(cut -d' ' -f1 /proc/loadavg)"
  (cd $dir && /work/main/.venv/bin/python -m mvgen.cli bench fit-real $L --steps auto --no-lpips \
     --json $OUT/lego_auto_$tag.json 2>&1 | grep -v "it/s\]" | tail -3)
done
