#!/bin/bash
# Issue 20, session 25: the dense scenes' SH degree (sh_degree_dense, default 3) vs 2 (or DEGREES="...") on lego,
# interleaved in alternating processes (docs/bench/ab_fit_set.sh).
FIELD=sh_degree_dense VALUES="${DEGREES:-3 2}" ROUNDS=${ROUNDS:-2} OUT=docs/bench/s25_sh NAME=ab_sh \
  exec "$(dirname "$0")/../ab_fit_set.sh"
