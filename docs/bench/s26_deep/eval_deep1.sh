#!/usr/bin/env bash
# Session 26: evaluate the grown 12-block model (configs/train_tiny_deep1.yaml) as it would ship (8-bit linears,
# `export-model --dtype int8`): held-out generation on two threads alone, then attributes and wording side by side
# on one thread each. Usage: bash docs/bench/s26_deep/eval_deep1.sh STEP
set -euo pipefail
STEP=${1:-3500}
CK=runs/tiny_deep1/checkpoint-$STEP/pipeline
Q=runs/deep1_int8_step$STEP
[ -d "$Q" ] || mvgen export-model "$CK" "$Q" --dtype int8 --decoder-2x assets/mvgen-tiny/decoder_2x
du -sb "$Q"/*
uptime
mvgen evaluate generation --split heldout --model "$Q" --precision fp32 \
    --json docs/model/eval_heldout_deep1_int8_step$STEP.json > runs/eval_deep1_int8_$STEP.log 2>&1
uptime
OMP_NUM_THREADS=1 mvgen evaluate attributes --split heldout --limit 24 --model "$Q" --precision fp32 \
    --json docs/model/eval_attributes_deep1_int8_step$STEP.json > runs/eval_attr_deep1_$STEP.log 2>&1 &
OMP_NUM_THREADS=1 mvgen evaluate wording --split train --limit 16 --model "$Q" --precision fp32 \
    --json docs/model/eval_wording_deep1_int8_step$STEP.json > runs/eval_word_deep1_$STEP.log 2>&1 &
wait
uptime
