#!/usr/bin/env bash
# Sets up the serving venv (no torch) and starts the service on DETECTOR_MODEL_PATH
# (default: models/default.onnx). Extra arguments are ignored; settings come from DETECTOR_* env.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-serve/bin/python ] || "$PY" -m venv .venv-serve
.venv-serve/bin/pip install -q --disable-pip-version-check .
exec .venv-serve/bin/python -m service
