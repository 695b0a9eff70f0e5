#!/usr/bin/env bash
# Serve the bundled model (or DETECTOR_MODEL_PATH / --model) from a serving venv without torch.
#   scripts/serve.sh [ARGS...]   ARGS go to `python -m service` (see `scripts/serve.sh --help`)
# The venv (.venv-serve) is created on first use and reinstalled only when pyproject.toml
# changes (its hash is stamped in the venv). The code itself runs from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-serve
STAMP="$VENV/.installed-pyproject.sha256"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check .
    echo "$want" > "$STAMP"
fi
exec "$VENV/bin/python" -m service "$@"
