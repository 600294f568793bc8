#!/bin/bash
# Issue 20, session 24: prune_opacity 0.005 (the default) vs 0.01 (or PRUNES="...") on lego, interleaved in
# alternating processes (docs/bench/ab_fit_set.sh).
FIELD=prune_opacity VALUES="${PRUNES:-0.005 0.01}" ROUNDS=${ROUNDS:-3} OUT=docs/bench/s24_levers NAME=ab_prune \
  exec "$(dirname "$0")/../ab_fit_set.sh"
