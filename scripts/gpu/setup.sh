# Sourced by scripts/gpu/train.sh and scripts/gpu/finetune.sh: the common start of a GPU call.
# Sets OUT (what comes back), DATA (where the VOC tarball is unpacked), PY and t0 (the call's
# start, for the scripts' wall budgets), unpacks TARBALL, and puts the repo on PYTHONPATH.
OUT=${OUT:-out}
DATA=${DATA:-/tmp/voc416}
PY=${PY:-python3}
mkdir -p "$OUT" "$DATA"
t0=$(date +%s)
tar -xzf "${TARBALL:-.devdata/voc416.tgz}" -C "$DATA" || exit 1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
