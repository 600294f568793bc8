#!/usr/bin/env bash
# Issue 20, session 24: levers for more held-out dB per CPU second on lego at a 2,000-step budget.
# Each run: `mvgen bench fit-real` at --steps 2000 with one --set override; JSON per run beside this script.
set -u
SCENE=../shared/data/nerf_synthetic_lego_100px
OUT=docs/bench/s24_levers
run() {  # name, then --set arguments
  local name=$1; shift
  NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2 mvgen bench fit-real $SCENE --steps ${STEPS:-2000} --no-lpips "$@" \
    --json $OUT/lego_${STEPS:-2000}_$name.json > $OUT/lego_${STEPS:-2000}_$name.log 2>&1
  echo "$name $(uptime | sed "s/.*load average: //") $(grep -E "^\| *${STEPS:-2000}" $OUT/lego_${STEPS:-2000}_$name.log | head -1)"
}
for spec in "$@"; do
  name=${spec%%:*}; sets=${spec#*:}
  args=()
  for s in ${sets//,/ }; do [ "$s" != "-" ] && args+=(--set "$s"); done
  run "$name" "${args[@]}"
done
