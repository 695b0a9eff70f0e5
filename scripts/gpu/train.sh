#!/usr/bin/env bash
# One time-boxed training run on a lent GPU machine (the device tool's `run`), start to weights.
#
# Before the call, on the development machine (the run carries 64 MiB at most, tree included):
#   python -m training.tools.shrink_voc --src ../shared/data/voc2012-640 --dst /tmp/voc-416 --size 416
#   mkdir -p .devdata && tar -C /tmp/voc-416 -czf .devdata/voc416.tgz .
# The call: command `bash scripts/gpu/train.sh`, carry [".devdata"]. The tracked models/ files
# (~38 MB) plus the 33 MiB tarball exceed 64 MiB: move models/default.onnx out of the tree for
# the call (the run needs only models/default.pt, its --init-weights) and put it back after.
# It unpacks the data, trains with --time-budget-min (the epoch count is fitted to the budget
# after two probe epochs), and writes to $OUT: the log, log.jsonl, and the best and final EMA
# weights as fp16 shards (python -m training.tools.shards join ... rebuilds one weights file).
# Every knob is an environment variable; the defaults are stage 7's GPU recipe (configs/voc-lite/stage07.toml).
# Arguments are passed on to `python -m training` (after the defaults, so they win). The model
# memorises the training set under the defaults (see the card); stages 10-16's regularisation helped:
#   --weight-decay 0.1 --scale-min 0.3 --scale-max 2.0 --mosaic-prob 1.0 --mixup-prob 1.0 \
#   --aspect-jitter 0.3   (MixUp 1.0 instead of 0.5 gained +0.012 mAP@0.5 in stage 16)
# AdamW decays by lr x weight decay per step: stage 14 (lr 1.2e-4) gained with 0.5 (6e-5 per
# step), stage 15 lost with 1.0 (1.2e-4); at this script's lr 1e-3, 0.05 gives 5e-5 and 0.1
# gives 1e-4. Stage 37 (models/TRAINING_LOG.md), 174 epochs at about 800 img/s in a 570 s call:
#   SPEED_CHECK=0 CALL_LIMIT_S=570 LR=8e-4 MOSAIC=1.0 MIXUP=1.0 EVAL_EVERY=40 \
#   bash scripts/gpu/train.sh --weight-decay 0.075 --scale-min 0.3 --scale-max 2.0 --aspect-jitter 0.3
# and scripts/gpu/finetune.sh spent the rest of that lease on short runs from its weights.
set -uo pipefail
RUN=${RUN:-runs/gpu}
source "$(dirname "$0")/setup.sh"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/train.log"
init=()
[ -n "${INIT-models/default.pt}" ] && init=(--init-weights "${INIT-models/default.pt}")
df -h /dev/shm | tail -1 | tee -a "$OUT/train.log"
# The step's speed and kernel count on synthetic batches (~20 s; SPEED_CHECK=0 skips it): the
# record that says whether the step or the loader limits the run (models/TRAINING_LOG.md).
if [ "${SPEED_CHECK:-1}" = 1 ]; then
  timeout 60 $PY -m training.tools.speed --preset "${PRESET:-r18-gn-lite}" --size "${SIZE:-384}" \
    --batch-size "${BATCH:-64}" --iters 20 --count-ops 2>&1 | grep -E "img/s|per step" \
    | tee -a "$OUT/train.log"
fi
# The trainer's loader alone with this run's flags (~20 s with the cache; LOADER_CHECK=0 skips
# it): the smaller of its img/s and the step's bounds the run. On CUDA, --hsv-on auto leaves the
# HSV jitter to the GPU, so the step above includes it and the workers only draw it.
if [ "${LOADER_CHECK:-1}" = 1 ]; then
  timeout 120 $PY -m training.tools.loader_speed --data "$DATA" --eval-interval 0 \
    --input-size "${SIZE:-384}" --batch-size "${BATCH:-64}" \
    --workers "${WORKERS:-14}" --cache-images --mosaic-prob "${MOSAIC:-0.8}" \
    --mixup-prob "${MIXUP:-0.15}" --scale-min 0.5 --scale-max 1.5 --aspect-jitter 0 "$@" --batches 40 2>&1 | grep "img/s" | tee -a "$OUT/train.log"
fi
# train EXTRA_FLAGS...: one fit whose budget is the call's limit minus what has been spent so
# far, ~40 s for the cache and CUDA start-up, and ~60 s for the shards and slack after it.
train() {
  local spent budget_min
  spent=$(( $(date +%s) - t0 ))
  budget_min=${BUDGET_MIN:-$(awk -v s="$spent" -v limit="${CALL_LIMIT_S:-600}" \
    'BEGIN { printf "%.2f", (limit - s - 40 - 60) / 60 }')}
  echo "fit budget ${budget_min} min (extra flags: $*)" | tee -a "$OUT/train.log"
  timeout "$(( ${CALL_LIMIT_S:-600} - 40 - spent ))" $PY -m training --data "$DATA" \
    --preset "${PRESET:-r18-gn-lite}" \
    --input-size "${SIZE:-384}" --epochs "${EPOCHS:-1000}" --time-budget-min "$budget_min" \
    --batch-size "${BATCH:-64}" --lr "${LR:-1e-3}" --lr-base-batch 0 --warmup-epochs 2 \
    --mosaic-prob "${MOSAIC:-0.8}" --mixup-prob "${MIXUP:-0.15}" --no-aug-epochs "${NO_AUG:-15}" \
    --ema-decay "${EMA:-0.998}" --ema-tau 300 --workers "${WORKERS:-14}" --cache-images \
    --eval-interval "${EVAL_EVERY:-30}" --checkpoint-interval "${CKPT_EVERY:-10}" \
    --weight-decay 0.05 --scale-min 0.5 --scale-max 1.5 --aspect-jitter 0 \
    --no-progress --plot-interval-s 1e9 "${init[@]}" \
    --output-dir "$RUN" "$@" 2>&1 | tee -a "$OUT/train.log"
  return "${PIPESTATUS[0]}"
}
train "$@"; status=$?
if [ "$status" != 0 ] && [ ! -f "$RUN/last.pt" ] && [ $(( $(date +%s) - t0 )) -lt 240 ]; then
  # A failure before the first checkpoint: once more on the plainest settings (contiguous
  # layout, fewer workers, the HSV jitter in the workers as on the CPU).
  echo "training failed ($status) before any checkpoint: retrying plain" | tee -a "$OUT/train.log"
  rm -rf "$RUN"; WORKERS=6 train --no-channels-last --hsv-on loader "$@"; status=$?
fi
echo "training exit $status after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/train.log"
cp "$RUN/log.jsonl" "$OUT/" 2>/dev/null
for name in best last; do
  [ -f "$RUN/$name.pt" ] && $PY -m training.tools.shards split "$RUN/$name.pt" "$OUT" --prefix "$name" \
    | tee -a "$OUT/train.log"
done
ls -l "$OUT"
echo "done after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/train.log"
