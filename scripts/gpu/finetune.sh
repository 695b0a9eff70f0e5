#!/usr/bin/env bash
# Short fine-tunes from one weights file on a lent GPU machine, for what is left of a lease
# after scripts/gpu/train.sh: each argument is one run, "NAME:FLAGS", trained in turn and
# returned as fp16 shards ($OUT/NAME-i-of-n.pt; python -m training.tools.shards join rebuilds it).
#
# Before the call, on the development machine (see train.sh for the data tarball):
#   cp runs/gpu/last.pt .devdata/init.pt   # the weights joined from train.sh's shards
# The call: command `bash scripts/gpu/finetune.sh "tail:--mosaic-prob 0 --mixup-prob 0 --lr 6e-5
# --seed 1" "mix:--no-aug-epochs 8 --lr 1.5e-4 --seed 2"`, carry [".devdata"], with both
# models/default.* files moved out of the tree (tree + tarball + init weights ~63 MB of 64 MiB).
# BUDGET_S is the script's wall time: a run starts only with 60 s or more of it left, and is
# stopped at the budget. No validation runs there: evaluate the shards on the original JPEGs.
# The defaults are stages 38 and 39's (models/TRAINING_LOG.md): 16 epochs at batch 64 from stage
# 37's final EMA weights, Mosaic 1.0 + MixUp 1.0 where a run does not switch them off.
set -uo pipefail
source "$(dirname "$0")/setup.sh"
common=(--data "$DATA" --eval-interval 0 --preset "${PRESET:-r18-gn-lite}"
  --input-size "${SIZE:-384}" --batch-size "${BATCH:-64}" --lr-base-batch 0 --warmup-epochs 1
  --epochs "${EPOCHS:-16}" --ema-decay "${EMA:-0.995}" --ema-tau "${EMA_TAU:-30}" --lr 1e-3
  --no-aug-epochs 2
  --workers "${WORKERS:-14}" --cache-images --checkpoint-interval 1000 --no-progress
  --plot-interval-s 1e9 --init-weights "${INIT:-.devdata/init.pt}" --weight-decay 0.075
  --scale-min 0.3 --scale-max 2.0 --aspect-jitter 0.3 --mosaic-prob 1.0 --mixup-prob 1.0)
for spec in "$@"; do
  if [[ $spec != *:* ]]; then
    echo "a run is NAME:FLAGS, got '$spec'" | tee -a "$OUT/finetune.log"; exit 2
  fi
  name=${spec%%:*}
  read -r -a flags <<<"${spec#*:}"
  left=$(( ${BUDGET_S:-200} - ($(date +%s) - t0) ))
  if [ "$left" -lt 60 ]; then
    echo "skip $name: ${left} s left" | tee -a "$OUT/finetune.log"; continue
  fi
  echo "run $name (${flags[*]}) with ${left} s left" | tee -a "$OUT/finetune.log"
  timeout "$(( left - 8 ))" $PY -m training "${common[@]}" --output-dir "${RUNS:-runs}/$name" \
    "${flags[@]}" 2>&1 | tee -a "$OUT/finetune.log" | grep -E "^epoch 1/|^done|Error"
  if [ -f "${RUNS:-runs}/$name/final.pt" ]; then
    $PY -m training.tools.shards split "${RUNS:-runs}/$name/final.pt" "$OUT" --prefix "$name" \
      | tee -a "$OUT/finetune.log"
  else
    echo "run $name: no final weights" | tee -a "$OUT/finetune.log"
  fi
done
echo "done after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/finetune.log"
ls -l "$OUT"
