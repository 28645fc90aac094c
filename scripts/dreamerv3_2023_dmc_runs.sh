#!/usr/bin/env bash
# DreamerV3, 2023 recipe reduced for CPU, on the two dmc_proprio@1 tasks where the published 2023 curve leaves
# random early (issue 19 item 4), plus `random` on the same tasks and seeds. Background runs: each resumes from its
# checkpoint when started again (same command), so this script can be run again in a later session.
#
#   scripts/dreamerv3_2023_dmc_runs.sh [WMBENCH] [SEEDS...]       (defaults: .venv/bin/wmbench, seed 0)
#
# Reduced keys, and why: the full 2023 recipe (deter 512, 2 x 512 heads, 5 x 1024 encoder/decoder, backprop actor)
# takes 6.7 s per update on one core here; with train ratio 512 (0.5 updates per agent step) 20k env steps = 5,000
# updates = 9 h per run. deter/hidden/units 256 and a 2 x 256 encoder/decoder take 2.8 s per update (3.8 h per
# 20k env steps). The train ratio, batch, losses, optimisers and actor gradient stay the recipe's: the previous
# session's runs at a quarter of the ratio did not leave random by 20k env steps.
# Compare with: wmbench reproduce dreamerv3 dmc_proprio@1 --tasks cartpole_swingup,ball_in_cup_catch \
#     --root "$ROOT" --at-step 20000 --allow-reduced --min-seeds N --untrained-runs "$ROOT/dmc_proprio@1"/*/random
set -euo pipefail
WMBENCH=${1:-.venv/bin/wmbench}
shift || true
SEEDS=${*:-0}
ROOT=${ROOT:-$HOME/.cache/wmbench/runs/dv3_2023_reduced}
REDUCED=(--set deter=256 --set hidden=256 --set units=256 --set enc_units=256 --set enc_layers=2)
mkdir -p "$ROOT/logs"
for seed in $SEEDS; do
  for task in cartpole_swingup ball_in_cup_catch; do
    "$WMBENCH" run random dmc_proprio@1 --task "$task" --seed "$seed" --root "$ROOT" --steps 10000 --no-progress \
      > "$ROOT/logs/random_${task}_${seed}.log" 2>&1 || true
    nice -n 15 "$WMBENCH" run dreamerv3 dmc_proprio@1 --task "$task" --seed "$seed" --root "$ROOT" \
      --recipe dreamerv3_2023_dmc_proprio "${REDUCED[@]}" --threads 1 --checkpoint-every 250 \
      --checkpoint-minutes 10 >> "$ROOT/logs/dreamerv3_${task}_${seed}.log" 2>&1 &
  done
done
wait
